"""python -m ssl_jax.export --workdir=RUN --format=transformers|torchvision|safetensors --out=DIR

A pre-training run's encoder in a format other ecosystems load: ViT -> transformers' ViTModel,
BERT -> transformers' BertForMaskedLM (with the tokenizer), ResNet -> torchvision's naming,
any encoder (time series included) -> safetensors with our JSON config. See
ssl_jax/exporting.py for what maps exactly and what is refused.
"""

import argparse
import sys

from ssl_jax import exporting


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--workdir", required=True, help="a pre-training run's WORKDIR")
  parser.add_argument("--format", required=True, choices=exporting.FORMATS)
  parser.add_argument("--out", required=True, help="the directory to write")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  exporting.export(args.workdir, args.format, args.out)


if __name__ == "__main__":
  main()
