"""A validation split of the embedded MNIST digits, for recipe choices that must not see the test
digits.

  python experiments/make_validation_digits.py --out=/tmp/mnist_val.npz
  python -m ssl_jax.main --config=configs/default.py --workdir=/tmp/ssl_val \
      --config.data.source=npz:/tmp/mnist_val.npz [--config.KEY=VALUE ...]

The main job's data (`data.source='mnist'`) is 4,000 training digits and 1,000 test digits. This
writes the 4,000 training digits alone, split again: `--val_per_class` of each class (default 100)
become the npz's test split (the validation digits), the rest (3,000) its train split: the
unlabelled pre-training images and the pool the study draws its labels from. A recipe chosen on
this file's table has never seen the main job's 1,000 test digits. Writes
train_images/train_labels/test_images/test_labels.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ssl_jax.data import sources  # noqa: E402
from ssl_jax.data import sources_base  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, help="the .npz to write")
  parser.add_argument("--val_per_class", type=int, default=100)
  parser.add_argument("--seed", type=int, default=1)
  args = parser.parse_args()
  train = sources.build("mnist", "train")  # the main job's training digits; its test ones stay out
  images, labels = train.images, train.labels
  fit, val = sources_base.holdout_split(labels, args.val_per_class, args.seed)
  np.savez_compressed(
      args.out,
      train_images=images[fit],
      train_labels=labels[fit],
      test_images=images[val],
      test_labels=labels[val],
  )
  print(
      f"wrote {args.out}: {len(fit)} train and {len(val)} validation digits (as its test split), "
      "all from the main job's training split"
  )


if __name__ == "__main__":
  main()
