"""Chunked backward (ssl_jax/chunked.py): the full-batch gradient chunk by chunk, in the step
too."""

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import chunked
from ssl_jax import config as config_lib
from ssl_jax import tasks
from ssl_jax import train
from ssl_jax.models.resnet import ResNet

BATCH, IMAGE = 16, 8
FAST_COMPILE = {"xla_backend_optimization_level": 0}  # halves compile time; the tests check values
AUGMENT = {**config_lib.base_config().augment.to_dict(), "jitter_prob": 0.0, "grayscale_prob": 0.0}
TASK_KWARGS = {
    "simclr": dict(temperature=0.5, projection_dims=(32, 16), head_norm="none"),
    "barlow_twins": dict(projection_dims=(32, 32), head_norm="none"),
}


def _run(fn, *args):
  return jax.device_get(jax.jit(fn).lower(*args).compile(FAST_COMPILE)(*args))


def _images(seed=0):
  return np.random.default_rng(seed).integers(0, 256, (BATCH, IMAGE, IMAGE, 3), dtype=np.uint8)


@functools.cache
def _setup(task_name, norm="group", head_norm="none"):
  """A task and its tiny GroupNorm (no BatchNorm anywhere: exact) or BatchNorm ResNet-10."""
  task = tasks.build(
      task_name,
      task_kwargs={**TASK_KWARGS[task_name], "head_norm": head_norm},
      augment=AUGMENT,
      image_size=IMAGE,
  )
  model = task.model(ResNet(depth=10, width_multiplier=0.25, norm=norm))  # 16 channels: 1 group
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, IMAGE, IMAGE, 3)), train=False)
  # perturbed, so that no gradient is zero (blocks' last norms start at scale 0)
  leaves, tree = jax.tree.flatten(variables["params"])
  keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
  noisy = [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return task, model, {**variables, "params": jax.tree.unflatten(tree, noisy)}


@functools.cache
def _full_batch(task_name, norm="group", head_norm="none"):
  """jax.value_and_grad of the task's own loss over the whole batch (one device)."""
  task, model, variables = _setup(task_name, norm, head_norm)
  rest = {k: v for k, v in variables.items() if k != "params"}

  def grad(params, batch, rng):
    return jax.value_and_grad(
        lambda p: task.loss(model, {"params": p, **rest}, {}, batch, rng, 0), has_aux=True
    )(params)

  return _run(grad, variables["params"], {"inputs": _images()}, jax.random.PRNGKey(1))


def _chunked(
    task_name,
    *,
    micro_batch_size,
    devices,
    loop="unroll",
    recompute=True,
    norm="group",
    head_norm="none",
):
  task, model, variables = _setup(task_name, norm, head_norm)
  batch, rng = {"inputs": _images()}, jax.random.PRNGKey(1)
  constrain, params = None, variables["params"]
  if devices > 1:
    mesh = jax.make_mesh((devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    batch = jax.device_put(batch, NamedSharding(mesh, P("data")))
    params = jax.device_put(params, NamedSharding(mesh, P()))
    chunk_sharding = NamedSharding(mesh, P(None, "data"))
    constrain = lambda x: jax.lax.with_sharding_constraint(x, chunk_sharding)
  rest = {k: v for k, v in variables.items() if k != "params"}

  def grad(params, batch, rng):
    return chunked.value_and_grad(
        task,
        model,
        {"params": params, **rest},
        batch,
        rng,
        micro_batch_size=micro_batch_size,
        loop=loop,
        recompute=recompute,
        constrain=constrain,
    )

  return _run(grad, params, batch, rng)


def _assert_close(got, want, rtol=2e-4, atol=1e-6):
  (got_loss, (got_metrics, _, got_outputs)), got_grads = got
  (want_loss, (want_metrics, _, want_outputs)), want_grads = want
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
  for name in want_metrics:
    np.testing.assert_allclose(
        got_metrics[name], want_metrics[name], rtol=1e-4, atol=1e-6, err_msg=name
    )
  np.testing.assert_allclose(
      got_outputs["features"], want_outputs["features"], rtol=1e-4, atol=1e-5
  )
  assert jax.tree.structure(got_grads) == jax.tree.structure(want_grads)
  scale = max(np.abs(g).max() for g in jax.tree.leaves(want_grads))  # gradients that are 0 in
  for path, g in jax.tree_util.tree_leaves_with_path(want_grads):  # exact arithmetic are fp noise
    np.testing.assert_allclose(
        _get(got_grads, path),
        g,
        rtol=rtol,
        atol=atol + 1e-5 * scale,
        err_msg=jax.tree_util.keystr(path),
    )


def _get(tree, path):
  for key in path:
    tree = tree[key.key]
  return tree


# each loss on 1 and on 8 devices; the loop forms spread over the cases to share compilation
@pytest.mark.parametrize(
    "task_name,devices,micro_batch_size,loop,recompute",
    [
        ("simclr", 1, 4, "unroll", True),
        ("simclr", 8, 8, "scan", True),
        ("barlow_twins", 1, 8, "unroll", False),
        ("barlow_twins", 8, 8, "unroll", True),
    ],
)
def test_chunked_gradient_equals_full_batch(task_name, devices, micro_batch_size, loop, recompute):
  assert jax.device_count() == 8, "conftest sets 8 simulated devices"
  want = _full_batch(task_name)
  assert all(np.abs(g).max() > 0 for g in jax.tree.leaves(want[1]))  # every gradient is compared
  got = _chunked(
      task_name, micro_batch_size=micro_batch_size, devices=devices, loop=loop, recompute=recompute
  )
  _assert_close(got, want)


def test_batchnorm_is_per_chunk():
  """With BatchNorm, the chunked step is the gradient of the loss on chunk-wise (ghost) BN
  embeddings."""
  task, model, variables = _setup("simclr", "batch", "batch")
  batch, rng, micro = {"inputs": _images()}, jax.random.PRNGKey(1), 8

  def ghost_loss(params, batch):  # the model applied to each chunk (examples c, c + C, ...) alone
    views = task.inputs(batch, rng)
    num_chunks = BATCH // micro
    zs, feats, states = [], [], []
    for c in range(num_chunks):
      z, out, state = task.embed(model, {**variables, "params": params}, views[:, c::num_chunks])
      zs.append(z.reshape(2, micro, -1))
      feats.append(out["features"].reshape(2, micro, -1))
      states.append(state)
    order = np.argsort(np.concatenate([np.arange(c, BATCH, num_chunks) for c in range(num_chunks)]))
    z = jnp.concatenate(zs, axis=1)[:, order].reshape(2 * BATCH, -1)
    features = jnp.concatenate(feats, axis=1)[:, order].reshape(2 * BATCH, -1)
    loss, metrics = task.embedding_loss(z)
    mean_state = jax.tree.map(lambda *s: sum(s) / len(s), *states)
    return loss, (metrics, mean_state, {"features": features})

  want = _run(jax.value_and_grad(ghost_loss, has_aux=True), variables["params"], batch)
  got = _chunked("simclr", micro_batch_size=micro, devices=1, norm="batch", head_norm="batch")
  _assert_close(got, want)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      got[0][1][1],
      want[0][1][1],
  )  # running statistics: the mean of the chunks' updates


def _config(**overrides):
  c = config_lib.base_config()
  c.data.image_size, c.data.channels, c.data.num_classes = IMAGE, 3, 4
  c.global_batch_size = BATCH
  c.model.depth, c.model.width_multiplier, c.model.norm = 10, 0.25, "group"
  c.task_kwargs = TASK_KWARGS["simclr"]
  c.augment.update(jitter_prob=0.0, grayscale_prob=0.0)
  c.online_probe = True
  c.optimizer.warmup_epochs = 0.0
  for key, value in overrides.items():
    config_lib.override(c, [f"{key}={value}"])
  return c


def _build(c):
  return train.build(c, input_shape=(IMAGE, IMAGE, 3), steps_per_epoch=4, total_steps=8)


def test_train_step_with_chunks_equals_without():
  batch = {"inputs": _images(2), "label": np.arange(BATCH, dtype=np.int32) % 4}
  results = []
  for micro in (0, 8):  # 8 devices: 2 chunks of 8 examples, 1 per device per chunk
    comps = _build(_config(micro_batch_size=micro))
    state = comps.init_state(jax.random.PRNGKey(0))
    data = jax.device_put(batch, comps.batch_sharding)
    step = comps.train_step.lower(state, data).compile(FAST_COMPILE)
    results.append(jax.device_get(step(state, data)))
  (want_state, want_metrics), (got_state, got_metrics) = results
  assert set(got_metrics) == set(want_metrics) and "online_probe/loss" in got_metrics
  for name in want_metrics:
    np.testing.assert_allclose(
        got_metrics[name], want_metrics[name], rtol=1e-4, atol=1e-6, err_msg=name
    )
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
      (got_state.params, got_state.probe),
      (want_state.params, want_state.probe),
  )


def test_refusals_name_the_task_and_key():
  c = _config(task="byol", micro_batch_size=8)
  c.task_kwargs = dict(projection_dims=(32, 16), prediction_dims=(32, 16))
  with pytest.raises(ValueError, match=r"config.micro_batch_size=8: task 'byol' cannot be chunked"):
    _build(c)
  with pytest.raises(ValueError, match="micro_batch_size=4 must be a multiple of the 8 devices"):
    _build(_config(micro_batch_size=4))
  with pytest.raises(ValueError, match="micro_batch_size=6 must divide global_batch_size=16"):
    config_lib.finalize(_config(micro_batch_size=6))
  with pytest.raises(ValueError, match="micro_batch_loop='map'"):
    config_lib.finalize(_config(micro_batch_loop="map"))
  with pytest.raises(
      ValueError, match="micro_batch_recompute=False needs micro_batch_loop='unroll'"
  ):
    _build(_config(micro_batch_size=8, micro_batch_loop="scan", micro_batch_recompute=False))
  assert not tasks.Task.chunkable
  chunkable = {
      n for n in tasks.available() if importlib.import_module(f"ssl_jax.tasks.{n}").Task.chunkable
  }
  assert chunkable == {"simclr", "barlow_twins", "vicreg"}
