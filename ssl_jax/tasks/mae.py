"""MAE (He et al. 2022): mask most patches at random, encode the visible ones, reconstruct the rest.

Per-example random masking (`mask_ratio` of the patches, drawn from the step key): the ViT
encoder sees only the visible patches; a light decoder (its own width and depth) gets the
encoded patches plus a shared mask token at every masked position, with fixed sin-cos position
embeddings, and predicts each patch's pixels. The loss is on masked patches only, optionally on
per-patch normalised pixels (`norm_pix`). Views: random resized crop and flip (set
`config.augment`). Each evaluation writes `reconstructions.png` (rows: original, masked input,
reconstruction with the visible patches pasted back) into the workdir.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax import tasks
from ssl_jax.losses import mae as mae_lib
from ssl_jax.models import vit


class MAE(nn.Module):
  encoder: Any  # a models.vit.ViT
  decoder_width: int = 512
  decoder_depth: int = 8
  decoder_heads: int = 16
  mask_ratio: float = 0.75

  def setup(self):
    self.decoder_embed = nn.Dense(self.decoder_width, name="decoder_embed")
    self.mask_token = self.param(
        "mask_token", nn.initializers.normal(0.02), (1, 1, self.decoder_width)
    )
    self.decoder_blocks = [
        vit.Block(4 * self.decoder_width, self.decoder_heads, name=f"decoder_block{i}")
        for i in range(self.decoder_depth)
    ]
    self.decoder_norm = nn.LayerNorm(name="decoder_norm")
    self.decoder_pred = nn.Dense(self.encoder.patch_size**2 * 3, name="decoder_pred")

  def __call__(self, x, train=False, noise=None):
    """Returns (predicted patches (B, N, p*p*C_out), {"features", "mask"}); noise (B, N) orders
    the patches (the lowest are kept); without it the first patches are kept (initialisation)."""
    del train
    tokens = self.encoder.embed(x)
    batch, num_patches, _ = tokens.shape
    keep = max(1, int(round(num_patches * (1 - self.mask_ratio))))
    if noise is None:
      noise = jnp.broadcast_to(jnp.arange(num_patches, dtype=jnp.float32), (batch, num_patches))
    order = jnp.argsort(noise, axis=1)
    restore = jnp.argsort(order, axis=1)
    visible = jnp.take_along_axis(tokens, order[:, :keep, None], axis=1)
    encoded = self.encoder.encode(visible)
    features = self.encoder.pooled(encoded)
    if self.encoder.pool == "cls":
      encoded = encoded[:, 1:]
    y = self.decoder_embed(encoded)
    y = jnp.concatenate(
        [y, jnp.broadcast_to(self.mask_token, (batch, num_patches - keep, y.shape[-1]))], 1
    )
    y = jnp.take_along_axis(y, restore[:, :, None], axis=1)  # back to image order
    grid = int(round(num_patches**0.5))
    y = y + jnp.asarray(vit.sincos_2d(grid, grid, self.decoder_width))[None]
    for block in self.decoder_blocks:
      y = block(y)
    predictions = self.decoder_pred(self.decoder_norm(y))
    mask = (restore >= keep).astype(jnp.float32)  # 1 where the patch was hidden
    return predictions, {"features": features, "mask": mask}


class Task(tasks.Task):

  def __init__(
      self,
      *,
      mask_ratio=0.75,
      norm_pix=True,
      decoder_width=512,
      decoder_depth=8,
      decoder_heads=16,
      **context,
  ):
    super().__init__(**context)
    if not 0 < mask_ratio < 1:
      raise ValueError(f"task_kwargs.mask_ratio={mask_ratio} must be in (0, 1)")
    self.mask_ratio, self.norm_pix = mask_ratio, norm_pix
    self.decoder = dict(
        decoder_width=decoder_width, decoder_depth=decoder_depth, decoder_heads=decoder_heads
    )

  def model(self, encoder):
    if not isinstance(encoder, vit.ViT):
      raise ValueError(f"task 'mae' needs config.model.name='vit', got {type(encoder).__name__}")
    return MAE(encoder, mask_ratio=self.mask_ratio, **self.decoder)

  def loss(self, model, variables, task_state, batch, rng, step):
    views = self.views(rng, batch["inputs"], num_views=1)[0]
    predictions, aux = self._forward(model, variables, views, jax.random.fold_in(rng, 1))
    targets = self._targets(model, views)
    loss, metrics = mae_lib.mae_loss(predictions, targets, aux["mask"], norm_pix=self.norm_pix)
    return loss, (metrics, {}, {"features": aux["features"]})

  def _forward(self, model, variables, images, rng):
    num_patches = (images.shape[1] // model.encoder.patch_size) ** 2
    noise = jax.random.uniform(rng, (images.shape[0], num_patches))
    return model.apply(variables, images, noise=noise)

  def _targets(self, model, images):
    patches = mae_lib.patchify(images, model.encoder.patch_size)
    if images.shape[-1] == 1:  # the decoder predicts 3 channels; grey images are repeated
      patches = mae_lib.patchify(jnp.repeat(images, 3, axis=-1), model.encoder.patch_size)
    return patches

  def artifacts(self, model, variables, task_state, images, rng):
    """reconstructions.png: rows of originals, masked inputs and reconstructions."""
    predictions, aux = self._forward(model, variables, images, rng)
    images = jnp.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images  # as the targets
    patch = model.encoder.patch_size
    targets = mae_lib.patchify(images, patch)
    if self.norm_pix:  # undo the per-patch normalisation with the true patch statistics
      mean = jnp.mean(targets, axis=-1, keepdims=True)
      std = jnp.sqrt(jnp.var(targets, axis=-1, keepdims=True, ddof=1) + 1e-6)
      predictions = predictions * std + mean
    mask = aux["mask"][..., None]
    grid = images.shape[1] // patch
    masked = mae_lib.unpatchify(targets * (1 - mask) + 0.5 * mask, patch, 3, grid)
    pasted = mae_lib.unpatchify(targets * (1 - mask) + predictions * mask, patch, 3, grid)
    rows = [jnp.concatenate(list(r), axis=1) for r in (images, masked, jnp.clip(pasted, 0, 1))]
    return {"reconstructions.png": jnp.concatenate(rows, axis=0)}
