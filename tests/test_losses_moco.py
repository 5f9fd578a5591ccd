"""MoCo v2/v3 against independent numpy references, sharded == single-device, and the key queue."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ssl_jax.losses.moco import enqueue, moco_v2, moco_v3, normalize


def unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def numpy_moco_v2(q, k, queue, temperature):
  """InfoNCE as in the MoCo paper's eq. 1, one query at a time; returns (loss, accuracy)."""
  q, k, queue = unit(q), unit(k), np.asarray(queue, np.float64)
  losses, hits = [], []
  for i in range(len(q)):
    positive = q[i] @ k[i] / temperature
    negatives = [q[i] @ key / temperature for key in queue]
    denominator = np.exp(positive) + sum(np.exp(s) for s in negatives)
    losses.append(-np.log(np.exp(positive) / denominator))
    hits.append(positive > max(negatives))
  return np.mean(losses), np.mean(hits)


def numpy_moco_v3(q1, q2, k1, k2, temperature):
  """ctr(q1, k2) + ctr(q2, k1) from the MoCo v3 paper's Algorithm 1; returns (loss, accuracy)."""

  def ctr(q, k):
    q, k = unit(q), unit(k)
    losses, hits = [], []
    for i in range(len(q)):
      sims = np.array([q[i] @ k[j] / temperature for j in range(len(k))])
      losses.append(-np.log(np.exp(sims[i]) / np.sum(np.exp(sims))))
      hits.append(all(sims[i] > sims[j] for j in range(len(k)) if j != i))
    return np.mean(losses) * 2 * temperature, np.mean(hits)

  (loss_a, acc_a), (loss_b, acc_b) = ctr(q1, k2), ctr(q2, k1)
  return loss_a + loss_b, (acc_a + acc_b) / 2


def finite_difference(fn, x, eps=1e-6):
  x = np.array(x, np.float64)
  grad = np.zeros_like(x)
  for idx in np.ndindex(x.shape):
    old = x[idx]
    x[idx] = old + eps
    up = fn(x)
    x[idx] = old - eps
    down = fn(x)
    x[idx] = old
    grad[idx] = (up - down) / (2 * eps)
  return grad


def random(rng, *shape):
  return rng.normal(size=shape).astype(np.float32)


@pytest.mark.parametrize(
    "n,d,size,temperature", [(2, 3, 4, 0.5), (5, 4, 7, 0.2), (16, 8, 32, 0.07)]
)
def test_moco_v2_value_and_grad_match_numpy(n, d, size, temperature):
  rng = np.random.default_rng(n * 100 + d)
  q, k = random(rng, n, d), random(rng, n, d)
  queue = unit(random(rng, size, d)).astype(np.float32)
  fn = lambda q_: moco_v2(q_, k, queue, temperature=temperature)
  (loss, metrics), grad = jax.jit(jax.value_and_grad(fn, has_aux=True))(q)
  want_loss, want_accuracy = numpy_moco_v2(q, k, queue, temperature)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(metrics["contrastive_accuracy"], want_accuracy)
  if n <= 5:
    want_grad = finite_difference(lambda x: numpy_moco_v2(x, k, queue, temperature)[0], q)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("n,d,temperature", [(2, 3, 0.5), (5, 4, 0.2), (16, 8, 1.0)])
