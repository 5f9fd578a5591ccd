"""TS2Vec's hierarchical contrastive loss (Yue et al., AAAI 2022, Sec. 3.2-3.3 and Algorithm 1).

Two views' representations of the same overlapping segment, z1 and z2 (B, T, C), are contrasted at
every scale: at each level the instance-wise term (other series at the same timestep are the
negatives) and the temporal term (other timesteps of the same series are the negatives) are added,
then both views are max-pooled over time with kernel 2, until one timestep is left, where only the
instance term is added. The sum is divided by the number of levels. Similarities are plain dot
products, as in the paper (no normalisation, no temperature).
"""

import jax
import jax.numpy as jnp

MASKED = (
    -1e9
)  # logit of an excluded candidate (itself, or a padded timestep): exp() underflows to 0


def hierarchical_contrastive(z1, z2, *, alpha=0.5, temporal_unit=0, axis_name=None, length=None):
  """Returns (loss, metrics) for z1, z2 (B, T, C), timestep t of each a positive pair.

  alpha weighs the instance term, 1 - alpha the temporal one; the temporal term starts at level
  `temporal_unit`. Inside `shard_map` pass the batch axis as `axis_name`: instance negatives are
  gathered from every device and the value equals the single-device call on the gathered batch.
  length: optional valid prefix of the time axis (an int or a traced int scalar, 1 <= length <= T):
  timesteps >= length are padding and the value equals the call on z[:, :length]; this lets a
  jitted step take crops of a random length with one static shape.
  """
  if z1.ndim != 3 or z1.shape != z2.shape:
    raise ValueError(f"z1 and z2 must both be (B, T, C); got {z1.shape} and {z2.shape}")
  if not 0 <= alpha <= 1:
    raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
  if int(temporal_unit) != temporal_unit or temporal_unit < 0:
    raise ValueError(f"temporal_unit must be an integer >= 0, got {temporal_unit}")
  z1, z2 = z1.astype(jnp.float32), z2.astype(jnp.float32)
  n = z1.shape[1] if length is None else length  # valid timesteps at the current level
  total, levels, level, first = 0.0, 0, 0, None
  while True:
    width = z1.shape[1]
    valid = None if length is None else jnp.arange(width) < n
    instance = _instance_loss(z1, z2, valid, axis_name)
    temporal = (
        _temporal_loss(z1, z2, valid, axis_name) if level >= temporal_unit and width > 1 else 0.0
    )
    several, single = n > 1, n == 1
    if length is None:  # static: skip the terms the reference does not compute
      term = alpha * instance + ((1 - alpha) * temporal if several else 0.0)
    else:
      term = jnp.where(
          several,
          alpha * instance + (1 - alpha) * temporal,
          jnp.where(single, alpha * instance, 0.0),
      )
    total = total + term
    levels = levels + (n >= 1 if length is None else (n >= 1).astype(jnp.int32))
    if first is None:
      first = {"instance_loss": instance, "temporal_loss": temporal}
    if width == 1:
      break
    z1, z2, n, level = _max_pool(z1), _max_pool(z2), n // 2, level + 1
  return total / levels, {**first, "levels": levels}


def _max_pool(z):
  """Max over non-overlapping pairs of timesteps; an odd last one is dropped (floor)."""
  b, t, c = z.shape
  return z[:, : 2 * (t // 2)].reshape(b, t // 2, 2, c).max(axis=2)


def _instance_loss(z1, z2, valid, axis_name):
  """At every timestep, each of the 2B embeddings picks its other view among the other 2B - 1."""
  b = z1.shape[0]
  anchors = jnp.concatenate([z1, z2], axis=0)  # (2B, T, C): this device's anchors
  if axis_name is None:
    candidates, offset = anchors, 0
  else:
    gather = lambda z: jax.lax.all_gather(z, axis_name, axis=0, tiled=True)
    candidates = jnp.concatenate([gather(z1), gather(z2)], axis=0)  # (2G, T, C)
    offset = jax.lax.axis_index(axis_name) * b
  total = candidates.shape[0] // 2
  if total == 1:  # one series has no negatives: the reference's instance term is 0
    return jnp.zeros((), jnp.float32)
  logits = jnp.einsum("atc,gtc->tag", anchors, candidates)  # (T, 2B, 2G)
  rows = jnp.arange(2 * b)
  selves = jnp.where(rows < b, rows + offset, rows - b + total + offset)
  is_self = jnp.arange(2 * total)[None, :] == selves[:, None]  # (2B, 2G)
  logits = jnp.where(is_self[None], MASKED, logits)
  positive = jnp.sum(z1 * z2, axis=-1).T  # (T, B): the pair's similarity, for both anchors
  nll = jax.nn.logsumexp(logits, axis=-1) - jnp.concatenate([positive, positive], axis=1)
  loss = _mean_over_time(nll, valid)
  return loss if axis_name is None else jax.lax.pmean(loss, axis_name)


def _temporal_loss(z1, z2, valid, axis_name):
  """In every series, each of the 2T timesteps picks the same timestep of the other view."""
  t = z1.shape[1]
  z = jnp.concatenate([z1, z2], axis=1)  # (B, 2T, C)
  logits = jnp.einsum("bsc,buc->bsu", z, z)  # (B, 2T, 2T)
  excluded = jnp.eye(2 * t, dtype=bool)
  both = None if valid is None else jnp.concatenate([valid, valid])
  if valid is not None:
    excluded = excluded | ~both[None, :]
  logits = jnp.where(excluded[None], MASKED, logits)
  positive = jnp.sum(z1 * z2, axis=-1)  # (B, T)
  nll = jax.nn.logsumexp(logits, axis=-1) - jnp.concatenate([positive, positive], axis=1)
  loss = _mean_over_time(nll.T, both)  # (2T, B): both views' anchors
  return loss if axis_name is None else jax.lax.pmean(loss, axis_name)


def _mean_over_time(values, valid):
  """Mean of (T', B') values over the valid timesteps (T',) and every column."""
  if valid is None:
    return jnp.mean(values)
  weights = valid.astype(jnp.float32)[:, None]
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights) * values.shape[1], 1.0)
