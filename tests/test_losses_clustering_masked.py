"""Sinkhorn / SwAV, MAE's loss, k-means and DeepCluster-v2's loss against numpy; 1 == 8 devices."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ssl_jax import kmeans
from ssl_jax.losses import deepcluster_v2 as dc_lib
from ssl_jax.losses import mae as mae_lib
from ssl_jax.losses import swav as swav_lib


def numpy_sinkhorn(scores, epsilon, iterations):
  """The SwAV paper's Algorithm (appendix A.1), written with explicit row/column loops."""
  q = np.exp(scores.astype(np.float64) / epsilon).T  # (K, B)
  k, b = q.shape
  q /= q.sum()
  for _ in range(iterations):
    for row in range(k):
      q[row] /= q[row].sum() * k
    for col in range(b):
      q[:, col] /= q[:, col].sum() * b
  return (q * b).T


def _mesh():
  if jax.device_count() < 8:
    pytest.skip("needs 8 simulated devices (tests/conftest.py)")
  return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


@pytest.mark.parametrize(
    "b,k,epsilon,iterations", [(8, 5, 0.05, 3), (16, 30, 0.1, 1), (24, 7, 0.5, 10)]
)
def test_sinkhorn_matches_numpy(b, k, epsilon, iterations):
  scores = np.random.default_rng(b + k).uniform(-1, 1, (b, k)).astype(np.float32)
  q = swav_lib.sinkhorn(scores, epsilon=epsilon, iterations=iterations)
  np.testing.assert_allclose(q, numpy_sinkhorn(scores, epsilon, iterations), rtol=2e-4, atol=1e-6)
  np.testing.assert_allclose(np.sum(q, axis=1), 1.0, rtol=1e-5)


def test_sinkhorn_on_8_devices_equals_single_device_row_for_row():
  mesh = _mesh()
  scores = np.random.default_rng(0).uniform(-1, 1, (32, 12)).astype(np.float32)
  sharded = jax.jit(
      jax.shard_map(
          functools.partial(swav_lib.sinkhorn, epsilon=0.05, iterations=3, axis_name="data"),
          mesh=mesh,
          in_specs=P("data"),
          out_specs=P("data"),
      )
  )
  np.testing.assert_allclose(
      sharded(scores), swav_lib.sinkhorn(scores, epsilon=0.05, iterations=3), rtol=1e-5, atol=1e-7
  )


def numpy_swav(scores, temperature, epsilon, iterations):
  views = scores.shape[0]
  total, pairs = 0.0, 0
  for i in range(2):
    q = numpy_sinkhorn(scores[i], epsilon, iterations)
    for v in range(views):
      if v == i:
        continue
      logits = scores[v].astype(np.float64) / temperature
      log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
      total += -np.mean(np.sum(q * log_p, axis=1))
      pairs += 1
  return total / pairs


def test_swav_loss_matches_numpy_and_shards():
  mesh = _mesh()
  scores = np.random.default_rng(1).uniform(-1, 1, (4, 16, 10)).astype(np.float32)
  loss, _ = swav_lib.swav(scores, temperature=0.1)
  np.testing.assert_allclose(loss, numpy_swav(scores, 0.1, 0.05, 3), rtol=1e-5)
  fn = lambda s, axis_name=None: swav_lib.swav(s, temperature=0.1, axis_name=axis_name)[0]
  want, want_grad = jax.value_and_grad(fn)(scores)
  sharded = jax.jit(
      jax.value_and_grad(
          jax.shard_map(
              functools.partial(fn, axis_name="data"),
              mesh=mesh,
              in_specs=P(None, "data"),
              out_specs=P(),
          )
      )
  )
  got, got_grad = sharded(scores)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-7)


def test_swav_queue_rows_join_sinkhorn_only():
  scores = np.random.default_rng(2).uniform(-1, 1, (2, 8, 6)).astype(np.float32)
  queue = np.random.default_rng(3).uniform(-1, 1, (2, 24, 6)).astype(np.float32)
  loss, _ = swav_lib.swav(scores, queue_scores=queue)
  total = 0.0
  for i in range(2):
    q = numpy_sinkhorn(np.concatenate([queue[i], scores[i]]), 0.05, 3)[-8:]
    logits = scores[1 - i].astype(np.float64) / 0.1
    total += -np.mean(np.sum(q * (logits - np.log(np.exp(logits).sum(-1, keepdims=True))), 1))
  np.testing.assert_allclose(loss, total / 2, rtol=1e-5)


