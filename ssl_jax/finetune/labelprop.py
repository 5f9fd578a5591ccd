"""Label propagation over a kNN graph of frozen features (Zhou et al. 2004, "Learning with local and
global consistency"; on self-supervised features as in Iscen et al. 2019).

The labelled examples and the unlabelled pool form one graph A: each point links to its
`labelprop_neighbors` nearest points by cosine similarity (itself among them, its self-loop then
dropped; the features are L2-normalised, so Euclidean neighbours are cosine ones). The labels
spread over S = D^-1/2 A D^-1/2 (D: in-degrees) until F = alpha * S F + (1 - alpha) Y holds, i.e.
F = (1 - alpha) (I - alpha S)^-1 Y, rows normalised. scikit-learn's `LabelSpreading`
(kernel="knn") does the spreading; tests/test_labelprop.py checks it against that closed form. A new
point takes the summed label distributions of its nearest graph points (inductive, as
`LabelSpreading.predict`), so test points never enter the graph.

It is a study method of its own (`ssl_labelprop`: the cheapest strong baseline on a pre-trained
encoder, no training at all) and FixMatch's optional start (`finetune.fixmatch_labelprop`: the
pool examples it is surest of join the labelled set with their propagated labels).
"""

import warnings

import numpy as np
from sklearn import exceptions
from sklearn import semi_supervised

from ssl_jax.finetune import step as step_lib


def normalise(features):
  features = np.asarray(features, np.float64).reshape(len(features), -1)
  return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def spread(labelled, labels, pool, *, neighbors, alpha, max_iter=1000):
  """A fitted `LabelSpreading` on the labelled features (n, D) with `labels` and the unlabelled
  `pool` (N, D), both L2-normalised here; its `label_distributions_` rows follow [labelled; pool].
  A graph of fewer than `neighbors` points links every point to all."""
  x = normalise(np.concatenate([np.asarray(labelled), np.asarray(pool)]))
  y = np.concatenate([np.asarray(labels, np.int64), np.full(len(pool), -1, np.int64)])
  if int(neighbors) < 2:
    raise ValueError(f"labelprop_neighbors={neighbors}; accepted: >= 2 (each point counts itself)")
  model = semi_supervised.LabelSpreading(
      kernel="knn", n_neighbors=min(int(neighbors), len(x)), alpha=float(alpha), max_iter=max_iter
  )
  with warnings.catch_warnings():
    warnings.simplefilter("error", exceptions.ConvergenceWarning)  # never a half-spread answer
    return model.fit(x, y)


def confident(distributions, per_class, num_classes):
  """Row indices of the `per_class` rows most confidently assigned to each class (fewer where a
  class has fewer rows assigned), and their classes."""
  assigned, confidence = distributions.argmax(1), distributions.max(1)
  rows = []
  for c in range(num_classes):
    members = np.flatnonzero(assigned == c)
    rows.append(members[np.argsort(-confidence[members], kind="stable")[:per_class]])
  rows = np.sort(np.concatenate(rows)).astype(np.int64)
  return rows, assigned[rows]


class LabelPropMethod:
  """Label propagation on precomputed features: `fit` takes the drawn examples' features (x) and
  labels, the graph holds them and `pool` (every training example's features)."""

  mode = "labelprop"

  def __init__(self, pool, *, encoder_params=0):
    self.pool, self.encoder_params = pool, encoder_params

  def fit(self, hp, x, y, *, seed, val=None, log_every=0):
    del seed, log_every  # deterministic
    model = spread(
        x, y, self.pool, neighbors=hp["labelprop_neighbors"], alpha=hp["labelprop_alpha"]
    )
    val_accuracy = self._accuracy(model, *val) if val is not None else float("nan")
    return step_lib.Fit({"labelprop": model}, {}, 0, 0, val_accuracy, [])

  @staticmethod
  def _accuracy(model, x, y):
    return float(np.mean(model.predict(normalise(x)) == np.asarray(y)))

  def score(self, fitted, x, y):
    return self._accuracy(fitted.variables["labelprop"], x, y)

  def counts(self, hp):
    del hp
    return 0, self.encoder_params
