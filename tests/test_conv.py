"""Every conv impl has nn.Conv's parameters and matches its output and gradients."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.models import conv

CASES = [  # (kernel, strides, padding, in_features, out_features)
    (3, 1, "SAME", 3, 8),
    (3, 2, "SAME", 4, 8),
    (3, 1, ((1, 1), (1, 1)), 4, 6),
    (3, 2, ((1, 1), (1, 1)), 4, 6),
    (1, 1, "SAME", 4, 8),
    (1, 2, ((0, 0), (0, 0)), 5, 3),
    (7, 2, ((3, 3), (3, 3)), 3, 8),
    (7, 1, "SAME", 3, 4),
]


@pytest.mark.parametrize("impl", [name for name in conv.IMPLS if name != "xla"])
@pytest.mark.parametrize(
    "kernel,strides,padding,cin,cout,size",
    [c + ((12, 10),) for c in CASES]
    + [(3, 1, "SAME", 4, 6, (2, 2)), (3, 2, "SAME", 4, 6, (4, 3)), (1, 2, "SAME", 4, 6, (3, 4))],
)
def test_matches_nn_conv(impl, kernel, strides, padding, cin, cout, size):
  """Last cases: output maps of 4 positions or fewer, which 'auto' computes by im2col on the CPU."""
  if impl == "im2col" and kernel == 7:
    pytest.skip("im2col is a measured baseline only; its 49-tap compile takes seconds")
  kwargs = dict(
      features=cout,
      kernel_size=(kernel, kernel),
      strides=strides,
      padding=padding,
      use_bias=True,
      bias_init=nn.initializers.normal(1.0),
  )
  ref, fast = nn.Conv(**kwargs), conv.conv_class(impl)(**kwargs)
  x = jax.random.normal(jax.random.key(0), (2, *size, cin))
  # jit everything: one compile per function instead of one per eager op (49 slices for 7x7)
  params = jax.jit(ref.init)(jax.random.key(1), x)
  fast_params = jax.jit(fast.init)(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, fast_params) == jax.tree.map(jnp.shape, params)
  np.testing.assert_array_equal(fast_params["params"]["kernel"], params["params"]["kernel"])

  def loss(module):  # a non-uniform cotangent, so every output position's gradient is checked
    return lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))

  np.testing.assert_allclose(
      jax.jit(fast.apply)(params, x), jax.jit(ref.apply)(params, x), atol=1e-4, rtol=1e-4
  )
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
    assert jax.tree.structure(jax.jit(Net(impl).init)(jax.random.key(0), x)) == jax.tree.structure(
        params
    )
    np.testing.assert_allclose(
        jax.jit(Net(impl).apply)(params, x), Net("xla").apply(params, x), atol=1e-4
    )


def test_auto_and_unknown():
  assert conv.conv_class("xla") is nn.Conv
  for impl in ("auto", "wgrad"):
    assert conv.conv_class(impl).__name__ == "Conv" and issubclass(conv.conv_class(impl), nn.Module)
  with pytest.raises(ValueError, match="conv_impl 'nope'"):
    conv.conv_class("nope")


def ynnpack_convolutions(compiled_hlo):
  """How many of a compiled program's YNNPACK fusions compute a convolution (XLA:CPU)."""
  bodies, name, count = {}, None, 0
  for line in compiled_hlo.splitlines():
    if line.startswith("%") and line.rstrip().endswith("{"):
      name = line.split()[0][1:]
      bodies[name] = []
    elif name and line.startswith("}"):
      name = None
    elif name:
      bodies[name].append(line)
  for line in compiled_hlo.splitlines():
    if "%ynn_fusion" in line.split("=")[0] and "calls=%" in line:
      called = line.split("calls=%")[1].split(",")[0].split()[0]
      count += any(" convolution(" in entry for entry in bodies.get(called, []))
  return count


