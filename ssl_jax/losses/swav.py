"""SwAV (Caron et al. 2020): swapped prediction of Sinkhorn-Knopp cluster assignments.

Each global crop's prototype scores give soft codes q by a few Sinkhorn iterations that make
the assignment equipartitioned over the batch; every other crop predicts those codes from its
own scores with a temperature softmax.
"""

import jax
import jax.numpy as jnp


def sinkhorn(scores, *, epsilon=0.05, iterations=3, axis_name=None):
  """Codes q (B_local, K), rows summing to 1, from prototype scores (B_local, K); fp32.

  The official distributed Sinkhorn: Q = exp(scores / epsilon).T, divided by its global sum;
  then, `iterations` times, each prototype row divided by its global sum and by K, each column
  by its sum and by the global batch size; finally (Q * B_global).T. Under `shard_map` pass the
  axis: every sum over the batch is a psum, so the result equals the single-device call on the
  gathered scores, row for row.
  """
  if scores.ndim != 2:
    raise ValueError(f"scores must be (batch, prototypes), got {scores.shape}")
  psum = (lambda x: x) if axis_name is None else (lambda x: jax.lax.psum(x, axis_name))
  q = jnp.exp(jax.lax.stop_gradient(scores).astype(jnp.float32) / epsilon).T  # (K, B)
  num_prototypes = q.shape[0]
  global_batch = psum(jnp.asarray(q.shape[1], jnp.float32))
  q = q / psum(jnp.sum(q))
  for _ in range(iterations):
    q = q / psum(jnp.sum(q, axis=1, keepdims=True)) / num_prototypes
    q = q / jnp.sum(q, axis=0, keepdims=True) / global_batch
  return (q * global_batch).T


def swav(
    scores,
    *,
    temperature=0.1,
    epsilon=0.05,
    sinkhorn_iterations=3,
    queue_scores=None,
    axis_name=None,
):
  """Returns (loss, metrics) for prototype scores (V, n, K) of V crops, the first 2 global.

  Codes come from each global crop (no gradient); each other crop v predicts them with
  softmax(scores_v / temperature); the loss averages the 2 * (V - 1) cross-entropies over the
  global batch. `queue_scores` (2, Q, K), scores of earlier batches' global-crop embeddings, are
  prepended before Sinkhorn and their codes dropped (SwAV's queue for small batches; global
  arrays only, not under `axis_name`).
  """
  if scores.ndim != 3 or scores.shape[0] < 2:
    raise ValueError(f"scores must be (V >= 2 crops, n, K), got {scores.shape}")
  if queue_scores is not None and axis_name is not None:
    raise NotImplementedError("swav's queue works on global arrays (jit); pass axis_name=None")
  num_views, n = scores.shape[:2]
  log_probs = jax.nn.log_softmax(scores.astype(jnp.float32) / temperature, axis=-1)
  loss, entropy = 0.0, 0.0
  for i in range(2):
    crop_scores = scores[i]
    if queue_scores is not None:
      crop_scores = jnp.concatenate([queue_scores[i], crop_scores])
    q = sinkhorn(crop_scores, epsilon=epsilon, iterations=sinkhorn_iterations, axis_name=axis_name)[
        -n:
    ]
    entropy += -jnp.mean(jnp.sum(q * jnp.log(jnp.maximum(q, 1e-12)), axis=-1)) / 2
    for v in range(num_views):
      if v != i:
        loss += -jnp.mean(jnp.sum(q * log_probs[v], axis=-1))
  loss = loss / (2 * (num_views - 1))
  if axis_name is not None:
    loss, entropy = jax.lax.pmean((loss, entropy), axis_name)
  return loss, {"code_entropy": entropy}
