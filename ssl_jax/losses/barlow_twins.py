"""Barlow Twins (Zbontar et al. 2021, eq. 1): drive the two views' cross-correlation to identity.

Each embedding dimension is standardised over the batch (BatchNorm1d without affine, training mode),
c = z1n^T z2n / N, and the loss is sum_i (1 - c_ii)^2 + lambd * sum_{i != j} c_ij^2.
"""

import jax
import jax.numpy as jnp


def barlow_twins(z1, z2, *, lambd=0.0051, axis_name=None):
  """Returns (loss, metrics) for embeddings z1, z2 of shape (n, d), row i of each a positive pair.

  Under `jit` pass global arrays and leave `axis_name` None. Inside `shard_map`/`pmap` pass the
  mapped axis: z1, z2 are this device's rows (equal count on every device) and the means, variances
  and c are all psum'd over the global batch, so the loss equals the unsharded one. Only (d,) and
  (d, d) sums cross devices, never the batch itself.
  """
  if z1.ndim != 2 or z1.shape != z2.shape:
    raise ValueError(f"z1 and z2 must both be (n, d); got {z1.shape} and {z2.shape}")
  n, d = z1.shape
  total = n if axis_name is None else n * jax.lax.axis_size(axis_name)
  z1 = _standardise(z1.astype(jnp.float32), total, axis_name)  # fp32 whatever the compute dtype
  z2 = _standardise(z2.astype(jnp.float32), total, axis_name)
  # HIGHEST: default TPU/GPU matmul precision rounds to bf16/tf32, which blurs c_ii near 1.
  c = _global_sum(jnp.matmul(z1.T, z2, precision=jax.lax.Precision.HIGHEST), axis_name) / total
  on_diag = jnp.diagonal(c)
  off_diag_sq = jnp.sum(jnp.where(jnp.eye(d, dtype=bool), 0.0, c * c))
  loss = jnp.sum((1.0 - on_diag) ** 2) + lambd * off_diag_sq
  return loss, {"on_diag": jnp.mean(on_diag), "off_diag": off_diag_sq / max(d * (d - 1), 1)}


def _standardise(z, total, axis_name):
  """Mean 0, biased variance 1 per dimension over the global batch; eps as torch's BatchNorm1d."""
  mean = _global_sum(jnp.sum(z, axis=0), axis_name) / total
  centred = z - mean
  var = _global_sum(jnp.sum(centred * centred, axis=0), axis_name) / total
  return centred * jax.lax.rsqrt(var + 1e-5)


def _global_sum(x, axis_name):
  return x if axis_name is None else jax.lax.psum(x, axis_name)
