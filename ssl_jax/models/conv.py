"""2-D NHWC convolutions that train faster than `nn.Conv` on XLA:CPU, with `nn.Conv`'s parameters.

On XLA:CPU the forward and input-gradient convolutions run near the matmul peak, but the kernel
(weight) gradient of a large-spatial conv runs at 30-50 GFLOP/s: it contracts over batch*H*W in one
pass. 'wgrad' keeps XLA's forward and input gradient and computes the kernel gradient as per-tap dots
over micro-batches (`lax.scan`), which keeps each chunk's operands in cache.
Numbers and commands: experiments/conv_speed.md.
"""
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
# Rows (batch * out_h * out_w) per micro-batch of the kernel gradient.
_WGRAD_CHUNK_ROWS = 8192


def _xla(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DIMENSION_NUMBERS)


def _out_hw(x_padded_hw, kernel_hw, strides):
  return tuple((n - k) // s + 1 for n, k, s in zip(x_padded_hw, kernel_hw, strides))


def _taps(x, kernel_hw, strides, padding):
  """Yields ((i, j), x_padded[:, i::sh, j::sw, :] cropped to the output size) for every kernel tap."""
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  out_h, out_w = _out_hw(x.shape[1:3], kernel_hw, strides)
  for i in range(kernel_hw[0]):
    for j in range(kernel_hw[1]):
      end = (x.shape[0], i + strides[0] * (out_h - 1) + 1, j + strides[1] * (out_w - 1) + 1, x.shape[3])
      yield (i, j), lax.slice(x, (0, i, j, 0), end, (1, *strides, 1))


def _im2col(x, kernel, strides, padding):
  patches = jnp.concatenate([t for _, t in _taps(x, kernel.shape[:2], strides, padding)], axis=-1)
  return jnp.dot(patches, kernel.reshape(-1, kernel.shape[-1]))


def _tap_sum(x, kernel, strides, padding):
  return sum(jnp.dot(t, kernel[ij]) for ij, t in _taps(x, kernel.shape[:2], strides, padding))


def _kernel_grad(x, dy, kernel_shape, strides, padding):
  """d(conv)/d(kernel) as sum over micro-batches of per-tap (patch^T @ dy) dots."""
  rows_per_image = dy.shape[1] * dy.shape[2]
  images = max(1, min(x.shape[0], _WGRAD_CHUNK_ROWS // rows_per_image))
  while x.shape[0] % images:
    images -= 1
  chunks = x.shape[0] // images

  def one_chunk(x, dy):
    dy = dy.reshape(-1, dy.shape[-1])
    grads = [lax.dot_general(t.reshape(-1, t.shape[-1]), dy, (((0,), (0,)), ((), ())))
             for _, t in _taps(x, kernel_shape[:2], strides, padding)]
    return jnp.stack(grads).reshape(kernel_shape)

  if chunks == 1:
    return one_chunk(x, dy)
  split = lambda a: a.reshape(chunks, images, *a.shape[1:])
  body = lambda acc, xy: (acc + one_chunk(*xy), None)
  return lax.scan(body, jnp.zeros(kernel_shape, dy.dtype), (split(x), split(dy)))[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _wgrad(x, kernel, strides, padding):
  return _xla(x, kernel, strides, padding)


def _wgrad_fwd(x, kernel, strides, padding):
  return _xla(x, kernel, strides, padding), (x, kernel)


def _wgrad_bwd(strides, padding, residuals, dy):
  x, kernel = residuals
  _, input_vjp = jax.vjp(lambda x: _xla(x, kernel, strides, padding), x)
  return input_vjp(dy)[0], _kernel_grad(x, dy, kernel.shape, strides, padding)


_wgrad.defvjp(_wgrad_fwd, _wgrad_bwd)

_CHUNK_IMAGES = 32


def _chunked(x, kernel, strides, padding, images=None):
  images = images or _CHUNK_IMAGES
  if x.shape[0] <= images or x.shape[0] % images:
    return _xla(x, kernel, strides, padding)
  xs = x.reshape(-1, images, *x.shape[1:])
  y = lax.map(lambda x: _xla(x, kernel, strides, padding), xs)
  return y.reshape(-1, *y.shape[2:])

IMPLS: dict[str, Callable[..., jax.Array]] = {
    "xla": _xla, "im2col": _im2col, "taps": _tap_sum, "wgrad": _wgrad, "chunked": _chunked,
    "chunked8": functools.partial(_chunked, images=8), "chunked16": functools.partial(_chunked, images=16), "chunked64": functools.partial(_chunked, images=64)}


def _pairs(padding, in_hw, kernel_hw, strides) -> Padding:
  if isinstance(padding, str):
    if padding not in ("SAME", "VALID"):
      raise ValueError(f"conv padding {padding!r} not supported here; accepted: 'SAME', 'VALID', "
                       "an int, or ((top, bottom), (left, right))")
    return tuple(lax.padtype_to_pads(in_hw, kernel_hw, strides, padding))
  return tuple(tuple(p) for p in nn.linear.canonicalize_padding(padding, 2))


class Conv(nn.Module):
  """`nn.Conv` for 2-D NHWC inputs with a selectable implementation; same parameters and outputs.

  Named `Conv` so that auto-generated module names (Conv_0, ...) match `nn.Conv`'s.
  """
  features: int
  kernel_size: int | Sequence[int]
  strides: int | Sequence[int] = 1
  padding: Any = "SAME"
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  impl: str = "wgrad"

  @nn.compact
  def __call__(self, x):
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
    kernel_hw, strides = pair(self.kernel_size), pair(self.strides)
    if x.ndim != 4:
      raise ValueError(f"Conv(impl={self.impl!r}) takes NHWC inputs; got shape {x.shape}")
    kernel = self.param("kernel", self.kernel_init, (*kernel_hw, x.shape[-1], self.features),
                        self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = IMPLS[self.impl](x, kernel, strides, _pairs(self.padding, x.shape[1:3], kernel_hw, strides))
    return y if bias is None else y + bias


def conv_class(impl: str = "auto"):
  """A module class used like `nn.Conv(features, kernel_size, strides=..., padding=..., ...)`.

  impl: 'xla' (`nn.Conv`), one of IMPLS, or 'auto' ('wgrad' on CPU, 'xla' on GPU/TPU).
  """
  if impl == "auto":
    impl = "wgrad" if jax.default_backend() == "cpu" else "xla"
  if impl == "xla":
    return nn.Conv
  if impl not in IMPLS:
    raise ValueError(f"unknown conv_impl {impl!r}; accepted: 'auto', {', '.join(map(repr, IMPLS))}")
  return functools.partial(Conv, impl=impl)
