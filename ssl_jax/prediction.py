"""A fitted classifier on new data: per-input predictions with class names and probabilities.

A classifier directory is the standalone fine-tune's WORKDIR (`python -m ssl_jax.finetune`) or a
study fit the main job kept (`label_efficiency.keep = 'METHOD@BUDGET'`: WORKDIR/kept/METHOD-BUDGET,
draw 0). It holds config.json, checkpoints/ (the classifier's params and model state, adapters
merged) and classifier.json (how it was fitted; the class names where the training data has
them). A text classifier also holds the run's tokenizer.

`predict(...)` reads the inputs through the run's modality (as `python -m ssl_jax.embed` does)
and writes FILE.csv: id, label (where the input has one, else -1), predicted, predicted_name (the
class name, or the index), and one probability column per class, a row per input, in batches
sharded over the devices.
"""

import csv
import json
import os
import shutil

import jax
import numpy as np

from ssl_jax import checkpoint as checkpoint_lib
from ssl_jax import config as config_lib
from ssl_jax import inference
from ssl_jax import modalities
from ssl_jax import models
from ssl_jax import sharding as sharding_lib
from ssl_jax.finetune import inputs as inputs_lib
from ssl_jax.finetune import model as model_lib

CLASSIFIER_FILE = "classifier.json"


def classifier_variables(method, fit):
  """The fitted classifier {collection: tree} (encoder and head), or None where the method is not
  one network (label propagation, the SVM, the classical baselines)."""
  variables = getattr(fit, "variables", None)
  if getattr(method, "mode", None) == "linear":
    init = getattr(method, "init", None)
    if init is None:  # a head on pixels: no encoder to keep
      return None
    merged = {c: {"encoder": tree} for c, tree in init.items()}
    merged["params"] = {**merged["params"], "head": variables["params"]["head"]}
    return merged
  if isinstance(variables, dict) and "head" in variables.get("params", {}):
    return variables
  return None


def save(directory, config, variables, info, *, step=0, adapters=None, tokenizer_dir=None):
  """Writes a classifier directory (see the module docstring); `info` goes to classifier.json
  and beside the checkpoint; LoRA's `adapters` are kept too (already merged into the params)."""
  os.makedirs(directory, exist_ok=True)
  first = jax.process_index() == 0  # every process saves the arrays; one writes the files
  if first:
    checkpoint_lib.write_atomically(
        os.path.join(directory, "config.json"), config.to_json(indent=2)
    )
  state = {
      "params": variables["params"],
      "model_state": {c: v for c, v in variables.items() if c != "params"},
  }
  if adapters:
    state["adapters"] = adapters
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(directory, "checkpoints"), keep=1)
  checkpointer.save(step, jax.tree.map(np.asarray, jax.device_get(state)), info)
  checkpointer.wait()
  checkpointer.close()
  if first and tokenizer_dir:
    shutil.copytree(tokenizer_dir, os.path.join(directory, "tokenizer"), dirs_exist_ok=True)
  if first:
    checkpoint_lib.write_atomically(
        os.path.join(directory, CLASSIFIER_FILE), json.dumps(info, indent=2, default=str)
    )


class Keeper:
  """`label_efficiency.keep = 'METHOD@BUDGET'`: saves that method's fit of draw 0 at that budget
  (study/loop.py calls it after every fit) into WORKDIR/kept/METHOD-BUDGET."""

  def __init__(self, config, workdir, *, classes=None, tokenizer_dir=None):
    self.name, self.budget = parse_keep(config)
    self.config, self.workdir, self.classes = config, workdir, classes
    self.tokenizer_dir = tokenizer_dir
    self.kept = None

  def __call__(self, name, budget, draw, method, fit, accuracy):
    if (name, budget, draw) != (self.name, self.budget, 0):
      return
    variables = classifier_variables(method, fit)
    if variables is None:
      raise ValueError(
          f"label_efficiency.keep={self.config.label_efficiency.keep!r}: {name} "
          "is not one network (a classifier an encoder and a head make)"
      )
    self.kept = os.path.join(self.workdir, "kept", f"{name}-{budget}")
    info = {
        "method": name,
        "labels_per_class": budget,
        "draw": 0,
        "test_accuracy": accuracy,
        "classes": self.classes,
        "normalize_features": bool(getattr(method, "normalize_features", False)),
    }
    save(
        self.kept,
        self.config,
        variables,
        info,
        step=fit.steps_run,
        tokenizer_dir=self.tokenizer_dir,
    )
    print(f"kept {name} at {budget} labels per class (draw 0) in {self.kept}", flush=True)


