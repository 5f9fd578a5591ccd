"""Every conv impl has nn.Conv's parameters and matches its output and gradients."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.models import conv

CASES = [  # (kernel, strides, padding, in_features, out_features)
    (3, 1, "SAME", 3, 8), (3, 2, "SAME", 4, 8), (3, 1, ((1, 1), (1, 1)), 4, 6),
    (3, 2, ((1, 1), (1, 1)), 4, 6), (1, 1, "SAME", 4, 8), (1, 2, ((0, 0), (0, 0)), 5, 3),
    (7, 2, ((3, 3), (3, 3)), 3, 8), (7, 1, "SAME", 3, 4),
]


@pytest.mark.parametrize("impl", [name for name in conv.IMPLS if name != "xla"])
@pytest.mark.parametrize("kernel,strides,padding,cin,cout", CASES)
def test_matches_nn_conv(impl, kernel, strides, padding, cin, cout):
  if impl == "im2col" and kernel == 7:
    pytest.skip("im2col is a measured baseline only; its 49-tap compile takes seconds")
  kwargs = dict(features=cout, kernel_size=(kernel, kernel), strides=strides, padding=padding,
                use_bias=True, bias_init=nn.initializers.normal(1.0))
  ref, fast = nn.Conv(**kwargs), conv.conv_class(impl)(**kwargs)
  x = jax.random.normal(jax.random.key(0), (2, 12, 10, cin))
  # jit everything: one compile per function instead of one per eager op (49 slices for 7x7)
  params = jax.jit(ref.init)(jax.random.key(1), x)
  fast_params = jax.jit(fast.init)(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, fast_params) == jax.tree.map(jnp.shape, params)
  np.testing.assert_array_equal(fast_params["params"]["kernel"], params["params"]["kernel"])

  def loss(module):  # a non-uniform cotangent, so every output position's gradient is checked
    return lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))

  np.testing.assert_allclose(jax.jit(fast.apply)(params, x), jax.jit(ref.apply)(params, x),
                             atol=1e-4, rtol=1e-4)
  grads = jax.jit(jax.grad(loss(fast), argnums=(0, 1)))(params, x)
  ref_grads = jax.jit(jax.grad(loss(ref), argnums=(0, 1)))(params, x)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_checkpoint_interchangeable_in_a_model():
  class Net(nn.Module):
    impl: str

    @nn.compact
    def __call__(self, x):
      x = conv.conv_class(self.impl)(8, (3, 3), strides=2, use_bias=False)(x)
      return conv.conv_class(self.impl)(4, (1, 1))(x)  # auto-named Conv_0, Conv_1 like nn.Conv

  x = jnp.ones((2, 8, 8, 3))
  params = jax.jit(Net("xla").init)(jax.random.key(0), x)
  for impl in conv.IMPLS:
    assert jax.tree.structure(jax.jit(Net(impl).init)(jax.random.key(0), x)) == jax.tree.structure(params)
    np.testing.assert_allclose(jax.jit(Net(impl).apply)(params, x), Net("xla").apply(params, x),
                               atol=1e-4)


def test_auto_and_unknown():
  assert conv.conv_class("auto") is nn.Conv
  assert conv.conv_class("wgrad").__name__ == "Conv" and issubclass(conv.conv_class("wgrad"), nn.Module)
  with pytest.raises(ValueError, match="conv_impl 'nope'"):
    conv.conv_class("nope")
