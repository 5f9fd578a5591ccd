"""The GPU check in one call: every stage's figures and exact settings in one JSON (DEVICE.md).

  bash experiments/device_check.sh [--dry_run] [--out DIR]    # installs carried wheels, then this
  python experiments/device_check.py [--dry_run] [--out DIR] [--budget_s=450] [--stages=a,b]
  python experiments/device_check.py --prepare                # here: the CIFAR-10 subset to carry

Stages, in order; each runs in its own process with its own timeout, so a crash, an out-of-memory
or a timeout is recorded in the JSON and the next stage still runs, and each process's peak
device memory is its own. Stages share a persistent XLA compilation cache.
  environment          versions, devices, device memory, cores
  simclr_r50           SimCLR ResNet-50, 224 px, bf16, batch 256: images/s per device on synthetic
                       on-device images; then fed by the loop's host pipeline (grain: read, decode,
                       resize) from 500x375 photo JPEGs written to a temporary folder
                       (bench_input._photo_folder), and that pipeline alone: input- or compute-bound
  mae_vit_b16          MAE ViT-B/16 (the paper's 8-block, 512-wide decoder), 224 px: images/s
  dino_vit_s16         DINO ViT-S/16, 2 x 224 px + 10 x 96 px crops, 65,536 prototypes: images/s
  bert_base_mlm        BERT-base masked LM at 128 tokens (config.model.bert.size='base'): tokens/s
  memory_full_batch    SimCLR ResNet-50: the largest batch (powers of two, capped) whose step fits,
  memory_micro_batch   without and with config.micro_batch_size, and peak_bytes_in_use /
                       bytes_limit there (null where the backend has no memory_stats, e.g. CPU)
  cifar10_knn          SimCLR ResNet-18 on CIFAR-10 (the carried subset) for 50 s of training: kNN
                       accuracy of the random-init encoder and of the trained one; `learns`
  tests                the default test suite (pytest, CPU backend with the 8 simulated devices of
                       tests/conftest.py, in parallel where pytest-xdist is installed)
Every step is the loop's own jitted train step (train.build); the throughput stages reuse
experiments/bench_simclr_step.py and bench_mlm_step.py. `--dry_run` runs every stage on the CPU
with tiny models and data (1.5-3 minutes on 2 cores: tests/test_device_check.py); its figures
mean nothing.
"""

import argparse
import datetime
import gc
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, HERE]  # ssl_jax, and the bench scripts whose pieces the stages reuse

CARRY = os.path.join(REPO, "workdirs", "device_carry")  # git-ignored (.gitignore: workdirs/)
CIFAR_SUBSET = os.path.join(CARRY, "cifar10_subset.npz")
CIFAR_SHARED = os.path.join(REPO, "..", "shared", "data", "cifar10", "cifar10_jpeg_bytes.npz")

ANCHORS = {
    "simclr_r50": {
        "published_images_per_s_per_tpu_v3_core": 185,
        "published_source": "google-research/simclr README (ResNet-50, 224 px; derived per core)",
        "goal_images_per_s_per_h100": 1500,
    }
}
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4}  # dense bf16, SXM: the MFU denominator

R50 = dict(depth=50, stem="imagenet", width=1.0, image_size=224, dtype="bfloat16")
TINY_RESNET = dict(depth=10, stem="small", width=0.25, image_size=16, dtype="float32")

