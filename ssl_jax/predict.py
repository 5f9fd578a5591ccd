"""python -m ssl_jax.predict --workdir=CLASSIFIER --input=SOURCE --out=FILE.csv [--split=train]
[--batch_size=256] [--skip_corrupt]

A fitted classifier (the WORKDIR of `python -m ssl_jax.finetune`, or WORKDIR/kept/METHOD-BUDGET
of a study run with `label_efficiency.keep`) on SOURCE, any spec its modality reads: one CSV row
per input (id, label, predicted class and name, per-class probabilities). See
ssl_jax/prediction.py.
"""

import argparse
import sys

from ssl_jax import prediction


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--workdir", required=True, help="a classifier directory")
  parser.add_argument("--input", required=True, help="a source spec, as config.data.source")
  parser.add_argument("--out", required=True, help="FILE.csv")
  parser.add_argument("--split", default="train", help="the source's split (default: train)")
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument(
      "--skip_corrupt", action="store_true", help="leave unreadable image files out, and count them"
  )
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  prediction.predict(
      args.workdir,
      args.input,
      args.out,
      split=args.split,
      batch_size=args.batch_size,
      skip_corrupt=args.skip_corrupt,
  )


if __name__ == "__main__":
  main()
