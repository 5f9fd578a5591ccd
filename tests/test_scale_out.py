"""Scale-out: restore onto another mesh, FSDP memory and losses, cluster detection, remote workdirs
through epath, profiling, launch scripts, and the small defects of issue 12."""

import gc
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from etils import epath
from etils.epath import testing as epath_testing

from ssl_jax import sharding as sharding_lib

from ssl_jax import config as config_lib
from ssl_jax import main as main_lib
from ssl_jax import metrics as metrics_lib
from ssl_jax import train
from ssl_jax.data import pipeline
from ssl_jax.data import sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LARGE = 2**16  # sharding_lib.param_sharding's threshold: smaller leaves stay replicated


def tiny_config(data_path, **overrides):
  """A 2-block ViT (cheap to compile); the 64x1024 and 1024x64 projection kernels pass the FSDP
  threshold, as the wide heads of SimCLR-style tasks do."""
  c = config_lib.base_config()
  c.data.source = f"npz:{data_path}"
  c.data.image_size, c.data.channels, c.data.num_classes = 16, 3, 4
  c.global_batch_size = 16
  c.total_steps = 4
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.model.name, c.model.variant, c.model.patch_size = "vit", "mu", 8
  c.task_kwargs.projection_dims = (1024, 64)
  c.optimizer.warmup_epochs = 1.0
  for key, value in overrides.items():
    config_lib.override(c, [f"{key}={value}"])
  config_lib.check_known_keys(c)
  return c


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


@pytest.fixture(scope="module")
def mesh_runs(data_path, tmp_path_factory):
  """data=8 uninterrupted; the same run stopped at step 2 and resumed on data=2 x fsdp=4
  (traced)."""
  root = tmp_path_factory.mktemp("mesh")
  runs = {"data8": train.train(tiny_config(data_path, **{"mesh.data": 8}), str(root / "data8"))}
  # the data=8 run stopped after its first checkpoint (step 2), then resumed with another mesh
  resumed = root / "resumed"
  shutil.copytree(root / "data8" / "checkpoints", resumed / "checkpoints")
  shutil.rmtree(resumed / "checkpoints" / "4")
  with open(root / "data8" / "metrics.jsonl") as f:
    kept = [line for line in f if json.loads(line)["step"] <= 2]
  (resumed / "metrics.jsonl").write_text("".join(kept))
  runs["resumed"] = train.train(
      tiny_config(data_path, profile_steps=(3, 4), **{"mesh.data": 2, "mesh.fsdp": 4}), str(resumed)
  )
  return root, runs


def test_checkpoint_from_data8_resumes_on_data2_fsdp4(mesh_runs):
  root, runs = mesh_runs
  want, got = _losses(str(root / "data8")), _losses(str(root / "resumed"))
  assert sorted(got) == [1, 2, 3, 4] and int(runs["resumed"].state.step) == 4
  for step in (3, 4):  # the same arithmetic up to the order of reductions
    np.testing.assert_allclose(got[step], want[step], rtol=1e-5)
  # step 2 read into each mesh's shardings: the same values; large kernels split four ways
  checkpointer = train.checkpoint_lib.Checkpointer(str(root / "data8" / "checkpoints"), keep=3)
  restored = {}
  half = train.build(
      tiny_config("unused.npz", **{"mesh.data": 4}),
      input_shape=(16, 16, 3),
      steps_per_epoch=4,
      total_steps=4,
  )
  for name in ("data8", "resumed", "data4"):
    comps = half if name == "data4" else runs[name].components
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        jax.eval_shape(comps.init_state, jax.random.PRNGKey(0)),
        comps.state_sharding,
    )
    restored[name], data_state = checkpointer.restore(abstract, step=2)
    assert data_state == {"next_batch": 2}
  checkpointer.close()
  params = jax.tree.leaves(restored["resumed"].params)
  assert all(x.sharding.mesh.shape == {"data": 2, "fsdp": 4} for x in params)
  assert any("fsdp" in x.sharding.spec for x in params)
  assert all(
      x.sharding.spec == jax.sharding.PartitionSpec()
      for x in jax.tree.leaves(restored["data8"].params)
  )
  assert {d.id for x in jax.tree.leaves(restored["data4"]) for d in x.sharding.device_set} == {
      0,
      1,
      2,
      3,
  }
  for other in ("resumed", "data4"):
    for a, b in zip(
        jax.tree.leaves(jax.device_get(restored[other])),
        jax.tree.leaves(jax.device_get(restored["data8"])),
    ):
      np.testing.assert_array_equal(a, b)


