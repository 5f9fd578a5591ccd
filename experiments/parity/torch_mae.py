"""MAE, the PyTorch peer: our ViT and MAE decoder rebuilt in torch, lightly's masking and patch
utilities, on our recipe.

  /tmp/parity_venv/bin/python experiments/parity/torch_mae.py --seed=0

lightly's MAE models need timm; the network here is written from ssl_jax/models/vit.py and
ssl_jax/tasks/mae.py, layer for layer: patch embedding by a strided convolution, fixed 2-D sin-cos
position embeddings, a class token (zeros) or average pooling, pre-norm blocks (LayerNorm eps
1e-6 as flax's, attention with separate query / key / value / output projections and an MLP with
tanh-approximated GELU, all Xavier-uniform, zero biases), a final LayerNorm; the decoder embeds
the encoded patches, puts a shared mask token (normal, std 0.02) at every masked position,
adds its own sin-cos table, runs its blocks and predicts each patch's pixels (3 channels; grey
digits are repeated). Masking: lightly's random_token_mask (the same number kept, int(N (1 -
ratio))); targets: lightly's patchify, get_at_index and normalize_mean_var (norm_pix); loss: mean
squared error over the masked patches. One view per image from the recipe's augment settings.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from lightly.models import utils as lu
from torch import nn

import torch_common as tc

VARIANTS = {"mu": (64, 2, 256, 2), "ti": (192, 12, 768, 3)}  # width, depth, MLP width, heads


def sincos_2d(grid, width, temperature=10_000.0):
  y, x = np.mgrid[:grid, :grid]
  omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1 or 1))
  y = y.reshape(-1)[:, None] * omega[None]
  x = x.reshape(-1)[:, None] * omega[None]
  table = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
  return torch.from_numpy(table.astype(np.float32))[None]


def linear(i, o):
  layer = nn.Linear(i, o)
  nn.init.xavier_uniform_(layer.weight)
  nn.init.zeros_(layer.bias)
  return layer


class Block(nn.Module):

  def __init__(self, width, mlp_dim, heads):
    super().__init__()
    self.heads = heads
    self.norm1, self.norm2 = nn.LayerNorm(width, eps=1e-6), nn.LayerNorm(width, eps=1e-6)
    self.q, self.k, self.v, self.o = (linear(width, width) for _ in range(4))
    self.fc1, self.fc2 = linear(width, mlp_dim), linear(mlp_dim, width)

  def forward(self, x):
    b, n, d = x.shape
    y = self.norm1(x)
    split = lambda t: t.view(b, n, self.heads, d // self.heads).transpose(1, 2)
    y = F.scaled_dot_product_attention(split(self.q(y)), split(self.k(y)), split(self.v(y)))
    x = x + self.o(y.transpose(1, 2).reshape(b, n, d))
    return x + self.fc2(F.gelu(self.fc1(self.norm2(x)), approximate="tanh"))


class ViT(nn.Module):

  def __init__(self, *, variant, patch_size, image_size, channels, pool):
    super().__init__()
    width, depth, mlp_dim, heads = VARIANTS[variant]
    self.width, self.pool, self.patch_size = width, pool, patch_size
    self.embedding = nn.Conv2d(channels, width, patch_size, patch_size)
    fan_in = channels * patch_size**2  # flax's Conv: LeCun truncated normal, zero bias
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(self.embedding.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(self.embedding.bias)
    self.register_buffer("pos", sincos_2d(image_size // patch_size, width))
    self.cls = nn.Parameter(torch.zeros(1, 1, width)) if pool == "cls" else None
    self.blocks = nn.ModuleList(Block(width, mlp_dim, heads) for _ in range(depth))
    self.norm = nn.LayerNorm(width, eps=1e-6)
    self.dim = width

  def embed(self, x):
    return self.embedding(x).flatten(2).transpose(1, 2) + self.pos

  def encode(self, tokens):
    if self.cls is not None:
      tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
    for block in self.blocks:
      tokens = block(tokens)
    return self.norm(tokens)

  def pooled(self, encoded):
    return encoded[:, 0] if self.cls is not None else encoded.mean(1)

  def forward(self, x):
    return self.pooled(self.encode(self.embed(x)))


class MAE:

  def __init__(self, recipe, data, seed):
    kw, m = recipe["task_kwargs"], recipe["model"]
    self.mask_ratio, self.norm_pix = kw["mask_ratio"], kw["norm_pix"]
    self.encoder = ViT(
        variant=m["variant"],
        patch_size=m["patch_size"],
        image_size=recipe["data"]["image_size"],
        channels=data["train_images"].shape[-1],
        pool=m["pool"],
    )
    width, patch = kw["decoder_width"], m["patch_size"]
    self.decoder_embed = tc.flax_dense_init_(nn.Linear(self.encoder.dim, width))
    self.mask_token = nn.Parameter(0.02 * torch.randn(1, 1, width))
    self.decoder_blocks = nn.ModuleList(
        Block(width, 4 * width, kw["decoder_heads"]) for _ in range(kw["decoder_depth"])
    )
    self.decoder_norm = nn.LayerNorm(width, eps=1e-6)
    self.decoder_pred = tc.flax_dense_init_(nn.Linear(width, patch**2 * 3))
    self.decoder_pos = sincos_2d(recipe["data"]["image_size"] // patch, width)
    self.modules = nn.ModuleDict(
        dict(
            encoder=self.encoder,
            decoder_embed=self.decoder_embed,
            decoder_blocks=self.decoder_blocks,
            decoder_norm=self.decoder_norm,
            decoder_pred=self.decoder_pred,
        )
    )
    self.modules.mask_token = self.mask_token
    self.views = tc.Views(recipe, seed)

  def step(self, step, images):
    x = self.views(step, images, num_views=1)[0]
    tokens = self.encoder.embed(x)
    b, n, _ = tokens.shape
    idx_keep, idx_mask = lu.random_token_mask((b, n), mask_ratio=self.mask_ratio)
    encoded = self.encoder.encode(lu.get_at_index(tokens, idx_keep))
    if self.encoder.cls is not None:
      encoded = encoded[:, 1:]
    y = self.decoder_embed(encoded)
    full = self.mask_token.expand(b, n, -1).clone()
    y = lu.set_at_index(full, idx_keep, y) + self.decoder_pos
    for block in self.decoder_blocks:
      y = block(y)
    predictions = lu.get_at_index(self.decoder_pred(self.decoder_norm(y)), idx_mask)
    rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    targets = lu.get_at_index(lu.patchify(rgb, self.encoder.patch_size), idx_mask)
    if self.norm_pix:
      targets = lu.normalize_mean_var(targets, dim=-1)
    return F.mse_loss(predictions, targets)


if __name__ == "__main__":
  tc.run("mae", MAE)