BUDGET_S, DRY_BUDGET_S = 450, 400  # all stages together (device_check.sh: 465 s backstop)
# The timeouts before `tests` leave it at least 15 s of BUDGET_S, and more when stages finish
# early (they usually do).
GPU = {
    "environment": dict(timeout_s=20),
    "simclr_r50": dict(
        timeout_s=90,
        **R50,
        batch=256,
        steps=20,
        jpegs=512,
        workers=12,
        host_batches=20,
        pipeline_steps=20,
    ),
    "mae_vit_b16": dict(
        timeout_s=40,
        variant="b",
        patch_size=16,
        image_size=224,
        batch=256,
        dtype="bfloat16",
        decoder_width=512,
        decoder_depth=8,
        decoder_heads=16,
        steps=10,
    ),
    "dino_vit_s16": dict(
        timeout_s=40,
        variant="s",
        patch_size=16,
        image_size=224,
        batch=128,
        dtype="bfloat16",
        num_local_crops=10,
        local_crop_size=96,
        hidden_dims=(2048, 2048),
        num_prototypes=65536,
        steps=10,
    ),
    "bert_base_mlm": dict(
        timeout_s=35,
        size="base",
        num_layers=0,
        hidden_size=0,
        length=128,
        batch=256,
        dtype="bfloat16",
        steps=10,
    ),
    # upwards from simclr_r50's batch (a compilation-cache hit); chunked steps should fit up to the
    # cap, so that search starts there
    "memory_full_batch": dict(
        timeout_s=55, **R50, micro_batch=0, search="up", first_batch=256, max_batch=2048
    ),
    "memory_micro_batch": dict(
        timeout_s=55, **R50, micro_batch=128, search="down", first_batch=512, max_batch=4096
    ),
    "cifar10_knn": dict(
        timeout_s=100,
        source=f"npz:{CIFAR_SUBSET}",
        image_size=32,
        channels=3,
        depth=18,
        width=1.0,
        dtype="bfloat16",
        batch=512,
        warmup_epochs=2.0,
        train_seconds=50,
        max_steps=2000,
        workers=12,
        knn_k=200,
        knn_temperature=0.1,
        knn_train=0,
        knn_test=0,
    ),
    "tests": dict(
        timeout_s=90,
        platform="cpu",
        xdist_workers=8,
        args=[
            "-v",
            "-rfE",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            "tests",
            "--ignore=tests/test_data_tfds.py",
        ],
    ),
}
DRY = {
    "environment": dict(timeout_s=60),
    "simclr_r50": dict(
        timeout_s=120,
        **TINY_RESNET,
        batch=8,
        steps=2,
        jpegs=16,
        workers=0,
        host_batches=2,
        pipeline_steps=2,
    ),
    "mae_vit_b16": dict(
        timeout_s=120,
        variant="mu",
        patch_size=4,
        image_size=16,
        batch=4,
        dtype="float32",
        decoder_width=32,
        decoder_depth=1,
        decoder_heads=2,
        steps=2,
    ),
    "dino_vit_s16": dict(
        timeout_s=120,
        variant="mu",
        patch_size=4,
        image_size=16,
        batch=4,
        dtype="float32",
        num_local_crops=1,
        local_crop_size=8,
        hidden_dims=(64,),
        num_prototypes=64,
        steps=2,
    ),
    "bert_base_mlm": dict(
        timeout_s=120,
        size="tiny",
        num_layers=2,
        hidden_size=32,
        length=16,
        batch=4,
        dtype="float32",
        steps=2,
    ),
    "memory_full_batch": dict(
        timeout_s=120, **TINY_RESNET, micro_batch=0, search="up", first_batch=8, max_batch=8
    ),  # simclr_r50's program: a cache hit
    "memory_micro_batch": dict(
        timeout_s=120,
        **TINY_RESNET,
        micro_batch=4,
        loop="scan",
        search="down",
        first_batch=8,
        max_batch=8,
    ),  # scan: as on a GPU
    "cifar10_knn": dict(
        timeout_s=120,
        source="mnist",
        image_size=28,
        channels=1,
        depth=10,
        width=0.25,
        dtype="float32",
        batch=32,
        warmup_epochs=0.1,
        train_seconds=30,
        max_steps=3,
        workers=0,
        knn_k=20,
        knn_temperature=0.1,
        knn_train=500,
        knn_test=200,
    ),
    "tests": dict(
        timeout_s=120,
        platform="",
        xdist_workers=0,
        args=[
            "-x",
            "-v",
            "-p",
            "no:cacheprovider",
            "tests/test_config.py::test_default_config_loads_and_is_known",
        ],
    ),
}
STAGES = tuple(GPU)
HEADLINE = {  # the figure a stage that ran must have (tests/test_device_check.py checks it)
    "environment": "device_count",
    "simclr_r50": "synthetic_images_per_s",
    "mae_vit_b16": "images_per_s",
    "dino_vit_s16": "images_per_s",
    "bert_base_mlm": "tokens_per_s",
    "memory_full_batch": "largest_batch",
    "memory_micro_batch": "largest_batch",
    "cifar10_knn": "knn_accuracy_trained",
    "tests": "passed",
}


