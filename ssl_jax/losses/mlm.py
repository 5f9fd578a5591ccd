"""BERT's masked-language-model loss (Devlin et al. 2019): cross-entropy at the masked positions.

The mean is over every real prediction of the global batch: a sequence contributes as many terms as
it has masked tokens (padding slots carry weight 0), as in BERT's `get_masked_lm_output`. Under
`shard_map`, pass the axis: the numerator and the count are summed over devices first, so the loss
is the global batch's whatever the sharding.
"""

import jax
import jax.numpy as jnp
import optax


def masked_lm(logits, targets, weights, *, axis_name=None):
  """Returns (loss, metrics). logits (B, P, V) at P prediction slots; targets (B, P) int ids;
  weights (B, P), 1 for a real prediction and 0 for a padding slot. fp32 softmax."""
  if logits.shape[:-1] != targets.shape or weights.shape != targets.shape:
    raise ValueError(
        f"logits (B, P, V) {logits.shape}, targets {targets.shape} and weights "
        f"{weights.shape} must share (B, P)"
    )
  logits = logits.astype(jnp.float32)
  weights = weights.astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  sums = (jnp.sum(ce * weights), jnp.sum(correct * weights), jnp.sum(weights))
  if axis_name is not None:
    sums = jax.lax.psum(sums, axis_name)
  total, hits, count = sums
  count = jnp.maximum(count, 1.0)
  return total / count, {"mlm_accuracy": hits / count, "mlm_predictions": count}
