"""The UCR evaluation protocol (SVM, C search rule, determinism) and the few-label study's
pieces."""

import numpy as np
import pytest

from ssl_jax.study import baselines
from ssl_jax.study import loop
from ssl_jax.study import report


def _blobs(n_per_class, classes=3, dims=5, seed=0):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(classes), n_per_class)
  return rng.normal(size=(len(y), dims)) + 3 * np.eye(classes, dims)[y], y


def test_svm_searches_c_only_with_enough_series():
  x, y = _blobs(20)  # 60 series, 20 per class: 5-fold search over the grid
  _, c = baselines.svm_protocol(x, y)
  assert c in baselines.SVM_GRID
  x_small, y_small = _blobs(10)  # 30 series: under 50, C = inf
  assert baselines.svm_protocol(x_small, y_small)[1] == np.inf
  x_odd, y_odd = _blobs(20)
  y_odd[:56] = np.repeat([0, 1], 28)
  y_odd[56:] = 2  # a class of 4: C = inf without search
  assert baselines.svm_protocol(x_odd, y_odd)[1] == np.inf


def test_svm_protocol_is_deterministic_and_accurate():
  x, y = _blobs(20)
  xt, yt = _blobs(30, seed=1)
  svm = baselines.SvmProtocol(3)
  first = svm.score(svm.fit({}, x, y, seed=0), xt, yt)
  assert first == svm.score(svm.fit({}, x, y, seed=0), xt, yt)
  assert first > 0.9
  fitted = svm.fit({}, x, y, seed=0).variables
  assert svm.counts({})[0] == fitted.dual_coef_.size + fitted.intercept_.size > 0


def test_raw_series_baselines():
  rng = np.random.default_rng(0)
  t = np.linspace(0, 1, 20)
  y = np.arange(20) % 2
  x = np.where(y[:, None] == 1, np.sin(6 * t), t)[..., None] + rng.normal(0, 0.1, (20, 20, 1))
  x[0, -3:] = np.nan  # missing values count as 0
  for method in (baselines.NearestNeighbour(), baselines.RawLogreg()):
    assert method.score(method.fit({}, x[:10], y[:10], seed=0), x[10:], y[10:]) == 1.0
  assert baselines.RawLogreg().fit({}, x[:10], y[:10], seed=0).variables.coef_.shape == (1, 20)


def test_budgets_keep_what_every_class_can_meet():
  labels = np.array([0] * 3 + [1] * 7)
  notes = []
  assert loop.budgets(labels, (1, 5, -1), notes.append) == [(1, 1), (-1, 7)]  # 5 > the class of 3
  assert notes == [
      "skipping 5 labels per class: class 0 has 3 labelled examples "
      "(label_efficiency.labels_per_class)"
  ]
  assert loop.budgets(np.array([0, 0, 1, 1]), (1, 2, -1)) == [(1, 1), (2, 2)]  # 2 = all
  with pytest.raises(ValueError, match="labels_per_class has 0"):
    loop.budgets(labels, (0,))


def test_study_rows_use_the_image_jobs_table():
  rows = [
      {
          "labels_per_class": b,
          "method": m,
          "accuracy_mean": 0.5,
          "accuracy_std": 0.1,
          "n_draws": 1,
          "accuracies": [0.5],
      }
      for b in (1, 7)
      for m in ("ssl_svm", "supervised_scratch", "nn1_euclidean", "raw_logreg")
  ]
  table = report.format_table(rows)
  assert "ssl_svm" in table and "nn1_euclidean" in table and len(table.splitlines()) >= 3
