"""BYOL and SimSiam against independent numpy references; stop-gradient; sharded == 1 device."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ssl_jax.losses.byol import byol
from ssl_jax.losses.simsiam import simsiam


def _cosine(a, b):
  return np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))


def numpy_byol(p1, p2, z1, z2):
  """Grill et al. eq. 2 as 2 - 2 cos, both directions, one example at a time."""
  p1, p2, z1, z2 = (np.asarray(x, np.float64) for x in (p1, p2, z1, z2))
  per_example = [
      (2 - 2 * _cosine(p1[i], z2[i])) + (2 - 2 * _cosine(p2[i], z1[i])) for i in range(len(p1))
  ]
  return np.mean(per_example)


def numpy_simsiam(p1, p2, z1, z2):
  """Chen & He eq. 2, D the negative cosine, one example at a time; returns (loss, output_std)."""
  p1, p2, z1, z2 = (np.asarray(x, np.float64) for x in (p1, p2, z1, z2))
  per_example = [-_cosine(p1[i], z2[i]) / 2 - _cosine(p2[i], z1[i]) / 2 for i in range(len(p1))]
  z = np.concatenate([z1, z2])
  unit = z / np.linalg.norm(z, axis=1, keepdims=True)
  return np.mean(per_example), np.mean(np.std(unit, axis=0))


def finite_difference_grads(fn, arrays, eps=1e-6):
  """Central differences of a float64 scalar fn with respect to each array."""
  arrays = [np.array(x, np.float64) for x in arrays]
  grads = []
  for x in arrays:
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
      old = x[idx]
      x[idx] = old + eps
      up = fn(*arrays)
      x[idx] = old - eps
      down = fn(*arrays)
      x[idx] = old
      g[idx] = (up - down) / (2 * eps)
    grads.append(g)
  return grads


def _inputs(rng, n, d):
  """p correlated with the other view's z, so cosines are spread rather than all near 0."""
  z1, z2 = rng.normal(size=(2, n, d))
  p1 = z2 + rng.normal(size=(n, d))
  p2 = z1 * 2.0 + rng.normal(size=(n, d))
  return [x.astype(np.float32) for x in (p1, p2, z1, z2)]


@functools.partial(jax.jit, static_argnums=0)
def _value_and_grad(loss_fn, p1, p2, z1, z2):
  return jax.value_and_grad(loss_fn, argnums=(0, 1, 2, 3), has_aux=True)(p1, p2, z1, z2)


@pytest.mark.parametrize("n,d", [(1, 2), (3, 4), (8, 5), (32, 16)])
def test_byol_matches_numpy(n, d):
  p1, p2, z1, z2 = _inputs(np.random.default_rng(n * 100 + d), n, d)
  (loss, metrics), grads = _value_and_grad(byol, p1, p2, z1, z2)
  np.testing.assert_allclose(loss, numpy_byol(p1, p2, z1, z2), rtol=1e-5, atol=1e-6)
  want_cosine = np.mean([(_cosine(p1[i], z2[i]) + _cosine(p2[i], z1[i])) / 2 for i in range(n)])
  np.testing.assert_allclose(metrics["cosine"], want_cosine, rtol=1e-5, atol=1e-6)
  # z is a target: exactly no gradient reaches it.
  assert not np.any(grads[2]) and not np.any(grads[3])
  if n <= 8:
    want = finite_difference_grads(lambda a, b: numpy_byol(a, b, z1, z2), (p1, p2))
    for g, w in zip(grads[:2], want):
      np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("n,d", [(1, 2), (3, 4), (8, 5), (32, 16)])
def test_simsiam_matches_numpy(n, d):
  p1, p2, z1, z2 = _inputs(np.random.default_rng(n * 100 + d), n, d)
  (loss, metrics), grads = _value_and_grad(simsiam, p1, p2, z1, z2)
  want_loss, want_std = numpy_simsiam(p1, p2, z1, z2)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["cosine"], -want_loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["output_std"], want_std, rtol=1e-5, atol=1e-6)
  assert not np.any(grads[2]) and not np.any(grads[3])
  if n <= 8:
    want = finite_difference_grads(lambda a, b: numpy_simsiam(a, b, z1, z2)[0], (p1, p2))
    for g, w in zip(grads[:2], want):
      np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5)


