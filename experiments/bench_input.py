"""Input pipeline throughput alone (no model): images/s for two-view SimCLR batches.

  python experiments/bench_input.py [--batches=20] [--workers=0,2] [--photos=512]

Case 1, CIFAR-10 JPEGs (../shared/data/cifar10, 50,000 train images; synthetic JPEGs if absent):
decode, two random-resized crops at 32 px, global batch 512. Case 2, a temporary folder of 224x224
JPEGs: read, decode, two crops at 224 px, batch 256. Case 3, ImageNet-size photos: 500x375 JPEGs
(q90, ImageNet's typical size) cut from scikit-learn's two sample photographs, so the decoder sees
real photographic detail: read, decode at full size, two crops at 224 px, batch 256. Each runs
with the main process reading in grain threads (workers=0) and with grain worker processes. The
last line is the best CIFAR-10 rate, `images_per_s=<number>`; a per-core rate divides by the cores
the pipeline may use, or (workers=0) counts images per CPU-second of the process.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ssl_jax.data import pipeline  # noqa: E402
from ssl_jax.data import sources  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR = os.path.join(REPO, "..", "shared", "data", "cifar10", "cifar10_jpeg_bytes.npz")


def _cifar_source():
  if os.path.isfile(CIFAR):
    return sources.build(f"npz:{CIFAR}", "train", channels=3, image_size=32), "CIFAR-10 (JPEG q75)"
  print(f"{CIFAR} absent: using 5,000 synthetic 32x32 JPEGs", flush=True)
  return _synthetic_bundle(5000), "synthetic 32x32 JPEGs"


def _synthetic_bundle(n):
  import io  # pylint: disable=g-import-not-at-top

  rng, blobs = np.random.default_rng(0), []
  for _ in range(n):
    buf = io.BytesIO()
    Image.fromarray(_smooth(rng, 32)).save(buf, format="JPEG", quality=75)
    blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
  offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
  return sources.JpegBundleSource(np.concatenate(blobs), offsets, np.zeros(n, np.int32))


def _smooth(rng, size):
  """A photo-like image: upsampled coarse noise (random pixel noise would decode unrealistically
  slowly)."""
  coarse = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
  return np.asarray(coarse.resize((size, size), Image.BICUBIC))


def _folder_source(root, n, cifar):
  """224x224 JPEGs (quality 90): CIFAR-10 images upscaled when available, else smooth noise."""
  rng = np.random.default_rng(1)
  for i in range(n):
    if cifar is not None:
      image = np.asarray(Image.fromarray(cifar[i]["inputs"]).resize((224, 224), Image.BICUBIC))
    else:
      image = _smooth(rng, 224)
    Image.fromarray(image).save(os.path.join(root, f"{i:05d}.jpg"), quality=90)
  return sources.build(f"folder:{root}", "train", channels=3, image_size=224)


def _photo_folder(root, n, size=(500, 375)):
  """`n` JPEGs (q90) of `size`: random windows, some mirrored, of scikit-learn's sample photos."""
  from sklearn.datasets import load_sample_images  # pylint: disable=g-import-not-at-top

  photos, rng, total = load_sample_images().images, np.random.default_rng(2), 0
  for i in range(n):
    photo = photos[i % len(photos)]
    y, x = (int(rng.integers(0, photo.shape[d] - size[1 - d] + 1)) for d in (0, 1))
    window = photo[y : y + size[1], x : x + size[0]]
    path = os.path.join(root, f"{i:05d}.jpg")
    Image.fromarray(window[:, ::-1] if rng.random() < 0.5 else window).save(path, quality=90)
    total += os.path.getsize(path)
  print(
      f"{n} photos of {size[0]}x{size[1]}, {total / n / 1024:.0f} KiB per JPEG on average",
      flush=True,
  )
  return sources.build(f"folder:{root}", "train", channels=3, image_size=224)


def measure(source, *, batch_size, batches, num_workers, warmup=2):
  it = pipeline.train_iterator(
      source,
      global_batch_size=batch_size,
      seed=0,
      num_workers=num_workers,
      read_threads=2,
      prefetch=2,
      crops=pipeline.SIMCLR_CROPS,
      process_index=0,
      process_count=1,
  )
  for _ in range(warmup):  # worker start-up and first batches
    next(it)
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in range(batches):
    batch = next(it)
  elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
  it.close()  # worker processes release the shared memory of batches read ahead
  assert batch["view1"].shape[0] == batch_size
  # images per CPU-second of this process: a per-core rate that other jobs' load barely changes
  # (meaningful for workers=0 only; worker processes' CPU time is not counted)
  return batches * batch_size / elapsed, batches * batch_size / cpu


def _report(what, rate, cpu_rate, cores, workers):
  per_cpu = f"; {cpu_rate:,.0f} per CPU-second of the main process" if workers == 0 else ""
  print(f"{what}: {rate:,.0f} images/s ({rate / cores:,.0f} per core{per_cpu})", flush=True)


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--batches", type=int, default=20)
  parser.add_argument("--workers", default="0,2", help="comma-separated grain worker counts to try")
  parser.add_argument("--folder_images", type=int, default=1024)
  parser.add_argument(
      "--photos", type=int, default=512, help="ImageNet-size photos to write (0: skip case 3)"
  )
  args = parser.parse_args()
  cores = len(os.sched_getaffinity(0))
  print(f"cores available: {cores}; load average: {os.getloadavg()[0]:.2f}", flush=True)
  workers = [int(w) for w in args.workers.split(",")]

  cifar, name = _cifar_source()
  with tempfile.TemporaryDirectory() as root:
    folder = _folder_source(root, args.folder_images, cifar if os.path.isfile(CIFAR) else None)
    for w in workers:
      rate, cpu_rate = measure(
          folder, batch_size=256, batches=max(args.batches // 4, 3), num_workers=w
      )
      _report(
          f"folder 224x224 JPEG, 2 views @224, batch 256, workers={w}", rate, cpu_rate, cores, w
      )
  if args.photos:
    with tempfile.TemporaryDirectory() as root:
      photos = _photo_folder(root, args.photos)
      for w in workers:
        rate, cpu_rate = measure(
            photos, batch_size=256, batches=max(args.batches // 4, 3), num_workers=w
        )
        _report(
            f"folder 500x375 photo JPEG, 2 views @224, batch 256, workers={w}",
            rate,
            cpu_rate,
            cores,
            w,
        )
  best = 0.0
  for w in workers:
    rate, cpu_rate = measure(cifar, batch_size=512, batches=args.batches, num_workers=w)
    best = max(best, rate)
    _report(f"{name}, 2 views @32, batch 512, workers={w}", rate, cpu_rate, cores, w)
  print(f"images_per_s={best:.0f}")


if __name__ == "__main__":
  main()
