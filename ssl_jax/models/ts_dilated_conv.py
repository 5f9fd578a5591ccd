"""TS2Vec's time-series encoder (Yue et al., AAAI 2022, Sec. 3.1): a dilated-convolution stack.

x (B, T, F) -> input projection to `hidden_dims` -> `depth` residual blocks of two dilated 1-D
convolutions (kernel 3, dilation 2^i, GELU before each) -> a final block (dilation 2^depth) to
`repr_dims` -> dropout 0.1 -> one representation per timestep (B, T, repr_dims). Called plainly the
encoder returns the series' representation, the max over time (B, repr_dims): the features every
evaluator reads. Missing values (NaN) zero their timestep's input and its projection, as the
reference does. Initialisation follows PyTorch's defaults, as the reference trains with them.

`valid` (B, T) marks a window inside a longer buffer: everything outside it is zeroed before every
convolution, so the window computes exactly what it would alone with zero padding. This is how a
jitted step encodes crops of random length in one static shape (tasks/ts2vec.py).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax import models


def torch_uniform(fan_in):
  """PyTorch's default Linear/Conv1d init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
  bias."""
  bound = 1.0 / np.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class Dense(nn.Module):
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    init = torch_uniform(x.shape[-1])
    kernel = self.param("kernel", init, (x.shape[-1], self.features))
    bias = self.param("bias", init, (self.features,))
    return x.astype(self.dtype) @ kernel.astype(self.dtype) + bias.astype(self.dtype)


class DilatedConv(nn.Module):
  """'Same' 1-D convolution, kernel k, dilation d, zero padding; x (B, T, C) -> (B, T, features).

  Taps that would only ever read padding (|offset| >= T) are skipped: they add exactly zero, and
  at dilations of 256-1024 on a series of a few hundred steps that is most of the block's work.
  The taps are one matmul on the shifted inputs side by side; XLA's own dilated convolution was
  slower in the training step on XLA:CPU (its kernel gradient, see experiments/conv_speed.md).
  """

  features: int
  dilation: int
  kernel_size: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, c = self.kernel_size, x.shape[-1]
    init = torch_uniform(c * k)
    kernel = self.param("kernel", init, (k, c, self.features)).astype(self.dtype)
    bias = self.param("bias", init, (self.features,)).astype(self.dtype)
    t = x.shape[1]
    offsets = [(j - (k - 1) // 2) * self.dilation for j in range(k)]
    taps = [j for j, off in enumerate(offsets) if abs(off) < t]
    x = x.astype(self.dtype)
    if len(taps) == 1:
      return x @ kernel[taps[0]] + bias
    shifted = [_shift(x, offsets[j]) for j in taps]  # shifted[t] = x[t + offset], zero outside
    return (
        jnp.concatenate(shifted, axis=-1) @ kernel[np.asarray(taps)].reshape(-1, self.features)
        + bias
    )


def _shift(x, offset):
  if offset == 0:
    return x
  t = x.shape[1]
  if offset > 0:
    return jnp.pad(x[:, offset:], ((0, 0), (0, offset), (0, 0)))
  return jnp.pad(x[:, : t + offset], ((0, 0), (-offset, 0), (0, 0)))


def _gelu(x):
  return nn.gelu(x, approximate=False)  # PyTorch's F.gelu default, which the reference uses


class ConvBlock(nn.Module):
  features: int
  dilation: int
  final: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, zero):
    project = x.shape[-1] != self.features or self.final
    residual = Dense(self.features, self.dtype, name="projector")(x) if project else x
    h = DilatedConv(self.features, self.dilation, dtype=self.dtype, name="conv1")(zero(_gelu(x)))
    h = DilatedConv(self.features, self.dilation, dtype=self.dtype, name="conv2")(zero(_gelu(h)))
    return h + residual


class TSEncoder(nn.Module):
  hidden_dims: int = 64
  repr_dims: int = 320
  depth: int = 10
  dropout: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train=False, *, per_timestep=False, keep=None, valid=None):
    """x (B, T, F) float (NaN: missing). keep (B, T) bool: timestamp mask (False zeroes the
    projected input; the task draws it). valid (B, T) bool: the window to encode (see above).
    Dropout runs when `train` (rng 'dropout'). Returns (B, T, repr_dims) if `per_timestep`, else
    the max over time (B, repr_dims) (over `valid` timesteps when given)."""
    if x.ndim != 3:
      raise ValueError(f"ts_dilated_conv expects series (B, T, F); got shape {x.shape}")
    present = ~jnp.any(jnp.isnan(x), axis=-1)  # a timestep with any NaN feature is missing
    h = Dense(self.hidden_dims, self.dtype, name="input_fc")(jnp.where(present[..., None], x, 0.0))
    kept = present
    for mask in (keep, valid):
      if mask is not None:
        kept = kept & mask
    h = jnp.where(kept[..., None], h, 0.0)
    if valid is None:
      zero = lambda a: a
    else:
      window = valid[..., None].astype(h.dtype)
      zero = lambda a: a * window
    for i in range(self.depth + 1):
      final = i == self.depth
      h = ConvBlock(
          self.repr_dims if final else self.hidden_dims, 2**i, final, self.dtype, name=f"block{i}"
      )(h, zero)
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    if per_timestep:
      return h
    if valid is not None:
      h = jnp.where(valid[..., None], h, -jnp.inf)
    return jnp.max(h, axis=1).astype(jnp.float32)


SETTINGS = ("depth", "hidden_dims", "repr_dims")  # config.model.*


def encoder(model_config):
  return TSEncoder(
      hidden_dims=model_config.hidden_dims,
      repr_dims=model_config.repr_dims,
      depth=model_config.depth,
      dtype=models.DTYPES[model_config.dtype],
  )
