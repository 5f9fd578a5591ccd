"""Augmentation ops: shapes and range, per-example keys, exact special cases, colour ops against numpy."""
import colorsys
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from ssl_jax.data import image_ops

ALL_OFF = dict(flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0)
FULL_BOX = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))


def random_images(seed, shape=(8, 16, 16, 3)):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


@pytest.fixture(scope="module")
def images():
  return random_images(0)


@pytest.fixture(scope="module")
def default_augment():
  """SimCLR defaults plus blur and solarise, so every op is exercised; compiled once per input shape."""
  return jax.jit(functools.partial(image_ops.augment_views, blur_prob=0.5, solarize_prob=0.2))


@pytest.fixture(scope="module")
def switched_augment():
  """Full-image box; the probabilities are traced arguments, so every on/off setting shares one compile."""
  @jax.jit
  def run(images, probs, threshold):
    return image_ops.augment_views(jax.random.key(3), images, **FULL_BOX, **probs,
                                   solarize_threshold=threshold)
  return lambda images, threshold=0.5, **on: run(
      images, {k: jnp.float32(v) for k, v in {**ALL_OFF, **on}.items()}, jnp.float32(threshold))


@pytest.mark.parametrize("channels, crop_size", [(3, None), (1, None), (3, 12)])
def test_shape_dtype_and_range(channels, crop_size):
  images = random_images(1, (8, 16, 16, channels))
  augment = jax.jit(functools.partial(image_ops.augment_views, num_views=3, crop_size=crop_size,
                                      blur_prob=0.5, solarize_prob=0.5))
  views = np.asarray(augment(jax.random.key(0), images))
  size = crop_size or 16
  assert views.shape == (3, 8, size, size, channels)
  assert views.dtype == np.float32
  assert views.min() >= 0 and views.max() <= 1
  assert np.all(np.isfinite(views))


def test_bfloat16_input_gives_float32(default_augment, images):
  views = default_augment(jax.random.key(0), jnp.asarray(images, jnp.bfloat16))
  assert views.dtype == jnp.float32 and views.shape == (2, *images.shape)


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
  np.testing.assert_allclose(np.asarray(in_bigger_batch)[:, :len(images)], alone, atol=1e-6)


def test_example_views_do_not_depend_on_sharding(default_augment, images):
  mesh = jax.make_mesh((jax.device_count(),), ("batch",))
  sharded = jax.device_put(images, NamedSharding(mesh, P("batch")))
  np.testing.assert_allclose(np.asarray(default_augment(jax.random.key(5), sharded)),
                             np.asarray(default_augment(jax.random.key(5), images)), atol=1e-6)


def test_everything_off_is_identity(switched_augment, images):
  views = np.asarray(switched_augment(images))
  np.testing.assert_allclose(views, np.stack([images, images]), atol=1e-5)


def test_everything_off_is_identity_for_one_channel(switched_augment):
  images = random_images(2, (8, 16, 16, 1))
  views = np.asarray(switched_augment(images, jitter_prob=0.0))
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
  boxes = jax.vmap(lambda k: jnp.stack(image_ops._crop_box(k, (16, 16), (0.08, 1.0), (3 / 4, 4 / 3))))(
      jax.random.split(jax.random.key(0), 200))
  top, left, height, width = np.asarray(boxes).T
  assert np.all((top >= 0) & (left >= 0) & (top + height <= 16) & (left + width <= 16))
  assert np.all(height * width >= 0.08 * 256 * 0.8) and len(np.unique(height * width)) > 20
  # no 2:1 box of the full image's area fits a square image, so all tries fail
  centre = image_ops._crop_box(jax.random.key(1), (16, 16), (1.0, 1.0), (2.0, 2.0))
  assert [float(v) for v in centre] == [4.0, 0.0, 8.0, 16.0]


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
      expected[a, b] = ((1 - dy) * (1 - dx) * image[y0, x0] + (1 - dy) * dx * image[y0, x1]
                        + dy * (1 - dx) * image[y1, x0] + dy * dx * image[y1, x1])
  got = image_ops.resized_crop(jnp.asarray(image), (top, left, height, width), size)
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)


PIXELS = np.array([[0.9, 0.2, 0.1], [0.1, 0.8, 0.3], [0.2, 0.3, 0.7], [0.5, 0.5, 0.5],
                   [1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.3, 0.9, 0.9], [0.6, 0.1, 0.6]], np.float32)


