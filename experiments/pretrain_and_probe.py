"""Pre-train with config overrides, then score the features: the quick loop for choosing a recipe.

  python experiments/pretrain_and_probe.py --config=configs/default.py --workdir=DIR \
      [--config.KEY=VALUE ...]

Pre-trains as `python -m ssl_jax.main` would (resuming from DIR's checkpoints), without the
label-efficiency study, then scores the encoder's features (BatchNorm running statistics) with
`diagnose_features.py`'s measures: cosine kNN (k=20, every training label) and scikit-learn
logistic regression (C=0.1) at 1 and 10 labels per class, mean over 3 seeded draws. Test labels
only score. The last line is one JSON object: the overrides, knn, probe1, probe10, pretrain_s.
experiments/README.md ("Choosing the views") holds what it measured.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import diagnose_features  # noqa: E402
from ssl_jax import config as config_lib  # noqa: E402
from ssl_jax import train  # noqa: E402


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--config", required=True)
  parser.add_argument("--workdir", required=True)
  args, overrides = parser.parse_known_args()
  bad = [o for o in overrides if not o.startswith("--config.")]
  if bad:
    parser.error(f"unrecognised arguments {bad}; overrides look like --config.KEY=VALUE")
  c = config_lib.load(args.config)
  c = config_lib.override(c, [o[len("--config.") :] for o in overrides])
  c.label_efficiency.enabled = False
  c.evals = {}
  c = config_lib.finalize(c, args.workdir)
  start = time.time()
  train_source, test_source = train.load_data(c)
  run = train.train(c, args.workdir, data=(train_source, test_source))
  pretrain_s = time.time() - start
  (train_x, train_y), (test_x, test_y) = train_source.arrays(), test_source.arrays()
  a, b = run.features_of(train_x), run.features_of(test_x)  # the study's features
  probe = lambda n: float(
      np.mean(
          [diagnose_features.probe_accuracy(a, train_y, b, test_y, n, seed=s) for s in range(3)]
      )
  )
  print(
      json.dumps(
          dict(
              overrides=overrides,
              knn=float(diagnose_features.knn_accuracy(a, train_y, b, test_y)),
              probe1=probe(1),
              probe10=probe(10),
              pretrain_s=round(pretrain_s, 1),
          )
      )
  )


if __name__ == "__main__":
  main()