class Recorder:
  """A stage's figures, rewritten to its result file after every call: a stage killed at its
  timeout still leaves what it had measured."""

  def __init__(self, path):
    self.path, self.result = path, {"figures": {}}

  def __call__(self, **figures):
    self.result["figures"].update(figures)
    for key, value in figures.items():
      print(f"  {key} = {value}", flush=True)
    self._write()

  def error(self, message, trace):
    self.result.update(error=message, traceback=trace)
    self._write()

  def _write(self):
    with open(self.path + ".tmp", "w") as f:
      json.dump(self.result, f, indent=1, default=str)
    os.replace(self.path + ".tmp", self.path)


def _compiled_step(comps, batch):
  """The loop's train step compiled for `batch` (numpy), as bench_simclr_step.prepare does."""
  import jax  # pylint: disable=g-import-not-at-top
  import bench_simclr_step  # pylint: disable=g-import-not-at-top

  state = comps.init_state(jax.random.PRNGKey(0))
  data = jax.device_put(batch, comps.batch_sharding)
  start = time.perf_counter()
  compiled = comps.train_step.lower(state, data).compile()
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return dict(
      compiled=compiled,
      state=state,
      data=data,
      compile_s=compile_s,
      flops=float((cost or {}).get("flops", float("nan"))),
      planned_bytes=bench_simclr_step.peak_bytes(compiled),
  )


def _images(batch, size):
  import numpy as np  # pylint: disable=g-import-not-at-top

  images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
  return {"inputs": images, "label": np.zeros(batch, np.int32)}


def _throughput(run, *, steps, items):
  """Figures of a compiled step: median step time over `steps` after one warm-up step."""
  import jax  # pylint: disable=g-import-not-at-top
  import bench_simclr_step  # pylint: disable=g-import-not-at-top

  bench_simclr_step.time_steps(run, 1)
  step_s = bench_simclr_step.time_steps(run, steps)
  achieved = run["flops"] / step_s / 1e12
  kind = jax.devices()[0].device_kind
  peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in kind), None)
  return dict(
      compile_s=round(run["compile_s"], 2),
      step_ms=round(1000 * step_s, 3),
      per_device=round(items / step_s / jax.device_count(), 1),
      step_tflop=round(run["flops"] / 1e12, 4),
      achieved_tflops=round(achieved, 3),
      mfu=round(achieved / peak, 4) if peak else None,
  )


def _simclr_config(s, batch, micro_batch=0):
  """bench_simclr_step's SimCLR config (LARS, projector (2048, 2048, 128) for ResNet-50)."""
  import bench_simclr_step  # pylint: disable=g-import-not-at-top
  from ssl_jax import config as config_lib  # pylint: disable=g-import-not-at-top

  args = argparse.Namespace(
      image_size=s["image_size"],
      depth=s["depth"],
      dtype=s["dtype"],
      conv_impl="auto",
      stem=s["stem"],
      norm="batch",
      width=s["width"],
      head_norm="batch",
      loop=s.get("loop", "auto"),
      no_recompute=False,
      no_augment=False,
  )
  return config_lib.finalize(bench_simclr_step.make_config(args, batch, micro_batch, "eigen"))


def _build(config, input_shape):
  from ssl_jax import train  # pylint: disable=g-import-not-at-top

  return train.build(config, input_shape=input_shape, steps_per_epoch=100, total_steps=1000)


def _memory(device):
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  return stats or {}


def environment(s, record):
  del s
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  versions = {}
  for name in (
      "jax",
      "jaxlib",
      "jax-cuda13-plugin",
      "jax-cuda12-plugin",
      "flax",
      "optax",
      "orbax-checkpoint",
      "grain",
      "ml-collections",
      "transformers",
      "numpy",
  ):
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  device = jax.devices()[0]
  memory = _memory(device)
  smi = None
  if shutil.which("nvidia-smi"):
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    ).stdout.strip()
  record(
      device_count=jax.device_count(),
      backend=jax.default_backend(),
      device_kind=device.device_kind,
      devices=[str(d) for d in jax.devices()],
      bytes_limit=memory.get("bytes_limit"),
      nvidia_smi=smi,
      cpu_cores=os.cpu_count(),
      python=sys.version.split()[0],
      versions=versions,
      wheels_installed=os.environ.get("DEVICE_CHECK_INSTALLED", "").split(),
  )


