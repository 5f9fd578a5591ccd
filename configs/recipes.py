"""Recipes several configs share (not a config: no get_config). A config reads it by path,

  recipes = config_lib.load_module("recipes.py", beside=__file__)

since configs/ is not a package (ssl_jax/config.py).
"""

import importlib

import ml_collections

from ssl_jax import config as config_lib
from ssl_jax import models


def cifar10(arg, *, task, task_kwargs, epochs=1000, bs=256, **more_args):
  """The CIFAR-10 pre-training setting every `configs/<task>_cifar10.py` shares.

  ResNet-18 with the 3x3 stride-1 stem, `bs` images per step for `epochs` epochs, an online probe,
  kNN / linear-probe / collapse evaluators. `arg`: 'tiny' (ResNet-10 at width 0.25, 100 steps of
  batch 128, evaluators at the end: a CPU run of minutes), 'epochs=N', 'bs=N', and the config's
  own `more_args` (e.g. 'vit'). Returns (config, parsed args).
  """
  args = config_lib.parse_arg(arg, tiny=False, epochs=epochs, bs=bs, **more_args)
  c = config_lib.base_config()
  c.task = task
  c.task_kwargs = ml_collections.ConfigDict(task_kwargs)
  c.data.source = "tfds:cifar10"
  c.data.image_size = 32
  c.data.channels = 3
  c.data.num_classes = 10
  c.global_batch_size = args["bs"]
  c.total_epochs = float(args["epochs"])
  c.augment.crop_scale = (0.08, 1.0)
  c.augment.jitter_strength = 0.5
  c.augment.blur_prob = 0.0
  c.model.depth = 18
  c.model.stem = "small"
  # solo-learn's and lightly's recipes run torchvision's ResNet: each block's last BatchNorm scale
  # starts at 1. At 0, MoCo v2 and DINO collapse on the digits in both implementations
  # (experiments/parity.md)
  c.model.zero_init_residual = False
  c.optimizer.warmup_epochs = 10.0
  c.online_probe = True
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2000
  steps_per_epoch = 50_000 // c.global_batch_size
  c.evals.knn = dict(type="knn", every_steps=10 * steps_per_epoch, k=200, temperature=0.1)
  c.evals.linear_probe = dict(type="linear_probe", every_steps=100 * steps_per_epoch, steps=1000)
  c.evals.collapse = dict(type="collapse", every_steps=10 * steps_per_epoch)
  if args["tiny"]:
    c.model.depth = 10
    c.model.width_multiplier = 0.25
    c.global_batch_size = 128
    c.total_steps = 100
    c.optimizer.warmup_epochs = 0.05
    c.log_every_steps = 10
    c.checkpoint_every_steps = 50
    c.evals.knn = dict(type="knn", every_steps=100, k=200, temperature=0.1)
    c.evals.linear_probe = dict(type="linear_probe", every_steps=100, steps=300)
    c.evals.collapse = dict(type="collapse", every_steps=100)
  return c, args


def use_encoder(c, name):
  """`config.model.name = name`, with every other encoder's settings back at their defaults (an
  encoder refuses a changed setting it does not read: ssl_jax/models/__init__.py)."""
  own = set(models.COMMON) | set(importlib.import_module(f"ssl_jax.models.{name}").SETTINGS)
  defaults = config_lib.base_config().model
  for key in set(c.model.keys()) - own:
    c.model[key] = defaults[key]
  c.model.name = name


def use_vit(c, *, tiny):
  """The ViT variant of a CIFAR-10 recipe (`:vit`): ViT-S, or ViT-mu for `:tiny`, on 4 px patches,
  AdamW at 1.5e-4 (1e-3 for `:tiny`) with weight decay 0.1."""
  use_encoder(c, "vit")
  c.model.variant = "mu" if tiny else "s"
  c.model.patch_size = 4
  c.optimizer.name = "adamw"
  c.optimizer.base_learning_rate = 1e-3 if tiny else 1.5e-4
  c.optimizer.weight_decay = 0.1
