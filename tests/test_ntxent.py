"""NT-Xent against an independent numpy reference, and sharded == single-device (value and grad)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ssl_jax.losses.ntxent import ntxent


def numpy_ntxent(z1, z2, temperature):
  """Written from the SimCLR paper's definition, one anchor at a time."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n2 = len(z)
  n = n2 // 2
  total = 0.0
  for i in range(n2):
    positive = (i + n) % n2
    sims = np.array([z[i] @ z[k] / temperature for k in range(n2) if k != i])
    others = [k for k in range(n2) if k != i]
    pos = z[i] @ z[positive] / temperature
    total += -(pos - np.log(np.sum(np.exp(sims))))
    del others
  return total / n2


def numpy_ntxent_grad(z1, z2, temperature, eps=1e-6):
  z1 = z1.astype(np.float64)
  z2 = z2.astype(np.float64)
  grads = []
  for z in (z1, z2):
    g = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
      old = z[idx]
      z[idx] = old + eps
      up = numpy_ntxent(z1, z2, temperature)
      z[idx] = old - eps
      down = numpy_ntxent(z1, z2, temperature)
      z[idx] = old
      g[idx] = (up - down) / (2 * eps)
    grads.append(g)
  return grads


@pytest.mark.parametrize("n,d,temperature", [(2, 3, 0.5), (5, 4, 0.1), (8, 6, 1.0), (16, 8, 0.07)])
def test_value_and_grad_match_numpy(n, d, temperature):
  rng = np.random.default_rng(n * 100 + d)
  z1 = rng.normal(size=(n, d)).astype(np.float32)
  z2 = rng.normal(size=(n, d)).astype(np.float32)
  loss_fn = lambda a, b: ntxent(a, b, temperature=temperature)[0]
  loss, (g1, g2) = jax.value_and_grad(loss_fn, argnums=(0, 1))(z1, z2)
  np.testing.assert_allclose(loss, numpy_ntxent(z1, z2, temperature), rtol=1e-5, atol=1e-5)
  if n <= 8:  # finite differences in float64 are slow; small cases suffice
    r1, r2 = numpy_ntxent_grad(z1, z2, temperature)
    np.testing.assert_allclose(g1, r1, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(g2, r2, rtol=1e-3, atol=1e-5)


def test_metrics():
  z = np.eye(4, dtype=np.float32)
  loss, metrics = ntxent(z, z, temperature=0.1)
  assert metrics["contrastive_accuracy"] == 1.0
  collapsed = np.ones((4, 3), np.float32)
  _, metrics = ntxent(collapsed, collapsed, temperature=0.1)
  assert metrics["embedding_std"] < 1e-6
  assert np.isfinite(loss)


@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_rejects_nonpositive_temperature(temperature):
  z = np.ones((2, 3), np.float32)
  with pytest.raises(ValueError, match="temperature must be > 0"):
    ntxent(z, z, temperature=temperature)


def test_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="must both be"):
    ntxent(np.ones((2, 3)), np.ones((3, 3)), temperature=0.5)


def _mesh():
  if jax.device_count() < 8:
    pytest.skip(
        "needs XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/conftest.py sets it)"
    )
  return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def test_shard_map_matches_single_device():
  mesh = _mesh()
  rng = np.random.default_rng(0)
  z1 = rng.normal(size=(32, 16)).astype(np.float32)
  z2 = rng.normal(size=(32, 16)).astype(np.float32)
  temperature = 0.2

  def global_loss(a, b):
    return ntxent(a, b, temperature=temperature)[0]

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P())
  def sharded_loss(a, b):
    return ntxent(a, b, temperature=temperature, axis_name="data")[0]

  want, want_grads = jax.value_and_grad(global_loss, argnums=(0, 1))(z1, z2)
  got, got_grads = jax.jit(jax.value_and_grad(sharded_loss, argnums=(0, 1)))(z1, z2)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  for g, w in zip(got_grads, want_grads):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7)


def test_jit_with_sharded_inputs_matches_single_device():
  mesh = _mesh()
  rng = np.random.default_rng(1)
  z1 = rng.normal(size=(32, 16)).astype(np.float32)
  z2 = rng.normal(size=(32, 16)).astype(np.float32)
  sharding = jax.NamedSharding(mesh, P("data"))
  fn = jax.value_and_grad(lambda a, b: ntxent(a, b, temperature=0.5)[0], argnums=(0, 1))
  want, want_grads = fn(z1, z2)
  got, got_grads = jax.jit(fn)(jax.device_put(z1, sharding), jax.device_put(z2, sharding))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  for g, w in zip(got_grads, want_grads):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7)


def test_temperature_may_be_a_concrete_array_closed_over_by_jit():
  # an array temperature is traced under jit: the > 0 check is for numbers only
  z = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
  temperature = jnp.asarray(0.5)
  loss = jax.jit(lambda a, b: ntxent(a, b, temperature=temperature)[0])(z, z)
  np.testing.assert_allclose(loss, ntxent(z, z, temperature=0.5)[0], rtol=1e-6)
