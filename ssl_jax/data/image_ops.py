"""SimCLR's augmentations (Chen et al. 2020, appendix A) as batched JAX ops for the jitted train
step.

View v of example i draws from `fold_in(fold_in(key, v), i)`, with i its index in the global batch,
so a view depends only on the key and the example, never on how the batch is split over devices.
Order per view, as in SimCLR and BYOL: random resized crop, flip, colour jitter (random op order),
grayscale, blur, solarise. An optional random affine warp (rotation, shear, translation: views for
digits and other orientation-bound images) follows the crop, then an optional elastic distortion
(Simard et al. 2003: a smoothed random displacement field, the classical model of handwriting
variation); both are off by default and drawn from keys of their own, so views without them are
exactly what they were before they existed. Pixels are float32 in [0, 1], channels last, 1 or 3
channels. The colour ops (jitter, grayscale, HSV) are data/color_ops.py's.
"""

import math

import jax
import jax.scipy.ndimage  # noqa: F401  (affine warps)
import jax.numpy as jnp
import numpy as np

from ssl_jax.data.color_ops import color_jitter, to_grayscale

_CROP_TRIES = 10  # torchvision's RandomResizedCrop also gives up after 10 rejected boxes
_CROP_UNIFORMS = 2 * _CROP_TRIES + 2  # area and aspect per try, then top and left
_JITTER_UNIFORMS = 8  # three factors, the hue shift, four sort keys for the op order


def check_images(images, *, name="images"):
  """Raises ValueError unless `images` is a float32/bfloat16 (B, H, W, C) batch, C in {1, 3},
  in [0, 1].

  Shape and dtype are checked always (at trace time under jit); the value range only for
  concrete arrays, since a check on traced values would need a host sync inside the step.
  """
  shape = np.shape(images)
  dtype = getattr(images, "dtype", None)  # not jnp.result_type, which reports float64 as float32
  if len(shape) != 4:
    hint = "; add a batch axis with images[None]" if len(shape) == 3 else ""
    raise ValueError(
        f"{name} must be 4-D (batch, height, width, channels), got shape {shape}{hint}"
    )
  if dtype not in (jnp.float32, jnp.bfloat16):
    hint = (
        "; convert with images.astype(np.float32) / 255"
        if jnp.issubdtype(dtype, jnp.integer)
        else "; cast with images.astype(np.float32)"
    )
    raise ValueError(
        f"{name} has dtype {dtype}, expected float32 or bfloat16 with values in [0, 1]" f"{hint}"
    )
  if shape[-1] not in (1, 3):
    raise ValueError(
        f"{name} has {shape[-1]} channels (shape {shape}); expected 1 (grayscale) or "
        "3 (RGB), channels last"
    )
  if not isinstance(images, jax.core.Tracer) and images.size:
    low, high = float(jnp.min(images)), float(jnp.max(images))
    if low < 0 or high > 1:
      raise ValueError(
          f"{name} values lie in [{low:g}, {high:g}], expected [0, 1]; "
          "divide uint8 pixels by 255"
      )


def augment_views(key, images, *, num_views=2, **augment_kwargs):
  """images: float32 (B, H, W, C) in [0, 1], C in {1, 3}. Returns float32 (num_views, B, S, S, C).

  `augment_kwargs` are those of `augment_view` (crop_size, crop_scale, crop_ratio, flip_prob,
  jitter_prob, jitter_strength, grayscale_prob, blur_prob, blur_sigma, solarize_prob,
  solarize_threshold); S = crop_size or H.
  """
  check_images(images)
  images = images.astype(jnp.float32)
  batch_size = images.shape[0]
  # one flat vmap over (example, view) pairs compiles in half the time of two nested vmaps;
  # example-major order keeps a batch-sharded input sharded the same way, with no resharding
  indices, views = jnp.divmod(jnp.arange(batch_size * num_views), num_views)
  keys = jax.vmap(lambda i, v: jax.random.fold_in(jax.random.fold_in(key, v), i))(indices, views)
  pairs = jnp.broadcast_to(images[:, None], (batch_size, num_views, *images.shape[1:]))
  pairs = pairs.reshape(-1, *images.shape[1:])
  flat = jax.vmap(lambda k, x: augment_view(k, x, **augment_kwargs))(keys, pairs)
  return jnp.swapaxes(flat.reshape(batch_size, num_views, *flat.shape[1:]), 0, 1)


