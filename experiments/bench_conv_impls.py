"""Training-step speed of ResNet-18 (CIFAR stem) on 32x32x3 images with each conv implementation.

  PYTHONPATH=. /work/venv/bin/python experiments/bench_conv_impls.py                      # default, a few minutes
  PYTHONPATH=. /work/venv/bin/python experiments/bench_conv_impls.py --batch 512 --impls xla,wgrad --steps 2

Prints the fp32 matmul peak, then one line per impl. Results: experiments/conv_speed.md.
"""
import argparse
import time

import jax
import jax.numpy as jnp

from ssl_jax.models import resnet


def matmul_peak(n=2048, repeats=5):
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a, b: a @ b)
  f(a, a).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    f(a, a).block_until_ready()
  return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def forward_flops_per_image(model, variables, image_shape):
  """2 * multiply-adds of every conv and dense layer, read from the compiled cost analysis."""
  x = jnp.zeros((1, *image_shape))
  compiled = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).compile()
  return compiled.cost_analysis()["flops"]


def train_step_fn(model):
  def loss_fn(params, batch_stats, images):
    features, updates = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                    train=True, mutable=["batch_stats"])
    return jnp.mean(jnp.square(features)), updates["batch_stats"]

  def step(params, batch_stats, images):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, images)
    params = jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)
    return params, batch_stats, loss

  return jax.jit(step, donate_argnums=(0, 1))


def bench(impl, batch, steps, norm):
  model = resnet.ResNet(depth=18, stem="small", norm=norm, conv_impl=impl)
  images = jax.random.uniform(jax.random.key(0), (batch, 32, 32, 3))
  variables = model.init(jax.random.key(1), images[:2], train=False)
  params, batch_stats = variables["params"], variables.get("batch_stats", {})
  step = train_step_fn(model)
  start = time.perf_counter()
  params, batch_stats, loss = step(params, batch_stats, images)
  loss.block_until_ready()
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    params, batch_stats, loss = step(params, batch_stats, images)
  loss.block_until_ready()
  seconds = (time.perf_counter() - start) / steps
  return batch / seconds, first, forward_flops_per_image(model, variables, (32, 32, 3))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--impls", default="xla,im2col,taps,wgrad")
  parser.add_argument("--batch", type=int, default=64, help="images per step (both views together)")
  parser.add_argument("--steps", type=int, default=3, help="timed steps after one compile+warm-up step")
  parser.add_argument("--norm", default="batch", choices=["batch", "group"])
  args = parser.parse_args()
  peak = matmul_peak()
  print(f"backend={jax.default_backend()} devices={jax.device_count()} batch={args.batch} norm={args.norm}")
  print(f"matmul_peak_gflops={peak:.1f}", flush=True)
  for impl in args.impls.split(","):
    images_per_s, first, fwd_flops = bench(impl, args.batch, args.steps, args.norm)
    gflops = images_per_s * 3 * fwd_flops / 1e9  # training step ~ 3x forward
    print(f"impl={impl} images_per_s={images_per_s:.2f} gflops={gflops:.1f} "
          f"fraction_of_peak={gflops / peak:.3f} first_step_s={first:.1f} "
          f"fwd_gflop_per_image={fwd_flops / 1e9:.3f}", flush=True)


if __name__ == "__main__":
  main()
