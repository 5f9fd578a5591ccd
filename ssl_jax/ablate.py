"""Pretext ablation: every image task under one budget and one evaluation protocol.

  python -m ssl_jax.ablate --config=configs/ablate.py[:quick] --workdir=DIR [--config.KEY=VALUE ...]

For each task in `ablation.tasks` (empty: every registered image task) the run's config is the
ablation config (data, encoder, batch, steps, augmentation, seed: the same for every task) with the
task's own recipe laid over it: `task_kwargs` and the optimiser's name, learning rate, weight decay
and no-decay rule from `ablation.recipe` (default `configs/<task>_cifar10.py:tiny`), and its encoder
only when the recipe names another encoder family (MAE's ViT, the documented exception).
`ablation.overrides.<task>` adds `KEY=VALUE` strings for that task; `ablation.sweeps.<name>` is
`dict(settings=({KEY: VALUE, ...}, ...), tasks=(...))`, each setting one more run of every task it
applies to (a `task_kwargs.X` key applies to tasks that take X; `tasks` narrows it; a setting equal
to the recipe is the recipe's run). Settings are one-at-a-time around the recipe, not a grid.

Every run is evaluated the same way: kNN and the collapse diagnostics on the final encoder, a
linear probe at `ablation.labels_per_class` over `ablation.num_draws` label draws, and full
fine-tuning at `ablation.finetune_labels_per_class` (ssl_jax/study/ and ssl_jax/finetune/, with
their CV-on-the-labels rules).

Writes DIR/ablation.json (`{"rows": [...]}`, one row per task and setting), DIR/ablation.md (a
table sorted by the probe at 10 labels per class, or the closest budget), DIR/ablation.png (one
panel per metric) and each run in DIR/runs/<task>[-<setting>]/. Killing the command and running
it again resumes: finished rows are kept (their run config must be unchanged, else it stops and
says so) and an unfinished run resumes from its last checkpoint.
"""
import copy
import hashlib
import inspect
import json
import math
import os
import re
import sys
import time

import numpy as np

from ssl_jax import checkpoint
from ssl_jax import config as config_lib
from ssl_jax import tasks as tasks_lib

ROW_FILE = "ablation.json"


def image_tasks():
  """Registered tasks whose inputs are images (a task class's `modality`)."""
  return [name for name in tasks_lib.available() if tasks_lib.get(name).modality == "image"]


def task_keywords(name):
  cls = tasks_lib.get(name)
  return {p.name for p in inspect.signature(cls).parameters.values() if p.kind == p.KEYWORD_ONLY}


def _get(config, key):
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def _same(a, b):
  norm = lambda v: list(v) if isinstance(v, (tuple, list)) else v
  return json.dumps(norm(a), sort_keys=True, default=str) == json.dumps(norm(b), sort_keys=True,
                                                                         default=str)


def setting_name(setting):
  """A directory-safe name: {'task_kwargs.mask_ratio': 0.9} -> 'mask_ratio=0.9'."""
  parts = []
  for key, value in sorted(setting.items()):
    text = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
    parts.append(f"{key.split('.')[-1]}={text}")
  return re.sub(r"[^A-Za-z0-9_.,=+-]", "", "_".join(parts))


def run_name(task, setting):
  return task if not setting else f"{task}-{setting_name(setting)}"


def _setting_string(key, value):
  return f"{key}={value!r}" if not isinstance(value, str) else f"{key}={value}"


def recipe_config(ablation_config, task):
  """The run config of `task` with its recipe and no sweep: see the module docstring."""
  ab = ablation_config.ablation
  c = copy.deepcopy(ablation_config)
  c.unlock()
  recipe_path = ab.recipe.format(task=task)
  here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), recipe_path)
  if not os.path.exists(recipe_path.partition(":")[0]) and os.path.exists(here.partition(":")[0]):
    recipe_path = here  # configs/ of this checkout, whatever the working directory
  try:
    recipe = config_lib.load(recipe_path)
  except FileNotFoundError:
    raise FileNotFoundError(f"ablation.recipe={ab.recipe!r}: no recipe {recipe_path!r} for task "
                            f"{task!r}; add one or set ablation.recipe") from None
  if recipe.task != task:
    raise ValueError(f"recipe {recipe_path!r} is for task {recipe.task!r}, not {task!r}")
  c.task = task
  c.task_kwargs = copy.deepcopy(recipe.task_kwargs)
  for key in ("name", "base_learning_rate", "weight_decay", "no_decay_regex", "momentum"):
    c.optimizer[key] = recipe.optimizer[key]
  if recipe.model.name != c.model.name:  # another encoder family (MAE's ViT)
    c.model = copy.deepcopy(recipe.model)
  c.evals = {}  # the ablation evaluates the final encoder itself, the same way for every task
  c.online_probe = False
  c.label_efficiency.enabled = True  # the study's data (a test split) is loaded with the run
  return config_lib.override(c, list(ab.overrides.get(task, ())))


def applies(task, setting, sweep_tasks):
  if sweep_tasks and task not in sweep_tasks:
    return False
  own = task_keywords(task)
  return all(not k.startswith("task_kwargs.") or k.split(".", 1)[1] in own for k in setting)


