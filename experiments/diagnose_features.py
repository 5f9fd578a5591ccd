"""Are a finished run's encoder features better than pixels? kNN and few-label probes on both.

  python experiments/diagnose_features.py --config=configs/default.py --workdir=/tmp/main_fair

Restores the run's last checkpoint in WORKDIR (the config must be the run's), computes the
encoder's features on the train and test splits with BatchNorm's running statistics (what every
evaluation uses) and with the batch's own statistics, and prints for each, and for raw pixels:
cosine kNN accuracy (k=20, every training label), and scikit-learn logistic regression (C=0.1,
standardised features) at 10 and at 1 label per class (one seeded draw).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402

from ssl_jax import config as config_lib  # noqa: E402
from ssl_jax import train  # noqa: E402


def knn_accuracy(train_x, train_y, test_x, test_y, k=20):
  return KNeighborsClassifier(k, metric="cosine").fit(train_x, train_y).score(test_x, test_y)


def probe_accuracy(train_x, train_y, test_x, test_y, per_class, seed=0):
  rng = np.random.default_rng(seed)
  idx = np.concatenate(
      [
          rng.choice(np.flatnonzero(train_y == c), per_class, replace=False)
          for c in np.unique(train_y)
      ]
  )
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  head = LogisticRegression(max_iter=2000, C=0.1).fit((train_x[idx] - mean) / std, train_y[idx])
  return head.score((test_x - mean) / std, test_y)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True, help="the run's configs/NAME.py[:ARG]")
  parser.add_argument("--workdir", required=True, help="the finished run's directory")
  args = parser.parse_args()
  config = config_lib.load(args.config)
  config.label_efficiency.enabled = False
  config.evals = {}
  train_source, test_source = train.load_data(config)
  run = train.train(config, args.workdir)
  comps = run.components
  variables = comps.task.encoder_variables(
      run.state.params, run.state.model_state, run.state.task_state
  )
  train_x, train_y = train_source.arrays()
  test_x, test_y = test_source.arrays()

  def features(images, batch_statistics):
    if batch_statistics:
      apply = lambda v, x: comps.encoder.apply(
          v, comps.task.preprocess(x), train=True, mutable=["batch_stats"]
      )[0]
    else:
      apply = lambda v, x: comps.encoder.apply(v, comps.task.preprocess(x), train=False)
    apply = jax.jit(apply)
    return np.concatenate(
        [np.asarray(apply(variables, images[i : i + 500])) for i in range(0, len(images), 500)]
    )

  rows = []
  for name, batch_statistics in (
      ("encoder, running BN statistics", False),
      ("encoder, batch BN statistics", True),
  ):
    rows.append((name, features(train_x, batch_statistics), features(test_x, batch_statistics)))
  pixels = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0 + 1e-6
  rows.append(("raw pixels", pixels(train_x), pixels(test_x)))
  for name, a, b in rows:
    print(
        f"{name:32s} knn={knn_accuracy(a, train_y, b, test_y):.4f} "
        f"probe@10={probe_accuracy(a, train_y, b, test_y, 10):.4f} "
        f"probe@1={probe_accuracy(a, train_y, b, test_y, 1):.4f}",
        flush=True,
    )


if __name__ == "__main__":
  main()