def augment_view(
    key,
    image,
    *,
    crop_size=None,
    crop_scale=(0.08, 1.0),
    crop_ratio=(3 / 4, 4 / 3),
    flip_prob=0.5,
    jitter_prob=0.8,
    jitter_strength=0.5,
    grayscale_prob=0.2,
    blur_prob=0.0,
    blur_sigma=(0.1, 2.0),
    solarize_prob=0.0,
    solarize_threshold=0.5,
    affine_prob=0.0,
    rotate_degrees=0.0,
    shear_degrees=0.0,
    translate=0.0,
    elastic_prob=0.0,
    elastic_alpha=0.0,
    elastic_sigma=4.0,
):
  """One view of one float (H, W, C) image in [0, 1]; returns float32 (S, S, C), S = crop_size or H.

  affine_prob: the chance of `affine` with an angle uniform in +-rotate_degrees, a shear uniform in
  +-shear_degrees and a shift uniform in +-translate of the size along each axis.
  elastic_prob: the chance of `elastic` with a field of strength elastic_alpha pixels smoothed over
  elastic_sigma pixels (Simard et al. use 34 and 4 on 28 px digits; a Python number, static).
  """
  if np.ndim(image) != 3:
    raise ValueError(
        f"augment_view takes one (H, W, C) image, got shape {np.shape(image)}; "
        "use augment_views for a batch"
    )
  check_images(image[None], name="image")
  if not 0 < crop_scale[0] <= crop_scale[1] or not 0 < crop_ratio[0] <= crop_ratio[1]:
    raise ValueError(
        f"need 0 < low <= high for crop_scale={crop_scale} and crop_ratio={crop_ratio}"
    )
  image = image.astype(jnp.float32)
  size = crop_size or image.shape[0]
  # one draw for the whole view: each separate RNG call adds ~0.5 s to XLA's CPU compile
  uniforms = jax.random.uniform(key, (_CROP_UNIFORMS + _JITTER_UNIFORMS + 6,))
  u_crop, u_jitter_ops, u_rest = jnp.split(
      uniforms, [_CROP_UNIFORMS, _CROP_UNIFORMS + _JITTER_UNIFORMS]
  )
  u_flip, u_jitter, u_gray, u_blur, u_sigma, u_solarize = u_rest
  box = _crop_box(u_crop, image.shape[:2], crop_scale, crop_ratio)
  image = resized_crop(image, box, size, flip=u_flip < flip_prob)
  if affine_prob > 0:
    u_affine = jax.random.uniform(jax.random.fold_in(key, 1), (5,))
    warp = lambda x: affine(
        x,
        rotate_degrees * (2 * u_affine[1] - 1),
        shear_degrees * (2 * u_affine[2] - 1),
        translate * size * (2 * u_affine[3:] - 1),
    )
    image = _maybe(u_affine[0], affine_prob, warp, image)
  if elastic_prob > 0:
    u_elastic, noise = jnp.split(
        jax.random.uniform(
            jax.random.fold_in(key, 2), (1 + 2 * size * size,), minval=-1.0, maxval=1.0
        ),
        [1],
    )
    distort = lambda x: elastic(x, noise.reshape(2, size, size), elastic_alpha, elastic_sigma)
    image = _maybe((u_elastic[0] + 1) / 2, elastic_prob, distort, image)
  jitter = lambda x: color_jitter(x, u_jitter_ops, strength=jitter_strength)
  image = _maybe(u_jitter, jitter_prob, jitter, image)
  image = _maybe(u_gray, grayscale_prob, to_grayscale, image)
  sigma = blur_sigma[0] + (blur_sigma[1] - blur_sigma[0]) * u_sigma
  image = _maybe(u_blur, blur_prob, lambda x: gaussian_blur(x, sigma), image)
  solarize = lambda x: jnp.where(x >= solarize_threshold, 1 - x, x)
  image = _maybe(u_solarize, solarize_prob, solarize, image)
  return jnp.clip(
      image, 0, 1
  )  # float rounding (luma weights sum to 1 + 1e-7) must not leave [0, 1]


def _maybe(uniform, prob, op, image):
  """op(image) with probability prob; an op whose prob is a Python 0 is not even traced."""
  if isinstance(prob, (int, float)) and prob <= 0:
    return image
  return jnp.where(uniform < prob, op(image), image)


