"""Time-series evaluation: TS2Vec's UCR protocol (an RBF SVM on max-pooled representations) and a
few-label study in the image job's results.json schema (label_efficiency.write / format_table).

The protocol (Yue et al. 2022, Sec. 4.1, and the reference code's `fit_svm`): the representation
of a series is the max over its timesteps of the encoder's output; an RBF SVM (gamma 'scale') is
fitted on the training representations, with C picked by 5-fold grid search over
{1e-4, ..., 1e4, inf} by accuracy, except C = inf without search when there are under 50 series
or a class has under 5 (the reference tests N // K < 5, the mean class size; we test the smallest
class, which also keeps the 5 folds stratifiable). Searches on more than 10,000 series use a
stratified sample of 10,000, as the reference does. scikit-learn's SVC and stratified folds are
deterministic, so a seed gives one number.

The study, at each labels-per-class budget (-1: every training label) that every class can meet:
  ssl_svm             the protocol's SVM on the frozen TS2Vec representations of the subset
  supervised_scratch  the same encoder + a linear layer, trained from random init on the subset
                      (AdamW, cosine from finetune.learning_rate, cross-entropy, finetune.steps
                      batches of finetune.batch_size drawn with replacement)
  nn1_euclidean       1-nearest neighbour in Euclidean distance on the raw series
  raw_logreg          scikit-learn's logistic regression (L2, C=1) on the raw series
Missing values (NaN) count as 0 for the two raw-series baselines.
"""
import json
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.svm import SVC

from ssl_jax import label_efficiency
from ssl_jax import models
from ssl_jax import train
from ssl_jax.models import conv as conv_lib

METHODS = ("ssl_svm", "supervised_scratch", "nn1_euclidean", "raw_logreg")
SVM_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, np.inf)
MAX_SEARCH_SAMPLES = 10_000
ALL_LABELS = -1


def svm_protocol(train_features, train_labels, seed=0):
  """The fitted SVC and its C, per the protocol above."""
  counts = np.unique(train_labels, return_counts=True)[1]
  if len(train_labels) < 50 or counts.min() < 5:
    return SVC(C=np.inf, gamma="scale").fit(train_features, train_labels), np.inf
  x, y = train_features, train_labels
  if len(y) > MAX_SEARCH_SAMPLES:
    x, _, y, _ = train_test_split(x, y, train_size=MAX_SEARCH_SAMPLES, random_state=seed, stratify=y)
  search = GridSearchCV(SVC(kernel="rbf", gamma="scale"), {"C": list(SVM_GRID)},
                        cv=StratifiedKFold(5), n_jobs=None)
  search.fit(x, y)
  return search.best_estimator_, float(search.best_params_["C"])


def svm_accuracy(train_features, train_labels, test_features, test_labels, seed=0):
  svm, c = svm_protocol(train_features, train_labels, seed)
  return float(np.mean(svm.predict(test_features) == test_labels)), c


def raw(x):
  """(N, T, F) series -> (N, T*F) with NaN as 0, for the raw-series baselines."""
  return np.nan_to_num(x.reshape(len(x), -1), nan=0.0)


def nn1_accuracy(train_x, train_y, test_x, test_y):
  a, b = raw(train_x).astype(np.float64), raw(test_x).astype(np.float64)
  distances = (b ** 2).sum(1)[:, None] - 2 * b @ a.T + (a ** 2).sum(1)[None, :]
  return float(np.mean(train_y[np.argmin(distances, axis=1)] == test_y))


def logreg_accuracy(train_x, train_y, test_x, test_y):
  model = LogisticRegression(C=1.0, max_iter=1000).fit(raw(train_x), train_y)
  return float(np.mean(model.predict(raw(test_x)) == test_y))


class Classifier(nn.Module):
  encoder: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(self.num_classes)(self.encoder(x, train=train))


class ScratchTrainer:
  """The pre-training encoder's architecture with a linear layer, trained on labels only; one compile
  per set (fixed batch shape, batches drawn with replacement from the subset)."""

  def __init__(self, config, num_classes):
    recipe = config.finetune
    self.model = Classifier(models.build_encoder(config.model), num_classes)
    self.steps, self.batch_size = recipe.steps, recipe.batch_size
    self.tx = optax.adamw(optax.cosine_decay_schedule(recipe.learning_rate, recipe.steps),
                          weight_decay=recipe.weight_decay)
    self.eval_batch = config.data.eval_batch_size
    options = conv_lib.compiler_options(config.model.cpu_conv_library)
    self._step = jax.jit(self._step_fn, donate_argnums=0, compiler_options=options)
    self._predict = jax.jit(lambda params, x: jnp.argmax(self.model.apply({"params": params}, x), -1),
                            compiler_options=options)

  def _step_fn(self, state, x, y, rng):
    def loss_fn(params):
      logits = self.model.apply({"params": params}, x, train=True, rngs={"dropout": rng})
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grads = jax.grad(loss_fn)(state["params"])
    updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
    return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}

  def fit_and_score(self, x, y, test_x, test_y, seed):
    rng = jax.random.PRNGKey(seed)
    params = self.model.init(rng, jnp.zeros((2,) + x.shape[1:], jnp.float32))["params"]
    state = {"params": params, "opt_state": self.tx.init(params)}
    sampler = np.random.default_rng(seed)
    for step in range(self.steps):
      idx = sampler.integers(0, len(x), self.batch_size)
      state = self._step(state, x[idx], y[idx], jax.random.fold_in(rng, step))
    predictions = []
    for start in range(0, len(test_x), self.eval_batch):
      chunk = test_x[start:start + self.eval_batch]
      padded = np.pad(chunk, ((0, self.eval_batch - len(chunk)), (0, 0), (0, 0)))
      predictions.append(np.asarray(self._predict(state["params"], padded))[:len(chunk)])
    return float(np.mean(np.concatenate(predictions) == test_y))


