"""BYOL's regression loss (Grill et al. 2020, eq. 2), symmetrised over the two views.

Each online prediction p regresses the other view's target projection z: both are L2-normalised and
the squared distance, 2 - 2 cos(p, z), is summed over the two directions and averaged over examples.
"""

import jax
import jax.numpy as jnp


def byol(p1, p2, z1, z2, *, axis_name=None):
  """Returns (loss, metrics) for online predictions p1, p2 and target projections z1, z2 (all n, d).

  Gradients never reach z (stop_gradient here, so a caller that forgets it is still correct).
  Under `jit` pass global arrays and leave `axis_name` None. Inside `shard_map`/`pmap` pass the
  mapped axis: the per-device means (equal batch per device) are pmean'd into the global mean.
  """
  if p1.ndim != 2 or not p1.shape == p2.shape == z1.shape == z2.shape:
    raise ValueError(
        "p1, p2, z1, z2 must all be (n, d) with one shape; got "
        f"{p1.shape}, {p2.shape}, {z1.shape} and {z2.shape}"
    )
  loss, cosine = 0.0, 0.0
  for p, z in ((p1, z2), (p2, z1)):
    p = _normalise(p.astype(jnp.float32))  # fp32 whatever the compute dtype
    z = _normalise(jax.lax.stop_gradient(z).astype(jnp.float32))
    loss += jnp.mean(jnp.sum((p - z) ** 2, axis=-1))
    cosine += jnp.mean(jnp.sum(p * z, axis=-1)) / 2
  if axis_name is not None:
    loss = jax.lax.pmean(loss, axis_name)
    cosine = jax.lax.pmean(cosine, axis_name)
  return loss, {"cosine": cosine}


def _normalise(x):
  """Unit rows; the floor keeps a zero row at zero instead of NaN."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))
