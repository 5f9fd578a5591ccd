"""Running the ablation's plan: each run pre-trained, then evaluated by the one protocol; rows are
kept in DIR/ablation.json as they finish, so a killed ablation resumes (ssl_jax/ablation/)."""

import copy
import hashlib
import json
import os
import time

import numpy as np

from ssl_jax import config as config_lib
from ssl_jax.ablation import planning
from ssl_jax.ablation import report

EVALUATION_KEYS = (
    "labels_per_class",
    "num_draws",
    "finetune_labels_per_class",
    "knn_k",
    "knn_temperature",
)


def config_hash(run_config, ablation):
  """What a finished row depends on: the run's config and the evaluation protocol's settings."""
  settings = run_config.to_dict()
  settings["evaluation"] = {k: ablation[k] for k in EVALUATION_KEYS}
  text = json.dumps(settings, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def evaluate(run_config, result, ablation):
  """The one protocol: kNN, collapse, linear probe at several budgets, fine-tuning at one."""
  from ssl_jax import evaluators  # pylint: disable=g-import-not-at-top
  from ssl_jax.modalities import image  # pylint: disable=g-import-not-at-top

  data = evaluators.EvalData(
      *result.train_source.arrays(),
      *result.test_source.arrays(),
      num_classes=run_config.data.num_classes,
      augment=dict(run_config.augment),
  )
  knn = evaluators.build(
      "knn",
      dict(type="knn", every_steps=1, k=ablation.knn_k, temperature=ablation.knn_temperature),
      data,
  )
  collapse = evaluators.build("collapse", dict(type="collapse", every_steps=1), data)
  found = {
      "knn_accuracy": knn.run(result.features_of)["accuracy"],
      "collapse": collapse.run(result.features_of),
  }
  encoder = result.components.encoder_variables(result.state)
  probe_rows, finetune_rows = [], []
  for methods, budgets, out in (
      (("ssl_linear_probe",), ablation.labels_per_class, probe_rows),
      (("ssl_finetune",), (ablation.finetune_labels_per_class,), finetune_rows),
  ):
    c = copy.deepcopy(run_config)
    c.unlock()
    c.label_efficiency.methods = methods
    c.label_efficiency.labels_per_class = tuple(budgets)
    c.label_efficiency.num_draws = ablation.num_draws
    out.extend(
        image.study_rows(
            c,
            result.features_of,
            result.train_source,
            result.test_source,
            result.components.mesh,
            pretrained_encoder=encoder,
        )
    )
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
  row = {
      "task": task,
      "setting": setting,
      "run": os.path.relpath(run_dir),
      "encoder": run_config.model.name,
      "images_seen": int(steps * run_config.global_batch_size),
      "pretrain_seconds": float(seconds),
      "resumed": resumed,
      "images_per_s": float(np.mean(rates)) if rates else None,
  }
  row.update(evaluate(run_config, result, ablation))
  row["config_hash"] = config_hash(run_config, ablation)
  return row


def run(config, workdir):
  """Runs (or resumes) the ablation; returns the rows."""
  import jax  # pylint: disable=g-import-not-at-top

  runs = planning.plan(config)
  path = os.path.join(workdir, report.ROW_FILE)
  done = {}
  if os.path.exists(path):
    try:
      saved = json.load(open(path))["rows"]
    except (ValueError, KeyError) as e:
      raise ValueError(
          f"{path} is not an ablation result ({e}); move it away to start afresh"
      ) from None
    done = {planning.run_name(r["task"], r["setting"]): r for r in saved}
  finished = sum(planning.run_name(t, s) in done for t, s, _ in runs)
  print(f"ablation: {len(runs)} runs ({finished} done) in {workdir}", flush=True)
  rows = []
  for task, setting, run_config in runs:
    name = planning.run_name(task, setting)
    if name in done:
      if done[name].get("config_hash") != config_hash(run_config, config.ablation):
        raise ValueError(
            f"{path}: the finished run {name!r} used another config than this command "
            "builds now; use a new workdir, or delete that row and its runs/ folder"
        )
      rows.append(done[name])
      continue
    print(f"ablation: {name}", flush=True)
    rows.append(
        run_one(task, setting, run_config, os.path.join(workdir, "runs", name), config.ablation)
    )
    if jax.process_index() == 0:
      report.write_outputs(workdir, rows)
  if jax.process_index() == 0 and rows:
    report.write_outputs(workdir, rows)
    print(report.format_markdown(rows), flush=True)
  return rows
