"""SimSiam's loss (Chen & He 2021, eq. 2): L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2.

D is the negative cosine similarity, averaged over examples; sg is the stop-gradient that the paper
shows is what keeps the siamese network from collapsing.
"""

import jax
import jax.numpy as jnp


def simsiam(p1, p2, z1, z2, *, axis_name=None):
  """Returns (loss, metrics) for predictor outputs p1, p2 and projections z1, z2, all (n, d).

  Gradients never reach z (stop_gradient here, so a caller that forgets it is still correct).
  Under `jit` pass global arrays and leave `axis_name` None. Inside `shard_map`/`pmap` pass the
  mapped axis: means (equal batch per device) and the std metric cover the global batch.

  Metric "output_std" is the paper's collapse indicator: the per-dimension std over the batch (both
  views) of z / |z|, averaged over dimensions; about 1/sqrt(d) when healthy, 0 when collapsed.
  """
  if p1.ndim != 2 or not p1.shape == p2.shape == z1.shape == z2.shape:
    raise ValueError(
        "p1, p2, z1, z2 must all be (n, d) with one shape; got "
        f"{p1.shape}, {p2.shape}, {z1.shape} and {z2.shape}"
    )
  z1 = _normalise(jax.lax.stop_gradient(z1).astype(jnp.float32))  # fp32 whatever the compute dtype
  z2 = _normalise(jax.lax.stop_gradient(z2).astype(jnp.float32))
  cosine = 0.0
  for p, z in ((p1, z2), (p2, z1)):
    cosine += jnp.mean(jnp.sum(_normalise(p.astype(jnp.float32)) * z, axis=-1)) / 2
  if axis_name is not None:
    cosine = jax.lax.pmean(cosine, axis_name)
  output_std = _output_std(jnp.concatenate([z1, z2]), axis_name)
  return -cosine, {"cosine": cosine, "output_std": output_std}


def _output_std(z, axis_name):
  """Biased std per dimension over the global batch (two passes, so no cancellation), then mean."""
  total = z.shape[0] if axis_name is None else z.shape[0] * jax.lax.axis_size(axis_name)
  global_sum = (lambda x: x) if axis_name is None else (lambda x: jax.lax.psum(x, axis_name))
  centred = z - global_sum(jnp.sum(z, axis=0)) / total
  return jnp.mean(jnp.sqrt(global_sum(jnp.sum(centred * centred, axis=0)) / total))


def _normalise(x):
  """Unit rows; the floor keeps a zero row at zero instead of NaN."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))