def test_byol_extremes_and_scale_invariance():
  z1, z2 = np.random.default_rng(0).normal(size=(2, 6, 4)).astype(np.float32)
  # Perfect predictions, up to a positive scale per example: loss 0, cosine 1.
  scale = np.arange(1, 7, dtype=np.float32)[:, None]
  loss, metrics = byol(z2 * scale, z1 * 0.1, z1, z2)
  np.testing.assert_allclose(loss, 0.0, atol=1e-6)
  np.testing.assert_allclose(metrics["cosine"], 1.0, rtol=1e-6)
  # Opposite predictions: 4 per direction, the maximum.
  loss, metrics = byol(-z2, -z1, z1, z2)
  np.testing.assert_allclose(loss, 8.0, rtol=1e-6)
  np.testing.assert_allclose(metrics["cosine"], -1.0, rtol=1e-6)


def test_simsiam_output_std_flags_collapse():
  rng = np.random.default_rng(0)
  d = 64
  # Healthy: z spread over the sphere, each coordinate of z/|z| has std about 1/sqrt(d).
  z1, z2 = rng.normal(size=(2, 512, d)).astype(np.float32)
  _, metrics = simsiam(z2, z1, z1, z2)
  np.testing.assert_allclose(metrics["output_std"], 1 / np.sqrt(d), rtol=0.05)
  np.testing.assert_allclose(metrics["cosine"], 1.0, rtol=1e-6)
  # Collapsed: every output is the same direction (whatever its length): std 0, loss at its minimum.
  collapsed = np.tile(rng.normal(size=(1, d)), (512, 1)).astype(np.float32)
  loss, metrics = simsiam(collapsed, collapsed, collapsed * 2.0, collapsed)
  np.testing.assert_allclose(metrics["output_std"], 0.0, atol=1e-6)
  np.testing.assert_allclose(loss, -1.0, rtol=1e-6)


@pytest.mark.parametrize("loss_fn", [byol, simsiam])
def test_zero_vectors_stay_finite(loss_fn):
  p1, p2, z1, z2 = _inputs(np.random.default_rng(1), 4, 3)
  p1[0] = 0.0
  z2[1] = 0.0
  (loss, metrics), grads = _value_and_grad(loss_fn, p1, p2, z1, z2)
  for x in jax.tree.leaves((loss, metrics, grads)):
    assert np.all(np.isfinite(x))


@pytest.mark.parametrize("loss_fn", [byol, simsiam])
def test_bfloat16_inputs_computed_in_float32(loss_fn):
  inputs = [jnp.asarray(x, jnp.bfloat16) for x in _inputs(np.random.default_rng(2), 8, 4)]
  loss, _ = loss_fn(*inputs)
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, loss_fn(*[x.astype(jnp.float32) for x in inputs])[0], rtol=1e-6)


@pytest.mark.parametrize("loss_fn", [byol, simsiam])
@pytest.mark.parametrize(
    "shapes",
    [[(2, 3)] * 3 + [(3, 3)], [(2, 3), (2, 4), (2, 3), (2, 3)], [(6,)] * 4, [(2, 3, 4)] * 4],
)
def test_rejects_bad_shapes(loss_fn, shapes):
  with pytest.raises(ValueError, match=r"must all be \(n, d\) with one shape; got"):
    loss_fn(*[np.ones(s, np.float32) for s in shapes])


def _mesh():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 (conftest.py)")
  return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


@pytest.mark.parametrize("loss_fn", [byol, simsiam])
def test_sharded_matches_single_device(loss_fn):
  """shard_map over 8 devices and jit on NamedSharding inputs both equal the 1-device value,
  metrics and gradients (the z gradients being zero everywhere)."""
  mesh = _mesh()
  inputs = _inputs(np.random.default_rng(0), 32, 16)
  sharded_fn = jax.shard_map(
      functools.partial(loss_fn, axis_name="data"),
      mesh=mesh,
      in_specs=(P("data"),) * 4,
      out_specs=P(),
  )
  sharding = jax.NamedSharding(mesh, P("data"))
  want = _value_and_grad(loss_fn, *inputs)
  for got in (
      _value_and_grad(sharded_fn, *inputs),
      _value_and_grad(loss_fn, *[jax.device_put(x, sharding) for x in inputs]),
  ):
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6), got, want)
    assert not np.any(got[1][2]) and not np.any(got[1][3])
