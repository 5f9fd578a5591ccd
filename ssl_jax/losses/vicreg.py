"""VICReg (Bardes et al. 2022): invariance, variance and covariance terms on two views' embeddings.

invariance = mean squared distance between the views; variance = hinge keeping each dimension's
std (unbiased, over the batch) above 1; covariance = squared off-diagonal covariances / d. The
variance and covariance terms are computed per branch and summed.
"""

import jax
import jax.numpy as jnp


def vicreg(z1, z2, *, sim_weight=25.0, var_weight=25.0, cov_weight=1.0, axis_name=None):
  """Returns (loss, metrics) for embeddings z1, z2 of shape (n, d), row i of each a positive pair.

  Under `jit` pass global arrays and leave `axis_name` None. Inside `shard_map`/`pmap` pass the
  mapped axis: z1, z2 are this device's rows (equal count on every device) and every statistic is
  psum'd over the global batch, so the loss equals the unsharded one. Metrics are unweighted terms.
  """
  if z1.ndim != 2 or z1.shape != z2.shape:
    raise ValueError(f"z1 and z2 must both be (n, d); got {z1.shape} and {z2.shape}")
  n, d = z1.shape
  total = n if axis_name is None else n * jax.lax.axis_size(axis_name)
  if total < 2:
    raise ValueError(f"vicreg needs a global batch of at least 2 (unbiased variance); got {total}")
  z1 = z1.astype(jnp.float32)  # fp32 whatever the compute dtype
  z2 = z2.astype(jnp.float32)
  invariance = _global_sum(jnp.sum((z1 - z2) ** 2), axis_name) / (total * d)
  variance, covariance = 0.0, 0.0
  for z in (z1, z2):
    centred = z - _global_sum(jnp.sum(z, axis=0), axis_name) / total
    # HIGHEST: default TPU/GPU matmul precision rounds to bf16/tf32; the diagonal feeds the std too.
    cov = _global_sum(
        jnp.matmul(centred.T, centred, precision=jax.lax.Precision.HIGHEST), axis_name
    ) / (total - 1)
    std = jnp.sqrt(jnp.diagonal(cov) + 1e-4)
    variance += jnp.mean(jax.nn.relu(1.0 - std)) / 2
    covariance += jnp.sum(jnp.where(jnp.eye(d, dtype=bool), 0.0, cov * cov)) / d
  loss = sim_weight * invariance + var_weight * variance + cov_weight * covariance
  return loss, {"invariance": invariance, "variance": variance, "covariance": covariance}


def _global_sum(x, axis_name):
  return x if axis_name is None else jax.lax.psum(x, axis_name)
