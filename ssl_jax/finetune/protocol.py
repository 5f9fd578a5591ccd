"""The protocol the study and the standalone command share: CV on the labels, selection, final fit.

For a mode and a labelled set: when every class has at least `finetune.kfold` labels and the
mode's grid (`finetune.grid.<mode>`, the keys in GRID_KEYS) offers a choice (or
`finetune.cv_single_point` asks for CV anyway), each grid point is trained on k-1 folds with early
stopping on the held-out fold; the point with the best mean validation accuracy wins, and the
final model trains on all the labels with it, stopping at the median of the folds' best steps
(`stop_at`, as a fraction of the schedule: with `finetune.epochs` the schedule grows with the
labelled set, `scheduled`). Otherwise the grid's first point is used for the whole schedule and no
CV is reported. A grid key with one value sets that hyperparameter for the mode alone (e.g. LoRA's
learning rate). Test labels are used only to score the final model.

The methods it selects for and fits (an encoder mode, distillation, FixMatch, a linear head) are
in fitting.py.
"""

import time

import numpy as np

from ssl_jax.finetune import kfold
from ssl_jax.finetune import step as step_lib

MODES = ("linear",) + step_lib.ENCODER_MODES + ("contrastive",)
# what each mode's grid (`finetune.grid.<mode>`) may vary
GRID_KEYS = {
    "linear": ("probe_learning_rate", "probe_weight_decay", "label_smoothing"),
    "last_n": (
        "learning_rate",
        "weight_decay",
        "label_smoothing",
        "last_n",
        "backbone_lr_multiplier",
    ),
    "full": ("learning_rate", "weight_decay", "label_smoothing", "layer_decay"),
    "lora": ("learning_rate", "weight_decay", "label_smoothing", "lora_rank", "lora_alpha"),
    "fixmatch": (
        "learning_rate",
        "weight_decay",
        "label_smoothing",
        "fixmatch_threshold",
        "fixmatch_weight",
    ),
    "labelprop": ("labelprop_neighbors", "labelprop_alpha"),
    "contrastive": ("learning_rate", "weight_decay", "contrastive_head_c"),
}
REPORTED = {
    "linear": ("probe_learning_rate", "probe_weight_decay", "probe_steps", "label_smoothing"),
    "last_n": ("learning_rate", "weight_decay", "last_n", "backbone_lr_multiplier"),
    "full": ("learning_rate", "weight_decay", "layer_decay"),
    "lora": ("learning_rate", "weight_decay", "lora_rank", "lora_alpha"),
    "distill": (
        "learning_rate",
        "weight_decay",
        "distill_steps",
        "distill_batch_size",
        "distill_temperature",
    ),
    "fixmatch": (
        "learning_rate",
        "weight_decay",
        "fixmatch_threshold",
        "fixmatch_weight",
        "fixmatch_unlabeled_ratio",
        "fixmatch_align",
        "fixmatch_flex",
        "fixmatch_ema",
        "fixmatch_labelprop",
    ),
    "labelprop": ("labelprop_neighbors", "labelprop_alpha"),
    "contrastive": ("learning_rate", "weight_decay", "contrastive_head_c"),
}
TRAINING = ("label_smoothing", "steps", "stop_at", "batch_size")
HYPERPARAMETERS = (
    "learning_rate",
    "weight_decay",
    "label_smoothing",
    "steps",
    "epochs",
    "batch_size",
    "backbone_lr_multiplier",
    "layer_decay",
    "last_n",
    "lora_rank",
    "lora_alpha",
    "probe_learning_rate",
    "probe_weight_decay",
    "probe_steps",
    "distill_steps",
    "distill_batch_size",
    "distill_temperature",
    "fixmatch_threshold",
    "fixmatch_weight",
    "fixmatch_unlabeled_ratio",
    "fixmatch_align",
    "fixmatch_flex",
    "fixmatch_ema",
    "fixmatch_labelprop",
    "labelprop_neighbors",
    "labelprop_alpha",
    "contrastive_head_c",
)


def scheduled(hp, num_labelled):
  """`hp` with its schedule at least `epochs` passes over `num_labelled` examples: steps =
  max(steps, ceil(epochs * num_labelled / batch_size)) (idempotent; epochs 0 or absent: as is)."""
  epochs = float(hp.get("epochs", 0) or 0)
  if epochs <= 0 or "steps" not in hp:
    return hp
  steps = max(int(hp["steps"]), int(np.ceil(epochs * num_labelled / int(hp["batch_size"]))))
  return {**hp, "steps": steps}


def check_mode(mode, key="finetune.mode"):
  if mode not in MODES:
    raise ValueError(f"{key}={mode!r}; accepted: {list(MODES)}")


def defaults(finetune_config):
  return {k: finetune_config[k] for k in HYPERPARAMETERS}


def grid_choices(finetune_config, mode):
  """{key: values} of `finetune.grid.<mode>`; one value is a setting for that mode alone."""
  return {k: tuple(v) for k, v in finetune_config.grid[mode].items() if len(v)}


def reported(mode, hp):
  if mode not in REPORTED:  # a method without this module's hyperparameters (an SVM, 1-NN)
    return {}
  keys = REPORTED[mode] + (() if mode in ("linear", "distill", "labelprop") else TRAINING)
  return {k: hp[k] for k in keys if k in hp}


def select(method, x, y, *, finetune_config, seed, log=print, always=False):
  """(hyperparameters, best CV result or None, all CV results) for `method` on labels (x, y);
  `always` cross-validates a one-point grid too (as `finetune.cv_single_point` does)."""
  ft = finetune_config
  base = method.defaults(ft) if hasattr(method, "defaults") else defaults(ft)
  points = kfold.grid(base, grid_choices(ft, method.mode), GRID_KEYS[method.mode])
  single = len(points) == 1 and not (always or ft.cv_single_point)
  if not kfold.can_split(y, ft.kfold) or single:
    return points[0], None, []
  started = time.time()

  def fit_and_score(point, train_idx, val_idx, fold):
    fold_seed = (seed + 104_729 * (fold + 1)) % 2**31  # a fold's own draws, within int32
    fitted = method.fit(
        point, x[train_idx], y[train_idx], seed=fold_seed, val=(x[val_idx], y[val_idx])
    )
    return fitted.val_accuracy, fitted.best_step

  results, best = kfold.cross_validate(fit_and_score, y, points, k=ft.kfold, seed=seed)
  hp = dict(best["hyperparameters"])
  if method.mode != "linear":
    # the folds' stopping step, as the same fraction of the final fit's (longer with `epochs`)
    fold_steps = scheduled(hp, len(y) * (ft.kfold - 1) / ft.kfold)["steps"]
    stop_at = np.median(best["fold_best_steps"]) * scheduled(hp, len(y))["steps"] / fold_steps
    hp["stop_at"] = int(np.ceil(stop_at))
  log(
      f"{ft.kfold}-fold CV ({method.mode}, {len(points)} points, {time.time() - started:.0f} s): "
      f"chose {reported(method.mode, hp)} at {100 * best['mean']:.1f} +- {100 * best['std']:.1f} %"
  )
  return hp, best, results
