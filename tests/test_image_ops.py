"""Augmentations: shapes and range, per-example keys, exact special cases, colour ops against
numpy."""

import colorsys
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from ssl_jax.data import color_ops
from ssl_jax.data import image_ops

ALL_OFF = dict(flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0)
FULL_BOX = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))


def random_images(seed, shape=(8, 16, 16, 3)):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


@pytest.fixture(scope="module")
def images():
  return random_images(0)


@functools.cache
def _compiled(crop_size=None, num_views=2):
  """SimCLR defaults plus blur and solarise, so every op runs; one jit per setting, shared by
  tests."""
  return jax.jit(
      functools.partial(
          image_ops.augment_views,
          num_views=num_views,
          crop_size=crop_size,
          blur_prob=0.5,
          solarize_prob=0.3,
      )
  )


@pytest.fixture(scope="module")
def default_augment():
  return _compiled()


@pytest.fixture(scope="module")
def switched_augment():
  """Full-image box; the probabilities are traced arguments, so every on/off setting shares one
  compile.

  Uses a raw uint32 key, as the train state stores it; the other tests use typed keys.
  """

  @jax.jit
  def run(images, probs, threshold):
    return image_ops.augment_views(
        jax.random.PRNGKey(3), images, **FULL_BOX, **probs, solarize_threshold=threshold
    )

  return lambda images, threshold=0.5, **on: run(
      images, {k: jnp.float32(v) for k, v in {**ALL_OFF, **on}.items()}, jnp.float32(threshold)
  )


@pytest.mark.parametrize(
    "channels, dtype, crop_size, num_views",
    [(3, jnp.float32, None, 2), (1, jnp.float32, None, 2), (3, jnp.bfloat16, 12, 3)],
)
def test_shape_dtype_and_range(channels, dtype, crop_size, num_views):
  images = jnp.asarray(random_images(1, (8, 16, 16, channels)), dtype)
  views = np.asarray(_compiled(crop_size, num_views)(jax.random.key(0), images))
  size = crop_size or 16
  assert views.shape == (num_views, 8, size, size, channels)
  assert views.dtype == np.float32
  assert views.min() >= 0 and views.max() <= 1


def test_views_differ_across_examples_and_views(default_augment, images):
  same_image = np.repeat(images[:1], len(images), axis=0)  # only the keys can make these differ
  views = np.asarray(default_augment(jax.random.key(0), same_image))
  for i in range(len(images)):
    assert not np.allclose(views[0, i], views[1, i])
    for j in range(i):
      assert not np.allclose(views[0, i], views[0, j])


def test_reproducible_from_key(default_augment, images):
  first = np.asarray(default_augment(jax.random.key(7), images))
  np.testing.assert_array_equal(first, np.asarray(default_augment(jax.random.key(7), images)))
  assert not np.allclose(first, np.asarray(default_augment(jax.random.key(8), images)))


def test_example_views_do_not_depend_on_batch(default_augment, images):
  alone = np.asarray(default_augment(jax.random.key(5), images))
  in_bigger_batch = default_augment(jax.random.key(5), np.concatenate([images, random_images(9)]))
  np.testing.assert_allclose(np.asarray(in_bigger_batch)[:, : len(images)], alone, atol=1e-6)


def test_example_views_do_not_depend_on_sharding(default_augment, images):
  mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  sharded = jax.device_put(images, NamedSharding(mesh, P(("data", "fsdp"))))  # as train.py does
  np.testing.assert_allclose(
      np.asarray(default_augment(jax.random.key(5), sharded)),
      np.asarray(default_augment(jax.random.key(5), images)),
      atol=1e-6,
  )


def test_everything_off_is_identity(switched_augment, images):
  views = np.asarray(switched_augment(images))
  np.testing.assert_allclose(views, np.stack([images, images]), atol=1e-5)


def test_everything_off_is_identity_for_one_channel(switched_augment):
  images = random_images(2, (8, 16, 16, 1))
  views = np.asarray(switched_augment(images))
  np.testing.assert_allclose(views, np.stack([images, images]), atol=1e-5)


def test_grayscale_gives_equal_channels(switched_augment, images):
  views = np.asarray(switched_augment(images, grayscale_prob=1.0))
  np.testing.assert_allclose(views[..., 0], views[..., 1], atol=1e-6)
  np.testing.assert_allclose(views[..., 0], views[..., 2], atol=1e-6)
  np.testing.assert_allclose(views[0, ..., 0], images @ np.array([0.299, 0.587, 0.114]), atol=1e-5)


