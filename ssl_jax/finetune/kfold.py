"""k-fold cross-validation on a small labelled set, and hyperparameter selection by its mean.

Folds are stratified (each class's examples are dealt round-robin over the folds, so a class's
count in any two validation folds differs by at most one), disjoint, cover every example once,
and depend only on the labels and the seed. Selection looks at the CV mean only: the test set
never reaches this module.
"""

import itertools

import numpy as np


def stratified_folds(labels, k, seed):
  """[(train indices, validation indices)] * k, sorted indices into `labels`."""
  labels = np.asarray(labels)
  classes, counts = np.unique(labels, return_counts=True)
  if k < 2:
    raise ValueError(f"finetune.kfold={k}: cross-validation needs at least 2 folds")
  if counts.min() < k:
    raise ValueError(
        f"finetune.kfold={k}: class {classes[np.argmin(counts)]} has only "
        f"{counts.min()} labelled examples; every class needs at least k"
    )
  rng = np.random.default_rng(seed)
  fold_of = np.empty(len(labels), np.int64)
  start = 0
  for c in classes:
    members = rng.permutation(np.flatnonzero(labels == c))
    fold_of[members] = (start + np.arange(len(members))) % k
    start = (start + len(members)) % k  # the next class starts where this one stopped: even sizes
  return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]


def can_split(labels, k):
  """Whether `stratified_folds(labels, k, ...)` works (k >= 2 and every class has >= k examples)."""
  return k >= 2 and np.unique(np.asarray(labels), return_counts=True)[1].min() >= k


def grid(defaults, choices, keys):
  """Every combination of `choices[key]` for `keys` (a key without choices keeps its default)."""
  options = [tuple(choices.get(key) or (defaults[key],)) for key in keys]
  return [{**defaults, **dict(zip(keys, values))} for values in itertools.product(*options)]


def cross_validate(fit_and_score, labels, points, *, k, seed):
  """Scores each hyperparameter point on the k folds; returns the results and the best one.

  fit_and_score(point, train_idx, val_idx, fold) -> (validation accuracy, best step).
  Each result: {'hyperparameters', 'fold_accuracies', 'fold_best_steps', 'mean', 'std'}; the best
  has the highest mean (the first such point on ties).
  """
  folds = stratified_folds(labels, k, seed)
  results = []
  for point in points:
    scores = [fit_and_score(point, tr, va, f) for f, (tr, va) in enumerate(folds)]
    accuracies = np.asarray([s[0] for s in scores], np.float64)
    results.append(
        {
            "hyperparameters": point,
            "fold_accuracies": accuracies.tolist(),
            "fold_best_steps": [int(s[1]) for s in scores],
            "mean": float(accuracies.mean()),
            "std": float(accuracies.std()),
        }
    )
  best = max(results, key=lambda r: r["mean"])  # max keeps the first of equal means
  return results, best