def simclr_r50(s, record):
  import bench_input  # pylint: disable=g-import-not-at-top
  from ssl_jax import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  from ssl_jax.data import pipeline, sources  # pylint: disable=g-import-not-at-top

  size, batch = s["image_size"], s["batch"]
  comps = _build(_simclr_config(s, batch), (size, size, 3))
  run = _compiled_step(comps, _images(batch, size))
  figures = _throughput(run, steps=s["steps"], items=batch)
  record(
      **{("synthetic_images_per_s" if k == "per_device" else k): v for k, v in figures.items()},
      anchor=ANCHORS["simclr_r50"],
  )

  with tempfile.TemporaryDirectory() as root:  # ImageNet-size JPEGs, as the loop reads a folder
    bench_input._photo_folder(root, s["jpegs"])  # pylint: disable=protected-access
    source = sources.build(f"folder:{root}", "train", channels=3, image_size=size)
    options = dict(
        global_batch_size=batch, seed=0, num_workers=s["workers"], read_threads=2, prefetch=2
    )
    with pipeline.train_iterator(source, **options) as it:  # the pipeline alone
      for _ in range(2):
        next(it)
      start = time.perf_counter()
      for _ in range(s["host_batches"]):
        next(it)
      host = s["host_batches"] * batch / (time.perf_counter() - start)
    record(
        host_pipeline_images_per_s=round(host, 1), workers=s["workers"], cpu_cores=os.cpu_count()
    )
    sharding = run["data"]["inputs"].sharding
    with pipeline.train_iterator(source, **options) as it:  # the pipeline feeding the step
      feed = lambda: sharding_lib.from_process_local(
          {k: v for k, v in next(it).items() if k != "index"}, sharding
      )
      for _ in range(3):  # workers start, buffers fill
        run["state"], metrics = run["compiled"](run["state"], feed())
      metrics["loss"].block_until_ready()
      start = time.perf_counter()
      for _ in range(s["pipeline_steps"]):
        run["state"], metrics = run["compiled"](run["state"], feed())
      metrics["loss"].block_until_ready()
      fed = s["pipeline_steps"] * batch / (time.perf_counter() - start)
  synthetic = figures["per_device"]
  record(
      pipeline_images_per_s=round(fed, 1),
      input_bound=bool(fed < 0.9 * synthetic),
      loss=float(metrics["loss"]),
  )


def mae_vit_b16(s, record):
  config = _vit_config(
      "configs/mae_cifar10.py",
      s,
      decoder_width=s["decoder_width"],
      decoder_depth=s["decoder_depth"],
      decoder_heads=s["decoder_heads"],
  )
  _vision_throughput(config, s, record)


def dino_vit_s16(s, record):
  config = _vit_config(
      "configs/dino_cifar10.py:vit",
      s,
      num_local_crops=s["num_local_crops"],
      local_crop_size=s["local_crop_size"],
      hidden_dims=s["hidden_dims"],
      num_prototypes=s["num_prototypes"],
  )
  _vision_throughput(config, s, record)


def _vit_config(path_and_arg, s, **task_kwargs):
  """A CIFAR-10 recipe (configs/) at the stage's ViT size, resolution, batch and dtype."""
  from ssl_jax import config as config_lib  # pylint: disable=g-import-not-at-top

  c = config_lib.load(os.path.join(REPO, path_and_arg))
  c.model.update(dict(variant=s["variant"], patch_size=s["patch_size"], dtype=s["dtype"]))
  c.data.image_size = s["image_size"]
  c.global_batch_size = s["batch"]
  c.online_probe = False  # the method's own step
  c.task_kwargs.update(task_kwargs)
  return config_lib.finalize(c)


def _vision_throughput(config, s, record):
  size = s["image_size"]
  run = _compiled_step(_build(config, (size, size, 3)), _images(s["batch"], size))
  figures = _throughput(run, steps=s["steps"], items=s["batch"])
  record(**{("images_per_s" if k == "per_device" else k): v for k, v in figures.items()})