def test_moco_v3_value_and_grad_match_numpy(n, d, temperature):
  rng = np.random.default_rng(n * 100 + d)
  q1, q2, k1, k2 = (random(rng, n, d) for _ in range(4))
  fn = lambda a, b: moco_v3(a, b, k1, k2, temperature=temperature)
  (loss, metrics), (g1, g2) = jax.jit(jax.value_and_grad(fn, argnums=(0, 1), has_aux=True))(q1, q2)
  want_loss, want_accuracy = numpy_moco_v3(q1, q2, k1, k2, temperature)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(metrics["contrastive_accuracy"], want_accuracy)
  if n <= 5:
    w1 = finite_difference(lambda x: numpy_moco_v3(x, q2, k1, k2, temperature)[0], q1)
    w2 = finite_difference(lambda x: numpy_moco_v3(q1, x, k1, k2, temperature)[0], q2)
    np.testing.assert_allclose(g1, w1, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(g2, w2, rtol=1e-3, atol=1e-5)


def test_accuracy_is_one_when_queries_match_their_keys():
  basis = np.eye(6, dtype=np.float32)
  _, metrics = jax.jit(moco_v2)(basis[:3], 2 * basis[:3], basis[3:])
  assert metrics["contrastive_accuracy"] == 1.0
  _, metrics = jax.jit(moco_v3)(basis, basis, basis, basis)
  assert metrics["contrastive_accuracy"] == 1.0


def test_keys_and_queue_get_no_gradient():
  rng = np.random.default_rng(3)
  q, k, queue = random(rng, 4, 5), random(rng, 4, 5), unit(random(rng, 6, 5)).astype(np.float32)
  grads = jax.jit(jax.grad(lambda *a: moco_v2(*a, temperature=0.2)[0], argnums=(1, 2)))(q, k, queue)
  for g in grads:
    np.testing.assert_array_equal(g, 0.0)
  q1, q2, k1, k2 = (random(rng, 4, 5) for _ in range(4))
  grads = jax.jit(jax.grad(lambda *a: moco_v3(*a, temperature=0.2)[0], argnums=(2, 3)))(
      q1, q2, k1, k2
  )
  for g in grads:
    np.testing.assert_array_equal(g, 0.0)


def test_normalize_gives_unit_fp32_rows():
  x = np.array([[3.0, 4.0], [0.0, 0.0]], np.float16)
  out = normalize(x)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], atol=1e-6)  # zero rows stay finite


def _mesh():
  if jax.device_count() < 8:
    pytest.skip(
        "needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 "
        "(tests/conftest.py sets it)"
    )
  return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _assert_same(got, want):
  (got_loss, got_metrics), got_grads = got
  (want_loss, want_metrics), want_grads = want
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
  np.testing.assert_allclose(
      got_metrics["contrastive_accuracy"], want_metrics["contrastive_accuracy"]
  )
  for g, w in zip(got_grads, want_grads):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7)


def test_moco_v2_shard_map_and_sharded_jit_match_single_device():
  mesh = _mesh()
  rng = np.random.default_rng(0)
  q, k = random(rng, 32, 16), random(rng, 32, 16)
  queue = unit(random(rng, 24, 16)).astype(np.float32)
  global_fn = jax.jit(
      jax.value_and_grad(lambda a, b, c: moco_v2(a, b, c, temperature=0.2), has_aux=True)
  )

  @functools.partial(
      jax.shard_map, mesh=mesh, in_specs=(P("data"), P("data"), P()), out_specs=(P(), P())
  )
  def sharded(a, b, c):
    return moco_v2(a, b, c, temperature=0.2, axis_name="data")

  want = global_fn(q, k, queue)
  _assert_same(jax.jit(jax.value_and_grad(sharded, has_aux=True))(q, k, queue), want)
  rows = jax.NamedSharding(mesh, P("data"))
  got = global_fn(
      jax.device_put(q, rows),
      jax.device_put(k, rows),
      jax.device_put(queue, jax.NamedSharding(mesh, P())),
  )
  _assert_same(got, want)


def test_moco_v3_shard_map_and_sharded_jit_match_single_device():
  mesh = _mesh()
  rng = np.random.default_rng(1)
  arrays = [random(rng, 32, 16) for _ in range(4)]
  global_fn = jax.jit(
      jax.value_and_grad(lambda *a: moco_v3(*a, temperature=0.2), argnums=(0, 1), has_aux=True)
  )

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P("data"),) * 4, out_specs=(P(), P()))
  def sharded(*a):
    return moco_v3(*a, temperature=0.2, axis_name="data")

  want = global_fn(*arrays)
  _assert_same(jax.jit(jax.value_and_grad(sharded, argnums=(0, 1), has_aux=True))(*arrays), want)
  rows = jax.NamedSharding(mesh, P("data"))
  _assert_same(global_fn(*(jax.device_put(a, rows) for a in arrays)), want)


def numpy_enqueue(queue, pointer, keys):
  queue = np.array(queue)
  for key in keys:
    queue[pointer] = key
    pointer = (pointer + 1) % len(queue)
  return queue, pointer