def test_solarize_at_threshold_zero_inverts(switched_augment, images):
  views = np.asarray(switched_augment(images, threshold=0.0, solarize_prob=1.0))
  np.testing.assert_allclose(views, np.stack([1 - images] * 2), atol=1e-5)


def test_flip_mirrors_width(switched_augment, images):
  views = np.asarray(switched_augment(images, flip_prob=1.0))
  np.testing.assert_allclose(views, np.stack([images[:, :, ::-1]] * 2), atol=1e-5)


def test_crop_box_fits_and_falls_back_to_centre():
  boxes = jax.jit(
      jax.vmap(image_ops._crop_box, in_axes=(0, None, None, None)), static_argnums=(1, 2, 3)
  )
  uniforms = np.random.default_rng(0).uniform(size=(200, 22)).astype(np.float32)
  top, left, height, width = map(np.asarray, boxes(uniforms, (16, 16), (0.08, 1.0), (3 / 4, 4 / 3)))
  assert np.all((top >= 0) & (left >= 0) & (top + height <= 16) & (left + width <= 16))
  assert np.all(height * width >= 0.08 * 256 * 0.8) and len(np.unique(height * width)) > 20
  # no 2:1 box of the full image's area fits a square image, so all tries fail
  centre = boxes(np.full((1, 22), 0.5, np.float32), (16, 16), (1.0, 1.0), (2.0, 2.0))
  assert [float(v[0]) for v in centre] == [4.0, 0.0, 8.0, 16.0]


def test_resized_crop_matches_numpy_bilinear():
  image = random_images(3, (1, 10, 10, 3))[0]
  top, left, height, width, size = 2.0, 1.0, 5.0, 7.0, 9
  ys = np.clip(top + (np.arange(size) + 0.5) * height / size - 0.5, 0, 9)
  xs = np.clip(left + (np.arange(size) + 0.5) * width / size - 0.5, 0, 9)
  expected = np.zeros((size, size, 3))
  for a, y in enumerate(ys):
    for b, x in enumerate(xs):
      y0, x0 = int(np.floor(y)), int(np.floor(x))
      y1, x1 = min(y0 + 1, 9), min(x0 + 1, 9)
      dy, dx = y - y0, x - x0
      expected[a, b] = (
          (1 - dy) * (1 - dx) * image[y0, x0]
          + (1 - dy) * dx * image[y0, x1]
          + dy * (1 - dx) * image[y1, x0]
          + dy * dx * image[y1, x1]
      )
  got = jax.jit(image_ops.resized_crop, static_argnums=2)(image, (top, left, height, width), size)
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)


PIXELS = np.array(
    [
        [0.9, 0.2, 0.1],
        [0.1, 0.8, 0.3],
        [0.2, 0.3, 0.7],
        [0.5, 0.5, 0.5],
        [1.0, 1.0, 0.0],
        [0.0, 0.0, 0.0],
        [0.3, 0.9, 0.9],
        [0.6, 0.1, 0.6],
    ],
    np.float32,
)


@pytest.mark.parametrize("delta", [0.1, -0.25, 0.5])
def test_adjust_hue_matches_colorsys(delta):
  expected = []
  for pixel in PIXELS:
    h, s, v = colorsys.rgb_to_hsv(*pixel)
    expected.append(colorsys.hsv_to_rgb((h + delta) % 1.0, s, v))
  got = jax.jit(color_ops.adjust_hue)(PIXELS.reshape(2, 4, 3), delta)
  np.testing.assert_allclose(np.asarray(got).reshape(-1, 3), np.array(expected), atol=1e-5)


def test_rgb_to_hsv_matches_colorsys():
  hue, saturation, value = jax.jit(color_ops.rgb_to_hsv)(PIXELS)
  expected = np.array([colorsys.rgb_to_hsv(*p) for p in PIXELS])
  np.testing.assert_allclose(np.stack([hue, saturation, value], -1), expected, atol=1e-6)


