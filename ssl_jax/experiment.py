"""One command per study: pre-train, then (if configured) the label-efficiency study.

The task's modality (ssl_jax/modalities/) reads the data and pre-trains, then builds the study's
methods on its splits; the study's loop (study/loop.py) and its report (study/report.py) are the
same for every modality. Writes DIR/results.json (the study's rows and the run's facts) and
DIR/label_efficiency.png, and prints the table.
"""

import os
import time

import jax

from ssl_jax import evaluators
from ssl_jax import modalities
from ssl_jax import prediction
from ssl_jax import train
from ssl_jax.study import loop
from ssl_jax.study import report


def validate(config):
  """Fails on unknown task, evaluator or study settings before any data is read."""
  train.build_task(config)
  evaluators.build_all(config.evals, data=None)
  modalities.of(config).check(config)
  prediction.parse_keep(config)


def run(config, workdir):
  validate(config)
  modality = modalities.of(config)
  started = time.perf_counter()
  pretrained = modality.pretrain(config, workdir)
  extra, rows, title = dict(pretrained.extra), [], None
  if config.label_efficiency.enabled:
    study_started = time.perf_counter()
    study = modality.study(config, pretrained)
    keeper = None
    if config.label_efficiency.keep:
      tokenizer_dir = os.path.join(workdir, "tokenizer")  # a text run's, which its kept fit reads
      keeper = prediction.Keeper(
          config,
          workdir,
          classes=study.classes,
          tokenizer_dir=tokenizer_dir if os.path.isdir(tokenizer_dir) else None,
      )
    rows = loop.run(config, study.built, study.train_labels, study.test_labels, on_fit=keeper)
    extra.update(
        study.extra,
        study_seconds=time.perf_counter() - study_started,
        total_seconds=time.perf_counter() - started,
    )
    title = study.title
  if jax.process_index() == 0:
    report.write(workdir, rows, extra, title=title)
    print(
        f"wrote {os.path.join(workdir, 'results.json')}"
        + (" and label_efficiency.png" if rows else ""),
        flush=True,
    )
    kept = f" ({os.path.join(workdir, 'kept')})" if config.label_efficiency.keep else ""
    print(
        "use the trained model (README, 'Using a trained model'):\n"
        f"  python -m ssl_jax.embed --workdir={workdir} --input=SOURCE --out=FILE.npy\n"
        f"  python -m ssl_jax.export --workdir={workdir} --format=transformers|torchvision|"
        "safetensors --out=DIR\n"
        "  python -m ssl_jax.predict --workdir=CLASSIFIER --input=SOURCE --out=FILE.csv  "
        "(a classifier: python -m ssl_jax.finetune, or "
        f"--config.label_efficiency.keep=METHOD@BUDGET{kept})",
        flush=True,
    )
  return pretrained.run
