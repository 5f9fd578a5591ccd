"""The ablation's plan: the `ablation` config section and its schema, each task's run config (its
recipe over the ablation config) and the sweeps' extra runs (ssl_jax/ablation/__init__.py)."""

import copy
import inspect
import json
import os
import re

import ml_collections

from ssl_jax import config as config_lib
from ssl_jax import tasks as tasks_lib


def defaults():
  """The `ablation` section with its defaults (configs/ablate.py starts from them)."""
  a = ml_collections.ConfigDict()
  a.tasks = ()  # () = every registered image task
  a.recipe = "configs/{task}_cifar10.py:tiny"  # task_kwargs and optimiser of each task
  a.overrides = ml_collections.ConfigDict()  # task -> ("KEY=VALUE", ...) for that task
  a.sweeps = ml_collections.ConfigDict()  # name -> dict(settings=({KEY: VALUE},), tasks=())
  a.labels_per_class = (1, 10, 100)  # linear-probe budgets
  a.num_draws = 3  # label draws per budget
  a.finetune_labels_per_class = 10  # full fine-tuning budget
  a.knn_k = 20
  a.knn_temperature = 0.1
  return a


def _schema_defaults():
  c = config_lib.base_config()
  c.ablation = defaults()
  return c


# the library's keys and `ablation`; its overrides and sweeps are checked by `plan`
SCHEMA = config_lib.Schema(
    _schema_defaults, config_lib.FREE_FORM + ("ablation.overrides", "ablation.sweeps")
)


def image_tasks():
  """Registered tasks whose inputs are images (a task class's `modality`)."""
  return [name for name in tasks_lib.available() if tasks_lib.get(name).modality == "image"]


def task_keywords(name):
  cls = tasks_lib.get(name)
  return {p.name for p in inspect.signature(cls).parameters.values() if p.kind == p.KEYWORD_ONLY}


def _same(a, b):
  norm = lambda v: list(v) if isinstance(v, (tuple, list)) else v
  return json.dumps(norm(a), sort_keys=True, default=str) == json.dumps(
      norm(b), sort_keys=True, default=str
  )


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
  """The run config of `task` with its recipe and no sweep (ssl_jax/ablation/__init__.py)."""
  ab = ablation_config.ablation
  c = copy.deepcopy(ablation_config)
  c.unlock()
  del c.ablation  # the run's config holds the library's keys only
  recipe_path = ab.recipe.format(task=task)
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  here = os.path.join(root, recipe_path)
  if not os.path.exists(recipe_path.partition(":")[0]) and os.path.exists(here.partition(":")[0]):
    recipe_path = here  # configs/ of this checkout, whatever the working directory
  try:
    recipe = config_lib.load(recipe_path)
  except FileNotFoundError:
    raise FileNotFoundError(
        f"ablation.recipe={ab.recipe!r}: no recipe {recipe_path!r} for task "
        f"{task!r}; add one or set ablation.recipe"
    ) from None
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
  if "ablation" not in ablation_config:
    raise KeyError(
        "the config has no 'ablation' section: start from configs/ablate.py, or add "
        "c.ablation = ssl_jax.ablation.planning.defaults()"
    )
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
      raise ValueError(
          f"ablation.sweeps.{name} must be dict(settings=({{KEY: VALUE}}, ...), "
          f"tasks=(...)), got {sweep}"
      )
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
          if all(_same(config_lib.get(base, k), v) for k, v in setting.items()):
            continue  # the recipe's own value: its run is the recipe's row
        except KeyError:
          pass
        c = config_lib.override(
            copy.deepcopy(base), [_setting_string(k, v) for k, v in setting.items()]
        )
        if run_name(task, setting) not in seen:
          seen.add(run_name(task, setting))
          runs.append((task, setting, c))
  return runs
