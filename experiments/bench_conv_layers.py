"""ResNet-18's 3x3 convolutions, one layer at a time: forward, input gradient and kernel gradient
under each XLA:CPU convolution library (config.model.cpu_conv_library).

  python experiments/bench_conv_layers.py [--batch=512] [--libraries=eigen,ynnpack] [--repeats=4]

`--batch` counts the rows through the layer (SimCLR's 256 images x 2 views = 512). The layers are
those of ResNet-18 with the small-image stem at 32 px: 64 channels at 32x32, 128 at 16x16, 256 at
8x8, 512 at 4x4 (stride 1, 'SAME'). Each of the three computations is its own jitted function,
compiled with `models.conv.compiler_options(library)`, timed as the best of `--repeats` runs;
GFLOP/s counts 2 x multiply-adds of the dense layer. The last line is the summed seconds of all
layers and computations per library. Results: experiments/conv_speed.md.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from ssl_jax.models import conv as conv_lib  # noqa: E402

LAYERS = ((64, 32), (128, 16), (256, 8), (512, 4))  # (channels, side)


def conv(x, kernel):
  return lax.conv_general_dilated(
      x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


COMPUTATIONS = {
    "fwd": lambda x, k, dy: conv(x, k),
    "dgrad": lambda x, k, dy: jax.vjp(lambda x: conv(x, k), x)[1](dy)[0],
    "wgrad": lambda x, k, dy: jax.vjp(lambda k: conv(x, k), k)[1](dy)[0],
}


def best_seconds(fn, args, repeats):
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--batch", type=int, default=512, help="rows through each layer")
  parser.add_argument("--libraries", default="eigen,ynnpack")
  parser.add_argument("--repeats", type=int, default=4)
  args = parser.parse_args()
  libraries = args.libraries.split(",")
  rng = np.random.default_rng(0)
  totals = {library: 0.0 for library in libraries}
  print(f"backend={jax.default_backend()} batch={args.batch}")
  for channels, side in LAYERS:
    x = rng.standard_normal((args.batch, side, side, channels), np.float32)
    dy = rng.standard_normal((args.batch, side, side, channels), np.float32)
    kernel = 0.05 * rng.standard_normal((3, 3, channels, channels), np.float32)
    flops = 2 * args.batch * side * side * channels * channels * 9
    for library in libraries:
      cells = []
      for name, fn in COMPUTATIONS.items():
        jitted = jax.jit(fn, compiler_options=conv_lib.compiler_options(library))
        seconds = best_seconds(jitted, (x, kernel, dy), args.repeats)
        totals[library] += seconds
        cells.append(f"{name} {seconds * 1e3:7.1f} ms {flops / seconds / 1e9:6.1f} GFLOP/s")
      print(f"{channels:3d}ch {side:2d}x{side:<2d} {library:8s} " + " | ".join(cells), flush=True)
  print(
      "total_seconds " + " ".join(f"{library}={seconds:.3f}" for library, seconds in totals.items())
  )


if __name__ == "__main__":
  main()