def test_brightness_contrast_saturation_match_numpy():
  image = random_images(4, (1, 6, 5, 3))[0]
  gray = image @ np.array([0.299, 0.587, 0.114])
  np.testing.assert_allclose(
      color_ops.adjust_brightness(image, 1.3), np.clip(image * 1.3, 0, 1), atol=1e-6
  )
  mean = gray.mean()
  np.testing.assert_allclose(
      color_ops.adjust_contrast(image, 0.6), np.clip(mean + 0.6 * (image - mean), 0, 1), atol=1e-6
  )
  gray = gray[..., None]
  np.testing.assert_allclose(
      color_ops.adjust_saturation(image, 1.5), np.clip(gray + 1.5 * (image - gray), 0, 1), atol=1e-6
  )
  one_channel = image[..., :1]
  np.testing.assert_allclose(color_ops.adjust_saturation(one_channel, 1.5), one_channel, atol=1e-6)
  np.testing.assert_array_equal(color_ops.adjust_hue(one_channel, 0.3), one_channel)
  np.testing.assert_allclose(
      color_ops.adjust_contrast(one_channel, 0.5),
      one_channel.mean() + 0.5 * (one_channel - one_channel.mean()),
      atol=1e-6,
  )


def test_color_jitter_at_strength_zero_is_identity():
  image = random_images(5, (1, 6, 6, 3))[0]
  jitter = jax.jit(functools.partial(color_ops.color_jitter, strength=0.0))
  np.testing.assert_allclose(jitter(image, jnp.linspace(0, 1, 8)), image, atol=1e-5)


def test_color_jitter_order_comes_from_its_uniforms():
  image = random_images(6, (1, 6, 6, 3))[0]
  jitter = jax.jit(functools.partial(color_ops.color_jitter, strength=1.0))
  factors_and_hue = [0.9, 0.1, 0.9, 0.8]
  forward = jitter(image, jnp.array(factors_and_hue + [0.1, 0.2, 0.3, 0.4]))
  backward = jitter(image, jnp.array(factors_and_hue + [0.4, 0.3, 0.2, 0.1]))
  assert not np.allclose(forward, backward, atol=1e-3)


def test_gaussian_blur_matches_separable_kernel():
  impulse = np.zeros((40, 40, 1), np.float32)
  impulse[20, 20] = 1
  sigma = 1.3
  offsets = np.arange(-2, 3)  # radius 40 // 20 = 2
  kernel = np.exp(-(offsets**2) / (2 * sigma**2))
  kernel /= kernel.sum()
  blur = jax.jit(image_ops.gaussian_blur)
  blurred = np.asarray(blur(impulse, sigma))[..., 0]
  np.testing.assert_allclose(blurred[18:23, 18:23], np.outer(kernel, kernel), atol=1e-6)
  assert abs(blurred.sum() - 1) < 1e-5
  flat = np.full((16, 16, 3), 0.4, np.float32)
  np.testing.assert_allclose(blur(flat, 2.0), flat, atol=1e-6)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((16, 16, 3), np.float32), "must be 4-D.*images\\[None\\]"),
        (np.zeros((2, 16, 16, 3), np.uint8), "dtype uint8.*float32 or bfloat16.*/ 255"),
        (np.zeros((2, 16, 16, 3), np.float64), "dtype float64.*float32 or bfloat16"),
        (np.zeros((2, 16, 16, 4), np.float32), "4 channels.*1 .*or 3"),
        (np.full((2, 16, 16, 3), 255.0, np.float32), "values lie in \\[255, 255\\].*\\[0, 1\\]"),
    ],
)
def test_bad_images_are_rejected(bad, message):
  with pytest.raises(ValueError, match=message):
    image_ops.check_images(bad)
  with pytest.raises(ValueError, match=message):
    image_ops.augment_views(jax.random.key(0), bad)


def test_bad_crop_parameters_are_rejected(images):
  with pytest.raises(ValueError, match="crop_scale"):
    image_ops.augment_view(jax.random.key(0), images[0], crop_scale=(1.0, 0.5))


def _numpy_sample(image, source):
  """Output pixel (i, j) = the image bilinearly sampled at source(i, j) = (y, x), zero outside."""
  h, w, _ = image.shape
  out = np.zeros_like(image)
  for i in range(h):
    for j in range(w):
      y, x = source(i, j)
      y0, x0 = int(np.floor(y)), int(np.floor(x))
      for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        yy, xx = y0 + dy, x0 + dx
        if 0 <= yy < h and 0 <= xx < w:
          out[i, j] += (1 - abs(y - yy)) * (1 - abs(x - xx)) * image[yy, xx]
  return out