def _crop_box(uniforms, image_shape, scale, ratio):
  """(top, left, height, width) in whole pixels from _CROP_UNIFORMS numbers in [0, 1), as
  torchvision's RandomResizedCrop draws them.

  All tries are drawn at once and the first box that fits wins (static shapes, no while loop);
  if none of the tries fits, a centre crop with the aspect ratio clamped into `ratio`.
  """
  height, width = image_shape
  u_area, u_ratio, (u_top, u_left) = jnp.split(uniforms, [_CROP_TRIES, 2 * _CROP_TRIES])
  area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
  log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(log_low + (log_high - log_low) * u_ratio)
  widths, heights = jnp.round(jnp.sqrt(area * aspect)), jnp.round(jnp.sqrt(area / aspect))
  fits = (widths >= 1) & (widths <= width) & (heights >= 1) & (heights <= height)
  first = jnp.argmax(fits)
  box_h, box_w = heights[first], widths[first]
  top, left = jnp.floor(u_top * (height - box_h + 1)), jnp.floor(u_left * (width - box_w + 1))
  sampled = (top, left, box_h, box_w)

  fallback_w, fallback_h = width, height
  if width / height < ratio[0]:
    fallback_h = round(width / ratio[0])
  elif width / height > ratio[1]:
    fallback_w = round(height * ratio[1])
  centre = ((height - fallback_h) // 2, (width - fallback_w) // 2, fallback_h, fallback_w)
  return tuple(jnp.where(fits.any(), s, float(c)) for s, c in zip(sampled, centre))


def resized_crop(image, box, size, *, flip=False):
  """Bilinear resize of image[top:top+h, left:left+w] to (size, size), optionally mirrored
  left-right.

  Bilinear resampling along one axis is a (size, H) matrix of tent weights, so the crop is two small
  matmuls. Chosen over jax.image.scale_and_translate (same output to 2e-6, same speed: 2.7-2.9 vs
  2.4-3.4 ms for 256 x 32x32x3 on 2 CPU cores) for being explicit, exact for the full box and
  flipping for free; map_coordinates took 16-19 ms. No antialiasing: with size = H crops only
  enlarge.
  """
  top, left, box_h, box_w = box
  rows = _tent_weights(top, box_h, image.shape[0], size)
  cols = _tent_weights(left, box_w, image.shape[1], size)
  cols = jnp.where(flip, cols[::-1], cols)  # mirroring the output columns costs nothing here
  return jnp.einsum("tw,swc->stc", cols, jnp.einsum("sh,hwc->swc", rows, image))


def affine(image, degrees, shear_degrees, shift):
  """`image` sheared along x (x -> x - tan(shear) y, y pointing down), rotated by `degrees`
  counter-clockwise as displayed, and shifted by `shift` = (dy, dx) pixels, about its centre;
  bilinear, zero fill (torchvision's RandomAffine default). Output pixel p samples the input at
  A^-1 (p - c - shift) + c, A the shear-then-rotation matrix.
  """
  height, width = image.shape[:2]
  cy, cx = (height - 1) / 2, (width - 1) / 2
  theta, shear = jnp.deg2rad(degrees), jnp.deg2rad(shear_degrees)
  y, x = jnp.meshgrid(
      jnp.arange(height) - cy - shift[0], jnp.arange(width) - cx - shift[1], indexing="ij"
  )
  # A^-1 = S^-1 R^-1 maps output offsets to input offsets
  x_in, y_in = jnp.cos(theta) * x - jnp.sin(theta) * y, jnp.sin(theta) * x + jnp.cos(theta) * y
  x_in = x_in + jnp.tan(shear) * y_in
  coords = [y_in + cy, x_in + cx]
  channels = [
      jax.scipy.ndimage.map_coordinates(image[..., k], coords, order=1, mode="constant", cval=0.0)
      for k in range(image.shape[-1])
  ]
  return jnp.stack(channels, axis=-1)


def gaussian_filter_matrix(size, sigma):
  """(size, size) matrix M with M @ v = v filtered by a Gaussian of `sigma` (a Python number)
  truncated at 4 sigma, the values beyond the edges taken as zero."""
  radius = max(1, int(4 * sigma + 0.5))
  offsets = np.arange(-radius, radius + 1)
  kernel = np.exp(-(offsets**2) / (2 * sigma**2))
  kernel /= kernel.sum()
  distance = np.arange(size)[None, :] - np.arange(size)[:, None]
  inside = np.abs(distance) <= radius
  return jnp.asarray(
      np.where(inside, kernel[np.clip(distance + radius, 0, 2 * radius)], 0.0), jnp.float32
  )


def elastic(image, noise, alpha, sigma):
  """`image` (H, W, C) distorted by a smooth random displacement field (Simard et al. 2003):
  `noise` (2, H, W) in [-1, 1] (the y and x components) filtered by a Gaussian of `sigma` pixels
  (`gaussian_filter_matrix`) and scaled by `alpha`; output pixel p samples the input at
  p + field(p), bilinear, zero fill."""
  height, width = image.shape[:2]
  rows, cols = gaussian_filter_matrix(height, sigma), gaussian_filter_matrix(width, sigma)
  field = alpha * jnp.einsum("hi,cij,wj->chw", rows, noise, cols)
  y, x = jnp.meshgrid(
      jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
  )
  coords = [y + field[0], x + field[1]]
  channels = [
      jax.scipy.ndimage.map_coordinates(image[..., k], coords, order=1, mode="constant", cval=0.0)
      for k in range(image.shape[-1])
  ]
  return jnp.stack(channels, axis=-1)


def _tent_weights(start, length, in_size, out_size):
  """(out_size, in_size) bilinear weights; pixel centres at +0.5 (align_corners=False), edges
  clamp."""
  centres = start + (jnp.arange(out_size) + 0.5) * length / out_size - 0.5
  centres = jnp.clip(centres, 0, in_size - 1)
  return jnp.maximum(0.0, 1 - jnp.abs(centres[:, None] - jnp.arange(in_size)))


def gaussian_blur(image, sigma):
  """Separable Gaussian blur of an (H, W, C) image, kernel ~10% of the image side as in SimCLR."""
  radius = max(1, min(image.shape[:2]) // 20)
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-(offsets**2) / (2 * jnp.maximum(sigma, 1e-3) ** 2))
  kernel = kernel / jnp.sum(kernel)
  for axis in (0, 1):
    pad = [(0, 0)] * image.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(image, pad, mode="edge")  # replicate borders so edges are not darkened
    size = image.shape[axis]
    image = sum(
        kernel[i] * jax.lax.slice_in_dim(padded, i, i + size, axis=axis)
        for i in range(2 * radius + 1)
    )
  return image
