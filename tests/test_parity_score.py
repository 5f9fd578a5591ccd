"""The parity suite's scorer (experiments/parity/score.py) against a brute-force reference."""
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "experiments" / "parity"))
import score  # noqa: E402


def _weighted_knn_loop(train_f, train_y, test_f, k, temperature):
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  train_f, test_f = unit(train_f), unit(test_f)
  predictions = []
  for x in test_f:
    sim = train_f @ x
    votes = {}
    for i in np.argsort(-sim)[:k]:
      votes[train_y[i]] = votes.get(train_y[i], 0.0) + np.exp(sim[i] / temperature)
    predictions.append(max(votes, key=votes.get))
  return np.array(predictions)


def test_weighted_knn_matches_a_loop():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(3, 8))
  train_y, test_y = rng.integers(0, 3, 120), rng.integers(0, 3, 40)
  train_f = centres[train_y] + 0.8 * rng.normal(size=(120, 8))
  test_f = centres[test_y] + 0.8 * rng.normal(size=(40, 8))
  for k in (1, 7, 50):
    want = np.mean(_weighted_knn_loop(train_f, train_y, test_f, k, 0.1) == test_y)
    got = score.knn_accuracy(train_f, train_y, test_f, test_y, k=k, temperature=0.1, chunk=16)
    assert got == want


def test_separable_features_score_full_marks():
  rng = np.random.default_rng(1)
  train_y, test_y = np.repeat(np.arange(4), 60), np.repeat(np.arange(4), 5)
  train_f = np.eye(4)[train_y] * 5 + 0.1 * rng.normal(size=(240, 4))
  scores = score.score(train_f, train_y, np.eye(4)[test_y] * 5, test_y)
  assert scores == {"knn20": 100.0, "knn200": 100.0, "probe1": 100.0, "probe10": 100.0}
