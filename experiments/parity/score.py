"""One scorer for both sides of the parity suite (numpy + scikit-learn, importable from either
venv).

Frozen encoder features of the 4,000 training and 1,000 test digits ->
  knn20, knn200  cosine kNN over every training label, votes weighted by exp(similarity / 0.1)
                 (Wu et al. 2018's weighted kNN, what lightly's and solo-learn's kNN monitors use)
  probe1, probe10
                 scikit-learn logistic regression (C=0.1, features standardised) on 1 and 10 labels
                 per class, mean test accuracy over 5 label draws; the draws are seeded 0..4 and do
                 not depend on the run, so both sides are scored on the same labelled digits.
Test labels only score.
"""

import numpy as np
from sklearn.linear_model import LogisticRegression

PROBE_DRAWS = 5


def knn_accuracy(train_f, train_y, test_f, test_y, *, k, temperature=0.1, chunk=500):
  train_f = train_f / np.maximum(np.linalg.norm(train_f, axis=1, keepdims=True), 1e-12)
  test_f = test_f / np.maximum(np.linalg.norm(test_f, axis=1, keepdims=True), 1e-12)
  num_classes = int(train_y.max()) + 1
  correct = 0
  for start in range(0, len(test_f), chunk):
    sim = test_f[start : start + chunk] @ train_f.T
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    weights = np.exp(np.take_along_axis(sim, top, axis=1) / temperature)
    votes = np.zeros((len(top), num_classes))
    np.add.at(votes, (np.arange(len(top))[:, None], train_y[top]), weights)
    correct += int(np.sum(votes.argmax(1) == test_y[start : start + chunk]))
  return correct / len(test_f)


def probe_accuracy(train_f, train_y, test_f, test_y, *, per_class, seed):
  rng = np.random.default_rng(seed)
  idx = np.concatenate(
      [
          rng.choice(np.flatnonzero(train_y == c), per_class, replace=False)
          for c in np.unique(train_y)
      ]
  )
  mean, std = train_f.mean(0), train_f.std(0) + 1e-6
  head = LogisticRegression(max_iter=2000, C=0.1).fit((train_f[idx] - mean) / std, train_y[idx])
  return head.score((test_f - mean) / std, test_y)


def score(train_f, train_y, test_f, test_y):
  """-> {knn20, knn200, probe1, probe10} in percent."""
  train_f, test_f = np.asarray(train_f, np.float64), np.asarray(test_f, np.float64)
  out = {f"knn{k}": knn_accuracy(train_f, train_y, test_f, test_y, k=k) for k in (20, 200)}
  for n in (1, 10):
    out[f"probe{n}"] = float(
        np.mean(
            [
                probe_accuracy(train_f, train_y, test_f, test_y, per_class=n, seed=s)
                for s in range(PROBE_DRAWS)
            ]
        )
    )
  return {name: round(100 * value, 2) for name, value in out.items()}
