"""2-D NHWC convolutions on XLA:CPU: which library runs them, and implementations with `nn.Conv`'s
parameters.

Library (`compiler_options`, `config.model.cpu_conv_library`): XLA:CPU in jaxlib 0.10 hands
convolutions to YNNPACK by default, which runs ResNet-18's kernel (weight) gradients at 5-70
GFLOP/s; its older Eigen convolutions run the same layers 3-18x faster (forward and input gradient
too). Every jitted function that runs a convolutional model passes `compiler_options(...)`, which on
the CPU backend keeps YNNPACK for dots and reductions and sends convolutions to Eigen ('eigen', the
default), or leaves XLA's default ('ynnpack'). Figures and commands: experiments/conv_speed.md.

Implementations (`conv_class`, `config.model.conv_impl`): 'xla' (`nn.Conv`) keeps XLA's forward,
input gradient and kernel gradient; 'materialised' is XLA's convolution whose kernel gradient reads
its input from a buffer XLA cannot fuse away (`_materialised` below: on XLA:CPU, ResNet-18's step
31.0-31.5 -> 41.8 images/s); 'wgrad' computes the kernel gradient as one im2col dot, patches^T @ dy,
contracting over batch * out_h * out_w (faster than YNNPACK's kernel gradient at 64 images per
step, slower at 256); 'im2col' is the plain baseline. 'auto' is 'xla' off the CPU; on XLA:CPU it
is 'materialised', except for output maps of at most 2x2 positions, which XLA rewrites into
convolutions that Eigen runs badly and which take 'im2col' (the main job's ResNet-10 reaches them
at 28 px).
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]

# XLA:CPU's YNNPACK fusion types by default in jaxlib 0.10 are individual dots, individual
# convolutions and reductions; 'eigen' keeps the other two.
_YNN_WITHOUT_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
CPU_CONV_LIBRARIES = ("eigen", "ynnpack")


def compiler_options(cpu_conv_library: str = "eigen", backend: str | None = None):
  """`jax.jit(..., compiler_options=...)` for a function that runs convolutions.

  On the CPU backend 'eigen' sends convolutions to XLA's Eigen runtime instead of YNNPACK (3-18x
  faster per layer on our 2-core CPUs, experiments/conv_speed.md); 'ynnpack' is XLA's default.
  Other backends: None (nothing to choose).
  """
  if cpu_conv_library not in CPU_CONV_LIBRARIES:
    raise ValueError(
        f"config.model.cpu_conv_library={cpu_conv_library!r}; accepted: "
        f"{', '.join(map(repr, CPU_CONV_LIBRARIES))}"
    )
  if (backend or jax.default_backend()) != "cpu" or cpu_conv_library == "ynnpack":
    return None
  return {"xla_cpu_experimental_ynn_fusion_type": _YNN_WITHOUT_CONVOLUTIONS}


_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _xla(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DIMENSION_NUMBERS)


def _out_hw(x_padded_hw, kernel_hw, strides):
  return tuple((n - k) // s + 1 for n, k, s in zip(x_padded_hw, kernel_hw, strides))


def _taps(x, kernel_hw, strides, padding):
  """Yields x_padded[:, i::sh, j::sw, :], cropped to the output size, for every
  kernel tap (i, j)."""
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  out_h, out_w = _out_hw(x.shape[1:3], kernel_hw, strides)
  for i in range(kernel_hw[0]):
    for j in range(kernel_hw[1]):
      end = (
          x.shape[0],
          i + strides[0] * (out_h - 1) + 1,
          j + strides[1] * (out_w - 1) + 1,
          x.shape[3],
      )
      yield lax.slice(x, (0, i, j, 0), end, (1, *strides, 1))


def _patches(x, kernel_hw, strides, padding):
  """(N, out_h, out_w, kh * kw * C) im2col patches, tap-major like the HWIO kernel's rows."""
  return jnp.concatenate(list(_taps(x, kernel_hw, strides, padding)), axis=-1)


def _im2col(x, kernel, strides, padding):
  return jnp.dot(
      _patches(x, kernel.shape[:2], strides, padding), kernel.reshape(-1, kernel.shape[-1])
  )


def _kernel_grad(x, dy, kernel_shape, strides, padding):
  """d(conv)/d(kernel) as one im2col dot, patches^T @ dy, contracting over batch * out_h * out_w."""
  patches = _patches(x, kernel_shape[:2], strides, padding)
  grad = lax.dot_general(
      patches.reshape(-1, patches.shape[-1]), dy.reshape(-1, dy.shape[-1]), (((0,), (0,)), ((), ()))
  )
  return grad.reshape(kernel_shape)


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


