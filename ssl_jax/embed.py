"""python -m ssl_jax.embed --workdir=RUN --input=SOURCE --out=FILE.npy [--split=train]
[--batch_size=256]

The trained encoder of RUN (a pre-training WORKDIR) on SOURCE, any spec its modality reads
(`folder:PATH`, `npz:PATH`, `tfds:NAME`, `mnist`; `jsonl:FILE` or a text corpus; `ucr:NAME`):
FILE.npy (features), FILE.ids.txt, FILE.labels.npy. Resumable; see ssl_jax/inference.py.
"""

import argparse
import sys

from ssl_jax import inference


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--workdir", required=True, help="a pre-training run's WORKDIR")
  parser.add_argument("--input", required=True, help="a source spec, as config.data.source")
  parser.add_argument("--out", required=True, help="FILE.npy; FILE.ids.txt, FILE.labels.npy beside")
  parser.add_argument("--split", default="train", help="the source's split (default: train)")
  parser.add_argument("--batch_size", type=int, default=256)
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  inference.embed(args.workdir, args.input, args.out, split=args.split, batch_size=args.batch_size)


if __name__ == "__main__":
  main()