@pytest.mark.parametrize("delta", [0.1, -0.25, 0.5])
def test_adjust_hue_matches_colorsys(delta):
  expected = []
  for pixel in PIXELS:
    h, s, v = colorsys.rgb_to_hsv(*pixel)
    expected.append(colorsys.hsv_to_rgb((h + delta) % 1.0, s, v))
  got = image_ops.adjust_hue(jnp.asarray(PIXELS).reshape(2, 4, 3), delta)
  np.testing.assert_allclose(np.asarray(got).reshape(-1, 3), np.array(expected), atol=1e-5)


def test_rgb_to_hsv_matches_colorsys():
  hue, saturation, value = image_ops.rgb_to_hsv(jnp.asarray(PIXELS))
  expected = np.array([colorsys.rgb_to_hsv(*p) for p in PIXELS])
  np.testing.assert_allclose(np.stack([hue, saturation, value], -1), expected, atol=1e-6)


def test_brightness_contrast_saturation_match_numpy():
  image = random_images(4, (1, 6, 5, 3))[0]
  gray = image @ np.array([0.299, 0.587, 0.114])
  np.testing.assert_allclose(image_ops.adjust_brightness(image, 1.3), np.clip(image * 1.3, 0, 1), atol=1e-6)
  mean = gray.mean()
  np.testing.assert_allclose(image_ops.adjust_contrast(image, 0.6),
                             np.clip(mean + 0.6 * (image - mean), 0, 1), atol=1e-6)
  np.testing.assert_allclose(image_ops.adjust_saturation(image, 1.5),
                             np.clip(gray[..., None] + 1.5 * (image - gray[..., None]), 0, 1), atol=1e-6)
  one_channel = image[..., :1]
  np.testing.assert_allclose(image_ops.adjust_saturation(one_channel, 1.5), one_channel, atol=1e-6)
  np.testing.assert_array_equal(image_ops.adjust_hue(one_channel, 0.3), one_channel)
  np.testing.assert_allclose(image_ops.adjust_contrast(one_channel, 0.5),
                             one_channel.mean() + 0.5 * (one_channel - one_channel.mean()), atol=1e-6)


def test_color_jitter_at_strength_zero_is_identity():
  image = random_images(5, (1, 6, 6, 3))[0]
  np.testing.assert_allclose(image_ops.color_jitter(jax.random.key(0), image, 0.0), image, atol=1e-5)


def test_gaussian_blur_matches_separable_kernel():
  impulse = np.zeros((40, 40, 1), np.float32)
  impulse[20, 20] = 1
  sigma = 1.3
  offsets = np.arange(-2, 3)  # radius 40 // 20 = 2
  kernel = np.exp(-offsets ** 2 / (2 * sigma ** 2))
  kernel /= kernel.sum()
  blurred = np.asarray(image_ops.gaussian_blur(impulse, sigma))[..., 0]
  np.testing.assert_allclose(blurred[18:23, 18:23], np.outer(kernel, kernel), atol=1e-6)
  assert abs(blurred.sum() - 1) < 1e-5
  flat = np.full((16, 16, 3), 0.4, np.float32)
  np.testing.assert_allclose(image_ops.gaussian_blur(flat, 2.0), flat, atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((16, 16, 3), np.float32), "must be 4-D.*images\\[None\\]"),
    (np.zeros((2, 16, 16, 3), np.uint8), "dtype uint8.*float32 or bfloat16.*/ 255"),
    (np.zeros((2, 16, 16, 3), np.float64), "dtype float64.*float32 or bfloat16"),
    (np.zeros((2, 16, 16, 4), np.float32), "4 channels.*1 .*or 3"),
    (np.full((2, 16, 16, 3), 255.0, np.float32), "values lie in \\[255, 255\\].*\\[0, 1\\]"),
])
def test_bad_images_are_rejected(bad, message):
  with pytest.raises(ValueError, match=message):
    image_ops.check_images(bad)
  with pytest.raises(ValueError, match=message):
    image_ops.augment_views(jax.random.key(0), bad)


def test_bad_crop_parameters_are_rejected(images):
  with pytest.raises(ValueError, match="crop_scale"):
    image_ops.augment_views(jax.random.key(0), images, crop_scale=(1.0, 0.5))
