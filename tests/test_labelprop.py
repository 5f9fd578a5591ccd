"""Label propagation: scikit-learn's spreading against Zhou et al.'s closed form in numpy, the
confident-row pick, and the study method on separable features."""

import numpy as np

from ssl_jax.finetune import labelprop


def _clusters(per_class=30, classes=3, dim=16, seed=0):
  rng = np.random.default_rng(seed)
  centers = 8 * np.eye(classes, dim)
  x = np.concatenate([c + rng.standard_normal((per_class, dim)) for c in centers])
  return x.astype(np.float32), np.repeat(np.arange(classes), per_class)


def _closed_form(features, labels, n_labelled, k, alpha):
  """F = (I - alpha S)^-1 Y, rows normalised; S = D^-1/2 A D^-1/2 over the kNN graph A (each
  point's k nearest by cosine, itself among them, self-loops then dropped), D its in-degrees (1
  where none): the
  graph scikit-learn's LabelSpreading(kernel="knn") builds (Zhou et al. 2004, Eq. 2-4)."""
  x = features / np.linalg.norm(features, axis=1, keepdims=True)
  n = len(x)
  distance = ((x[:, None] - x[None]) ** 2).sum(-1)
  a = np.zeros((n, n))
  for i in range(n):
    a[i, np.argsort(distance[i], kind="stable")[:k]] = 1.0
  np.fill_diagonal(a, 0.0)
  degree = a.sum(0)
  degree[degree == 0] = 1.0  # a point no other point counts among its neighbours
  s = a / np.sqrt(degree)[:, None] / np.sqrt(degree)[None]
  y = np.zeros((n, labels.max() + 1))
  y[np.arange(n_labelled), labels[:n_labelled]] = 1.0
  f = np.linalg.solve(np.eye(n) - alpha * s, y)
  return f / f.sum(1, keepdims=True)


def test_spreading_reaches_the_closed_form():
  x, y = _clusters()
  x += (
      np.random.default_rng(1).standard_normal(x.shape).astype(np.float32) * 3
  )  # overlap: soft rows
  labelled = np.array([0, 1, 30, 31, 60, 61])
  pool = np.setdiff1d(np.arange(len(x)), labelled)
  fitted = labelprop.spread(x[labelled], y[labelled], x[pool], neighbors=6, alpha=0.9)
  want = _closed_form(np.concatenate([x[labelled], x[pool]]), y[labelled], len(labelled), 6, 0.9)
  got = fitted.label_distributions_
  assert 0.05 < got[len(labelled) :].max(1).min() < 0.95  # not a trivially hard assignment
  np.testing.assert_allclose(got, want, atol=2e-3)


def test_one_label_per_cluster_labels_separable_clusters():
  x, y = _clusters()
  labelled = np.array([0, 30, 60])
  pool = np.setdiff1d(np.arange(len(x)), labelled)
  fitted = labelprop.spread(x[labelled], y[labelled], x[pool], neighbors=5, alpha=0.7)
  assert np.array_equal(fitted.transduction_[3:], y[pool])
  method = labelprop.LabelPropMethod(x[pool])
  fit = method.fit(
      dict(labelprop_neighbors=5, labelprop_alpha=0.7),
      x[labelled],
      y[labelled],
      seed=0,
      val=(x[pool], y[pool]),
  )
  assert fit.val_accuracy == 1.0
  test_x, test_y = _clusters(per_class=10, seed=2)  # new points: never in the graph
  assert method.score(fit, test_x, test_y) == 1.0
  assert method.counts({}) == (0, 0)


def test_confident_takes_the_surest_rows_of_each_class():
  distributions = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.95, 0.05], [0.45, 0.55]])
  rows, classes = labelprop.confident(distributions, 2, 2)
  assert rows.tolist() == [0, 2, 3, 4] and classes.tolist() == [0, 1, 0, 1]
  rows, classes = labelprop.confident(distributions[:2], 5, 2)  # class 1 has no rows: none taken
  assert rows.tolist() == [0, 1] and classes.tolist() == [0, 0]