def budgets(labels, labels_per_class):
  """(budget, labels_per_class recorded) pairs every class can meet; 'all' is recorded as the
  largest class size and dropped when a smaller budget already takes every label."""
  counts = np.bincount(labels)
  out = []
  for per_class in labels_per_class:
    if per_class == ALL_LABELS:
      if not any(b >= counts.max() for b, _ in out):
        out.append((ALL_LABELS, int(counts.max())))
    elif per_class >= 1 and per_class <= counts.min():
      out.append((int(per_class), int(per_class)))
    elif per_class < 1:
      raise ValueError(f"label_efficiency.labels_per_class has {per_class}; use a count >= 1 or "
                       f"{ALL_LABELS} for every label")
  return out


def study(config, train_x, train_y, test_x, test_y, train_features, test_features):
  """The label-efficiency rows (image job's schema; the 'all' rows carry all_labels=True)."""
  spec = config.label_efficiency
  unknown = sorted(set(spec.methods) - set(METHODS))
  if unknown:
    raise ValueError(f"label_efficiency.methods has {unknown}; time-series methods: {list(METHODS)}")
  num_classes = int(train_y.max()) + 1
  scratch = ScratchTrainer(config, num_classes) if "supervised_scratch" in spec.methods else None
  rows = []
  for budget, recorded in budgets(train_y, spec.labels_per_class):
    scores = {m: [] for m in spec.methods}
    for draw in range(spec.num_draws):
      seed = config.seed * 1_000_003 + max(budget, 0) * 1009 + draw
      subset = (np.arange(len(train_y)) if budget == ALL_LABELS
                else label_efficiency.draw_subset(train_y, budget, seed))
      x, y = train_x[subset], train_y[subset]
      deterministic = budget == ALL_LABELS and draw > 0  # the same subset again: nothing to redraw
      for method in spec.methods:
        if deterministic and method != "supervised_scratch":
          continue
        if method == "ssl_svm":
          scores[method].append(svm_accuracy(train_features[subset], y, test_features, test_y,
                                             seed)[0])
        elif method == "supervised_scratch":
          scores[method].append(scratch.fit_and_score(x, y, test_x, test_y, seed))
        elif method == "nn1_euclidean":
          scores[method].append(nn1_accuracy(x, y, test_x, test_y))
        else:
          scores[method].append(logreg_accuracy(x, y, test_x, test_y))
    for method in spec.methods:
      acc = np.asarray(scores[method])
      row = {"labels_per_class": recorded, "method": method, "accuracy_mean": float(acc.mean()),
             "accuracy_std": float(acc.std()), "n_draws": len(acc), "accuracies": acc.tolist()}
      if budget == ALL_LABELS:
        row["all_labels"] = True
      rows.append(row)
      print(f"labels/class {'all' if budget == ALL_LABELS else budget:>4}  {method:20s} "
            f"{acc.mean():.4f} +- {acc.std():.4f}", flush=True)
  return rows


def run(config, workdir):
  """Pre-trains (train.train), then the protocol and, if enabled, the study; writes results.json."""
  start = time.perf_counter()
  result = train.train(config, workdir)
  train_seconds = time.perf_counter() - start
  train_x, train_y = result.train_source.arrays()
  test_source = result.test_source or train.load_data(config)[1]
  test_x, test_y = test_source.arrays()
  start = time.perf_counter()
  train_features, test_features = result.features_of(train_x), result.features_of(test_x)
  accuracy, c = svm_accuracy(train_features, train_y, test_features, test_y, seed=config.seed)
  eval_seconds = time.perf_counter() - start
  print(f"SVM protocol: test accuracy {accuracy:.4f} (C={c})", flush=True)
  data = result.train_source.data
  extra = {"dataset": data.name, "test_accuracy": accuracy, "svm_C": c,
           "train_seconds": train_seconds, "protocol_seconds": eval_seconds,
           "iterations": int(result.state.step), "num_train": len(train_y), "num_test": len(test_y),
           "length": int(train_x.shape[1]), "features": int(train_x.shape[2]),
           "num_classes": int(train_y.max()) + 1, "normalised_here": data.normalised,
           "pretraining": result.history[-1] if result.history else {}}
  if jax.process_index() != 0:
    return result, extra
  if config.label_efficiency.enabled:
    start = time.perf_counter()
    rows = study(config, train_x, train_y, test_x, test_y, train_features, test_features)
    extra["study_seconds"] = time.perf_counter() - start
    label_efficiency.write(workdir, rows, extra, title=f"UCR {data.name}: ts2vec pre-training")
    print(f"wrote {os.path.join(workdir, 'results.json')} and label_efficiency.png", flush=True)
  else:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump({"label_efficiency": [], **extra}, f, indent=2)
  return result, extra
