"""DeepCluster-v2's loss (Caron et al. 2020, appendix): cross-entropy to k-means assignments.

Each crop's normalised embedding is scored against every clustering's centroids (the
prototypes, fixed between clusterings) and trained to predict its example's cluster.
"""

import jax
import jax.numpy as jnp
import optax


def deepcluster_v2(embeddings, centroids, targets, *, temperature=0.1, axis_name=None):
  """Returns (loss, metrics). embeddings (V, n, D) L2-normalised; centroids: a sequence of H
  arrays (K_h, D); targets (H, n) int cluster ids, -1 for an example without a cluster (it takes
  no part, as solo-learn's `ignore_index=-1`). Averages over clusterings, and over the
  crops and examples that have a cluster in the global batch (0 where none has)."""
  if embeddings.ndim != 3 or targets.shape != (len(centroids), embeddings.shape[1]):
    raise ValueError(
        f"embeddings must be (V, n, D) and targets (H={len(centroids)}, n); got "
        f"{embeddings.shape} and {targets.shape}"
    )
  total = lambda x: jax.lax.psum(jnp.sum(x), axis_name) if axis_name is not None else jnp.sum(x)
  loss, accuracy = 0.0, 0.0
  for head, prototypes in enumerate(centroids):
    logits = (
        jnp.einsum(
            "vnd,kd->vnk",
            embeddings.astype(jnp.float32),
            jax.lax.stop_gradient(prototypes).astype(jnp.float32),
        )
        / temperature
    )
    labels = jnp.broadcast_to(targets[head], logits.shape[:2])
    known = (labels >= 0).astype(jnp.float32)
    count = jnp.maximum(total(known), 1.0)
    cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
    loss += total(cross_entropy * known) / count / len(centroids)
    accuracy += total((jnp.argmax(logits, -1) == labels) * known) / count / len(centroids)
  return loss, {"cluster_accuracy": accuracy}
