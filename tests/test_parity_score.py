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


def _result(side, knn, seed, overrides=()):
  return dict(
      side=side,
      method="byol",
      seed=seed,
      steps=450,
      overrides=list(overrides),
      knn20=knn,
      knn200=knn,
      probe1=knn,
      probe10=knn,
      pretrain_s=10.0,
      final_loss=1.0,
  )


def test_table_flags_a_deficit_beyond_two_standard_errors_and_keeps_overrides_apart():
  import table  # pylint: disable=g-import-not-at-top

  level = [_result("ours", v, i) for i, v in enumerate((80, 81, 82))] + [
      _result("peer", v, i) for i, v in enumerate((80.5, 81.5, 82.5))
  ]
  below = [_result("ours", v, i, ["--x=1"]) for i, v in enumerate((70, 71, 72))] + [
      _result("peer", v, i, ["--x=1"]) for i, v in enumerate((80, 81, 82))
  ]
  rows = {r[0]: r for r in table.rows(level + below)}
  assert rows["`byol`"][-1] == "level"
  assert rows["`byol` --x=1"][-1] == "**below**"
  assert rows["`byol`"][3].startswith("81.0 +- 1.0 / 81.5 +- 1.0")
  ours = list(table.ours_rows(below + [_result("ours", 50, 0, ["--config.data.source=npz:v"])]))
  assert [r[0] for r in ours] == ["`byol`", "`byol` --x=1"]  # the data source is not a setting
  assert ours[1][2] == "3" and ours[1][3] == "71.0 +- 1.0"


def test_tune_finetune_grid_is_the_product_of_its_lists():
  import tune_finetune  # pylint: disable=g-import-not-at-top

  grid = tune_finetune.parse_grid("finetune.learning_rate=1e-3,3e-4 finetune.layer_decay=1.0")
  assert grid == [
      {"finetune.learning_rate": "1e-3", "finetune.layer_decay": "1.0"},
      {"finetune.learning_rate": "3e-4", "finetune.layer_decay": "1.0"},
  ]
  assert tune_finetune.parse_grid("") == [{}]
  try:
    tune_finetune.parse_grid("finetune.learning_rate")
  except ValueError as e:
    assert "KEY=V1,V2" in str(e)
  else:
    raise AssertionError("a grid item without values must fail")
