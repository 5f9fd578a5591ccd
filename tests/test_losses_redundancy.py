"""Barlow Twins and VICReg against independent numpy references; sharded == single-device."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ssl_jax.losses.barlow_twins import barlow_twins
from ssl_jax.losses.vicreg import vicreg


def numpy_barlow_twins(z1, z2, lambd):
  """Written from the paper: BatchNorm1d(affine=False) per dimension, then one c_ij at a time."""
  z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
  n, d = z1.shape
  batch_norm = lambda z: (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + 1e-5)
  a, b = batch_norm(z1), batch_norm(z2)
  loss = 0.0
  for i in range(d):
    for j in range(d):
      c_ij = sum(a[k, i] * b[k, j] for k in range(n)) / n
      loss += (1 - c_ij) ** 2 if i == j else lambd * c_ij**2
  return loss


def numpy_vicreg(z1, z2, sim_weight, var_weight, cov_weight):
  """Written from the paper with numpy's own unbiased var and cov; returns (loss, terms)."""
  z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
  d = z1.shape[1]
  invariance = np.mean((z1 - z2) ** 2)
  variance, covariance = 0.0, 0.0
  for z in (z1, z2):
    std = np.sqrt(np.var(z, axis=0, ddof=1) + 1e-4)
    variance += np.mean(np.maximum(0.0, 1.0 - std)) / 2
    cov = np.atleast_2d(np.cov(z, rowvar=False))
    covariance += (np.sum(cov**2) - np.sum(np.diag(cov) ** 2)) / d
  terms = (invariance, variance, covariance)
  return sim_weight * invariance + var_weight * variance + cov_weight * covariance, terms


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


def _embeddings(rng, n, d):
  # Per-dimension scales either side of 1, so VICReg's variance hinge is active on some dims only.
  scale = np.linspace(0.3, 1.7, d)
  return [
      (rng.normal(size=(n, d)) * scale + rng.normal(size=d)).astype(np.float32) for _ in range(2)
  ]


@functools.partial(jax.jit, static_argnames=("lambd",))
def _barlow_value_and_grad(z1, z2, lambd):
  fn = lambda a, b: barlow_twins(a, b, lambd=lambd)
  return jax.value_and_grad(fn, argnums=(0, 1), has_aux=True)(z1, z2)


@functools.partial(jax.jit, static_argnames=("weights",))
def _vicreg_value_and_grad(z1, z2, weights):
  fn = lambda a, b: vicreg(
      a, b, sim_weight=weights[0], var_weight=weights[1], cov_weight=weights[2]
  )
  return jax.value_and_grad(fn, argnums=(0, 1), has_aux=True)(z1, z2)


@pytest.mark.parametrize(
    "n,d,lambd", [(2, 3, 0.0051), (5, 4, 0.5), (8, 6, 0.0051), (16, 8, 0.1), (7, 1, 0.0051)]
)
def test_barlow_twins_matches_numpy(n, d, lambd):
  z1, z2 = _embeddings(np.random.default_rng(n * 100 + d), n, d)
  (loss, metrics), grads = _barlow_value_and_grad(z1, z2, lambd)
  np.testing.assert_allclose(loss, numpy_barlow_twins(z1, z2, lambd), rtol=1e-5, atol=1e-5)
  assert set(metrics) == {"on_diag", "off_diag"}
  if n <= 8:
    want = finite_difference_grads(lambda a, b: numpy_barlow_twins(a, b, lambd), (z1, z2))
    for g, w in zip(grads, want):
      np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "n,d,weights",
    [
        (2, 3, (25.0, 25.0, 1.0)),
        (5, 4, (1.0, 2.0, 3.0)),
        (8, 6, (25.0, 25.0, 1.0)),
        (16, 8, (0.5, 10.0, 4.0)),
        (7, 1, (25.0, 25.0, 1.0)),
    ],
)
def test_vicreg_matches_numpy(n, d, weights):
  z1, z2 = _embeddings(np.random.default_rng(n * 100 + d), n, d)
  (loss, metrics), grads = _vicreg_value_and_grad(z1, z2, weights)
  want_loss, want_terms = numpy_vicreg(z1, z2, *weights)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-5)
  got_terms = (metrics["invariance"], metrics["variance"], metrics["covariance"])
  np.testing.assert_allclose(got_terms, want_terms, rtol=1e-5, atol=1e-6)
  if n <= 8:
    want = finite_difference_grads(lambda a, b: numpy_vicreg(a, b, *weights)[0], (z1, z2))
    for g, w in zip(grads, want):
      np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4)