def numpy_mae(pred, target, mask, norm_pix):
  numerator, count = 0.0, 0.0
  for b in range(pred.shape[0]):
    for n in range(pred.shape[1]):
      if not mask[b, n]:
        continue
      t = target[b, n].astype(np.float64)
      if norm_pix:
        t = (t - t.mean()) / np.sqrt(t.var(ddof=1) + 1e-6)
      numerator += np.mean((pred[b, n] - t) ** 2)
      count += 1
  return numerator / count


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_loss_matches_numpy_and_shards(norm_pix):
  mesh = _mesh()
  rng = np.random.default_rng(4)
  pred = rng.normal(size=(16, 6, 12)).astype(np.float32)
  target = rng.uniform(size=(16, 6, 12)).astype(np.float32)
  mask = (rng.uniform(size=(16, 6)) < 0.7).astype(np.float32)
  loss, metrics = mae_lib.mae_loss(pred, target, mask, norm_pix=norm_pix)
  np.testing.assert_allclose(loss, numpy_mae(pred, target, mask, norm_pix), rtol=1e-5)
  assert metrics["masked_fraction"] == pytest.approx(mask.mean())
  fn = lambda p, axis_name=None: mae_lib.mae_loss(
      p, target_s, mask_s, norm_pix=norm_pix, axis_name=axis_name
  )[0]
  target_s, mask_s = target, mask
  want, want_grad = jax.value_and_grad(fn)(pred)

  def local(p, t, m):
    return mae_lib.mae_loss(p, t, m, norm_pix=norm_pix, axis_name="data")[0]

  sharded = jax.jit(
      jax.value_and_grad(jax.shard_map(local, mesh=mesh, in_specs=(P("data"),) * 3, out_specs=P()))
  )
  got, got_grad = sharded(pred, target, mask)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-8)
  assert np.all(np.asarray(got_grad)[mask == 0] == 0)  # visible patches get no gradient


def test_patchify_roundtrip_and_order():
  images = np.arange(2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3)
  patches = mae_lib.patchify(images, 4)
  assert patches.shape == (2, 4, 48)
  np.testing.assert_array_equal(patches[0, 1], images[0, :4, 4:8].reshape(-1))  # row-major patches
  np.testing.assert_array_equal(mae_lib.unpatchify(patches, 4, 3, 2), images)
  with pytest.raises(ValueError, match="do not divide"):
    mae_lib.patchify(np.zeros((1, 6, 6, 3)), 4)


def test_kmeans_finds_separated_clusters_and_reseeds_empty_ones():
  rng = np.random.default_rng(5)
  centres = np.eye(4, 8, dtype=np.float32)
  points = np.repeat(centres, 50, axis=0) + 0.05 * rng.normal(size=(200, 8)).astype(np.float32)
  points = np.asarray(kmeans.normalize(points))
  valid = np.ones(200, bool)
  valid[-10:] = False
  centroids, labels, sizes = jax.jit(
      functools.partial(kmeans.kmeans, num_clusters=4, iterations=10, chunk=64)
  )(jax.random.PRNGKey(0), points, valid)
  labels = np.asarray(labels)
  assert (labels[-10:] == -1).all() and sizes.sum() == 190
  groups = [set(labels[i * 50 : (i + 1) * 50 - (10 if i == 3 else 0)]) for i in range(4)]
  assert all(len(g) == 1 for g in groups) and len(set.union(*groups)) == 4  # one cluster per group
  np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)
  # more clusters than groups: k-means keeps no cluster empty by re-seeding
  _, _, sizes = kmeans.kmeans(jax.random.PRNGKey(1), points, np.ones(200, bool), 12, iterations=5)
  balance = kmeans.balance(sizes)
  assert float(balance["empty_clusters"]) <= 4 and 0 < float(balance["size_entropy"]) <= 1
  assert float(kmeans.balance(jnp.array([10.0, 0.0]))["largest_cluster_fraction"]) == 1.0


def test_deepcluster_loss_matches_numpy():
  rng = np.random.default_rng(6)
  z = np.asarray(kmeans.normalize(rng.normal(size=(2, 8, 5))))
  centroids = [np.asarray(kmeans.normalize(rng.normal(size=(k, 5)))) for k in (3, 4)]
  targets = np.stack([rng.integers(0, 3, 8), rng.integers(0, 4, 8)])
  loss, _ = dc_lib.deepcluster_v2(z, centroids, targets, temperature=0.1)
  want = 0.0
  for h, c in enumerate(centroids):
    for v in range(2):
      for i in range(8):
        logits = z[v, i].astype(np.float64) @ c.T / 0.1
        want += -(logits[targets[h, i]] - np.log(np.exp(logits).sum())) / (2 * 8 * 2)
  np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_deepcluster_loss_ignores_examples_without_a_cluster():
  """-1 targets take no part (the official code's ignore_index=-1): the mean is over the crops
  and examples that have a cluster, and a batch with none gives 0 and no gradient."""
  rng = np.random.default_rng(7)
  z = np.asarray(kmeans.normalize(rng.normal(size=(2, 8, 5))))
  centroids = [np.asarray(kmeans.normalize(rng.normal(size=(4, 5))))]
  targets = rng.integers(0, 4, (1, 8))
  targets[0, [1, 4, 5]] = -1
  loss, metrics = dc_lib.deepcluster_v2(z, centroids, targets, temperature=0.1)
  want, kept = 0.0, np.flatnonzero(targets[0] >= 0)
  for v in range(2):
    for i in kept:
      logits = z[v, i].astype(np.float64) @ centroids[0].T / 0.1
      want += -(logits[targets[0, i]] - np.log(np.exp(logits).sum())) / (2 * len(kept))
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  assert 0.0 <= float(metrics["cluster_accuracy"]) <= 1.0
  none = -np.ones((1, 8), np.int32)
  value, grad = jax.value_and_grad(
      lambda e: dc_lib.deepcluster_v2(e, centroids, none, temperature=0.1)[0]
  )(jnp.asarray(z))
  assert float(value) == 0.0 and not np.any(np.asarray(grad))
