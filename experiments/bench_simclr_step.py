"""Speed and memory of the SimCLR training step: ResNet-18 (small-image stem), 32x32 images, both
views.

  python experiments/bench_simclr_step.py [--batch=256] [--micro_batch=0] [--norm=batch]
      [--head_norm=batch] [--loop=auto] [--no_recompute] [--steps=3] [--rounds=1] [--no_augment]
      [--depth=18] [--width=1.0] [--image_size=32] [--dtype=float32] [--conv_impl=auto]
      [--cpu_conv_library=eigen] [--memory_only]

Measures steady-state images/s of the whole jitted step (augmentation on the device, forward and
backward of both views, NT-Xent, LARS update), the step's FLOPs from XLA's cost analysis, the
step's peak memory from XLA's buffer assignment (arguments + outputs - donated + temporaries; the
same on a loaded or a quiet machine), this machine's fp32 matmul peak (one large jnp.dot), and the
fraction of that peak the step reaches.

Defaults: XLA:CPU's convolutions on Eigen (`--cpu_conv_library=eigen`,
config.model.cpu_conv_library; `ynnpack` is XLA's own default, 3-4x slower here:
experiments/conv_speed.md), no chunking (`--micro_batch=0`), BatchNorm over the global batch in the
encoder and the projector. `--micro_batch=N` turns on the exact chunked backward
(ssl_jax/chunked.py) over chunks of N examples; BatchNorm statistics are then per chunk ("ghost"
BN), which the output states. `--norm=group --head_norm=none` removes BatchNorm (chunked gradients
are then exact).

`--batch`, `--micro_batch` and `--cpu_conv_library` take comma-separated lists: every combination is
compiled first, then timed in `--rounds` interleaved rounds, keeping each one's best round, so that
the ratios between them hold on a shared machine. The last line is `images_per_s=<number>` of the
first combination.
"""

import argparse
import itertools
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ssl_jax import chunked  # noqa: E402
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


def make_config(args, batch, micro_batch, library):
  c = config_lib.base_config()
  c.model.cpu_conv_library = library
  c.data.image_size, c.data.channels, c.global_batch_size = args.image_size, 3, batch
  c.model.depth, c.model.dtype, c.model.conv_impl, c.model.stem = (
      args.depth,
      args.dtype,
      args.conv_impl,
      args.stem,
  )
  c.model.norm, c.model.width_multiplier = args.norm, args.width
  c.task_kwargs.projection_dims = (512, 512, 128) if args.depth < 50 else (2048, 2048, 128)
  c.task_kwargs.head_norm = args.head_norm
  c.micro_batch_size, c.micro_batch_loop = micro_batch, args.loop
  c.micro_batch_recompute = not args.no_recompute
  if args.no_augment:
    c.augment.update(
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_prob=0.0,
        jitter_prob=0.0,
        grayscale_prob=0.0,
        blur_prob=0.0,
        solarize_prob=0.0,
    )
  return config_lib.finalize(c)


def normalisation(args, micro_batch):
  """What BatchNorm's statistics are over, in words."""
  where = [
      n for n, kind in (("encoder", args.norm), ("projector", args.head_norm)) if kind == "batch"
  ]
  if not where:
    return "no BatchNorm (GroupNorm encoder): chunked gradients exact"
  if not micro_batch:
    return f"BatchNorm ({'+'.join(where)}) over the global batch"
  return f"ghost BatchNorm ({'+'.join(where)}) per chunk of {micro_batch} examples x 2 views"


def peak_bytes(compiled):
  """XLA's planned peak: arguments + outputs - donated (aliased) + temporaries."""
  m = compiled.memory_analysis()
  if m is None:
    return float("nan")
  return (
      m.argument_size_in_bytes
      + m.output_size_in_bytes
      - m.alias_size_in_bytes
      + m.temp_size_in_bytes
  )


