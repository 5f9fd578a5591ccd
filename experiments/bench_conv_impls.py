"""Training-step speed of ResNet-18 (CIFAR stem) on 32x32x3 images with each conv implementation.

  python experiments/bench_conv_impls.py  # default: ~2 min
  python experiments/bench_conv_impls.py --batch 256 --impls xla,wgrad --steps 1

Prints the fp32 matmul peak, then one line per impl. Results: experiments/conv_speed.md.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from ssl_jax.models import resnet  # noqa: E402


def matmul_peak(n=2048, repeats=5):
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a, b: a @ b)
  f(a, a).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    f(a, a).block_until_ready()
  return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def forward_flops_per_image(norm, image_shape):
  """XLA's cost analysis of the nn.Conv model: 2 * multiply-adds, taps that land on padding
  excluded.

  The same count is used for every impl, so their fractions of peak compare like for like.
  """
  model = resnet.ResNet(depth=18, stem="small", norm=norm, conv_impl="xla")
  x = jnp.zeros((1, *image_shape))
  variables = model.init(jax.random.key(0), x, train=False)
  compiled = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).compile()
  return compiled.cost_analysis()["flops"]


def train_step_fn(model):
  def loss_fn(params, batch_stats, images):
    features, updates = model.apply(
        {"params": params, "batch_stats": batch_stats}, images, train=True, mutable=["batch_stats"]
    )
    return jnp.mean(jnp.square(features)), updates["batch_stats"]

  def step(params, batch_stats, images):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, images
    )
    params = jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)
    return params, batch_stats, loss

  return jax.jit(step, donate_argnums=(0, 1))


def build(impl, batch, norm):
  """Returns (run_steps(n) -> seconds, compile_and_first_step_seconds)."""
  model = resnet.ResNet(depth=18, stem="small", norm=norm, conv_impl=impl)
  images = jax.random.uniform(jax.random.key(0), (batch, 32, 32, 3))
  variables = model.init(jax.random.key(1), images[:2], train=False)
  state = [variables["params"], variables.get("batch_stats", {})]
  step = train_step_fn(model)

  def run_steps(n):
    start = time.perf_counter()
    for _ in range(n):
      state[0], state[1], loss = step(state[0], state[1], images)
    loss.block_until_ready()
    return time.perf_counter() - start

  return run_steps, run_steps(1)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--impls", default="xla,im2col,wgrad")
  parser.add_argument("--batch", type=int, default=64, help="images per step (both views together)")
  parser.add_argument("--steps", type=int, default=2, help="timed steps per impl per round")
  parser.add_argument(
      "--rounds",
      type=int,
      default=3,
      help="interleaved rounds; the best round counts (the machine may be shared)",
  )
  parser.add_argument("--norm", default="batch", choices=["batch", "group"])
  args = parser.parse_args()
  impls = args.impls.split(",")
  print(
      f"backend={jax.default_backend()} devices={jax.device_count()} "
      f"batch={args.batch} norm={args.norm}"
  )
  built = {}
  for impl in impls:
    built[impl] = build(impl, args.batch, args.norm)
    print(f"built impl={impl} compile_and_first_step_s={built[impl][1]:.1f}", flush=True)
  best = {impl: float("inf") for impl in impls}
  peak, fwd_flops = 0.0, forward_flops_per_image(args.norm, (32, 32, 3))
  for round_ in range(args.rounds):
    peak = max(peak, matmul_peak())
    for impl in impls:
      seconds = built[impl][0](args.steps) / args.steps
      best[impl] = min(best[impl], seconds)
      print(f"round={round_} impl={impl} images_per_s={args.batch / seconds:.2f}", flush=True)
  print(f"matmul_peak_gflops={peak:.1f}")
  for impl in impls:
    images_per_s = args.batch / best[impl]
    gflops = images_per_s * 3 * fwd_flops / 1e9  # a training step is ~3x the forward
    print(
        f"impl={impl} images_per_s={images_per_s:.2f} gflops={gflops:.1f} "
        f"fraction_of_peak={gflops / peak:.3f} fwd_gflop_per_image={fwd_flops / 1e9:.3f}",
        flush=True,
    )


if __name__ == "__main__":
  main()
