"""Encoders by `config.model.name`: module `ssl_jax.models.<name>` defines `encoder(model_config)`
and `SETTINGS`, the `config.model.*` keys it reads besides the common ones (COMMON). A setting of
another encoder changed from its default has no effect on this one: building the encoder warns,
naming the key and the encoders that read it (a warning, not an error, so that
`--config.model.name=vit` on a ResNet config runs; configs/recipes.py:use_encoder switches
cleanly).

An encoder is a Flax module mapping a batch of inputs to features (B, D); `features` is what every
evaluator, the label-efficiency study and fine-tuning use, whatever the pretext task. Heads
(projectors, predictors, prototypes, decoders) belong to the tasks (`ssl_jax/tasks/`).
"""

import importlib
import inspect
import pkgutil
import warnings

import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
COMMON = ("name", "dtype", "cpu_conv_library")  # every encoder; the compiler's conv library


def available():
  """Module names that define an encoder (imports each candidate once)."""
  names = []
  for info in pkgutil.iter_modules(__path__):
    if hasattr(importlib.import_module(f"ssl_jax.models.{info.name}"), "encoder"):
      names.append(info.name)
  return sorted(names)


def build_encoder(model_config, **context):
  """The encoder `config.model.name`; `context` (e.g. image_size) reaches encoders that take it."""
  name = model_config.name
  if name not in available():
    raise ValueError(f"unknown config.model.name {name!r}; accepted: {available()}")
  if model_config.dtype not in DTYPES:
    raise ValueError(f"config.model.dtype={model_config.dtype!r}; accepted: {sorted(DTYPES)}")
  for line in ignored_settings(model_config):
    warnings.warn(line, stacklevel=2)
  build = importlib.import_module(f"ssl_jax.models.{name}").encoder
  accepted = inspect.signature(build).parameters
  return build(model_config, **{k: v for k, v in context.items() if k in accepted})


def pretrained_params(model_config):
  """Weights the encoder `config.model.name` comes with ({param tree} of the encoder), or None:
  a fresh run starts from them (e.g. `bert` with a checkpoint directory, for continued
  pre-training)."""
  module = importlib.import_module(f"ssl_jax.models.{model_config.name}")
  load = getattr(module, "pretrained_params", None)
  return None if load is None else load(model_config)


def pretrained_heads(model_config):
  """Task heads the encoder's checkpoint comes with ({name: tree}, e.g. BERT's MLM head under
  'cls'), or None; a fresh run whose task has a head of that name starts from it."""
  module = importlib.import_module(f"ssl_jax.models.{model_config.name}")
  load = getattr(module, "pretrained_heads", None)
  return None if load is None else load(model_config)


def ignored_settings(model_config):
  """Lines naming each `config.model` key that the chosen encoder does not read (its `SETTINGS`)
  and whose value differs from the schema's default."""
  from ssl_jax import config_schema  # pylint: disable=g-import-not-at-top

  defaults = config_schema.base_config().model
  reads = set(COMMON) | set(importlib.import_module(f"ssl_jax.models.{model_config.name}").SETTINGS)
  lines = []
  for key in sorted(set(model_config.keys()) - reads):
    if key in defaults and _plain(model_config[key]) != _plain(defaults[key]):
      readers = [
          n for n in available() if key in importlib.import_module(f"ssl_jax.models.{n}").SETTINGS
      ]
      lines.append(
          f"config.model.{key}={_plain(model_config[key])!r} has no effect: it is a "
          f"setting of {readers}, not of the {model_config.name!r} encoder, which reads "
          f"config.model.{sorted(reads - {'name'})}"
      )
  return lines


def _plain(value):
  return value.to_dict() if hasattr(value, "to_dict") else value


def load(directory):
  """(encoder module, variables) of an export of ours (python -m ssl_jax.export, any format):
  `encoder.apply(variables, inputs)` gives the exported run's features."""
  from ssl_jax import exporting  # pylint: disable=g-import-not-at-top

  return exporting.load(directory)