def per_device_bytes(tree, device, large_only=False):
  return sum(
      shard.data.nbytes
      for x in jax.tree.leaves(tree)
      if not large_only or x.size >= LARGE
      for shard in x.addressable_shards
      if shard.device == device
  )


def test_fsdp_holds_a_quarter_of_the_large_leaves_and_gives_the_data_parallel_losses(mesh_runs):
  root, runs = mesh_runs
  device = jax.devices()[0]
  sizes = {}
  for name in ("data8", "resumed"):
    state = runs[name].state
    sizes[name] = {
        "large": per_device_bytes((state.params, state.opt_state), device, True),
        "all": per_device_bytes((state.params, state.opt_state), device),
    }
  print(sizes)
  assert sizes["data8"]["large"] > 0
  assert sizes["resumed"]["large"] * 4 == sizes["data8"]["large"]  # every large leaf splits over 4
  assert sizes["resumed"]["all"] < 0.7 * sizes["data8"]["all"]
  # its two FSDP steps gave the data-parallel losses (the test above) and parameters
  for a, b in zip(
      jax.tree.leaves(jax.device_get(runs["resumed"].state.params)),
      jax.tree.leaves(jax.device_get(runs["data8"].state.params)),
  ):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_profile_steps_write_a_trace(mesh_runs, data_path):
  root, _ = mesh_runs
  assert glob.glob(str(root / "resumed" / "profile" / "plugins" / "profile" / "*" / "*.xplane.pb"))
  with pytest.raises(ValueError, match=r"config.profile_steps=\(3, 2\)"):
    train.train(tiny_config(data_path, profile_steps=(3, 2)), str(root / "bad"))


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_slurm_is_detected_without_our_variables(tmp_path):
  """Two processes with the variables srun sets (and none of ours) form one 2-process system."""
  script = (
      "from ssl_jax import main; main.initialize_distributed(); import jax; "
      "print('RESULT', jax.process_count(), jax.process_index(), jax.device_count())"
  )
  port = str(_free_port())
  procs = []
  for i in range(2):
    env = {k: v for k, v in os.environ.items() if k not in main_lib.EXPLICIT}
    env.update(
        JAX_PLATFORMS="cpu",
        PYTHONPATH=REPO,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        SLURM_JOB_ID="4242",
        SLURM_STEP_NODELIST="localhost",
        SLURM_NTASKS="2",
        SLURM_PROCID=str(i),
        SLURM_LOCALID=str(i),
        JAX_COORDINATOR_PORT=port,
    )
    procs.append(
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            cwd=str(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    )
  outputs = [p.communicate(timeout=120)[0] for p in procs]
  for i, (p, output) in enumerate(zip(procs, outputs)):
    assert p.returncode == 0, output[-3000:]
    assert f"RESULT 2 {i} 4" in output, output[-3000:]
  assert "processes: 2, this is 0; devices: 2 local, 4 global (cpu)" in outputs[0]


def test_single_task_or_running_jax_stays_one_process_and_bad_variables_are_named():
  # one SLURM task (sbatch without srun): no coordinator is started, every local device is used
  line = main_lib.initialize_distributed({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "1"})
  assert line.startswith("processes: 1, this is 0; devices: 8 local, 8 global")
  # JAX already running in this process (entry points called as functions): stays one process
  assert main_lib.initialize_distributed({}) == line
  with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='2'.*Set all three variables"):
    main_lib.initialize_distributed(
        {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}
    )


def test_remote_workdir_writes_go_through_epath(tmp_path):
  """gs://bucket/run served from tmp_path by a mocked epath backend: a plain open() would fail."""

  def local(path):
    return os.fspath(path).replace("gs://bucket", str(tmp_path))

  seen = []

  def redirect(original, path, *args, **kwargs):
    seen.append(os.fspath(path))
    return original(local(path), *args, **kwargs)

  def redirect2(original, path, dst, *args, **kwargs):
    seen.append(os.fspath(path))
    return original(local(path), local(dst), *args, **kwargs)

  root = "gs://bucket/run"
  config = tiny_config("x.npz")
  with epath_testing.mock_epath(
      open=redirect,
      exists=redirect,
      isdir=redirect,
      makedirs=redirect,
      mkdir=redirect,
      stat=redirect,
      replace=redirect2,
      rename=redirect2,
  ):
    config_lib.finalize(config, root)
    for step in (1, 2):  # a second writer (a resumed run) keeps the first one's lines
      writer = metrics_lib.MetricWriter(root, total_steps=2, global_batch_size=2, tensorboard=False)
      writer.write(step, {"loss": 1.0 / step})
      writer.close()
    skipped = sources.ArraySource(np.zeros((2, 2, 2, 1), np.uint8), np.zeros(2, np.int32))
    skipped.skipped = ["a.jpg: truncated"]
    sources.write_skipped(root + "/skipped_files.txt", skipped)
    train._write_artifacts(root, {"reconstruction.png": np.full((4, 4, 3), 0.5)})
  # our calls name gs:// paths; local ones are the mocked backend's own nested calls
  assert seen and all(p.startswith(("gs://bucket/run", str(tmp_path))) for p in seen), seen
  run = tmp_path / "run"
  assert json.loads((run / "config.json").read_text())["global_batch_size"] == 16
  assert [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()] == [
      {"step": 1, "loss": 1.0},
      {"step": 2, "loss": 0.5},
  ]
  assert (run / "skipped_files.txt").read_text() == "a.jpg: truncated\n"
  from PIL import Image  # pylint: disable=g-import-not-at-top

  assert np.asarray(Image.open(run / "reconstruction.png")).shape == (4, 4, 3)
  assert sorted(os.listdir(run)) == [
      "config.json",
      "metrics.jsonl",
      "reconstruction.png",
      "skipped_files.txt",
  ]
  assert (
      train.checkpoint_lib._absolute("gs://bucket/run/checkpoints") == "gs://bucket/run/checkpoints"
  )
  assert epath.Path(train.checkpoint_lib._absolute("rel")).is_absolute()


def test_npz_without_split_prefixes_serves_train_only(tmp_path):
  path = tmp_path / "plain.npz"
  np.savez(path, images=np.zeros((6, 4, 4, 3), np.uint8), labels=np.arange(6) % 2)
  assert len(sources.build(f"npz:{path}", "train")) == 6
  with pytest.raises(
      KeyError,
      match=r"no 'test_images' array; unprefixed 'images' serve the 'train' "
      r"split only.*--holdout_per_class=N",
  ):
    sources.build(f"npz:{path}", "test")


def _shared_memory():
  return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def test_worker_processes_release_shared_memory_on_close():
  source = sources.ArraySource(np.zeros((64, 32, 32, 3), np.uint8), np.zeros(64, np.int32))
  before = _shared_memory()
  it = pipeline.train_iterator(source, global_batch_size=8, seed=0, num_workers=1, prefetch=3)
  batch = next(it)  # the workers fill their buffers with more batches than this
  assert batch["inputs"].shape == (8, 32, 32, 3)
  it.close()
  del batch
  gc.collect()
  for _ in range(100):  # the workers unlink their blocks as they shut down, not at once
    leaked = {n for n in _shared_memory() - before if n.startswith("psm_")}
    if not leaked:
      break
    time.sleep(0.1)
  assert not leaked, f"{len(leaked)} shared memory blocks left: {sorted(leaked)[:4]}"


def test_experiment_scripts_run_from_the_repository_root_without_pythonpath(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  # the failing command, and scripts of each import style (the rest follow the same pattern)
  scripts = [
      os.path.join(REPO, "experiments", n)
      for n in ("bench_input.py", "bench_conv_impls.py", "eval_memory.py")
  ]
  procs = [
      subprocess.Popen(
          [sys.executable, os.path.relpath(s, REPO), "--help"],
          cwd=REPO,
          env=env,
          stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT,
          text=True,
      )
      for s in scripts
  ]
  for script, p in zip(scripts, procs):
    output = p.communicate(timeout=120)[0]
    assert p.returncode == 0 and "usage:" in output, f"{script}:\n{output[-2000:]}"


LAUNCH = [os.path.join(REPO, "launch", n) for n in ("gpu_local.sh", "slurm.sbatch", "tpu_pod.sh")]


def test_launch_scripts_parse_and_document_their_arguments():
  for path in LAUNCH:
    subprocess.run(["bash", "-n", path], check=True)
    usage = subprocess.run(["bash", path], capture_output=True, text=True)  # no arguments
    assert usage.returncode == 2 and "CONFIG" in usage.stderr and "WORKDIR" in usage.stderr, path


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_launch_scripts_pass_shellcheck():
  result = subprocess.run(["shellcheck", *LAUNCH], capture_output=True, text=True)
  assert result.returncode == 0, result.stdout


def test_large_decoded_splits_stream_to_the_evaluators(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from ssl_jax import evaluators  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  for i in range(10):
    os.makedirs(tmp_path / "imgs" / f"c{i % 2}", exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
        tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png"
    )
  source = sources.build(f"folder:{tmp_path / 'imgs'}", "train", holdout_per_class=0, image_size=8)
  images, labels = sources.eval_arrays(source, max_bytes=0)  # "large": nothing decoded yet
  assert isinstance(images, sources.LazyImages) and source._arrays is None
  want_images, want_labels = source.arrays()
  np.testing.assert_array_equal(labels, want_labels)
  assert images.shape == want_images.shape and images.ndim == 4
  np.testing.assert_array_equal(images[3:7], want_images[3:7])
  np.testing.assert_array_equal(images[[True, False] * 5][1:3], want_images[[2, 4]])
  streamed = list(pipeline.padded_batches(images, labels, 4))
  for got, want in zip(streamed, pipeline.padded_batches(want_images, want_labels, 4)):
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  data = evaluators.EvalData(images, labels, images, labels, num_classes=2)
  flat = lambda x: np.concatenate(
      [
          b["inputs"][b["mask"]].reshape(-1, 192)
          for b in pipeline.padded_batches(x, np.zeros(len(x)), 4)
      ]
  ).astype(np.float32)
  np.testing.assert_allclose(data.features(flat)[0], want_images.reshape(10, -1))
  assert isinstance(sources.eval_arrays(source)[0], np.ndarray)  # small: decoded once, cached


def test_the_study_streams_large_decoded_splits(tmp_path, monkeypatch):
  """With both splits over the in-memory limit, the study reads them lazily (features, labelled
  subsets, test scores batch by batch) and gives the rows it gives in memory."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec  # pylint: disable=g-import-not-at-top
  from ssl_jax.modalities import image as image_modality  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  for i in range(16):
    os.makedirs(tmp_path / "imgs" / f"c{i % 2}", exist_ok=True)
    base = np.full((8, 8, 3), 60 + 120 * (i % 2))
    image = np.clip(base + rng.normal(0, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png")
  c = config_lib.base_config()
  c.data.num_classes, c.data.image_size, c.data.eval_batch_size = 2, 8, 4
  c.model.width_multiplier = 0.125
  c.model.depth = 10
  c.label_efficiency.labels_per_class = (2,)
  c.label_efficiency.num_draws = 2
  c.label_efficiency.methods = ("pixels_logreg", "supervised_scratch")
  c.finetune.steps, c.finetune.batch_size, c.finetune.kfold = 4, 4, 0
  split = lambda name: sources.build(
      f"folder:{tmp_path / 'imgs'}", name, holdout_per_class=3, image_size=8
  )
  c.mesh.data = 2
  sharding = NamedSharding(sharding_lib.make_mesh(c), PartitionSpec(sharding_lib.BATCH_AXES))
  rows = {}
  for limit in (2**30, 0):
    monkeypatch.setattr(image_modality, "IN_MEMORY_BYTES", limit)
    train_source, test_source = split("train"), split("test")
    rows[limit] = image_modality.study_rows(c, None, train_source, test_source, sharding.mesh)
    decoded = train_source._arrays is not None or test_source._arrays is not None
    assert decoded == (limit > 0)  # streamed: neither split was decoded whole
  for want, got in zip(rows[2**30], rows[0]):
    assert (got["method"], got["accuracies"]) == (want["method"], want["accuracies"])
