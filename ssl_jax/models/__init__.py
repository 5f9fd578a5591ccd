"""Encoders by `config.model.name`: module `ssl_jax.models.<name>` defines `encoder(model_config)`.

An encoder is a Flax module mapping a batch of inputs to features (B, D); `features` is what every
evaluator, the label-efficiency study and fine-tuning use, whatever the pretext task. Heads
(projectors, predictors, prototypes, decoders) belong to the tasks (`ssl_jax/tasks/`).
"""
import importlib
import inspect
import pkgutil

import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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