def prepare(args, batch, micro_batch, library):
  c = make_config(args, batch, micro_batch, library)
  comps = train.build(
      c, input_shape=(args.image_size, args.image_size, 3), steps_per_epoch=100, total_steps=1000
  )
  state = comps.init_state(jax.random.PRNGKey(0))
  images = np.random.default_rng(0).integers(
      0, 256, (batch, args.image_size, args.image_size, 3), dtype=np.uint8
  )
  data = jax.device_put(
      {"inputs": images, "label": np.zeros(batch, np.int32)}, comps.batch_sharding
  )
  start = time.perf_counter()
  compiled = comps.train_step.lower(state, data).compile()
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return dict(
      batch=batch,
      micro_batch=micro_batch,
      library=library,
      compiled=compiled,
      state=state,
      data=data,
      compile_s=compile_s,
      flops=float(cost.get("flops", float("nan"))),
      peak_gb=peak_bytes(compiled) / 2**30,
  )


def time_steps(run, steps):
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    run["state"], metrics = run["compiled"](run["state"], run["data"])
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--batch", default="256", help="images per step; comma-separated for several")
  parser.add_argument(
      "--micro_batch",
      default="0",
      help="chunk size of the exact chunked backward (0: off); comma-separated",
  )
  parser.add_argument("--norm", default="batch", choices=("batch", "group"), help="encoder norm")
  parser.add_argument(
      "--head_norm", default="batch", choices=("batch", "none"), help="projector norm"
  )
  parser.add_argument("--loop", default="auto", choices=chunked.LOOPS, help="loop over chunks")
  parser.add_argument(
      "--no_recompute",
      action="store_true",
      help="chunked: keep each chunk's activations (speed, not memory)",
  )
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--rounds", type=int, default=1)
  parser.add_argument("--depth", type=int, default=18)
  parser.add_argument("--width", type=float, default=1.0, help="ResNet width multiplier")
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--conv_impl", default="auto")
  parser.add_argument("--stem", default="small")
  parser.add_argument(
      "--cpu_conv_library",
      default="eigen",
      help="XLA:CPU's convolutions: eigen | ynnpack (XLA's default); comma-separated",
  )
  parser.add_argument("--no_augment", action="store_true", help="views are the images themselves")
  parser.add_argument(
      "--memory_only", action="store_true", help="compile and report memory; no run"
  )
  args = parser.parse_args()

  combos = list(
      itertools.product(
          map(int, args.batch.split(",")),
          map(int, args.micro_batch.split(",")),
          args.cpu_conv_library.split(","),
      )
  )
  print(
      f"device={jax.devices()[0].device_kind} backend={jax.default_backend()} depth={args.depth} "
      f"image={args.image_size} dtype={args.dtype} augment={not args.no_augment} "
      f"conv_impl={args.conv_impl} loop={chunked.resolve_loop(args.loop)} "
      f"recompute={not args.no_recompute}",
      flush=True,
  )
  runs = []
  for batch, micro, library in combos:
    run = prepare(args, batch, micro, library)
    print(
        f"compiled batch={batch} micro_batch_size={micro} cpu_conv_library={library}: "
        f"compile_s={run['compile_s']:.1f} "
        f"step_gflop={run['flops'] / 1e9:.1f} peak_memory_gb={run['peak_gb']:.3f}",
        flush=True,
    )
    if args.memory_only:
      del run["compiled"], run["state"], run["data"]
    else:
      time_steps(run, 1)  # warm-up
    runs.append(run)
  if not args.memory_only:
    best = [float("inf")] * len(runs)
    for _ in range(args.rounds):
      for i, run in enumerate(runs):
        best[i] = min(best[i], time_steps(run, args.steps))
    peak = matmul_peak_gflops()
  rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(f"process_max_rss_gb={rss_gb:.2f} (all combinations, compilation included)")
  for i, run in enumerate(runs):
    line = (
        f"batch={run['batch']} micro_batch_size={run['micro_batch']} "
        f"cpu_conv_library={run['library']} "
        f"[{normalisation(args, run['micro_batch'])}] peak_memory_gb={run['peak_gb']:.3f}"
    )
    if not args.memory_only:
      achieved = run["flops"] / best[i] / 1e9
      line += (
          f" step_s={best[i]:.3f} achieved_gflops={achieved:.1f} matmul_peak_gflops={peak:.1f} "
          f"fraction_of_peak={achieved / peak:.3f} images_per_s={run['batch'] / best[i]:.2f}"
      )
    print(line)
  if not args.memory_only:
    print(f"images_per_s={runs[0]['batch'] / best[0]:.2f}")


if __name__ == "__main__":
  main()