def plan(ablation_config):
  """[(task, setting dict, run config)] in order: each task's recipe, then its sweep settings."""
  ab = ablation_config.ablation
  known = image_tasks()
  chosen = list(ab.tasks) or known
  unknown = sorted(set(chosen) - set(known))
  if unknown:
    raise ValueError(f"ablation.tasks has {unknown}; the registered image tasks are {known}")
  sweeps = {}
  for name, sweep in dict(ab.sweeps).items():
    sweep = dict(sweep)
    if set(sweep) - {"settings", "tasks"} or not sweep.get("settings"):
      raise ValueError(f"ablation.sweeps.{name} must be dict(settings=({{KEY: VALUE}}, ...), "
                       f"tasks=(...)), got {sweep}")
    sweeps[name] = sweep
  runs = []
  for task in chosen:
    base = recipe_config(ablation_config, task)
    runs.append((task, {}, base))
    seen = {run_name(task, {})}
    for name, sweep in sweeps.items():
      for setting in sweep["settings"]:
        setting = dict(setting)
        if not applies(task, setting, tuple(sweep.get("tasks", ()))):
          continue
        try:
          if all(_same(_get(base, k), v) for k, v in setting.items()):
            continue  # the recipe's own value: its run is the recipe's row
        except KeyError:
          pass
        c = config_lib.override(copy.deepcopy(base),
                                [_setting_string(k, v) for k, v in setting.items()])
        if run_name(task, setting) not in seen:
          seen.add(run_name(task, setting))
          runs.append((task, setting, c))
  return runs


EVALUATION_KEYS = ("labels_per_class", "num_draws", "finetune_labels_per_class", "knn_k",
                   "knn_temperature")