@pytest.mark.parametrize("size,m,pointer", [(5, 3, 0), (5, 3, 4), (5, 5, 2), (8, 1, 7), (6, 4, 3)])
def test_enqueue_wraps_around(size, m, pointer):
  queue = np.zeros((size, 2), np.float32)
  keys = np.arange(1, 2 * m + 1, dtype=np.float32).reshape(m, 2)
  got_queue, got_pointer = enqueue(queue, pointer, keys)
  want_queue, want_pointer = numpy_enqueue(queue, pointer, keys)
  np.testing.assert_array_equal(got_queue, want_queue)
  assert int(got_pointer) == want_pointer == (pointer + m) % size


def test_enqueue_under_jit_with_traced_pointer():
  rng = np.random.default_rng(2)
  step = jax.jit(enqueue)
  queue, pointer = jnp.zeros((7, 3)), jnp.int32(0)
  want_queue, want_pointer = np.zeros((7, 3)), 0
  for _ in range(5):  # 5 batches of 3 keys go round a 7-row queue twice
    keys = random(rng, 3, 3)
    queue, pointer = step(queue, pointer, keys)
    want_queue, want_pointer = numpy_enqueue(want_queue, want_pointer, keys)
    np.testing.assert_array_equal(queue, want_queue)
    assert int(pointer) == want_pointer
  assert step._cache_size() == 1  # the pointer is traced, not baked into the program


def test_enqueue_gathered_keys_under_shard_map_matches_global():
  mesh = _mesh()
  rng = np.random.default_rng(4)
  queue, keys = random(rng, 20, 4), random(rng, 16, 4)

  # Each device returns its own copy, so the test sees that all eight queues agree.
  @functools.partial(
      jax.shard_map, mesh=mesh, in_specs=(P(), P(), P("data")), out_specs=(P("data"), P("data"))
  )
  def sharded(queue_, pointer, local_keys):
    queue_, pointer = enqueue(queue_, pointer, jax.lax.all_gather(local_keys, "data", tiled=True))
    return queue_[None], pointer[None]

  want_queue, want_pointer = enqueue(queue, 10, keys)
  got_queues, got_pointers = jax.jit(sharded)(queue, jnp.int32(10), keys)
  assert got_queues.shape == (8, 20, 4)
  for got_queue, got_pointer in zip(got_queues, got_pointers):
    np.testing.assert_array_equal(got_queue, want_queue)
    assert int(got_pointer) == int(want_pointer) == 6


def test_enqueue_rejects_more_keys_than_rows():
  with pytest.raises(ValueError, match=r"4 keys \(4, 2\).*\(3, 2\)"):
    enqueue(np.zeros((3, 2)), 0, np.ones((4, 2)))
  with pytest.raises(ValueError, match=r"\(3, 2\) and \(2, 5\)"):
    enqueue(np.zeros((3, 2)), 0, np.ones((2, 5)))


def test_rejects_bad_shapes_and_temperature():
  ones = np.ones
  with pytest.raises(ValueError, match=r"\(4, 3\) and \(4, 5\)"):
    moco_v2(ones((4, 3)), ones((4, 5)), ones((6, 3)), temperature=0.2)
  with pytest.raises(ValueError, match=r"\(6, 5\)"):
    moco_v2(ones((4, 3)), ones((4, 3)), ones((6, 5)), temperature=0.2)
  with pytest.raises(ValueError, match=r"\(3,\) and \(3,\)"):
    moco_v2(ones(3), ones(3), ones((6, 3)), temperature=0.2)
  with pytest.raises(ValueError, match=r"\(4, 3\), \(4, 3\), \(5, 3\) and \(4, 3\)"):
    moco_v3(ones((4, 3)), ones((4, 3)), ones((5, 3)), ones((4, 3)), temperature=0.2)
  for temperature in (0.0, -1.0):
    with pytest.raises(ValueError, match="temperature must be > 0"):
      moco_v2(ones((4, 3)), ones((4, 3)), ones((6, 3)), temperature=temperature)
    with pytest.raises(ValueError, match="temperature must be > 0"):
      moco_v3(*(ones((4, 3)),) * 4, temperature=temperature)
