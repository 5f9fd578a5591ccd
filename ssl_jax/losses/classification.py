"""Cross-entropy over pretext labels (rotation, jigsaw): mean over the global batch, with
accuracy."""

import jax
import jax.numpy as jnp
import optax


def pretext_cross_entropy(logits, labels, *, axis_name=None):
  """Returns (loss, metrics) for logits (n, C) and integer labels (n,); fp32 logits."""
  if logits.ndim != 2 or labels.shape != logits.shape[:1]:
    raise ValueError(
        f"logits must be (n, C) and labels (n,); got {logits.shape} and {labels.shape}"
    )
  logits = logits.astype(jnp.float32)
  loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
  if axis_name is not None:
    loss, accuracy = jax.lax.pmean((loss, accuracy), axis_name)
  return loss, {"pretext_accuracy": accuracy}
