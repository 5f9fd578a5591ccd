"""Colour ops on float images in [0, 1], channels last: SimCLR's colour jitter and grayscale.

Brightness, contrast, saturation and hue as torchvision defines them (contrast and saturation
about the ITU-R 601 luma, hue as a rotation in HSV space); 1-channel images pass through the
saturation and hue ops unchanged. `image_ops.augment_view` applies `color_jitter` and
`to_grayscale` per view.
"""

import jax
import jax.numpy as jnp

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision and PIL use for grayscale


def color_jitter(image, uniforms, *, strength):
  """SimCLR's colour distortion at strength s, its four ops in a random order, each clipped
  to [0, 1].

  `uniforms`: 8 numbers in [0, 1) (image_ops._JITTER_UNIFORMS) that fix the factors, the hue
  shift and the order.
  """
  u_factors, u_hue, u_order = jnp.split(uniforms, [3, 4])
  low = jnp.maximum(0.0, 1 - 0.8 * strength)
  factors = low + (1 + 0.8 * strength - low) * u_factors
  hue_delta = 0.2 * strength * (2 * u_hue[0] - 1)
  ops = (
      lambda x: adjust_brightness(x, factors[0]),
      lambda x: adjust_contrast(x, factors[1]),
      lambda x: adjust_saturation(x, factors[2]),
      lambda x: adjust_hue(x, hue_delta),
  )
  order = jnp.argsort(
      u_order
  )  # a uniformly random permutation, cheaper to compile than permutation()
  for step in range(len(ops)):  # unrolled: 3x faster than fori_loop on CPU, which cannot fuse steps
    image = jax.lax.switch(order[step], ops, image)  # under vmap all four ops run, then a select
  return image


def to_grayscale(image):
  """Luma of an (..., H, W, C) image, repeated to C channels."""
  return jnp.broadcast_to(_luma(image), image.shape)


def _luma(image):
  if image.shape[-1] == 1:
    return image
  return image @ jnp.asarray(_LUMA, image.dtype)[:, None]


def adjust_brightness(image, factor):
  """Multiplies by `factor`, as torchvision and SimCLR v2 do (SimCLR v1 added a delta instead)."""
  return jnp.clip(image * factor, 0, 1)


def adjust_contrast(image, factor):
  """Scales the distance from the image's mean luma, as torchvision does."""
  mean = jnp.mean(_luma(image), axis=(-3, -2, -1), keepdims=True)
  return jnp.clip(mean + factor * (image - mean), 0, 1)


def adjust_saturation(image, factor):
  """Scales the distance from each pixel's luma; a no-op for 1-channel images."""
  gray = _luma(image)
  return jnp.clip(gray + factor * (image - gray), 0, 1)


def adjust_hue(image, delta):
  """Rotates hue by `delta` turns (delta in [-0.5, 0.5]) in HSV space; a no-op for 1-channel
  images."""
  if image.shape[-1] == 1:
    return image
  hue, saturation, value = rgb_to_hsv(image)
  return jnp.clip(hsv_to_rgb(_wrap(hue + delta, 1), saturation, value), 0, 1)


def _wrap(x, period):
  """x mod period for period > 0; XLA's CPU remainder (jnp.mod) is ~4x slower than this."""
  return x - period * jnp.floor(x / period)


def rgb_to_hsv(image):
  """(..., 3) RGB -> hue in turns [0, 1), saturation, value; the same case split as colorsys."""
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  value = jnp.max(image, axis=-1)
  chroma = value - jnp.min(image, axis=-1)
  saturation = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1), 0)
  inverse_chroma = 1 / jnp.where(chroma > 0, chroma, 1)  # grey pixels: hue 0, and no 0/0 below
  rc, gc, bc = ((value - c) * inverse_chroma for c in (r, g, b))
  hue = jnp.where(r == value, bc - gc, jnp.where(g == value, 2 + rc - bc, 4 + gc - rc))
  hue = jnp.where(chroma > 0, _wrap(hue / 6, 1), 0)
  return hue, saturation, value


def hsv_to_rgb(hue, saturation, value):
  """Inverse of rgb_to_hsv, via the piecewise-linear form
  f(n) = v - v s clip(min(k, 4 - k), 0, 1)."""

  def channel(n):
    k = _wrap(n + 6 * hue, 6)
    return value - value * saturation * jnp.clip(jnp.minimum(k, 4 - k), 0, 1)

  return jnp.stack([channel(5), channel(3), channel(1)], axis=-1)