def config_hash(run_config):
  """What a finished row depends on: the run's config and the evaluation protocol's settings."""
  settings = run_config.to_dict()
  ablation = settings.pop("ablation")
  settings["evaluation"] = {k: ablation[k] for k in EVALUATION_KEYS}
  text = json.dumps(settings, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def evaluate(run_config, result, ablation):
  """The one protocol: kNN, collapse, linear probe at several budgets, fine-tuning at one."""
  from ssl_jax import evaluators  # pylint: disable=g-import-not-at-top
  from ssl_jax.modalities import image  # pylint: disable=g-import-not-at-top
  data = evaluators.EvalData(*result.train_source.arrays(), *result.test_source.arrays(),
                             num_classes=run_config.data.num_classes,
                             augment=dict(run_config.augment))
  knn = evaluators.build("knn", dict(type="knn", every_steps=1, k=ablation.knn_k,
                                     temperature=ablation.knn_temperature), data)
  collapse = evaluators.build("collapse", dict(type="collapse", every_steps=1), data)
  found = {"knn_accuracy": knn.run(result.features_of)["accuracy"],
           "collapse": collapse.run(result.features_of)}
  encoder = result.components.encoder_variables(result.state)
  probe_rows, finetune_rows = [], []
  for methods, budgets, out in ((("ssl_linear_probe",), ablation.labels_per_class, probe_rows),
                                (("ssl_finetune",), (ablation.finetune_labels_per_class,),
                                 finetune_rows)):
    c = copy.deepcopy(run_config)
    c.unlock()
    c.label_efficiency.methods = methods
    c.label_efficiency.labels_per_class = tuple(budgets)
    c.label_efficiency.num_draws = ablation.num_draws
    out.extend(image.study_rows(c, result.features_of, result.train_source, result.test_source,
                                result.components.mesh, pretrained_encoder=encoder))
  found["linear_probe"] = {str(r["labels_per_class"]): r["accuracy_mean"] for r in probe_rows}
  found["linear_probe_std"] = {str(r["labels_per_class"]): r["accuracy_std"] for r in probe_rows}
  found["finetune_accuracy"] = finetune_rows[0]["accuracy_mean"]
  found["finetune_accuracy_std"] = finetune_rows[0]["accuracy_std"]
  return found


def run_one(task, setting, run_config, run_dir, ablation):
  from ssl_jax import train  # pylint: disable=g-import-not-at-top
  config_lib.finalize(run_config, run_dir)
  checkpoints = os.path.join(run_dir, "checkpoints")
  resumed = bool(os.path.isdir(checkpoints) and os.listdir(checkpoints))
  started = time.time()
  result = train.train(run_config, run_dir)
  seconds = time.time() - started
  _, steps = train.schedule_lengths(run_config, len(result.train_source))
  rates = [h["images_per_s"] for h in result.history if "images_per_s" in h][1:]
  row = {"task": task, "setting": setting, "run": os.path.relpath(run_dir),
         "encoder": run_config.model.name, "images_seen": int(steps * run_config.global_batch_size),
         "pretrain_seconds": float(seconds), "resumed": resumed,
         "images_per_s": float(np.mean(rates)) if rates else None}
  row.update(evaluate(run_config, result, ablation))
  row["config_hash"] = config_hash(run_config)
  return row


def sort_budget(rows):
  budgets = sorted({int(b) for r in rows for b in r["linear_probe"]})
  return str(min(budgets, key=lambda b: (abs(b - 10), b))) if budgets else None


def format_markdown(rows):
  budget = sort_budget(rows)
  budgets = sorted({int(b) for r in rows for b in r["linear_probe"]})
  ordered = sorted(rows, key=lambda r: -r["linear_probe"].get(budget, -1))
  head = (["task", "setting", "kNN"] + [f"probe @{b}" for b in budgets] +
          ["fine-tune", "effective rank", "centred rank", "std fraction", "pre-train s", "images/s"])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in ordered:
    setting = ", ".join(f"{k}={v}" for k, v in sorted(r["setting"].items())) or "recipe"
    col = r["collapse"]
    rate = f"{r['images_per_s']:.0f}" if r.get("images_per_s") else "-"
    cells = ([f"`{r['task']}`", setting, f"{100 * r['knn_accuracy']:.2f}"] +
             [f"{100 * r['linear_probe'][str(b)]:.2f}" for b in budgets] +
             [f"{100 * r['finetune_accuracy']:.2f}",
              f"{col.get('effective_rank', float('nan')):.1f} / {col.get('max_rank', 0):.0f}",
              f"{col.get('effective_rank_centered', float('nan')):.1f}",
              f"{col.get('std_fraction', float('nan')):.2f}", f"{r['pretrain_seconds']:.0f}", rate])
    lines.append("| " + " | ".join(cells) + " |")
  return ("Accuracies in % on the test split; sorted by the linear probe at "
          f"{budget} labels per class.\n\n" + "\n".join(lines) + "\n")


def plot(rows, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  budgets = sorted({int(b) for r in rows for b in r["linear_probe"]})
  metrics = ([("kNN accuracy (%)", lambda r: 100 * r["knn_accuracy"])] +
             [(f"linear probe @{b}/class (%)", lambda r, b=b: 100 * r["linear_probe"][str(b)])
              for b in budgets] +
             [("fine-tune (%)", lambda r: 100 * r["finetune_accuracy"]),
              ("effective rank, centred", lambda r: r["collapse"].get("effective_rank_centered",
                                                                       float("nan"))),
              ("pre-training seconds", lambda r: r["pretrain_seconds"])])
  labels = [run_name(r["task"], r["setting"]) for r in rows]
  cols = 3
  # one shared y axis: the run names are written once, left of each row of panels
  fig, axes = plt.subplots(math.ceil(len(metrics) / cols), cols, sharey=True,
                           figsize=(4 * cols + 3, 0.22 * len(rows) * math.ceil(len(metrics) / cols) + 2),
                           squeeze=False)
  axes[0, 0].set_yticks(range(len(rows)), labels)
  axes[0, 0].invert_yaxis()
  for ax, (title, value) in zip(axes.flat, metrics):
    ax.barh(range(len(rows)), [value(r) for r in rows], color="tab:blue")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
  for ax in list(axes.flat)[len(metrics):]:
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=110, bbox_inches="tight")  # the long run names in full
  plt.close(fig)


def write_outputs(workdir, rows):
  checkpoint.write_atomically(os.path.join(workdir, ROW_FILE), json.dumps({"rows": rows}, indent=2))
  checkpoint.write_atomically(os.path.join(workdir, "ablation.md"), format_markdown(rows))
  plot(rows, os.path.join(workdir, "ablation.png"))


def run(config, workdir):
  """Runs (or resumes) the ablation; returns the rows."""
  import jax  # pylint: disable=g-import-not-at-top
  runs = plan(config)
  path = os.path.join(workdir, ROW_FILE)
  done = {}
  if os.path.exists(path):
    try:
      saved = json.load(open(path))["rows"]
    except (ValueError, KeyError) as e:
      raise ValueError(f"{path} is not an ablation result ({e}); move it away to start afresh") from None
    done = {run_name(r["task"], r["setting"]): r for r in saved}
  print(f"ablation: {len(runs)} runs ({sum(run_name(t, s) in done for t, s, _ in runs)} done) "
        f"in {workdir}", flush=True)
  rows = []
  for task, setting, run_config in runs:
    name = run_name(task, setting)
    if name in done:
      if done[name].get("config_hash") != config_hash(run_config):
        raise ValueError(f"{path}: the finished run {name!r} used another config than this command "
                         "builds now; use a new workdir, or delete that row and its runs/ folder")
      rows.append(done[name])
      continue
    print(f"ablation: {name}", flush=True)
    rows.append(run_one(task, setting, run_config, os.path.join(workdir, "runs", name),
                        config.ablation))
    if jax.process_index() == 0:
      write_outputs(workdir, rows)
  if jax.process_index() == 0 and rows:
    write_outputs(workdir, rows)
    print(format_markdown(rows), flush=True)
  return rows


def main(argv=None):
  from ssl_jax import main as main_lib  # pylint: disable=g-import-not-at-top
  main_lib.initialize_distributed()
  config, workdir = main_lib.parse(sys.argv[1:] if argv is None else argv)
  return run(config, workdir)


if __name__ == "__main__":
  main()
