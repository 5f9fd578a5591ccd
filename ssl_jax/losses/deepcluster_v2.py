"""DeepCluster-v2's loss (Caron et al. 2020, appendix): cross-entropy to k-means assignments.

Each crop's normalised embedding is scored against every clustering's centroids (the
prototypes, fixed between clusterings) and trained to predict its example's cluster.
"""
import jax
import jax.numpy as jnp
import optax


def deepcluster_v2(embeddings, centroids, targets, *, temperature=0.1, axis_name=None):
  """Returns (loss, metrics). embeddings (V, n, D) L2-normalised; centroids: a sequence of H
  arrays (K_h, D); targets (H, n) int cluster ids. Averages over clusterings, crops and the
  global batch."""
  if embeddings.ndim != 3 or targets.shape != (len(centroids), embeddings.shape[1]):
    raise ValueError(f"embeddings must be (V, n, D) and targets (H={len(centroids)}, n); got "
                     f"{embeddings.shape} and {targets.shape}")
  loss, accuracy = 0.0, 0.0
  for head, prototypes in enumerate(centroids):
    logits = jnp.einsum("vnd,kd->vnk", embeddings.astype(jnp.float32),
                        jax.lax.stop_gradient(prototypes).astype(jnp.float32)) / temperature
    labels = jnp.broadcast_to(targets[head], logits.shape[:2])
    loss += jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)) / len(centroids)
    accuracy += jnp.mean(jnp.argmax(logits, -1) == labels) / len(centroids)
  if axis_name is not None:
    loss, accuracy = jax.lax.pmean((loss, accuracy), axis_name)
  return loss, {"cluster_accuracy": accuracy}
