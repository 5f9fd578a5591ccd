"""Fine-tunes a pre-trained encoder on a labelled subset and scores the test split.

  python -m ssl_jax.finetune --config=configs/default.py --workdir=DIR \
      --config.finetune.init_from=PRE/checkpoints --config.data.train_subset=SUBSET.txt \
      --config.finetune.mode=lora

The encoder: the checkpoint in `finetune.init_from` (a pre-training run's WORKDIR/checkpoints or
WORKDIR; the config must build the same model and task), else `generic_model` when set, else
random weights. The labelled examples: the train split, restricted to `data.train_subset` (a file
from ssl_jax.data.subsets). k-fold CV on them picks the hyperparameters (finetune/protocol.py);
here it runs for a one-point grid too, for its estimate and early-stopping step.
Writes DIR/config.json, DIR/metrics.jsonl (the final fit's curve), DIR/results.json (test accuracy,
CV mean +- std, chosen hyperparameters, trainable and total parameters) and DIR/checkpoints, an
orbax checkpoint of the fine-tuned classifier: `params` (LoRA merged), `model_state`, and LoRA's
`adapters` (`checkpoint.restore_params` reads params and model_state).
"""

import json
import os
import sys
import time

import jax

from ssl_jax import checkpoint as checkpoint_lib
from ssl_jax import main as main_lib
from ssl_jax import metrics as metrics_lib
from ssl_jax import models
from ssl_jax import prediction
from ssl_jax import sharding as sharding_lib
from ssl_jax import train as train_lib
from ssl_jax.finetune import fitting
from ssl_jax.finetune import inputs as inputs_lib
from ssl_jax.finetune import layers
from ssl_jax.finetune import contrastive
from ssl_jax.finetune import model as model_lib
from ssl_jax.finetune import protocol
from ssl_jax.models import conv as conv_lib


def restore_encoder(config, directory):
  """{collection: encoder subtree} of the pre-training checkpoint in `directory`, per its task."""
  state, step = checkpoint_lib.restore_saved(directory, "finetune.init_from")
  print(f"fine-tuning the encoder of {directory} step {step}", flush=True)
  task = train_lib.build_task(config)
  return jax.device_get(
      task.encoder_variables(state["params"], state["model_state"], state["task_state"])
  )


def build_encoder(config):
  """(encoder module, its pre-trained variables or None, a description)."""
  encoder = models.build_encoder(config.model, image_size=config.data.image_size)
  if config.finetune.init_from:
    return encoder, restore_encoder(config, config.finetune.init_from), config.finetune.init_from
  if config.generic_model:
    from ssl_jax import generic_models  # pylint: disable=g-import-not-at-top

    generic = generic_models.load(config.generic_model)
    return generic.encoder, generic.variables, config.generic_model
  print("no finetune.init_from or generic_model: training from random weights", flush=True)
  return encoder, None, "random"


def run(config, workdir):
  ft = config.finetune
  protocol.check_mode(ft.mode)
  train_source, test_source = train_lib.load_data(config)
  x, y = train_source.arrays()
  x, y = x[y >= 0], y[y >= 0]
  if not len(y):
    raise ValueError(
        f"the train split of {config.data.source!r} (subset "
        f"{config.data.train_subset!r}) has no labelled examples"
    )
  test_x, test_y = test_source.arrays()
  encoder, init, origin = build_encoder(config)
  model = model_lib.Model(
      encoder,
      num_classes=config.data.num_classes,
      mesh=sharding_lib.make_mesh(config),
      inputs=inputs_lib.for_arrays(
          x,
          image_size=config.data.image_size,
          crop_scale=ft.crop_scale,
          flip_prob=config.augment.flip_prob,
          elastic=inputs_lib.elastic_of(config),
          strong=ft.strong,
      ),
      example=x,
      eval_batch_size=config.data.eval_batch_size,
      layer_regex=ft.layer_regex,
      compiler_options=conv_lib.compiler_options(config.model.cpu_conv_library),
  )
  if ft.mode == "linear":
    init = init or {c: v["encoder"] for c, v in model.init(config.seed).items()}
    method = fitting.LinearMethod(
        config.data.num_classes,
        model.mesh,
        ft,
        pad_to=len(y),
        encoder_params=layers.count(init["params"]),
    )
    train_in, test_in = model.features(init, x), model.features(init, test_x)
  elif ft.mode == "contrastive":
    method = contrastive.ContrastiveMethod(model, ft, init=init, pad_to=len(y))
    train_in, test_in = x, test_x
  else:
    method = fitting.EncoderMethod(model, ft.mode, ft, init=init)
    train_in, test_in = x, test_x
  started = time.time()
  hp, best, cv_results = protocol.select(
      method, train_in, y, finetune_config=ft, seed=config.seed, always=True
  )
  cv_seconds = time.time() - started
  fitted = method.fit(hp, train_in, y, seed=config.seed, log_every=config.log_every_steps)
  accuracy = method.score(fitted, test_in, test_y)
  trainable, total = method.counts(hp)
  variables = fitted.variables
  if ft.mode == "linear":  # the frozen encoder with the fitted head, as one classifier
    variables = {c: {"encoder": tree} for c, tree in init.items()}
    variables["params"]["head"] = fitted.variables["params"]["head"]
  results = {
      "mode": ft.mode,
      "encoder": origin,
      "labelled_examples": int(len(y)),
      "test_accuracy": accuracy,
      "trainable_params": trainable,
      "total_params": total,
      "hyperparameters": protocol.reported(ft.mode, hp),
      "seconds": time.time() - started,
      "cv_seconds": cv_seconds,
  }
  if best is not None:
    grid = [
        {**r, "hyperparameters": protocol.reported(ft.mode, r["hyperparameters"])}
        for r in cv_results
    ]
    results.update(
        cv_accuracy_mean=best["mean"],
        cv_accuracy_std=best["std"],
        cv_folds=len(best["fold_accuracies"]),
        cv_grid=grid,
    )
  _write(workdir, config, results, fitted, variables, getattr(train_source, "classes", None))
  print(
      f"{ft.mode}: test accuracy {accuracy:.4f} on {len(test_y)} examples after training "
      f"{trainable:,} of {total:,} parameters on {len(y)} labels",
      flush=True,
  )
  return results


def _write(workdir, config, results, fitted, variables, classes):
  if jax.process_index() == 0:
    checkpoint_lib.write_atomically(
        os.path.join(workdir, "results.json"), json.dumps(results, indent=2)
    )
  writer = metrics_lib.MetricWriter(
      workdir, total_steps=fitted.steps_run, global_batch_size=config.finetune.batch_size
  )
  for entry in fitted.history:
    writer.write(entry["step"], {k: v for k, v in entry.items() if k != "step"})
  writer.write(fitted.steps_run, {"test_accuracy": results["test_accuracy"]})
  writer.close()
  info = {
      "mode": results["mode"],
      "hyperparameters": results["hyperparameters"],
      "encoder": results["encoder"],
      "test_accuracy": results["test_accuracy"],
      "classes": classes,
      "normalize_features": results["mode"] == "contrastive",  # contrastive.ContrastiveMethod's
  }
  adapters = layers.unflatten(fitted.adapters) if fitted.adapters else None
  prediction.save(workdir, config, variables, info, step=fitted.steps_run, adapters=adapters)


def main(argv=None):
  main_lib.initialize_distributed()
  config, workdir = main_lib.parse(sys.argv[1:] if argv is None else argv)
  return run(config, workdir)
