"""The TS2Vec encoder: shapes, the reference's size, dilated convs, windows in buffers, NaN
masking."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax import lax

from ssl_jax import models
from ssl_jax.models import ts_dilated_conv
from ssl_jax.models.ts_dilated_conv import DilatedConv, TSEncoder

TINY = dict(hidden_dims=8, repr_dims=12, depth=4)  # dilations 1..8, final block 16


def _series(shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
  encoder = TSEncoder(**TINY)
  variables = jax.jit(encoder.init)(jax.random.PRNGKey(0), jnp.zeros((2, 20, 3)))
  apply = jax.jit(
      lambda x, keep=None, valid=None, per_timestep=True: encoder.apply(
          variables, x, per_timestep=per_timestep, keep=keep, valid=valid
      ),
      static_argnames="per_timestep",
  )
  return encoder, variables, apply


def test_registry_builds_the_reference_encoder():
  config = ml_collections.ConfigDict(
      dict(name="ts_dilated_conv", depth=10, hidden_dims=64, repr_dims=320, dtype="float32")
  )
  encoder = models.build_encoder(config)
  variables = jax.eval_shape(encoder.init, jax.random.PRNGKey(0), jnp.zeros((2, 150, 1)))
  # the reference's size for F=1: input 1*64+64; ten blocks of 2 x (3*64*64+64); the final block
  # 3*64*320+320, 3*320*320+320 and a 1x1 projector 64*320+320
  want = (
      128
      + 10 * 2 * (3 * 64 * 64 + 64)
      + (3 * 64 * 320 + 320)
      + (3 * 320 * 320 + 320)
      + 64 * 320
      + 320
  )
  assert sum(np.prod(v.shape) for v in jax.tree.leaves(variables)) == want == 637_248
  assert set(variables["params"]) == {"input_fc"} | {f"block{i}" for i in range(11)}
  assert (
      "projector" in variables["params"]["block10"]
      and "projector" not in variables["params"]["block3"]
  )


def test_shapes_multivariate_and_any_length(tiny):
  _, _, apply = tiny
  x = _series((2, 20, 3))
  np.testing.assert_allclose(apply(x, per_timestep=False), np.max(apply(x), axis=1), rtol=1e-6)
  assert apply(x).shape == (2, 20, 12) and apply(x[:, :7]).shape == (2, 7, 12)  # any length


@pytest.mark.parametrize("dilation,length", [(1, 9), (2, 9), (4, 9), (8, 9), (16, 9), (4, 3)])
def test_dilated_conv_matches_xla_conv(dilation, length):
  """'same' zero padding; taps that only read padding (dilation >= length) are skipped exactly."""
  x = _series((2, length, 3))
  conv = DilatedConv(5, dilation)
  variables = jax.jit(conv.init)(jax.random.PRNGKey(1), x)
  kernel, bias = variables["params"]["kernel"], variables["params"]["bias"]
  want = (
      lax.conv_general_dilated(
          x,
          kernel,
          (1,),
          [(dilation, dilation)],
          rhs_dilation=(dilation,),
          dimension_numbers=("NWC", "WIO", "NWC"),
      )
      + bias
  )
  np.testing.assert_allclose(conv.apply(variables, x), want, rtol=1e-5, atol=1e-6)


def test_torch_default_init_bounds():
  conv = DilatedConv(7, 1)
  params = jax.jit(conv.init)(jax.random.PRNGKey(2), jnp.zeros((1, 4, 10)))["params"]
  bound = 1 / np.sqrt(3 * 10)
  assert np.abs(params["kernel"]).max() <= bound and np.abs(params["kernel"]).max() > 0.8 * bound
  assert np.abs(params["bias"]).max() <= bound


def test_window_in_a_buffer_equals_the_window_alone(tiny):
  """`valid` zeroes the rest before every conv: a crop inside a longer buffer encodes exactly as the
  crop alone (what the reference computes), at every offset and dilation."""
  _, _, apply = tiny
  x = _series((3, 20, 3), seed=3)
  starts, length = np.array([0, 5, 11]), 9
  valid = (np.arange(20)[None] >= starts[:, None]) & (
      np.arange(20)[None] < starts[:, None] + length
  )
  buffered = np.asarray(apply(x, valid=jnp.asarray(valid)))
  for i, s in enumerate(starts):
    alone = np.asarray(apply(x[i : i + 1, s : s + length]))[0]
    np.testing.assert_allclose(buffered[i, s : s + length], alone, rtol=1e-5, atol=1e-5)


def test_missing_values_are_masked_like_the_reference(tiny):
  """A NaN timestep (any feature) is zeroed at the input and after the projection: the output is
  finite and equals the same series with any value there and that timestep masked."""
  _, _, apply = tiny
  x = _series((2, 20, 3), seed=4)
  holes = x.copy()
  holes[0, 3, 1] = np.nan
  holes[1, 10:14] = np.nan
  out = np.asarray(apply(holes))
  assert np.isfinite(out).all()
  filled = np.nan_to_num(holes, nan=7.0)
  keep = ~np.isnan(holes).any(-1)
  np.testing.assert_allclose(out, apply(filled, keep=jnp.asarray(keep)), rtol=1e-5, atol=1e-6)
  assert not np.allclose(out, apply(filled), atol=1e-3)  # the mask did something


def test_dropout_only_in_training(tiny):
  encoder, variables, apply = tiny
  x = jnp.asarray(_series((2, 20, 3)))
  a = apply(x)
  assert np.array_equal(a, apply(x))
  b = jax.jit(
      lambda v, x, r: encoder.apply(v, x, train=True, per_timestep=True, rngs={"dropout": r})
  )(variables, x, jax.random.PRNGKey(1))
  dropped = np.asarray(b) == 0
  assert 0.05 < dropped.mean() < 0.2  # 10% of the units
  np.testing.assert_allclose(np.asarray(b)[~dropped], np.asarray(a)[~dropped] / 0.9, rtol=1e-5)


def test_rejects_images():
  with pytest.raises(ValueError, match=r"expects series \(B, T, F\)"):
    TSEncoder(**TINY).init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 3)))


def test_module_is_registered():
  assert "ts_dilated_conv" in models.available()
  assert ts_dilated_conv.encoder  # the registry's entry point
