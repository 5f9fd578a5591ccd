"""Peak memory of evaluation features on a large synthetic image folder: decoded whole vs streamed.

  python experiments/eval_memory.py [--images=3000] [--size=224]

Writes IMAGES random JPEGs of SIZE x SIZE into a temporary folder, then, in a fresh process for
each way, computes one feature per image (the per-channel mean, standing in for the encoder) over
padded batches of 256: once from `source.arrays()` (every image decoded and kept) and once from
`sources.eval_arrays(source, max_bytes=0)` (LazyImages: one batch decoded at a time, what the
training loop's evaluators get for a split over 1 GiB). Prints the peak resident memory of each.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def measure(folder, way, size):
  from ssl_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from ssl_jax.data import sources  # pylint: disable=g-import-not-at-top

  source = sources.build(f"folder:{folder}", "train", holdout_per_class=0, image_size=size)
  start = time.perf_counter()
  images, labels = source.arrays() if way == "arrays" else sources.eval_arrays(source, max_bytes=0)
  features = [
      b["inputs"][b["mask"]].mean(axis=(1, 2)) for b in pipeline.padded_batches(images, labels, 256)
  ]
  features = np.concatenate(features)
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux
  print(
      f"{way}: {len(features)} features in {time.perf_counter() - start:.1f} s, "
      f"peak RSS {peak:,.0f} MiB",
      flush=True,
  )


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--images", type=int, default=3000)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--measure", default="", help=argparse.SUPPRESS)  # the child processes
  parser.add_argument("--folder", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.measure:
    return measure(args.folder, args.measure, args.size)
  with tempfile.TemporaryDirectory() as folder:
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(folder, "images"))
    for i in range(args.images):
      pixels = rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)
      Image.fromarray(pixels).save(os.path.join(folder, "images", f"{i}.jpg"), quality=90)
    decoded = args.images * args.size * args.size * 3 / 2**20
    print(f"{args.images} JPEGs of {args.size}x{args.size}: {decoded:,.0f} MiB decoded", flush=True)
    for way in ("arrays", "streamed"):
      subprocess.run(
          [
              sys.executable,
              __file__,
              f"--measure={way}",
              f"--folder={folder}",
              f"--size={args.size}",
          ],
          check=True,
      )


if __name__ == "__main__":
  main()