def parse_keep(config):
  """('METHOD', budget) of `label_efficiency.keep`, checked before any work; None when ''."""
  keep = config.label_efficiency.keep
  if not keep:
    return None, None
  name, sep, budget = keep.partition("@")
  from ssl_jax.study import methods  # pylint: disable=g-import-not-at-top

  where = methods.ENCODER_METHODS.get(name, (None, None))
  ok = (
      sep
      and budget.lstrip("-").isdigit()
      and name in config.label_efficiency.methods
      and where[0] in ("ssl", "scratch")
      and where[1] not in ("labelprop", "svm")
      and int(budget) in config.label_efficiency.labels_per_class
  )
  if not ok:
    raise ValueError(
        f"label_efficiency.keep={keep!r}: expected 'METHOD@BUDGET' with METHOD one of the study's "
        "methods that fit an encoder and a head from the pre-trained or random encoder (ssl_* or "
        "supervised_scratch / scratch_*, not labelprop or svm) and BUDGET one of "
        f"label_efficiency.labels_per_class={tuple(config.label_efficiency.labels_per_class)}"
    )
  return name, int(budget)


def _info(workdir):
  path = os.path.join(workdir, CLASSIFIER_FILE)
  return json.load(open(path)) if os.path.isfile(path) else {}


def predict(workdir, source, out, *, split="train", batch_size=256, skip_corrupt=False):
  """Writes the predictions of the classifier in `workdir` for `source` to `out` (.csv);
  returns the number of rows."""
  if not out.endswith(".csv"):
    raise ValueError(f"--out={out!r}: expected a .csv path")
  config = inference.saved_config(workdir)
  modality = modalities.of(config)
  config = modality.trained_config(config, workdir)
  if skip_corrupt:
    config = config_lib.derive(config, {"data.skip_corrupt": True})
  state, _ = checkpoint_lib.restore_saved(workdir, "--workdir")
  if "head" not in state["params"]:
    raise ValueError(
        f"--workdir={workdir!r} holds no classifier (no 'head' in its parameters): expected a "
        "fine-tuned classifier's directory (python -m ssl_jax.finetune, or a study fit kept "
        "with label_efficiency.keep); a pre-training run's features come from ssl_jax.embed"
    )
  variables = {"params": state["params"], **state["model_state"]}
  num_classes = int(np.shape(state["params"]["head"]["bias"])[0])
  classes = _info(workdir).get("classes") or [str(k) for k in range(num_classes)]
  inputs = modality.read_inputs(config, workdir, source, split)
  example = np.asarray(inputs.rows[:1])
  model = model_lib.Model(
      models.build_encoder(config.model, image_size=config.data.image_size),
      num_classes=num_classes,
      mesh=sharding_lib.make_mesh(config),
      inputs=inputs_lib.for_arrays(example, image_size=config.data.image_size),
      example=example,
      eval_batch_size=batch_size,
      normalize_features=bool(_info(workdir).get("normalize_features", False)),
  )
  variables = model.place(variables)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  chunk = model.eval_batch_size * 8
  with open(out + ".tmp", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["id", "label", "predicted", "predicted_name"] + [f"p_{c}" for c in classes])
    for start in range(0, len(inputs.ids), chunk):
      logits = model.logits(variables, inputs.rows[start : start + chunk]).astype(np.float64)
      probs = np.exp(logits - logits.max(-1, keepdims=True))
      probs /= probs.sum(-1, keepdims=True)
      for i, p in enumerate(probs, start):
        k = int(np.argmax(p))
        writer.writerow(
            [inputs.ids[i], int(inputs.labels[i]), k, classes[k]] + [f"{v:.6f}" for v in p]
        )
  os.replace(out + ".tmp", out)
  print(
      f"wrote {out}: {len(inputs.ids)} predictions of {workdir} over {num_classes} classes"
      + (f"; skipped {len(inputs.skipped)} unreadable files" if inputs.skipped else ""),
      flush=True,
  )
  return len(inputs.ids)