def _numpy_affine(image, degrees, shear_degrees, shift):
  """Independent reference: every output pixel's source point by explicit 2x2 algebra, then bilinear
  interpolation with zero outside, one pixel at a time."""
  h, w, c = image.shape
  cy, cx = (h - 1) / 2, (w - 1) / 2
  t, s = np.deg2rad(degrees), np.deg2rad(shear_degrees)
  # (x right, y down): counter-clockwise as displayed, after x -> x - tan(s) y
  rotation = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
  forward = rotation @ np.array([[1, -np.tan(s)], [0, 1]])
  inverse = np.linalg.inv(forward)  # (x, y) offsets of the output -> those of the input

  def source(i, j):
    xi, yi = inverse @ np.array([j - cx - shift[1], i - cy - shift[0]])
    return yi + cy, xi + cx

  return _numpy_sample(image, source)


def test_affine_against_numpy_and_exact_cases():
  image = random_images(4, (1, 9, 9, 2))[0]
  warp = jax.jit(image_ops.affine)
  np.testing.assert_allclose(warp(image, 0.0, 0.0, jnp.zeros(2)), image, atol=1e-6)
  np.testing.assert_allclose(warp(image, 90.0, 0.0, jnp.zeros(2)), np.rot90(image), atol=1e-5)
  shifted = np.zeros_like(image)
  shifted[2:, :-1] = image[:-2, 1:]  # content moves 2 px down and 1 px left; zeros fill
  np.testing.assert_allclose(warp(image, 0.0, 0.0, jnp.array([2.0, -1.0])), shifted, atol=1e-5)
  for degrees, shear, shift in ((17.0, 0.0, (0.0, 0.0)), (-9.0, 12.0, (1.3, -0.4))):
    np.testing.assert_allclose(
        warp(image, degrees, shear, jnp.array(shift)),
        _numpy_affine(image, degrees, shear, shift),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "seed, key, warp_on, warp_off",
    [
        (
            6,
            2,
            dict(affine_prob=1.0, rotate_degrees=15.0, shear_degrees=10.0, translate=0.1),
            dict(affine_prob=1.0),
        ),
        (
            9,
            3,
            dict(elastic_prob=1.0, elastic_alpha=8.0, elastic_sigma=2.0),
            dict(elastic_prob=1.0),
        ),
    ],
    ids=["affine", "elastic"],
)
def test_warped_views_stay_in_range_and_leave_other_views_unchanged(seed, key, warp_on, warp_off):
  digits = random_images(seed, (4, 12, 12, 1))
  plain = jax.jit(functools.partial(image_ops.augment_views, **ALL_OFF))
  warped = jax.jit(functools.partial(image_ops.augment_views, **ALL_OFF, **warp_on))
  key = jax.random.key(key)
  a, b = np.asarray(plain(key, digits)), np.asarray(warped(key, digits))
  assert a.shape == b.shape and b.min() >= 0.0 and b.max() <= 1.0 + 1e-6
  assert not np.allclose(a, b)
  # the same crops underneath: the warp draws from its own key, so switching it on (at zero
  # strength) changes nothing else
  unwarped = jax.jit(functools.partial(image_ops.augment_views, **ALL_OFF, **warp_off))
  np.testing.assert_allclose(np.asarray(unwarped(key, digits)), a, atol=1e-5)


def _numpy_elastic(image, noise, alpha, sigma):
  """Independent reference: scipy's Gaussian filter (zero outside, 4 sigma) for the field, then
  bilinear interpolation with zero outside, one pixel at a time."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top

  field = alpha * np.stack(
      [
          ndimage.gaussian_filter(n, sigma, mode="constant", truncate=4.0)
          for n in noise.astype(np.float64)
      ]
  )
  return _numpy_sample(image, lambda i, j: (i + field[0, i, j], j + field[1, i, j]))


def test_elastic_against_numpy():
  image = random_images(7, (1, 12, 10, 2))[0]
  noise = np.random.default_rng(8).uniform(-1, 1, (2, 12, 10)).astype(np.float32)
  warp = jax.jit(image_ops.elastic, static_argnums=(2, 3))
  np.testing.assert_allclose(warp(image, noise, 0.0, 2.0), image, atol=1e-6)
  for alpha, sigma in ((6.0, 1.5), (20.0, 3.0)):
    np.testing.assert_allclose(
        warp(image, noise, alpha, sigma), _numpy_elastic(image, noise, alpha, sigma), atol=1e-5
    )
