"""Modalities: what each kind of data brings to a run; everything else is shared.

A modality is a module `ssl_jax.modalities.<name>` (listed in MODALITIES) that defines:
  NAME, METHODS   its name and the study methods it can build (study/methods.py's names)
  check(config)   fails on bad study settings before any work, naming the key
  pretrain(config, workdir) -> common.Pretrained
                  reads its data and pre-trains with train.py's loop (text: also its tokenizer,
                  TAPT and the transformers export; time series: also the UCR SVM protocol)
  study(config, pretrained) -> common.Study
                  the methods built on its splits (study/methods.py), their labels and a title
  trained_config(config, workdir), read_inputs(config, workdir, spec, split) -> common.Inputs
                  a finished run's config as its encoder was built, and new data for it
                  (inference.py: python -m ssl_jax.embed)
experiment.py runs pretrain, then study/loop.py over the built methods, then writes results.json
(study/report.py). A task names its modality (`Task.modality`, tasks/__init__.py); a new modality
is one module here, its data module, a config and tests.
"""

import importlib

from ssl_jax import tasks

MODALITIES = ("image", "text", "timeseries")


def get(name):
  if name not in MODALITIES:
    raise ValueError(f"unknown modality {name!r}; accepted: {list(MODALITIES)}")
  return importlib.import_module(f"ssl_jax.modalities.{name}")


def of(config):
  """The modality of `config.task`."""
  return get(tasks.get(config.task).modality)
