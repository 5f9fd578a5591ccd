"""Every pretext task through the one loop: sharded == single device, exact resume, state
updates."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import config as config_lib
from ssl_jax import tasks
from ssl_jax import train
from ssl_jax.losses import moco

# tiny heads, so that each task compiles in seconds
TASK_KWARGS = {
    "simclr": dict(temperature=0.5, projection_dims=(32, 16)),
    "moco_v2": dict(projection_dims=(32, 16), queue_size=64),
    "moco_v3": dict(projection_dims=(32, 16), prediction_dims=(32, 16)),
    "byol": dict(projection_dims=(32, 16), prediction_dims=(32, 16)),
    "simsiam": dict(projection_dims=(32, 32), prediction_dims=(8, 32)),
    "barlow_twins": dict(projection_dims=(32, 32)),
    "vicreg": dict(projection_dims=(32, 32)),
    "dino": dict(
        hidden_dims=(32,),
        bottleneck_dim=16,
        num_prototypes=64,
        num_local_crops=2,
        local_crop_size=8,
        teacher_warmup_fraction=0.5,
    ),
    "swav": dict(
        hidden_dims=(32,),
        embedding_dim=16,
        num_prototypes=20,
        queue_length=32,
        num_local_crops=2,
        local_crop_size=8,
        freeze_prototypes_steps=2,
    ),
    "deepcluster_v2": dict(
        num_prototypes=(5, 6), projection_dims=(32, 16), cluster_every_steps=2, kmeans_iterations=3
    ),
    "mae": dict(decoder_width=32, decoder_depth=1, decoder_heads=2),
    "rotation": dict(head_dims=(32,)),
    "jigsaw": dict(num_permutations=10, head_dims=(32,)),
}
MODEL = {
    "mae": {"model.name": "vit", "model.variant": "mu", "model.patch_size": 4},
    "swav": {"optimizer.no_decay_regex": r"(^|/)(bias|scale|prototypes)$"},
}


TESTED_ELSEWHERE = {"ts2vec", "mlm", "mlm_nsp"}  # tests/test_ts2vec*.py, tests/test_text*.py


def test_every_registered_task_is_tested_here():
  assert sorted(TASK_KWARGS) == sorted(set(tasks.available()) - TESTED_ELSEWHERE)


def task_config(data_path, task, **overrides):
  c = config_lib.base_config()
  c.task = task
  c.task_kwargs = dict(TASK_KWARGS[task])
  c.data.source = f"npz:{data_path}"
  c.data.image_size = 16
  c.data.channels = 3
  c.data.num_classes = 4
  c.data.eval_batch_size = 64
  c.global_batch_size = 16
  c.total_steps = 6
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.model.depth = 10
  c.model.width_multiplier = 0.125
  c.optimizer.warmup_epochs = 1.0
  c.online_probe = True
  c.augment.jitter_prob = 0.0  # colour ops cost compile time and prove nothing about the task
  c.augment.grayscale_prob = 0.0
  for key, value in {**MODEL.get(task, {}), **overrides}.items():
    config_lib.override(c, [f"{key}={value}"])
  config_lib.check_known_keys(c)
  return c


_BUILT = {}


def components(data_path, task, mesh_data=1):
  """The task's jitted functions, built once per (task, mesh) for the whole module. train.train
  builds the same programs for the same config, so its compilations hit the persistent cache."""
  if (task, mesh_data) not in _BUILT:
    c = task_config(data_path, task, **{"mesh.data": mesh_data})
    _BUILT[task, mesh_data] = train.build(
        c, input_shape=(16, 16, 3), steps_per_epoch=4, total_steps=6, num_examples=64
    )
  return _BUILT[task, mesh_data]


def _batch(seed):
  return {
      "inputs": np.random.default_rng(seed).integers(0, 255, (16, 16, 16, 3), dtype=np.uint8),
      "label": np.arange(16, dtype=np.int32) % 4,
      "index": np.arange(16, dtype=np.int32) * 3,
  }


def _assert_trees_close(got, want, rtol=1e-4, atol=1e-5):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol), got, want)


# Tasks with state outside the gradient, or randomness of their own, beyond what the loss tests and
# tests/test_train.py (SimCLR) already show equal on 1 and 8 devices.
SHARDED = ("byol", "deepcluster_v2", "dino", "jigsaw", "moco_v2", "moco_v3", "swav")
# One task of each kind runs in the default suite; the others are marked slow (CI runs them, see
# .ci/run): an EMA target (BYOL), a queue with Sinkhorn and multi-crop (SwAV), no task state
# (SimCLR), a ViT with a decoder and artifacts (MAE).
DEFAULT_SUITE = {"byol", "swav", "simclr", "mae"}


def by_kind(names):
  return [n if n in DEFAULT_SUITE else pytest.param(n, marks=pytest.mark.slow) for n in names]


@pytest.mark.parametrize("task", by_kind(SHARDED))
def test_sharded_step_equals_single_device(data_path, task):
  """Two steps on 1 device and on 8: loss, gradient norm, params and task state agree."""
  results = []
  for mesh_data in (1, 8):
    comps = components(data_path, task, mesh_data)
    state = comps.init_state(jax.random.PRNGKey(0))
    for _ in range(2):
      state, metrics = comps.train_step(state, jax.device_put(_batch(1), comps.batch_sharding))
    results.append((jax.device_get(state), jax.device_get(metrics)))
  (want_state, want_metrics), (got_state, got_metrics) = results
  assert np.isfinite(want_metrics["loss"])
  for key in want_metrics:
    np.testing.assert_allclose(
        got_metrics[key], want_metrics[key], rtol=2e-4, atol=1e-5, err_msg=key
    )
  _assert_trees_close(got_state.params, want_state.params)
  _assert_trees_close(got_state.model_state, want_state.model_state)
  _assert_trees_close(got_state.task_state, want_state.task_state)


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


@pytest.mark.parametrize("task", by_kind(sorted(TASK_KWARGS)))
def test_resume_equals_uninterrupted_run(data_path, tmp_path, task):
  """A run killed after step 4 and resumed gives the uninterrupted losses and task state exactly;
  the run ends with kNN, linear-probe and collapse evaluations in metrics.jsonl; the online
  probe (a state field) resumes with the rest."""
  c = task_config(data_path, task, **{"mesh.data": 1})  # 1 device: 8 simulated ones cost 2 cores
  c.evals.knn = dict(type="knn", every_steps=6, k=10)
  c.evals.collapse = dict(type="collapse", every_steps=6, num_images=16)
  c.evals.linear_probe = dict(type="linear_probe", every_steps=6, steps=20)
  whole = train.train(c, str(tmp_path / "whole"))
  interrupted = str(tmp_path / "interrupted")
  shutil.copytree(str(tmp_path / "whole"), interrupted)  # then "crash" after step 4
  shutil.rmtree(os.path.join(interrupted, "checkpoints", "6"))
  if task == "mae":
    os.remove(os.path.join(interrupted, "reconstructions.png"))  # the resumed run writes it again
  with open(os.path.join(interrupted, "metrics.jsonl")) as f:
    kept = [line for line in f if json.loads(line)["step"] <= 4]
  with open(os.path.join(interrupted, "metrics.jsonl"), "w") as f:
    f.writelines(kept)
  resumed = train.train(c, interrupted)
  want, got = _losses(str(tmp_path / "whole")), _losses(interrupted)
  assert sorted(got) == list(range(1, 7))
  for step in range(1, 7):
    assert got[step] == want[step], f"{task} step {step}: resumed {got[step]} != {want[step]}"
  same = jax.tree.map(
      np.array_equal,
      jax.device_get((resumed.state.task_state, resumed.state.probe)),
      jax.device_get((whole.state.task_state, whole.state.probe)),
  )
  assert all(jax.tree.leaves(same))
  final = [json.loads(line) for line in open(os.path.join(interrupted, "metrics.jsonl"))]
  evaluated = {k: v for row in final if row["step"] == 6 for k, v in row.items()}
  assert 0.0 <= evaluated["linear_probe/accuracy"] <= 1.0
  for key in (
      "knn/accuracy",
      "linear_probe/train_accuracy",
      "collapse/std_fraction",
      "collapse/effective_rank",
      "collapse/alignment",
      "collapse/uniformity",
  ):
    assert np.isfinite(evaluated[key]), (task, key)
  if task == "mae":
    from PIL import Image  # pylint: disable=g-import-not-at-top

    picture = np.asarray(Image.open(os.path.join(interrupted, "reconstructions.png")))
    assert picture.shape == (3 * 16, 8 * 16, 3)  # original / masked / reconstruction rows of 8


def _one_step(data_path, task):
  comps = components(data_path, task)
  before = jax.device_get(comps.init_state(jax.random.PRNGKey(0)))
  batch = _batch(2)
  state, _ = comps.train_step(
      comps.init_state(jax.random.PRNGKey(0)), jax.device_put(batch, comps.batch_sharding)
  )
  return comps, before, jax.device_get(state), batch


def test_momentum_target_is_an_ema_of_the_updated_online_weights(data_path):
  comps, before, after, _ = _one_step(data_path, "byol")
  momentum = float(comps.task.momentum(0))
  assert momentum == pytest.approx(0.996)
  assert sorted(after.task_state["target"]["params"]) == ["encoder", "projection"]
  want = jax.tree.map(
      lambda t, o: momentum * t + (1 - momentum) * o,
      before.task_state["target"]["params"],
      {k: after.params[k] for k in ("encoder", "projection")},
  )
  _assert_trees_close(after.task_state["target"]["params"], want, rtol=1e-6, atol=1e-7)
  # the target's BatchNorm statistics moved with its own forward pass
  moved = jax.tree.map(
      lambda a, b: not np.array_equal(a, b),
      after.task_state["target"]["batch_stats"],
      before.task_state["target"]["batch_stats"],
  )
  assert any(jax.tree.leaves(moved))
  # BYOL's cosine schedule ends at final_momentum
  assert float(tasks.cosine_momentum(6, 6, base=0.996)) == pytest.approx(1.0)
  assert float(tasks.cosine_momentum(3, 6, base=0.996)) == pytest.approx(0.998)


def test_moco_queue_receives_both_views_keys(data_path):
  comps, before, after, batch = _one_step(data_path, "moco_v2")
  assert int(after.task_state["queue_pointer"]) == 32  # 2 views x 16 images
  queue = after.task_state["queue"]
  np.testing.assert_array_equal(queue[32:], before.task_state["queue"][32:])
  np.testing.assert_allclose(np.linalg.norm(queue, axis=1), 1.0, rtol=1e-5)
  # the enqueued keys are the momentum encoder's projections of the two views at the step's key
  task, model = comps.task, comps.model
  rng = jax.random.fold_in(before.rng, 0)
  views = tasks.merge_views(task.views(rng, jnp.asarray(batch["inputs"])))
  from ssl_jax.models.heads import EncoderWithHeads  # pylint: disable=g-import-not-at-top

  (keys, _), _ = model.apply(
      before.task_state["target"],
      views,
      train=True,
      mutable=["batch_stats"],
      method=EncoderWithHeads.project,
  )
  np.testing.assert_allclose(queue[:32], moco.normalize(keys), rtol=1e-4, atol=1e-5)
  task = tasks.build("moco_v2", task_kwargs={"queue_size": 16})
  with pytest.raises(ValueError, match="queue_size=16 must hold the 32 keys"):
    task.loss(comps.model, {}, {}, batch, jax.random.PRNGKey(0), 0)


def test_dino_centre_teacher_temperature_and_teacher_features(data_path):
  comps, before, after, _ = _one_step(data_path, "dino")
  assert np.all(before.task_state["center"] == 0)
  assert np.any(after.task_state["center"] != 0)
  from ssl_jax.losses import dino  # pylint: disable=g-import-not-at-top

  assert float(dino.teacher_temperature_schedule(0, warmup_steps=3)) == pytest.approx(0.04)
  # evaluators read the teacher's encoder
  variables = comps.encoder_variables(after)
  same = jax.tree.map(
      np.array_equal, variables["params"], after.task_state["target"]["params"]["encoder"]
  )
  assert all(jax.tree.leaves(same))


def test_unknown_task_kwarg_fails_naming_it(data_path):
  with pytest.raises(KeyError, match=r"\['queue_sise'\].*'byol'"):
    tasks.build("byol", task_kwargs={"queue_sise": 3})
  with pytest.raises(ValueError, match="unknown config.task 'bylo'"):
    tasks.build("bylo")
  with pytest.raises(ValueError, match="base_momentum"):
    tasks.build("byol", task_kwargs={"base_momentum": 1.5})


def test_swav_prototypes_frozen_then_trained_and_queue_filled(data_path):
  comps = components(data_path, "swav")
  state = comps.init_state(jax.random.PRNGKey(0))
  initial = np.asarray(state.params["projection"]["prototypes"])
  batch = jax.device_put(_batch(3), comps.batch_sharding)
  used = []
  for step in range(3):
    state, metrics = comps.train_step(state, batch)
    prototypes = np.asarray(state.params["projection"]["prototypes"])
    assert np.array_equal(prototypes, initial) == (step < 2), step  # frozen for steps 0 and 1
    used.append(float(metrics["queue_in_use"]))
  assert used == [0.0, 0.0, 1.0]  # 16 rows a step: the 32-row queue is full from step 2 on
  assert int(state.task_state["queue_count"]) == 48


def test_deepcluster_memory_and_kmeans(data_path):
  comps = components(data_path, "deepcluster_v2")  # clusters every 2 steps
  batch = _batch(4)
  index = batch["index"]
  state = comps.init_state(jax.random.PRNGKey(0))
  state, first = comps.train_step(state, jax.device_put(batch, comps.batch_sharding))
  assert (np.asarray(state.task_state["assignments"]) == -1).all()  # not clustered yet
  # no example has a cluster: the pretext loss is 0 and the step only fills the bank
  assert float(first.get("ssl_loss", first["loss"])) == 0.0
  state, metrics = comps.train_step(state, jax.device_put(batch, comps.batch_sharding))
  after = jax.device_get(state)
  assert after.task_state["in_memory"][index].all() and after.task_state["in_memory"].sum() == 16
  np.testing.assert_allclose(
      np.linalg.norm(after.task_state["memory"][:, index], axis=-1), 1.0, rtol=1e-5
  )
  assignments = after.task_state["assignments"]
  assert assignments.shape == (2, 64)
  assert (assignments[:, index] >= 0).all() and (np.delete(assignments, index, axis=1) == -1).all()
  assert int(assignments.max()) < 6
  # the centroids are unit vectors and clustering 0's assignment is its nearest centroid
  centroids = after.task_state["centroids"][0]
  np.testing.assert_allclose(np.linalg.norm(centroids, axis=-1), 1.0, rtol=1e-5)
  nearest = np.argmax(after.task_state["memory"][0, index] @ centroids.T, axis=-1)
  np.testing.assert_array_equal(assignments[0, index], nearest)
  assert after.task_state["balance"].shape == (2, 3)


def test_jigsaw_permutations_are_far_apart_and_checkpointed(data_path):
  from ssl_jax.tasks import jigsaw  # pylint: disable=g-import-not-at-top

  perms = jigsaw.hamming_permutations(30, seed=0)
  assert perms.shape == (30, 9) and len({tuple(p) for p in perms}) == 30
  assert all(sorted(p) == list(range(9)) for p in perms)
  distances = (perms[:, None] != perms[None]).sum(-1)[np.triu_indices(30, 1)]
  assert distances.min() >= 6 and distances.mean() > 8  # random permutations average 8
  np.testing.assert_array_equal(perms, jigsaw.hamming_permutations(30, seed=0))
  _, before, after, _ = _one_step(data_path, "jigsaw")
  np.testing.assert_array_equal(after.task_state["permutations"], before.task_state["permutations"])
  task = tasks.build("jigsaw", task_kwargs={"num_permutations": 4}, image_size=16)
  tiles = task.tiles(
      jax.random.PRNGKey(0), jnp.arange(2 * 16 * 16 * 1, dtype=jnp.float32).reshape(2, 16, 16, 1)
  )
  assert tiles.shape == (2, 9, task.tile_size, task.tile_size, 1)
  # tile (row 1, col 2) comes from its own cell
  top_left = np.asarray(tiles[0, 5, 0, 0, 0])
  row, col = divmod(int(top_left), 16)
  assert 5 <= row < 10 and 10 <= col < 15


def test_rotation_labels_match_rotations():
  task = tasks.build(
      "rotation",
      image_size=8,
      augment=dict(
          crop_scale=(1.0, 1.0),
          crop_ratio=(1.0, 1.0),
          flip_prob=0.0,
          jitter_prob=0.0,
          grayscale_prob=0.0,
      ),
  )
  image = np.zeros((1, 8, 8, 1), np.uint8)
  image[0, 0, 7] = 255  # a bright top-right corner
  seen = {}

  class Recorder:

    def apply(self, variables, x, **kwargs):
      seen["x"] = x
      return (jnp.zeros((x.shape[0], 4)), {"features": jnp.zeros((x.shape[0], 2))}), {}

  task.loss(Recorder(), {}, {}, {"inputs": image}, jax.random.PRNGKey(0), 0)
  corners = [np.unravel_index(np.argmax(x[..., 0]), (8, 8)) for x in np.asarray(seen["x"])]
  assert corners == [(0, 7), (0, 0), (7, 0), (7, 7)]  # 0, 90, 180, 270 degrees counter-clockwise


def test_mae_reconstructions_of_grey_images(data_path):
  """One-channel images (MNIST) go through the encoder as they are; the picture shows them in
  RGB."""
  c = task_config(data_path, "mae", **{"mesh.data": 1, "data.channels": 1})
  comps = train.build(c, input_shape=(16, 16, 1), steps_per_epoch=4, total_steps=6, num_examples=64)
  state = comps.init_state(jax.random.PRNGKey(0))
  images = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 1), dtype=np.uint8)
  picture = np.asarray(comps.artifacts_of(state, images)["reconstructions.png"])
  assert picture.shape == (3 * 16, 8 * 16, 3)
  np.testing.assert_allclose(picture[:16, :16, 0], images[0, ..., 0] / 255.0, atol=1e-6)
  np.testing.assert_allclose(picture[:16, :16, 0], picture[:16, :16, 2])