def bert_base_mlm(s, record):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import bench_mlm_step  # pylint: disable=g-import-not-at-top
  from ssl_jax import config as config_lib  # pylint: disable=g-import-not-at-top

  with tempfile.TemporaryDirectory() as tmp:
    args = argparse.Namespace(batch=s["batch"], dtype=s["dtype"])
    c = bench_mlm_step.make_config(args, bench_mlm_step.write_vocabulary(tmp))
    c.model.bert.update(
        dict(size=s["size"], num_layers=s["num_layers"], hidden_size=s["hidden_size"])
    )
    c = config_lib.finalize(c)
    comps = _build(c, (s["length"],))
    ids = np.random.default_rng(0).integers(5, bench_mlm_step.VOCAB, (s["batch"], s["length"]))
    ids = ids.astype(np.int32)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP], full length
    batch = {
        "inputs": ids,
        "label": np.zeros(s["batch"], np.int32),
        "index": np.arange(s["batch"], dtype=np.int32),
    }
    run = _compiled_step(comps, batch)
    figures = _throughput(run, steps=s["steps"], items=s["batch"] * s["length"])
  record(
      **{("tokens_per_s" if k == "per_device" else k): v for k, v in figures.items()},
      vocab_size=bench_mlm_step.VOCAB,
  )


def memory_full_batch(s, record):
  _memory_search(s, record)


def memory_micro_batch(s, record):
  _memory_search(s, record)


def _memory_search(s, record):
  """The largest power-of-two multiple of first_batch, up to max_batch, whose step fits: searched
  upwards (doubling until one does not fit) or downwards (halving from max_batch until one does).
  A batch whose planned memory exceeds what is free is compiled but not run, so the process's
  peak_bytes_in_use stays that of the largest batch that ran."""
  import jax  # pylint: disable=g-import-not-at-top
  import bench_simclr_step  # pylint: disable=g-import-not-at-top

  device, size, probes = jax.devices()[0], s["image_size"], []
  batches = [s["first_batch"]]
  while batches[-1] * 2 <= s["max_batch"]:
    batches.append(batches[-1] * 2)
  upwards = s["search"] == "up"
  record(search=s["search"], batches=batches, largest_batch=None, search_complete=False)
  for batch in batches if upwards else batches[::-1]:
    probe = dict(batch=batch)
    try:
      run = _compiled_step(
          _build(_simclr_config(s, batch, s["micro_batch"]), (size, size, 3)), _images(batch, size)
      )
      probe.update(
          compile_s=round(run["compile_s"], 1), planned_gib=round(run["planned_bytes"] / 2**30, 3)
      )
      analysis, memory = run["compiled"].memory_analysis(), _memory(device)
      needed = (
          (
              analysis.output_size_in_bytes
              - analysis.alias_size_in_bytes
              + analysis.temp_size_in_bytes
          )
          if analysis
          else 0
      )
      if memory and needed > memory["bytes_limit"] - memory["bytes_in_use"]:
        free = memory["bytes_limit"] - memory["bytes_in_use"]
        probe.update(fits=False, why=f"needs {needed / 2**30:.2f} GiB, {free / 2**30:.2f} GiB free")
      else:
        bench_simclr_step.time_steps(run, 1)
        peak = _memory(device).get("peak_bytes_in_use")
        probe.update(
            fits=True,
            peak_gib=round(peak / 2**30, 3) if peak else None,
            peak_fraction=round(peak / memory["bytes_limit"], 4) if peak else None,
        )
      del run
    except Exception as e:  # pylint: disable=broad-except
      if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e).lower():
        raise
      probe.update(fits=False, why=f"{type(e).__name__}: {str(e)[:300]}")
    gc.collect()
    probes.append(probe)
    best = max((p for p in probes if p.get("fits")), key=lambda p: p["batch"], default={})
    record(
        largest_batch=best.get("batch"),
        peak_fraction=best.get("peak_fraction"),
        peak_gib=best.get("peak_gib"),
        bytes_limit=_memory(device).get("bytes_limit"),
        probes=probes,
    )
    if probe.get("fits") != upwards:  # up: the first that does not fit; down: the first that does
      break
  record(search_complete=True, capped=best.get("batch") == s["max_batch"])