def _orthogonal_embeddings(n=8, d=4):
  """Columns of a Sylvester Hadamard matrix: zero mean, unit biased variance, uncorrelated."""
  h = np.ones((1, 1))
  while h.shape[0] < n:
    h = np.block([[h, h], [h, -h]])
  return h[:, 1 : d + 1].astype(np.float32)


def test_barlow_twins_collapse_and_ideal():
  d = 4
  # Every example the same: standardised embeddings are 0, so c = 0 and the loss is exactly d.
  collapsed = np.tile(np.arange(d, dtype=np.float32), (8, 1))
  loss, metrics = barlow_twins(collapsed, collapsed)
  np.testing.assert_allclose(loss, d, rtol=1e-6)
  assert metrics["on_diag"] == 0.0
  # Identical, decorrelated views reach the optimum, whatever per-dimension scale and shift.
  z = _orthogonal_embeddings(8, d)
  loss, metrics = barlow_twins(z * 3.0 + 1.0, z * 0.5 - 2.0)
  assert loss < 1e-6
  np.testing.assert_allclose(metrics["on_diag"], 1.0, atol=1e-4)
  assert metrics["off_diag"] < 1e-10


def test_vicreg_collapse_and_ideal():
  collapsed = np.tile(np.arange(4, dtype=np.float32), (8, 1))
  loss, metrics = vicreg(collapsed, collapsed)
  # std = sqrt(0 + 1e-4) = 0.01 in every dimension: hinge 0.99, halved, summed over two branches.
  np.testing.assert_allclose(metrics["variance"], 0.99, rtol=1e-6)
  assert metrics["invariance"] == 0.0 and metrics["covariance"] == 0.0
  np.testing.assert_allclose(loss, 25.0 * 0.99, rtol=1e-6)
  # Unit-variance, uncorrelated, identical views: every term is zero.
  z = _orthogonal_embeddings(8, 4)
  loss, metrics = vicreg(z, z)
  assert loss == 0.0, metrics


@pytest.mark.parametrize("loss_fn", [barlow_twins, vicreg])
def test_bfloat16_inputs_computed_in_float32(loss_fn):
  z1, z2 = _embeddings(np.random.default_rng(3), 8, 4)
  z1, z2 = jnp.asarray(z1, jnp.bfloat16), jnp.asarray(z2, jnp.bfloat16)
  loss, _ = loss_fn(z1, z2)
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(
      loss, loss_fn(z1.astype(jnp.float32), z2.astype(jnp.float32))[0], rtol=1e-6
  )


@pytest.mark.parametrize("loss_fn", [barlow_twins, vicreg])
@pytest.mark.parametrize(
    "shape1,shape2", [((2, 3), (3, 3)), ((2, 3), (2, 4)), ((6,), (6,)), ((2, 3, 4), (2, 3, 4))]
)
def test_rejects_bad_shapes(loss_fn, shape1, shape2):
  with pytest.raises(ValueError, match=r"must both be \(n, d\); got"):
    loss_fn(np.ones(shape1, np.float32), np.ones(shape2, np.float32))


def test_vicreg_rejects_batch_of_one():
  with pytest.raises(ValueError, match="at least 2"):
    vicreg(np.ones((1, 3), np.float32), np.ones((1, 3), np.float32))


def _mesh():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 (conftest.py)")
  return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


@pytest.mark.parametrize(
    "loss_fn",
    [
        functools.partial(barlow_twins, lambd=0.1),
        functools.partial(vicreg, var_weight=10.0, cov_weight=5.0),
    ],
    ids=["barlow_twins", "vicreg"],
)
def test_sharded_matches_single_device(loss_fn):
  """shard_map over 8 devices and jit on NamedSharding inputs both equal the 1-device value,
  metrics and gradients."""
  mesh = _mesh()
  z1, z2 = _embeddings(np.random.default_rng(0), 32, 16)
  value_and_grad = lambda f: jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))
  global_fn = value_and_grad(loss_fn)
  sharded_fn = value_and_grad(
      jax.shard_map(
          functools.partial(loss_fn, axis_name="data"),
          mesh=mesh,
          in_specs=(P("data"), P("data")),
          out_specs=P(),
      )
  )
  sharding = jax.NamedSharding(mesh, P("data"))
  want = global_fn(z1, z2)
  for got in (
      sharded_fn(z1, z2),
      global_fn(jax.device_put(z1, sharding), jax.device_put(z2, sharding)),
  ):
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6), got, want)
