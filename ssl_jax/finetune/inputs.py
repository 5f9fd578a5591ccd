"""Per-modality model inputs for fine-tuning: preprocessing, and a light augmentation of the labels.

  images   uint8 (N, H, W, C)  -> float [0, 1] at `image_size`; augmented by a random-resized crop
                                  (scale `crop_scale`), a horizontal flip (`flip_prob`) and an
                                  elastic distortion (`elastic`: image_ops's elastic_* keywords)
  tokens   int (N, L)          -> unchanged; augmented by dropping a fraction of tokens (set to pad)
  series   float (N, T[, C])   -> unchanged; augmented by random scaling and Gaussian jitter
`strong` is the strong view semi-supervised fine-tuning trains on (finetune/fixmatch.py): images
get a wider crop, a random rotation, shear and shift, an elastic distortion on a share of the views
and a random erased square (Cutout, DeVries & Taylor 2017, as FixMatch's strong views end), each
as strong as `finetune.strong` says (config_schema.STRONG_IMAGES: the keys and defaults); tokens
and series get three times the weak view's dropping, scaling and jitter.
All are pure JAX and run inside the jitted step. `for_arrays` picks one by the data.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.config_schema import STRONG_IMAGES
from ssl_jax.data import image_ops


class Images:

  def __init__(
      self, *, image_size=None, crop_scale=(0.5, 1.0), flip_prob=0.0, elastic=None, strong=None
  ):
    self.image_size, self.crop_scale, self.flip_prob = image_size, tuple(crop_scale), flip_prob
    self.elastic = dict(elastic or {})
    unknown = set(strong or {}) - set(STRONG_IMAGES)
    if unknown:
      raise ValueError(
          f"finetune.strong has {sorted(unknown)}; accepted keys: {sorted(STRONG_IMAGES)}"
      )
    self.strong_settings = {**STRONG_IMAGES, **dict(strong or {})}

  def preprocess(self, x):
    x = x.astype(jnp.float32) / 255.0
    if self.image_size and x.shape[1] != self.image_size:
      x = jax.image.resize(
          x, (x.shape[0], self.image_size, self.image_size, x.shape[3]), "bilinear"
      )
    return x

  def augment(self, rng, x):
    return image_ops.augment_views(
        rng,
        x.astype(jnp.float32) / 255.0,
        num_views=1,
        crop_size=self.image_size,
        crop_scale=self.crop_scale,
        flip_prob=self.flip_prob,
        jitter_prob=0.0,
        grayscale_prob=0.0,
        blur_prob=0.0,
        solarize_prob=0.0,
        **self.elastic,
    )[0]

  def strong(self, rng, x):
    k_view, k_erase = jax.random.split(rng)
    s = self.strong_settings
    # a share of the views get the pre-training views' elastic distortion, where the data has one
    share = s["elastic_prob"] if self.elastic.get("elastic_alpha") else 0.0
    x = image_ops.augment_views(
        k_view,
        x.astype(jnp.float32) / 255.0,
        num_views=1,
        crop_size=self.image_size,
        crop_scale=tuple(s["crop_scale"]),
        flip_prob=self.flip_prob,
        jitter_prob=0.0,
        grayscale_prob=0.0,
        affine_prob=1.0,
        rotate_degrees=float(s["rotate_degrees"]),
        shear_degrees=float(s["shear_degrees"]),
        translate=float(s["translate"]),
        **{**self.elastic, "elastic_prob": share},
    )[0]
    return erase(k_erase, x, size=float(s["erase"])) if s["erase"] > 0 else x


def erase(rng, x, *, size):
  """Zeroes one square of side `size` * H per image (B, H, W, C), centred anywhere inside."""
  b, h, w = x.shape[:3]
  side = max(1, round(size * h))
  centre = jax.random.uniform(rng, (b, 2)) * jnp.array([h, w])
  rows, cols = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
  top, left = (centre[:, 0] - side / 2)[:, None, None], (centre[:, 1] - side / 2)[:, None, None]
  inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
  return jnp.where(inside[..., None], 0.0, x)


class Tokens:

  def __init__(self, *, pad_id=0, drop_prob=0.1):
    self.pad_id, self.drop_prob = pad_id, drop_prob

  def preprocess(self, x):
    return x

  def augment(self, rng, x):
    drop = jax.random.bernoulli(rng, self.drop_prob, x.shape).at[:, 0].set(False)  # keep [CLS]
    return jnp.where(drop, self.pad_id, x)

  def strong(self, rng, x):
    return Tokens(pad_id=self.pad_id, drop_prob=min(3 * self.drop_prob, 0.5)).augment(rng, x)


class Series:

  def __init__(self, *, jitter=0.03, scale=0.1):
    self.jitter, self.scale = jitter, scale

  def preprocess(self, x):
    return x.astype(jnp.float32)

  def augment(self, rng, x):
    x = x.astype(jnp.float32)
    k_scale, k_noise = jax.random.split(rng)
    factor = 1 + self.scale * jax.random.normal(k_scale, (x.shape[0],) + (1,) * (x.ndim - 1))
    std = jnp.nanstd(x, axis=tuple(range(1, x.ndim)), keepdims=True)  # NaN: missing values
    return x * factor + self.jitter * std * jax.random.normal(k_noise, x.shape)

  def strong(self, rng, x):
    return Series(jitter=3 * self.jitter, scale=3 * self.scale).augment(rng, x)


def elastic_of(config):
  """The elastic_* keywords of the fine-tuning augmentation: `finetune.elastic_prob` with the
  pre-training views' strength (`augment.elastic_alpha`, `augment.elastic_sigma`)."""
  return dict(
      elastic_prob=config.finetune.elastic_prob,
      elastic_alpha=config.augment.elastic_alpha,
      elastic_sigma=config.augment.elastic_sigma,
  )


def for_arrays(
    x,
    *,
    image_size=None,
    crop_scale=(0.5, 1.0),
    flip_prob=0.0,
    elastic=None,
    strong=None,
    pad_id=0,
):
  """The input kind of the data `x` (one of the three above), by dtype and rank."""
  x = np.asarray(x[:1])
  if x.dtype == np.uint8 and x.ndim == 4:
    return Images(
        image_size=image_size,
        crop_scale=crop_scale,
        flip_prob=flip_prob,
        elastic=elastic,
        strong=strong,
    )
  if np.issubdtype(x.dtype, np.integer) and x.ndim == 2:
    return Tokens(pad_id=pad_id)
  if np.issubdtype(x.dtype, np.floating) and x.ndim in (2, 3):
    return Series()
  raise ValueError(
      f"fine-tuning inputs of dtype {x.dtype} and shape (N,) + {x.shape[1:]} are none "
      "of: uint8 images (N, H, W, C), integer tokens (N, L), float series (N, T[, C])"
  )