def cifar10_knn(s, record):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ssl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from ssl_jax import evaluators  # pylint: disable=g-import-not-at-top
  from ssl_jax import train  # pylint: disable=g-import-not-at-top
  from ssl_jax import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  from ssl_jax.data import pipeline, sources  # pylint: disable=g-import-not-at-top

  source = s["source"]
  if source.startswith("npz:") and not os.path.isfile(source[4:]):
    if not os.path.isfile(CIFAR_SHARED):
      raise FileNotFoundError(
          f"{source[4:]} is absent: make it with `bash experiments/"
          "device_check.sh --prepare` and carry workdirs/device_carry "
          "(DEVICE.md)"
      )
    source = f"npz:{CIFAR_SHARED}"
  c = config_lib.load(os.path.join(REPO, "configs/simclr_cifar10.py"))
  c.data.update(
      dict(
          source=source,
          image_size=s["image_size"],
          channels=s["channels"],
          num_workers=s["workers"],
      )
  )
  c.model.update(dict(depth=s["depth"], width_multiplier=s["width"], dtype=s["dtype"]))
  c.global_batch_size, c.total_steps = s["batch"], s["max_steps"]
  c.optimizer.warmup_epochs = s["warmup_epochs"]
  c.online_probe = False
  c = config_lib.finalize(c)
  train_source, test_source = train.load_data(c)
  steps_per_epoch, total_steps = train.schedule_lengths(c, len(train_source))
  comps = train.build(
      c,
      input_shape=train_source[0]["inputs"].shape,
      steps_per_epoch=steps_per_epoch,
      total_steps=total_steps,
      num_examples=len(train_source),
  )
  (train_x, train_y), (test_x, test_y) = map(sources.eval_arrays, (train_source, test_source))
  cap = lambda n, *arrays: [a[:n] if n else a for a in arrays]
  data = evaluators.EvalData(
      *cap(s["knn_train"], train_x, train_y),
      *cap(s["knn_test"], test_x, test_y),
      num_classes=c.data.num_classes,
  )
  knn = evaluators.knn.KNN(data=data, every_steps=1, k=s["knn_k"], temperature=s["knn_temperature"])
  state = comps.init_state(jax.random.PRNGKey(c.seed))
  before = knn.run(lambda images: comps.features_of(state, images))["accuracy"]
  record(
      source=source,
      train_examples=len(train_source),
      knn_bank=len(data.train_labels),
      knn_queries=len(data.test_labels),
      knn_accuracy_random_init=before,
  )
  with pipeline.train_iterator(
      train_source,
      global_batch_size=c.global_batch_size,
      seed=c.seed,
      num_workers=c.data.num_workers,
      read_threads=c.data.read_threads,
      prefetch=c.data.prefetch,
  ) as it:

    def next_batch():
      local = next(it)
      local["index"] = local["index"].astype(np.int32)  # as train.train does
      return sharding_lib.from_process_local(local, comps.batch_sharding)

    first = next_batch()
    start = time.perf_counter()
    step_fn = comps.train_step.lower(state, first).compile()  # outside the training time
    record(compile_s=round(time.perf_counter() - start, 1))
    state, metrics = step_fn(state, first)
    step, start = 1, time.perf_counter()
    while step < total_steps and time.perf_counter() - start < s["train_seconds"]:
      state, metrics = step_fn(state, next_batch())
      step += 1
    loss = float(metrics["loss"])
  seconds = time.perf_counter() - start
  after = knn.run(lambda images: comps.features_of(state, images))["accuracy"]
  record(
      steps=step,
      train_seconds=round(seconds, 1),
      epochs=round(step * c.global_batch_size / len(train_source), 2),
      images_per_s=round((step - 1) * c.global_batch_size / seconds, 1),
      final_loss=loss,
      knn_accuracy_trained=after,
      learns=bool(after > before),
  )


OUTCOME = re.compile(
    r"(tests/\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)"
    r"|(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\s+(tests/\S+::\S+)"
)


