"""MAE's reconstruction loss (He et al. 2022): mean squared error on the masked patches only.

With `norm_pix`, each target patch is standardised by its own mean and (unbiased) variance, the
paper's "normalized pixels" target, which it reports as better for representations.
"""

import jax
import jax.numpy as jnp


def patchify(images, patch_size):
  """(B, H, W, C) -> (B, H/p * W/p, p * p * C), patches in row-major order like a ViT's tokens."""
  b, h, w, c = images.shape
  if h % patch_size or w % patch_size:
    raise ValueError(f"images {images.shape} do not divide into {patch_size}px patches")
  x = images.reshape(b, h // patch_size, patch_size, w // patch_size, patch_size, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // patch_size) * (w // patch_size), -1)


def unpatchify(patches, patch_size, channels, grid):
  """Inverse of patchify for a (grid x grid) layout."""
  b = patches.shape[0]
  x = patches.reshape(b, grid, grid, patch_size, patch_size, channels)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, grid * patch_size, grid * patch_size, channels)


def mae_loss(predictions, target_patches, mask, *, norm_pix=True, axis_name=None):
  """Returns (loss, metrics). predictions, target_patches (B, N, P); mask (B, N), 1 = masked.

  The loss is the squared error averaged over the values of a patch, then over every masked
  patch of the global batch (under `shard_map`, pass the axis: numerator and count are psum'd).
  """
  if predictions.shape != target_patches.shape or mask.shape != predictions.shape[:2]:
    raise ValueError(
        f"predictions {predictions.shape} and target_patches {target_patches.shape} "
        f"must match, and mask {mask.shape} must be their (B, N)"
    )
  target = target_patches.astype(jnp.float32)
  if norm_pix:
    mean = jnp.mean(target, axis=-1, keepdims=True)
    var = jnp.var(target, axis=-1, keepdims=True, ddof=1)
    target = (target - mean) * jax.lax.rsqrt(var + 1e-6)
  per_patch = jnp.mean((predictions.astype(jnp.float32) - target) ** 2, axis=-1)
  mask = mask.astype(jnp.float32)
  total, count = jnp.sum(per_patch * mask), jnp.sum(mask)
  visible_error = jnp.sum(per_patch * (1 - mask))
  visible_count = jnp.sum(1 - mask)
  if axis_name is not None:
    total, count, visible_error, visible_count = jax.lax.psum(
        (total, count, visible_error, visible_count), axis_name
    )
  loss = total / jnp.maximum(count, 1)
  return loss, {
      "masked_fraction": count / (count + visible_count),
      "visible_patch_error": visible_error / jnp.maximum(visible_count, 1),
  }
