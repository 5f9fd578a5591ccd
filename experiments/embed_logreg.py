"""The exported features are the study's: embed + scikit-learn reproduce `ssl_linear_probe`.

    python -m ssl_jax.main --config=configs/default.py --workdir=/tmp/ssl_default
    python experiments/embed_logreg.py --workdir=/tmp/ssl_default

Embeds the run's train and test digits with `python -m ssl_jax.embed`'s library, then for every
budget and draw of the run's study draws the same labels (study/loop.py's seeds), fits
scikit-learn's LogisticRegression on the standardised features of the drawn digits and scores
it on the test digits. Prints, per budget, its mean against the study's `ssl_linear_probe` row in
WORKDIR/results.json (a head fitted by Adam with a cross-validated weight decay, so the two need
not agree to the digit); the last line is the largest difference in points.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ssl_jax import inference  # noqa: E402
from ssl_jax.data import subsets  # noqa: E402
from ssl_jax.study import loop  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", default="", help="where the features go (default: WORKDIR/embed)")
  args = parser.parse_args()
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top

  config = inference.saved_config(args.workdir)
  out = args.out or os.path.join(args.workdir, "embed")
  features = {}
  for split in ("train", "test"):
    path = os.path.join(out, f"{split}.npy")
    inference.embed(args.workdir, config.data.source, path, split=split)
    features[split] = (np.load(path), np.load(os.path.join(out, f"{split}.labels.npy")))
  (train_x, train_y), (test_x, test_y) = features["train"], features["test"]
  with open(os.path.join(args.workdir, "results.json")) as f:
    rows = json.load(f)["label_efficiency"]
  study = {r["labels_per_class"]: r for r in rows if r["method"] == "ssl_linear_probe"}
  worst = 0.0
  for budget in config.label_efficiency.labels_per_class:
    accuracies = []
    for draw in range(config.label_efficiency.num_draws):
      subset = subsets.per_class(train_y, budget, loop.draw_seed(config, budget, draw))
      scaler = StandardScaler().fit(train_x[subset])
      fit = LogisticRegression(max_iter=2000).fit(
          scaler.transform(train_x[subset]), train_y[subset]
      )
      accuracies.append(np.mean(fit.predict(scaler.transform(test_x)) == test_y))
    ours = 100 * np.mean(accuracies)
    theirs = 100 * study[budget]["accuracy_mean"]
    worst = max(worst, abs(ours - theirs))
    print(
        f"{budget:>3} labels/class: embed + sklearn {ours:.2f} %, study's ssl_linear_probe "
        f"{theirs:.2f} % ({ours - theirs:+.2f})",
        flush=True,
    )
  print(f"largest difference: {worst:.2f} points")


if __name__ == "__main__":
  main()
