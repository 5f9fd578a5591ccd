"""Speed of the SimCLR training step: ResNet-18 (small-image stem), 32x32 images, both views.

  python experiments/bench_simclr_step.py [--batch=256] [--steps=3] [--no_augment] [--depth=18]
      [--image_size=32] [--dtype=float32] [--conv_impl=auto]

Measures steady-state images/s of the whole jitted step (augmentation on the device, forward and
backward of both views, NT-Xent, LARS update), the step's FLOPs from XLA's cost analysis, this
machine's fp32 matmul peak (one large jnp.dot), and the fraction of that peak the step reaches.
The last line is `images_per_s=<number>`.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ssl_jax import config as config_lib  # noqa: E402
from ssl_jax import train  # noqa: E402


def matmul_peak_gflops(n=2048, repeats=5):
  a = jnp.ones((n, n), jnp.float32)
  dot = jax.jit(lambda x, y: x @ y)
  dot(a, a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    dot(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best / 1e9


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--depth", type=int, default=18)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--conv_impl", default="auto")
  parser.add_argument("--stem", default="small")
  parser.add_argument("--no_augment", action="store_true", help="views are the images themselves")
  args = parser.parse_args()

  c = config_lib.base_config()
  c.data.image_size, c.data.channels, c.global_batch_size = args.image_size, 3, args.batch
  c.model.depth, c.model.dtype, c.model.conv_impl, c.model.stem = args.depth, args.dtype, args.conv_impl, args.stem
  c.task_kwargs.projection_dims = (512, 512, 128) if args.depth < 50 else (2048, 2048, 128)
  if args.no_augment:
    c.augment.update(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0,
                     grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0)
  c.lock()
  comps = train.build(c, input_shape=(args.image_size, args.image_size, 3), steps_per_epoch=100,
                      total_steps=1000)
  state = comps.init_state(jax.random.PRNGKey(0))
  images = np.random.default_rng(0).integers(0, 256, (args.batch, args.image_size, args.image_size, 3),
                                             dtype=np.uint8)
  batch = jax.device_put({"image": images, "label": np.zeros(args.batch, np.int32)}, comps.batch_sharding)
  start = time.perf_counter()
  compiled = comps.train_step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  flops = float(cost.get("flops", float("nan")))
  state, metrics = compiled(state, batch)  # warm-up
  jax.block_until_ready(metrics)
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  step_s = float(np.median(times))
  peak = matmul_peak_gflops()
  achieved = flops / step_s / 1e9
  print(f"device={jax.devices()[0].device_kind} backend={jax.default_backend()} depth={args.depth} "
        f"batch={args.batch} image={args.image_size} dtype={args.dtype} augment={not args.no_augment}")
  print(f"compile_s={compile_s:.1f} step_s={step_s:.3f} step_gflop={flops / 1e9:.1f} "
        f"achieved_gflops={achieved:.1f} matmul_peak_gflops={peak:.1f} fraction_of_peak={achieved / peak:.3f}")
  print(f"images_per_s={args.batch / step_s:.2f}")


if __name__ == "__main__":
  main()
