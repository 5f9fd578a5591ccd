"""A hold-out MNIST-format set the main job's recipe never saw: scikit-learn's UCI digits at 28x28.

  python experiments/make_holdout_digits.py --out=/tmp/uci_digits.npz
  python -m ssl_jax.main --config=configs/default.py --workdir=/tmp/ssl_holdout \
      --config.data.source=npz:/tmp/uci_digits.npz

The 1,797 digits of `sklearn.datasets.load_digits` (UCI optical recognition of handwritten digits:
43 other writers, 8x8 at 17 grey levels; bundled in the scikit-learn wheel, no download) are
brought to MNIST's format: scaled to 0-255, resized bilinearly to 20x20 and centred in a 28x28
frame, as MNIST centres its 20x20 digits. `--test_per_class` digits of each class (default 30)
form the test split; the rest (about 150 per class) are the unlabelled pre-training images and the
pool the study draws its labels from. Writes train_images/train_labels/test_images/test_labels.
"""

import argparse

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def mnist_format(images8):
  """(N, 8, 8) values 0-16 -> (N, 28, 28) uint8, the digit in the centre 20x20."""
  out = np.zeros((len(images8), 28, 28), np.uint8)
  for i, image in enumerate(images8):
    small = Image.fromarray(np.round(image * 255.0 / 16.0).astype(np.uint8))
    out[i, 4:24, 4:24] = np.asarray(small.resize((20, 20), Image.BILINEAR))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, help="the .npz to write")
  parser.add_argument("--test_per_class", type=int, default=30)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  digits = load_digits()
  images, labels = mnist_format(digits.images), digits.target.astype(np.int32)
  rng = np.random.default_rng(args.seed)
  test = np.sort(
      np.concatenate(
          [
              rng.choice(np.flatnonzero(labels == c), args.test_per_class, replace=False)
              for c in range(10)
          ]
      )
  )
  train = np.setdiff1d(np.arange(len(labels)), test)
  np.savez_compressed(
      args.out,
      train_images=images[train],
      train_labels=labels[train],
      test_images=images[test],
      test_labels=labels[test],
  )
  print(f"wrote {args.out}: {len(train)} train and {len(test)} test digits, 28x28 uint8")


if __name__ == "__main__":
  main()