def test_cpu_conv_library_sends_convolutions_to_eigen_with_the_same_gradients():
  if jax.default_backend() != "cpu":
    pytest.skip("the convolution library is an XLA:CPU choice")
  x = jax.random.normal(jax.random.key(0), (8, 16, 16, 32))
  kernel = 0.1 * jax.random.normal(jax.random.key(1), (3, 3, 32, 32))
  dense = 0.1 * jax.random.normal(jax.random.key(2), (32, 10))

  def loss(x, kernel, dense):  # a convolution's forward, input and kernel gradients, then a dot
    y = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return jnp.sum(jnp.sin(jnp.mean(jax.nn.relu(y), axis=(1, 2)) @ dense))

  grad = jax.grad(loss, argnums=(0, 1, 2))
  compiled = {
      library: jax.jit(grad, compiler_options=conv.compiler_options(library))
      .lower(x, kernel, dense)
      .compile()
      for library in conv.CPU_CONV_LIBRARIES
  }
  assert (
      ynnpack_convolutions(compiled["ynnpack"].as_text()) > 0
  ), "XLA's default changed: re-measure"
  assert ynnpack_convolutions(compiled["eigen"].as_text()) == 0
  assert "%ynn_fusion" in compiled["eigen"].as_text()  # dots stay on YNNPACK
  for got, want in zip(compiled["eigen"](x, kernel, dense), compiled["ynnpack"](x, kernel, dense)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  assert conv.compiler_options("eigen", backend="gpu") is None
  with pytest.raises(ValueError, match="cpu_conv_library='mkl'.*'eigen', 'ynnpack'"):
    conv.compiler_options("mkl")


def test_auto_takes_im2col_for_tiny_maps_on_the_cpu():
  if jax.default_backend() != "cpu":
    pytest.skip("'auto' is XLA's convolution off the CPU")
  module = conv.conv_class("auto")(8, (3, 3), use_bias=False)

  def convolutions(x):
    params = jax.jit(module.init)(jax.random.key(0), x)
    return " convolution(" in jax.jit(module.apply).lower(params, x).as_text(dialect="hlo")

  assert not convolutions(jnp.ones((2, 2, 2, 4)))  # 4 output positions: an im2col dot
  assert convolutions(jnp.ones((2, 3, 2, 4)))  # 6 positions: XLA's convolution


def test_auto_materialises_the_kernel_gradients_input_on_the_cpu():
  """XLA:CPU would fuse the input's BatchNorm/ReLU recompute into the kernel gradient's transpose;
  'auto' passes the input through a conditional there, with the same values, NaN included."""
  if jax.default_backend() != "cpu":
    pytest.skip("'auto' is XLA's convolution off the CPU")
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 6))
  kernel = 0.3 * jax.random.normal(jax.random.key(1), (3, 3, 6, 5))
  padding = ((1, 1), (1, 1))

  def vjp(impl, x, kernel, dy):
    def f(x, kernel):  # an element-wise chain before the convolution, as in a ResNet block
      h = jax.nn.relu((x - x.mean((0, 1, 2))) * jax.lax.rsqrt(x.var((0, 1, 2)) + 1e-5))
      return conv.IMPLS[impl](h, kernel, (1, 1), padding)

    y, pullback = jax.vjp(f, x, kernel)
    return y, *pullback(dy)

  dy = jax.random.normal(jax.random.key(2), (4, 8, 8, 5))
  compiled = {
      impl: jax.jit(functools.partial(vjp, impl)).lower(x, kernel, dy).compile()
      for impl in ("auto", "xla")
  }
  assert "conditional(" in compiled["auto"].as_text()
  assert "conditional(" not in compiled["xla"].as_text()
  for cotangent in (dy, dy.at[0, 0, 0, 0].set(jnp.nan)):  # NaN where the predicate reads
    for got, want in zip(
        compiled["auto"](x, kernel, cotangent), compiled["xla"](x, kernel, cotangent)
    ):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)
      np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def test_describe_says_which_path_a_run_takes():
  assert conv.describe("auto", "eigen", backend="cpu") == (
      "convolutions: XLA:CPU on eigen, kernel gradients from materialised inputs, im2col for maps"
      " of <= 2x2"
  )
  assert conv.describe("xla", "ynnpack", backend="cpu") == (
      "convolutions: XLA:CPU on ynnpack, model.conv_impl=xla"
  )
  assert conv.describe("auto", "eigen", backend="gpu") == (
      "convolutions: XLA's on gpu (model.conv_impl=auto)"
  )


@pytest.mark.parametrize("zero_init", [True, False])
def test_resnet_zero_init_residual_sets_each_blocks_last_batchnorm_scale(zero_init):
  from ssl_jax.models.resnet import ResNet  # pylint: disable=g-import-not-at-top

  model = ResNet(
      depth=10, width_multiplier=0.125, stem="small_stride2", zero_init_residual=zero_init
  )
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 16, 16, 1)))["params"]
  last = [params[b]["BatchNorm_1"]["scale"] for b in params if b.startswith("BasicBlock")]
  assert len(last) == 4
  for scale in last:
    np.testing.assert_array_equal(scale, 0.0 if zero_init else 1.0)
  first = [params[b]["BatchNorm_0"]["scale"] for b in params if b.startswith("BasicBlock")]
  assert all(np.all(s == 1.0) for s in first)  # only the last BatchNorm of a block is affected