def tests(s, record):
  """pytest with one line per test (-v), read as it comes, so a run stopped at its deadline still
  counts what finished."""
  command = [sys.executable, "-m", "pytest", *s["args"]]
  if s["xdist_workers"] and importlib.util.find_spec("xdist"):
    command += ["-n", str(s["xdist_workers"])]
  env = dict(os.environ)
  if s["platform"]:  # the suite is written for 8 simulated CPU devices (tests/conftest.py)
    env["JAX_PLATFORMS"] = s["platform"]
  # in the stage's process group, so that the driver's kill at the stage timeout reaches it too
  proc = subprocess.Popen(
      command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
  )
  stopped = threading.Event()
  stop = threading.Timer(max(s["timeout_s"] - 10, 5), lambda: (stopped.set(), _kill_tree(proc.pid)))
  stop.start()
  outcomes, tail = {}, []
  for line in proc.stdout:
    print(line, end="", flush=True)
    tail = (tail + [line.rstrip()])[-15:]
    m = OUTCOME.search(line)
    if m:
      outcomes[m.group(1) or m.group(4)] = m.group(2) or m.group(3)
  returncode = proc.wait()
  stop.cancel()
  count = lambda *words: sum(v in words for v in outcomes.values())
  record(
      command=" ".join(command[1:]),
      jax_platforms=s["platform"] or "(unset)",
      passed=count("PASSED", "XFAIL", "XPASS"),
      failed=count("FAILED"),
      errors=count("ERROR"),
      skipped=count("SKIPPED"),
      returncode=returncode,
      timed_out=stopped.is_set(),
      failures=sorted(k for k, v in outcomes.items() if v in ("FAILED", "ERROR"))[:40],
      tail=tail,
  )


def _kill_tree(pid):
  """pytest and its xdist workers."""
  import psutil  # pylint: disable=g-import-not-at-top

  try:
    parent = psutil.Process(pid)
    processes = parent.children(recursive=True) + [parent]
  except psutil.NoSuchProcess:
    return
  for process in processes:
    try:
      process.kill()
    except psutil.NoSuchProcess:
      pass


def run_stage(name, settings, result_path, cache_dir):
  """In the stage's own process: runs it, records an exception as the stage's error."""
  record = Recorder(result_path)
  try:
    import jax  # pylint: disable=g-import-not-at-top

    if cache_dir:  # stages compiling the same program (the batch-256 ResNet-50 step) share it
      jax.config.update("jax_compilation_cache_dir", cache_dir)
    globals()[name](settings, record)
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc()
    record.error(f"{type(e).__name__}: {str(e)[:2000]}", traceback.format_exc()[-4000:])
    return 1
  return 0


RUNNING = []  # the stage process in flight, which SIGTERM to the driver takes down with it


def _terminate(signum, frame):
  """A stage runs in its own session, which the device machine would leave running."""
  del frame
  for proc in RUNNING:
    os.killpg(proc.pid, signal.SIGKILL)
  sys.exit(128 + signum)


def launch(name, settings, *, cache_dir, scratch, dry_run):
  """Runs one stage in a child process with a hard timeout; returns its JSON entry."""
  result_path = os.path.join(scratch, f"{name}.json")
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  if dry_run:  # compile faster (as tests/conftest.py does); the figures mean nothing anyway
    env["XLA_FLAGS"] = " ".join(
        filter(None, [env.get("XLA_FLAGS"), "--xla_backend_optimization_level=1"])
    )
  start = time.perf_counter()
  proc = subprocess.Popen(
      [
          sys.executable,
          os.path.abspath(__file__),
          "--stage",
          name,
          "--settings",
          json.dumps(settings),
          "--result",
          result_path,
          "--cache_dir",
          cache_dir,
      ],
      env=env,
      start_new_session=True,
  )
  RUNNING[:] = [proc]
  timed_out = False
  try:
    returncode = proc.wait(timeout=settings["timeout_s"])
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)  # the stage and its grain workers (or pytest's)
    returncode, timed_out = proc.wait(), True
  RUNNING.clear()
  entry = dict(
      status="ok", seconds=round(time.perf_counter() - start, 1), settings=settings, figures={}
  )
  if os.path.isfile(result_path):
    with open(result_path) as f:
      entry.update(json.load(f))
  if timed_out:
    entry.update(
        status="timeout",
        error=entry.get("error")
        or f"stopped at its timeout of {settings['timeout_s']} s; figures are what it had",
    )
  elif returncode or "error" in entry:
    entry.update(
        status="error",
        error=entry.get("error")
        or f"the stage's process exited with code {returncode} and no message",
    )
  return entry


