"""Vision Transformer encoders (Dosovitskiy et al. 2021), in big_vision's `vit.py` structure.

Pre-norm blocks (LayerNorm -> attention -> residual, LayerNorm -> MLP -> residual), patch
embedding by a strided convolution, fixed 2-D sin-cos or learned position embeddings, a class
token or global average pooling. Sizes by name: ViT-Ti/S/B as published, plus `mu` (a 2-block,
width-64 model for CPU tests and tiny runs).

Besides `__call__` (images -> pooled features), MAE uses the pieces: `embed` (patch tokens with
position embeddings, no class token), and `encode` (blocks + final norm over any subset of tokens).
Attention and MLP are plain Dense layers, so the FSDP rule shards their kernels.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax import models

VARIANTS = {  # width, depth, MLP width, heads
    "mu": (64, 2, 256, 2),
    "ti": (192, 12, 768, 3),
    "s": (384, 12, 1536, 6),
    "b": (768, 12, 3072, 12),
}


def sincos_2d(grid_h, grid_w, width, temperature=10_000.0):
  """Fixed 2-D sin-cos position embeddings (MoCo v3, MAE), (grid_h * grid_w, width)."""
  if width % 4:
    raise ValueError(f"sin-cos 2-D position embeddings need a width divisible by 4, got {width}")
  y, x = np.mgrid[:grid_h, :grid_w]
  omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1 or 1))
  y = y.reshape(-1)[:, None] * omega[None]
  x = x.reshape(-1)[:, None] * omega[None]
  return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1).astype(np.float32)


class MlpBlock(nn.Module):
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    x = nn.gelu(
        nn.Dense(self.mlp_dim, dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform())(x)
    )
    return nn.Dense(width, dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform())(x)


class Block(nn.Module):
  mlp_dim: int
  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = nn.LayerNorm(dtype=self.dtype)(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform()
    )(y, y)
    x = x + y
    y = MlpBlock(self.mlp_dim, dtype=self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))
    return x + y


class ViT(nn.Module):
  """Images (B, H, W, C) in [0, 1] -> features (B, width)."""

  variant: str = "ti"
  patch_size: int = 16
  image_size: int = 224
  posemb: str = "sincos2d"  # sincos2d | learn
  pool: str = "cls"  # cls | gap
  dtype: Any = jnp.float32

  def setup(self):
    if self.variant not in VARIANTS:
      raise ValueError(f"ViT variant {self.variant!r}; accepted: {sorted(VARIANTS)}")
    if self.image_size % self.patch_size:
      raise ValueError(
          f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}"
      )
    if self.posemb not in ("sincos2d", "learn") or self.pool not in ("cls", "gap"):
      raise ValueError(
          f"ViT posemb={self.posemb!r} (accepted: sincos2d, learn), pool={self.pool!r} "
          "(accepted: cls, gap)"
      )
    width, depth, mlp_dim, heads = VARIANTS[self.variant]
    self.width = width
    self.grid = self.image_size // self.patch_size
    self.patch_embed = nn.Conv(
        width,
        (self.patch_size, self.patch_size),
        strides=self.patch_size,
        padding="VALID",
        dtype=self.dtype,
        name="embedding",
    )
    if self.posemb == "learn":
      self.pos_embedding = self.param(
          "pos_embedding", nn.initializers.normal(0.02), (1, self.grid * self.grid, width)
      )
    else:
      self.pos_embedding = jnp.asarray(sincos_2d(self.grid, self.grid, width))[None]
    if self.pool == "cls":
      self.cls = self.param("cls", nn.initializers.zeros, (1, 1, width))
    self.blocks = [Block(mlp_dim, heads, dtype=self.dtype, name=f"block{i}") for i in range(depth)]
    self.norm = nn.LayerNorm(dtype=self.dtype, name="encoder_norm")

  def embed(self, x):
    """Patch tokens plus position embeddings, (B, grid_h * grid_w, width).

    Other image sizes than `image_size` (DINO's local crops) get the sin-cos table of their own
    grid, or the learned table resized bilinearly, as DINO does for its ViTs.
    """
    if x.shape[1] % self.patch_size or x.shape[2] % self.patch_size:
      raise ValueError(
          f"ViT with {self.patch_size}px patches got {x.shape[1]}x{x.shape[2]} images; "
          f"sides must be multiples of {self.patch_size}"
      )
    tokens = self.patch_embed(x.astype(self.dtype))
    grid_h, grid_w = tokens.shape[1:3]
    tokens = tokens.reshape(x.shape[0], -1, self.width)
    pos = self.pos_embedding
    if (grid_h, grid_w) != (self.grid, self.grid):
      if self.posemb == "sincos2d":
        pos = jnp.asarray(sincos_2d(grid_h, grid_w, self.width))[None]
      else:
        table = pos.reshape(self.grid, self.grid, self.width)
        pos = jax.image.resize(table, (grid_h, grid_w, self.width), "bilinear").reshape(
            1, -1, self.width
        )
    return tokens + pos.astype(tokens.dtype)

  def encode(self, tokens):
    """Blocks and the final norm over (B, n, width) tokens (a class token is prepended for
    'cls')."""
    if self.pool == "cls":
      tokens = jnp.concatenate(
          [
              jnp.broadcast_to(self.cls, (tokens.shape[0], 1, self.width)).astype(tokens.dtype),
              tokens,
          ],
          axis=1,
      )
    for block in self.blocks:
      tokens = block(tokens)
    return self.norm(tokens)

  def pooled(self, encoded):
    return (encoded[:, 0] if self.pool == "cls" else jnp.mean(encoded, axis=1)).astype(jnp.float32)

  def __call__(self, x, train=False):
    del train  # no BatchNorm or dropout
    return self.pooled(self.encode(self.embed(x)))


SETTINGS = ("variant", "patch_size", "posemb", "pool")  # config.model.*


def encoder(model_config, *, image_size):
  """The registry's entry: config.model.variant / patch_size / posemb / pool, at the data's size."""
  return ViT(
      variant=model_config.variant,
      patch_size=model_config.patch_size,
      image_size=image_size,
      posemb=model_config.posemb,
      pool=model_config.pool,
      dtype=models.DTYPES[model_config.dtype],
  )
