"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, eq. 1).

For 2N embeddings (two views of N examples), anchor i's positive is the other view of example i
and its 2N - 2 negatives are every other embedding; the loss averages over all 2N anchors.
"""

import numbers

import jax
import jax.numpy as jnp


def ntxent(z1, z2, *, temperature, axis_name=None):
  """Returns (loss, metrics) for embeddings z1, z2 of shape (n, d), row i of each a positive pair.

  Under `jit` pass global arrays and leave `axis_name` None. Inside `shard_map`/`pmap` pass the
  mapped axis: negatives are then gathered from every device, this device's positives sit at
  offset `axis_index * n` in the gathered batch, and the returned loss is the global mean.
  """
  if isinstance(temperature, numbers.Real) and not temperature > 0:  # numbers; arrays may be traced
    raise ValueError(f"temperature must be > 0, got {temperature}")
  if z1.ndim != 2 or z1.shape != z2.shape:
    raise ValueError(f"z1 and z2 must both be (n, d); got {z1.shape} and {z2.shape}")
  z1 = _normalise(z1.astype(jnp.float32))  # logits always in fp32, whatever the compute dtype
  z2 = _normalise(z2.astype(jnp.float32))
  n = z1.shape[0]
  if axis_name is None:
    all1, all2, offset = z1, z2, 0
  else:
    all1 = jax.lax.all_gather(z1, axis_name, tiled=True)
    all2 = jax.lax.all_gather(z2, axis_name, tiled=True)
    offset = jax.lax.axis_index(axis_name) * n
  total = all1.shape[0]
  candidates = jnp.concatenate([all1, all2], axis=0)  # (2M, d)
  rows = jnp.arange(n) + offset
  loss, accuracy = 0.0, 0.0
  for anchors, positive_cols, own_cols in ((z1, rows + total, rows), (z2, rows, rows + total)):
    logits = anchors @ candidates.T / temperature
    logits = jnp.where(jax.nn.one_hot(own_cols, 2 * total, dtype=bool), -1e9, logits)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    loss += -jnp.mean(jnp.take_along_axis(log_probs, positive_cols[:, None], axis=1)) / 2
    accuracy += jnp.mean(jnp.argmax(logits, axis=-1) == positive_cols) / 2
  embedding_std = jnp.mean(jnp.std(jnp.concatenate([all1, all2]), axis=0))
  if axis_name is not None:
    loss = jax.lax.pmean(loss, axis_name)
    accuracy = jax.lax.pmean(accuracy, axis_name)
  return loss, {"contrastive_accuracy": accuracy, "embedding_std": embedding_std}


def _normalise(z):
  return z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), 1e-12))
