"""The UCR evaluation protocol (SVM, C search rule, determinism) and the few-label study's pieces."""
import numpy as np
import pytest

from ssl_jax import label_efficiency
from ssl_jax import timeseries_eval


def _blobs(n_per_class, classes=3, dims=5, seed=0):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(classes), n_per_class)
  return rng.normal(size=(len(y), dims)) + 3 * np.eye(classes, dims)[y], y


def test_svm_searches_c_only_with_enough_series():
  x, y = _blobs(20)  # 60 series, 20 per class: 5-fold search over the grid
  _, c = timeseries_eval.svm_protocol(x, y)
  assert c in timeseries_eval.SVM_GRID
  x_small, y_small = _blobs(10)  # 30 series: under 50, C = inf
  assert timeseries_eval.svm_protocol(x_small, y_small)[1] == np.inf
  x_odd, y_odd = _blobs(20)
  y_odd[:56] = np.repeat([0, 1], 28)
  y_odd[56:] = 2  # a class of 4: C = inf without search
  assert timeseries_eval.svm_protocol(x_odd, y_odd)[1] == np.inf


def test_svm_protocol_is_deterministic_and_accurate():
  x, y = _blobs(20)
  xt, yt = _blobs(30, seed=1)
  first = timeseries_eval.svm_accuracy(x, y, xt, yt, seed=0)
  assert first == timeseries_eval.svm_accuracy(x, y, xt, yt, seed=0)
  assert first[0] > 0.9


def test_raw_series_baselines():
  rng = np.random.default_rng(0)
  t = np.linspace(0, 1, 20)
  y = np.arange(20) % 2
  x = np.where(y[:, None] == 1, np.sin(6 * t), t)[..., None] + rng.normal(0, 0.1, (20, 20, 1))
  x[0, -3:] = np.nan  # missing values count as 0
  assert timeseries_eval.nn1_accuracy(x[:10], y[:10], x[10:], y[10:]) == 1.0
  assert timeseries_eval.logreg_accuracy(x[:10], y[:10], x[10:], y[10:]) == 1.0


def test_budgets_keep_what_every_class_can_meet():
  labels = np.array([0] * 3 + [1] * 7)
  assert timeseries_eval.budgets(labels, (1, 5, -1)) == [(1, 1), (-1, 7)]  # 5 > the class of 3
  assert timeseries_eval.budgets(np.array([0, 0, 1, 1]), (1, 2, -1)) == [(1, 1), (2, 2)]  # 2 = all
  with pytest.raises(ValueError, match="labels_per_class has 0"):
    timeseries_eval.budgets(labels, (0,))


def test_study_rows_use_the_image_jobs_table():
  rows = [{"labels_per_class": b, "method": m, "accuracy_mean": 0.5, "accuracy_std": 0.1,
           "n_draws": 1, "accuracies": [0.5]} for b in (1, 7) for m in timeseries_eval.METHODS]
  table = label_efficiency.format_table(rows)
  assert "ssl_svm" in table and "nn1_euclidean" in table and len(table.splitlines()) >= 3