def _materialised(x, like):
  """`x` itself, as the output of a conditional that XLA cannot fold away.

  XLA:CPU lays a convolution's input out batch-minor for its kernel gradient (a transpose), and
  fuses the element-wise chain that produced the input (BatchNorm, residual add, ReLU) into that
  transpose, recomputing it in the transposed, strided order: 0.63 s against 0.04 s for the chain
  and 0.06 s for a plain transpose at (256, 32, 32, 64), about a third of ResNet-18's step
  (experiments/conv_speed.md). A conditional's output is a buffer, so the transpose reads memory.
  The predicate is true for every float, NaN included, but XLA does not know it; `like` is any
  array of the step (not a constant, which XLA would fold).
  """
  v = like.reshape(-1)[0]
  return lax.cond((v == v) | (v != v), lambda x: x, jnp.zeros_like, x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _xla_materialised(x, kernel, strides, padding):
  return _xla(x, kernel, strides, padding)


def _materialised_bwd(strides, padding, residuals, dy):
  x, kernel = residuals
  _, input_vjp = jax.vjp(lambda x: _xla(x, kernel, strides, padding), x)
  _, kernel_vjp = jax.vjp(lambda k: _xla(_materialised(x, dy), k, strides, padding), kernel)
  return input_vjp(dy)[0], kernel_vjp(dy)[0]


_xla_materialised.defvjp(_wgrad_fwd, _materialised_bwd)

TINY_MAP = 4  # output positions (a 2x2 map) up to which 'auto' uses im2col on XLA:CPU


def _auto(x, kernel, strides, padding):
  """XLA's convolution; on XLA:CPU with its kernel gradient reading a materialised input, and for
  outputs of at most TINY_MAP positions an im2col dot: XLA rewrites those (a 3x3 kernel over a
  padded 2x2 map) into forms that Eigen runs at ~6 GFLOP/s, and their im2col dot takes
  milliseconds (the main job's ResNet-10 step: 549 -> 933 images/s). Off the CPU a conditional
  would cost a device-to-host sync per layer, and there is no fusion to avoid."""
  if jax.default_backend() != "cpu":
    return _xla(x, kernel, strides, padding)
  padded = (x.shape[1] + sum(padding[0]), x.shape[2] + sum(padding[1]))
  out_h, out_w = _out_hw(padded, kernel.shape[:2], strides)
  impl = _im2col if out_h * out_w <= TINY_MAP else _xla_materialised
  return impl(x, kernel, strides, padding)


IMPLS: dict[str, Callable[..., jax.Array]] = {
    "xla": _xla,
    "im2col": _im2col,
    "wgrad": _wgrad,
    "materialised": _xla_materialised,
    "auto": _auto,
}


def _pairs(padding, in_hw, kernel_hw, strides) -> Padding:
  if isinstance(padding, str):
    if padding not in ("SAME", "VALID"):
      raise ValueError(
          f"conv padding {padding!r} not supported here; accepted: 'SAME', 'VALID', "
          "an int, or ((top, bottom), (left, right))"
      )
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
    kernel = self.param(
        "kernel", self.kernel_init, (*kernel_hw, x.shape[-1], self.features), self.param_dtype
    )
    bias = (
        self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        if self.use_bias
        else None
    )
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = IMPLS[self.impl](x, kernel, strides, _pairs(self.padding, x.shape[1:3], kernel_hw, strides))
    return y if bias is None else y + bias


@functools.cache
def _conv_with_impl(impl):
  # A subclass, not a partial: a real Module class, still named Conv for nn.Conv's auto-names.
  return type(
      "Conv",
      (Conv,),
      {
          "__annotations__": {"impl": str},
          "impl": impl,
          "__module__": __name__,
          "__qualname__": f"Conv[{impl}]",
      },
  )


def conv_class(impl: str = "auto"):
  """A module class used like `nn.Conv(features, kernel_size, strides=..., padding=..., ...)`.

  impl: 'xla' (`nn.Conv`), one of IMPLS, or 'auto': XLA's convolution (with Eigen's on the CPU,
  `compiler_options`), on the CPU with its kernel gradient reading a materialised input and im2col
  for maps of at most TINY_MAP output positions (`_auto`; experiments/conv_speed.md).
  """
  if impl == "xla":
    return nn.Conv
  if impl not in IMPLS:
    raise ValueError(f"unknown conv_impl {impl!r}; accepted: 'auto', {', '.join(map(repr, IMPLS))}")
  return _conv_with_impl(impl)


def describe(impl: str, cpu_conv_library: str, backend: str | None = None) -> str:
  """What a run's convolutions do on this backend, for its log."""
  backend = backend or jax.default_backend()
  if backend != "cpu":
    return f"convolutions: XLA's on {backend} (model.conv_impl={impl})"
  if impl == "auto":
    how = "kernel gradients from materialised inputs, im2col for maps of <= 2x2"
  else:
    how = f"model.conv_impl={impl}"
  return f"convolutions: XLA:CPU on {cpu_conv_library}, {how}"
