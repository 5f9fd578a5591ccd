"""TS2Vec's hierarchical contrastive loss against a numpy reference, padded crops, 1 vs 8
devices."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ssl_jax.losses.ts2vec import hierarchical_contrastive


def _contrast(z, partner):
  """Rows of z (M, C) as anchors: -log softmax of row partner[i] among the other M - 1 rows."""
  terms = []
  for i in range(len(z)):
    others = np.delete(np.arange(len(z)), i)
    logits = z[others] @ z[i]
    top = logits.max()
    terms.append(-(z[partner[i]] @ z[i] - top - np.log(np.sum(np.exp(logits - top)))))
  return terms


def numpy_instance(z1, z2):
  """Written from the paper's definition: at each timestep, 2B anchors, the other view positive."""
  b, t, _ = z1.shape
  if b == 1:
    return 0.0
  partner = np.concatenate([np.arange(b) + b, np.arange(b)])
  return np.mean([_contrast(np.concatenate([z1[:, s], z2[:, s]]), partner) for s in range(t)])


def numpy_temporal(z1, z2):
  """In each series, 2T anchors (both views' timesteps), the same timestep of the other view."""
  b, t, _ = z1.shape
  partner = np.concatenate([np.arange(t) + t, np.arange(t)])
  return np.mean([_contrast(np.concatenate([z1[i], z2[i]]), partner) for i in range(b)])


def numpy_pool(z):
  b, t, c = z.shape
  return np.stack([np.maximum(z[:, 2 * i], z[:, 2 * i + 1]) for i in range(t // 2)], axis=1)


def numpy_hierarchical(z1, z2, alpha=0.5, temporal_unit=0):
  z1, z2 = z1.astype(np.float64), z2.astype(np.float64)
  total, levels = 0.0, 0
  while z1.shape[1] > 1:
    total += alpha * numpy_instance(z1, z2)
    if levels >= temporal_unit:
      total += (1 - alpha) * numpy_temporal(z1, z2)
    levels += 1
    z1, z2 = numpy_pool(z1), numpy_pool(z2)
  total += alpha * numpy_instance(z1, z2)
  return total / (levels + 1)


def numpy_grad(z1, z2, eps=1e-6, **kwargs):
  z1, z2 = z1.astype(np.float64), z2.astype(np.float64)
  grads = []
  for z in (z1, z2):
    g = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
      old = z[idx]
      z[idx] = old + eps
      up = numpy_hierarchical(z1, z2, **kwargs)
      z[idx] = old - eps
      down = numpy_hierarchical(z1, z2, **kwargs)
      z[idx] = old
      g[idx] = (up - down) / (2 * eps)
    grads.append(g)
  return grads


def _pair(seed, shape, scale=0.5):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=shape) * scale).astype(np.float32), (
      rng.normal(size=shape) * scale
  ).astype(np.float32)


@pytest.mark.parametrize(
    "b,t,c,alpha,temporal_unit",
    [(2, 5, 3, 0.5, 0), (3, 7, 2, 0.3, 1), (1, 6, 2, 0.5, 0), (3, 1, 2, 0.5, 0), (2, 6, 2, 0.0, 2)],
)
def test_value_and_grad_match_numpy(b, t, c, alpha, temporal_unit):
  z1, z2 = _pair(b * 100 + t, (b, t, c))
  fn = lambda a, z: hierarchical_contrastive(a, z, alpha=alpha, temporal_unit=temporal_unit)[0]
  loss, (g1, g2) = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))(z1, z2)
  want = numpy_hierarchical(z1, z2, alpha, temporal_unit)
  np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-6)
  r1, r2 = numpy_grad(z1, z2, alpha=alpha, temporal_unit=temporal_unit)
  np.testing.assert_allclose(g1, r1, rtol=1e-3, atol=1e-5)
  np.testing.assert_allclose(g2, r2, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("length", [1, 5, 13])
def test_padded_prefix_equals_the_prefix_alone(length):
  """`length=` on a padded buffer gives the loss and gradients of z[:, :length] alone."""
  z1, z2 = _pair(length, (3, 13, 4))
  fn = jax.jit(
      jax.value_and_grad(
          lambda a, z, n: hierarchical_contrastive(a, z, length=n)[0], argnums=(0, 1)
      )
  )
  loss, (g1, g2) = fn(z1, z2, jnp.int32(length))  # one compile serves every length
  want, (w1, w2) = jax.jit(
      jax.value_and_grad(lambda a, z: hierarchical_contrastive(a, z)[0], argnums=(0, 1))
  )(z1[:, :length], z2[:, :length])
  np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(g1[:, :length], w1, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(g2[:, :length], w2, rtol=1e-4, atol=1e-6)
  assert not np.any(g1[:, length:]) and not np.any(g2[:, length:])


def test_metrics_and_bad_arguments():
  z1, z2 = _pair(0, (2, 8, 3))
  _, metrics = jax.jit(hierarchical_contrastive)(z1, z2)
  assert metrics["levels"] == 4  # 8 -> 4 -> 2 -> 1
  np.testing.assert_allclose(metrics["instance_loss"], numpy_instance(z1, z2), rtol=1e-5)
  np.testing.assert_allclose(metrics["temporal_loss"], numpy_temporal(z1, z2), rtol=1e-5)
  with pytest.raises(ValueError, match="must both be"):
    hierarchical_contrastive(z1, z2[:, :4])
  with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
    hierarchical_contrastive(z1, z2, alpha=1.5)
  with pytest.raises(ValueError, match="temporal_unit"):
    hierarchical_contrastive(z1, z2, temporal_unit=-1)


def _mesh():
  if jax.device_count() < 8:
    pytest.skip(
        "needs XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/conftest.py sets it)"
    )
  return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


@pytest.mark.parametrize("length", [None])
def test_eight_devices_equal_one(length):
  """Instance negatives gathered across devices: value and gradients equal the global call."""
  mesh = _mesh()
  z1, z2 = _pair(7, (16, 6, 3))
  n = None if length is None else jnp.int32(length)

  def global_loss(a, z):
    return hierarchical_contrastive(a, z, length=n)[0]

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P())
  def sharded_loss(a, z):
    return hierarchical_contrastive(a, z, length=n, axis_name="data")[0]

  want, want_grads = jax.jit(jax.value_and_grad(global_loss, argnums=(0, 1)))(z1, z2)
  got, got_grads = jax.jit(jax.value_and_grad(sharded_loss, argnums=(0, 1)))(z1, z2)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  for g, w in zip(got_grads, want_grads):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7)
  if length is None:
    np.testing.assert_allclose(want, numpy_hierarchical(z1, z2), rtol=1e-5)