def _summary(name, entry):
  headline = entry["figures"].get(HEADLINE[name])
  text = f"{name:20s} {entry['status']:8s} {entry['seconds']:7.1f} s  {HEADLINE[name]}={headline}"
  return text + (f"  ({entry['error'][:150]})" if entry.get("error") else "")


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--dry_run", action="store_true", help="CPU, tiny models")
  parser.add_argument("--out", default=os.environ.get("OUT") or "/tmp/device_check")
  parser.add_argument(
      "--budget_s",
      type=float,
      default=None,
      help=f"all stages together (default {BUDGET_S} s; dry run {DRY_BUDGET_S} s)",
  )
  parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset")
  parser.add_argument(
      "--prepare",
      action="store_true",
      help=f"write the CIFAR-10 subset to carry ({CIFAR_SUBSET}) and exit",
  )
  parser.add_argument("--stage", help=argparse.SUPPRESS)  # internal: one stage's process
  parser.add_argument("--settings", help=argparse.SUPPRESS)
  parser.add_argument("--result", help=argparse.SUPPRESS)
  parser.add_argument("--cache_dir", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.stage:
    return run_stage(args.stage, json.loads(args.settings), args.result, args.cache_dir)
  if args.prepare:
    return make_cifar_subset(CIFAR_SHARED, CIFAR_SUBSET)

  plan = DRY if args.dry_run else GPU
  names = [n for n in args.stages.split(",") if n]
  unknown = sorted(set(names) - set(STAGES))
  if unknown:
    parser.error(f"--stages: unknown {unknown}; accepted: {', '.join(STAGES)}")
  budget = args.budget_s or (DRY_BUDGET_S if args.dry_run else BUDGET_S)
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "device_check.json")
  report = dict(
      dry_run=args.dry_run,
      started=datetime.datetime.now().isoformat(timespec="seconds"),
      budget_s=budget,
      anchors=ANCHORS,
      stages={},
  )
  deadline = time.monotonic() + budget
  signal.signal(signal.SIGTERM, _terminate)
  with tempfile.TemporaryDirectory(prefix="device_check_") as scratch:
    cache_dir = os.path.join(scratch, "xla_cache")
    for name in names:
      settings = dict(plan[name])
      left = deadline - time.monotonic()
      if left < 10:
        report["stages"][name] = dict(
            status="skipped",
            seconds=0.0,
            settings=settings,
            figures={},
            error=f"the overall budget of {budget:.0f} s was spent",
        )
      else:
        settings["timeout_s"] = int(min(settings["timeout_s"], left))
        print(f"== {name} (timeout {settings['timeout_s']} s)", flush=True)
        report["stages"][name] = launch(
            name, settings, cache_dir=cache_dir, scratch=scratch, dry_run=args.dry_run
        )
      report["total_seconds"] = round(budget - (deadline - time.monotonic()), 1)
      with open(path + ".tmp", "w") as f:  # after every stage: a killed run keeps what it had
        json.dump(report, f, indent=1, default=str)
      os.replace(path + ".tmp", path)
  print("== summary")
  for name, entry in report["stages"].items():
    print(_summary(name, entry))
  print(path, flush=True)
  return 0


def make_cifar_subset(src, dst, train_per_class=2500, test_per_class=500):
  """The first N images of each class of the shared CIFAR-10 JPEG bundle, in its format
  (26.7 MiB)."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  if not os.path.isfile(src):
    raise FileNotFoundError(f"{src} is absent: the CIFAR-10 bundle lives in ../shared/data/cifar10")
  out = {}
  with np.load(src) as f:
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
      jpeg, offsets, labels = f[f"{split}_jpeg"], f[f"{split}_offsets"], f[f"{split}_labels"]
      keep = np.sort(
          np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in np.unique(labels)])
      )
      blobs = [jpeg[offsets[i] : offsets[i + 1]] for i in keep]
      out[f"{split}_jpeg"] = np.concatenate(blobs)
      out[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
      out[f"{split}_labels"] = labels[keep].astype(np.int32)
    if "classes" in f.files:
      out["classes"] = f["classes"]
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  np.savez(dst, **out)
  print(
      f"wrote {dst}: {len(out['train_labels'])} train + {len(out['test_labels'])} test images, "
      f"{os.path.getsize(dst) / 2**20:.1f} MiB"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
