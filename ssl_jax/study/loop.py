"""The study's one loop, for every modality: budgets, label draws, hyperparameter choice, rows.

`run(config, built, train_labels, test_labels)` takes the methods a modality built,
{name: (method, train inputs, test inputs)}; inputs are anything that indexes by row (arrays,
lazily read images, sparse matrices). For each budget of `label_efficiency.labels_per_class`
(-1, ALL_LABELS: every training label) that every class can meet, and each of
`label_efficiency.num_draws` seeded per-class draws (data/subsets.py), every method is fitted on
the drawn labels and scored on the test inputs. Budgets a class cannot meet are skipped with a
printed note; "every label" is recorded as the largest class's size and dropped when a smaller
budget already takes every label.

A method has `mode`, `fit(hp, x, y, *, seed, val=None, log_every=0) -> step.Fit`,
`score(fit, x, y) -> accuracy` and `counts(hp) -> (trainable, total parameters)`. Its
hyperparameters: for a mode with a CV grid (finetune/protocol.py:GRID_KEYS), k-fold CV on draw
0's labels picks a point of the grid and every draw of the budget uses it; a method with a
`teacher` (distillation) takes its teacher's; other methods take `method.defaults(finetune
config)` or none; each method's finetune config has the budget's `finetune.per_budget` settings
and its own `finetune.per_method` settings over it (methods.settings_for). A `deterministic`
method fits once on "every label" (the draws would repeat the same subset). Test labels only score.
"""

import functools
import time

import numpy as np

from ssl_jax.data import sources
from ssl_jax.data import subsets
from ssl_jax.finetune import protocol
from ssl_jax.study import methods

ALL_LABELS = -1
_print = functools.partial(print, flush=True)


def draw_seed(config, budget, draw):
  """The label draw's (and its fits') seed: the same budget and draw give the same labels."""
  return config.seed * 1_000_003 + max(budget, 0) * 1009 + draw


def budgets(labels, labels_per_class, log=_print):
  """[(budget, labels per class recorded)] that every class can meet, in the given order."""
  counts = np.bincount(np.asarray(labels)[np.asarray(labels) >= 0])
  out = []
  for per_class in labels_per_class:
    if per_class == ALL_LABELS:
      if not any(recorded >= counts.max() for _, recorded in out):
        out.append((ALL_LABELS, int(counts.max())))
    elif per_class < 1:
      raise ValueError(
          f"label_efficiency.labels_per_class has {per_class}; accepted: counts >= 1, "
          f"or {ALL_LABELS} for every label"
      )
    elif per_class <= counts.min():
      out.append((int(per_class), int(per_class)))
    else:
      log(
          f"skipping {per_class} labels per class: class {int(np.argmin(counts))} has "
          f"{counts.min()} labelled examples (label_efficiency.labels_per_class)"
      )
  return out


def run(config, built, train_labels, test_labels, log=_print, on_fit=None):
  """The rows of `built` over the budgets and draws of `config.label_efficiency`. `on_fit(name,
  budget, draw, method, fit, test accuracy)`, if given, sees every fit (prediction.Keeper)."""
  study = config.label_efficiency
  methods.check_per_budget(config.finetune)
  # teachers before the methods that distil them; rows stay in `built`'s order
  order = sorted(built, key=lambda name: hasattr(built[name][0], "teacher"))
  rows = []
  for budget, recorded in budgets(train_labels, study.labels_per_class, log):
    scores, seconds, chosen = {m: [] for m in built}, {m: [] for m in built}, {}
    for draw in range(study.num_draws):
      seed = draw_seed(config, budget, draw)
      subset = (
          np.arange(len(train_labels))
          if budget == ALL_LABELS
          else subsets.per_class(train_labels, budget, seed)
      )
      labels = train_labels[subset]
      decoded = {}  # methods that share lazily read images decode the drawn ones once per draw
      fits = {}  # this draw's fits, for the methods that distil them
      for name in order:
        method, train_x, test_x = built[name]
        if budget == ALL_LABELS and draw > 0 and getattr(method, "deterministic", False):
          continue  # the same subset again: nothing to redraw
        drawn = train_x[subset]
        if isinstance(drawn, sources.LazyImages):
          if id(train_x) not in decoded:
            decoded[id(train_x)] = np.asarray(drawn)
          drawn = decoded[id(train_x)]
        if draw == 0:
          chosen[name] = _choose(
              config, name, method, chosen, drawn, labels, seed, log, budget=budget
          )
        started = time.time()
        teacher = getattr(method, "teacher", None)
        extra = dict(teacher_fit=fits[teacher], subset=subset) if teacher else {}
        fits[name] = method.fit(chosen[name][0], drawn, labels, seed=seed, **extra)
        scores[name].append(method.score(fits[name], test_x, test_labels))
        if on_fit is not None:
          on_fit(name, budget, draw, method, fits[name], scores[name][-1])
        seconds[name].append(time.time() - started)
    for name, (method, _, _) in built.items():
      rows.append(_row(name, method, recorded, scores[name], seconds[name], *chosen[name]))
      if budget == ALL_LABELS:
        rows[-1]["all_labels"] = True
      r = rows[-1]
      log(
          f"labels/class {'all' if budget == ALL_LABELS else budget:>4}  {name:20s} "
          f"{r['accuracy_mean']:.4f} +- {r['accuracy_std']:.4f}  trains {r['trainable_params']:,} "
          f"of {r['total_params']:,} params  {r['seconds_per_draw']:.1f} s/draw"
      )
  return rows


def _choose(config, name, method, chosen, x, y, seed, log, budget=None):
  """(hyperparameters, best CV result or None, CV seconds) of `method` for this budget."""
  teacher = getattr(method, "teacher", None)
  ft = methods.settings_for(name, config.finetune, budget)
  if teacher:  # the teacher's hyperparameters, no CV of its own
    return method.hyperparameters(chosen[teacher][0], ft), None, 0.0
  if method.mode not in protocol.GRID_KEYS:
    hp = method.defaults(ft) if hasattr(method, "defaults") else {}
    return protocol.scheduled(hp, len(y)), None, 0.0
  started = time.time()
  hp, best, _ = protocol.select(
      method,
      x,
      y,
      finetune_config=ft,
      seed=seed,
      log=lambda line: log(f"{name}: {line}"),
  )
  return protocol.scheduled(hp, len(y)), best, time.time() - started


def _row(name, method, per_class, scores, seconds, hp, best, cv_seconds):
  acc = np.asarray(scores)
  trainable, total = method.counts(hp)
  row = {
      "labels_per_class": int(per_class),
      "method": name,
      "accuracy_mean": float(acc.mean()),
      "accuracy_std": float(acc.std()),
      "n_draws": len(acc),
      "accuracies": acc.tolist(),
      "mode": method.mode,
      "trainable_params": int(trainable),
      "total_params": int(total),
      "hyperparameters": protocol.reported(method.mode, hp),
      "seconds_per_draw": float(np.mean(seconds)),
  }
  if best is not None:
    row.update(
        cv_accuracy_mean=best["mean"],
        cv_accuracy_std=best["std"],
        cv_folds=len(best["fold_accuracies"]),
        cv_seconds=float(cv_seconds),
    )
  return row
