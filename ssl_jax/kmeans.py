"""Spherical k-means in JAX (DeepCluster-v2, Caron et al. 2020 appendix): jit-able, chunked.

Cosine assignment to L2-normalised centroids; a centroid whose cluster empties is re-seeded with
a random valid embedding. Assignments are computed in chunks of rows so an (N, K) score matrix
is never held whole; under `jit` with sharded inputs XLA partitions the work.
"""

import jax
import jax.numpy as jnp


def normalize(x):
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def assign(embeddings, centroids, *, chunk=4096):
  """argmax_k <embedding, centroid_k> for every row, (N,) int32."""
  n = embeddings.shape[0]
  chunk = min(chunk, n)
  pad = (-n) % chunk
  rows = jnp.pad(embeddings, ((0, pad), (0, 0))).reshape(-1, chunk, embeddings.shape[1])
  best = jax.lax.map(lambda block: jnp.argmax(block @ centroids.T, axis=-1).astype(jnp.int32), rows)
  return best.reshape(-1)[:n]


def kmeans(rng, embeddings, valid, num_clusters, *, iterations=10, chunk=4096):
  """Returns (centroids (K, D), assignments (N,) with -1 for invalid rows, sizes (K,)).

  embeddings (N, D) L2-normalised; valid (N,) bool marks the rows that take part.
  """
  embeddings = jnp.asarray(embeddings, jnp.float32)
  weights = jnp.asarray(valid).astype(jnp.float32)
  probs = weights / jnp.maximum(jnp.sum(weights), 1.0)
  init_key, reseed_key = jax.random.split(rng)
  centroids = embeddings[jax.random.choice(init_key, embeddings.shape[0], (num_clusters,), p=probs)]

  def update(i, centroids):
    labels = assign(embeddings, centroids, chunk=chunk)
    sums = jax.ops.segment_sum(embeddings * weights[:, None], labels, num_segments=num_clusters)
    counts = jax.ops.segment_sum(weights, labels, num_segments=num_clusters)
    reseed = embeddings[
        jax.random.choice(
            jax.random.fold_in(reseed_key, i), embeddings.shape[0], (num_clusters,), p=probs
        )
    ]
    return jnp.where((counts > 0)[:, None], normalize(sums), reseed)

  centroids = jax.lax.fori_loop(0, iterations, update, normalize(centroids))
  labels = assign(embeddings, centroids, chunk=chunk)
  sizes = jax.ops.segment_sum(weights, labels, num_segments=num_clusters)
  return centroids, jnp.where(valid, labels, -1), sizes


def balance(sizes):
  """Cluster-size balance: {empty_clusters, largest_cluster_fraction, size_entropy (1 = even)}."""
  total = jnp.maximum(jnp.sum(sizes), 1.0)
  p = sizes / total
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.maximum(p, 1e-12)), 0.0))
  return {
      "empty_clusters": jnp.sum(sizes == 0).astype(jnp.float32),
      "largest_cluster_fraction": jnp.max(p),
      "size_entropy": entropy / jnp.log(jnp.asarray(sizes.shape[0], jnp.float32)),
  }
