"""ResNet encoders (He et al. 2016) with a width multiplier and a small-image stem.

The encoder maps images (B, H, W, C) in [0, 1] to pooled features (B, D).
BatchNorm reduces over the batch axis of the global (sharded) array inside the jitted step,
so its statistics are those of the global batch.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssl_jax import models
from ssl_jax.models import conv as conv_lib

STAGES = {
    10: ((1, 1, 1, 1), False),
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
}


def norm_layer(kind, dtype, train):
  if kind == "batch":
    return functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype
    )
  if kind == "group":
    return functools.partial(nn.GroupNorm, num_groups=None, group_size=16, dtype=dtype)
  raise ValueError(f"unknown norm {kind!r}; accepted: 'batch', 'group'")


class BasicBlock(nn.Module):
  features: int
  strides: int
  conv: Any
  norm: Any
  last_scale_init: Any = nn.initializers.zeros  # zero: the block starts as the identity

  @nn.compact
  def __call__(self, x):
    y = self.conv(self.features, (3, 3), strides=self.strides, padding=((1, 1), (1, 1)))(x)
    y = nn.relu(self.norm()(y))
    y = self.conv(self.features, (3, 3), padding=((1, 1), (1, 1)))(y)
    y = self.norm(scale_init=self.last_scale_init)(y)
    if x.shape != y.shape:
      x = self.norm()(self.conv(self.features, (1, 1), strides=self.strides, name="shortcut")(x))
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  features: int
  strides: int
  conv: Any
  norm: Any
  last_scale_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm()(self.conv(self.features, (1, 1))(x)))
    y = self.conv(self.features, (3, 3), strides=self.strides, padding=((1, 1), (1, 1)))(y)
    y = nn.relu(self.norm()(y))
    y = self.norm(scale_init=self.last_scale_init)(self.conv(self.features * 4, (1, 1))(y))
    if x.shape != y.shape:
      x = self.norm()(
          self.conv(self.features * 4, (1, 1), strides=self.strides, name="shortcut")(x)
      )
    return nn.relu(x + y)


class ResNet(nn.Module):
  """Encoder: images (B, H, W, C) in [0, 1] -> features (B, D)."""

  depth: int = 18
  width_multiplier: float = 1.0
  stem: str = "small"
  norm: str = "batch"
  conv_impl: str = "auto"
  dtype: Any = jnp.float32
  # each block's last BatchNorm scale starts at 0 (Goyal et al. 2017; SimCLR's TF code) or at 1
  # (torchvision's default, which lightly's and solo-learn's ResNets use)
  zero_init_residual: bool = True

  @nn.compact
  def __call__(self, x, train=False):
    if self.depth not in STAGES:
      raise ValueError(f"ResNet depth {self.depth} not supported; accepted: {sorted(STAGES)}")
    stage_sizes, bottleneck = STAGES[self.depth]
    conv = functools.partial(
        conv_lib.conv_class(self.conv_impl),
        use_bias=False,
        dtype=self.dtype,
        kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
    )
    norm = norm_layer(self.norm, self.dtype, train)
    width = max(8, int(64 * self.width_multiplier))
    x = x.astype(self.dtype)
    if self.stem in ("small", "small_stride2"):
      strides = 2 if self.stem == "small_stride2" else 1
      x = conv(width, (3, 3), strides=strides, padding=((1, 1), (1, 1)), name="stem")(x)
      x = nn.relu(norm()(x))
    elif self.stem == "imagenet":
      x = conv(width, (7, 7), strides=2, padding=((3, 3), (3, 3)), name="stem")(x)
      x = nn.relu(norm()(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      raise ValueError(
          f"unknown stem {self.stem!r}; accepted: 'small', 'small_stride2', 'imagenet'"
      )
    block = Bottleneck if bottleneck else BasicBlock
    last = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    for i, num_blocks in enumerate(stage_sizes):
      for j in range(num_blocks):
        x = block(
            width * 2**i,
            strides=2 if i > 0 and j == 0 else 1,
            conv=conv,
            norm=norm,
            last_scale_init=last,
        )(x)
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)


SETTINGS = (
    "depth",
    "width_multiplier",
    "stem",
    "norm",
    "conv_impl",
    "zero_init_residual",
)  # config.model.*


def encoder(model_config):
  """The registry's entry: a ResNet from config.model (depth, width, stem, norm, conv, dtype)."""
  return ResNet(
      depth=model_config.depth,
      width_multiplier=model_config.width_multiplier,
      stem=model_config.stem,
      norm=model_config.norm,
      conv_impl=model_config.conv_impl,
      dtype=models.DTYPES[model_config.dtype],
      zero_init_residual=model_config.zero_init_residual,
  )
