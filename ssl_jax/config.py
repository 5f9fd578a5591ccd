"""Experiment configs: the base schema every config starts from, loading, validation, saving.

A config file defines `get_config(arg=None)` and starts from `base_config()`, so every key the
library reads exists here with its type; anything else is a typo and is refused before work starts.
"""
import ast
import importlib.util
import os

import ml_collections

# Free-form sub-dicts: their keys are checked by the component that reads them.
FREE_FORM = ("evals", "task_kwargs")


def base_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = "simclr"
  c.task_kwargs = ml_collections.ConfigDict(dict(temperature=0.5))
  c.global_batch_size = 256
  c.total_epochs = 100.0
  c.total_steps = -1  # > 0 overrides total_epochs
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 3
  c.resume = ""  # a checkpoint directory to resume from when the workdir has none
  c.init_from = ""  # a checkpoint directory whose params initialise a fresh run
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))

  c.data = ml_collections.ConfigDict()
  c.data.source = "mnist"  # mnist | npz:PATH (arrays or the CIFAR-10 JPEG bundle) | tfds:NAME | folder:PATH
  c.data.data_dir = ""  # TFDS data_dir for tfds:NAME ('': $TFDS_DATA_DIR or ~/tensorflow_datasets)
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 28
  c.data.channels = 1
  c.data.num_classes = 10
  c.data.holdout_per_class = 100  # embedded MNIST has no test split: hold these out per class
  c.data.num_workers = 0  # grain worker processes for host-side decode (0: in the main process)
  c.data.read_threads = 2  # grain threads reading batches (per process or worker)
  c.data.prefetch = 2  # batches read ahead (per worker)
  c.data.skip_corrupt = False  # folders: skip unreadable files, listing them in WORKDIR/skipped_files.txt
  c.data.train_subset = ""  # file of indices or file names restricting the train split (label subsets)
  c.data.eval_batch_size = 512

  c.augment = ml_collections.ConfigDict(dict(
      crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_prob=0.5, jitter_prob=0.8,
      jitter_strength=0.5, grayscale_prob=0.2, blur_prob=0.0, blur_sigma=(0.1, 2.0),
      solarize_prob=0.0, solarize_threshold=0.5))  # image_ops.augment_view's keywords

  c.model = ml_collections.ConfigDict()
  c.model.name = "resnet"
  c.model.depth = 18  # 10 (small CPU variant), 18, 34, 50
  c.model.width_multiplier = 1.0
  # small: 3x3 stride 1, no max-pool (32px images); small_stride2: the same at stride 2 (cheap on
  # CPU for 28px digits); imagenet: 7x7 stride 2 + max-pool
  c.model.stem = "small"
  c.model.norm = "batch"  # batch (statistics over the global batch) | group
  c.model.conv_impl = "auto"
  c.model.dtype = "float32"  # activations; parameters and optimiser state stay float32
  c.model.projection_dims = (512, 128)  # MLP widths after the encoder; the last is the embedding

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "lars"  # lars | sgd | adamw
  c.optimizer.base_learning_rate = 0.3  # scaled by global_batch_size / 256
  c.optimizer.lr_scaling = "linear"  # linear | sqrt | none
  c.optimizer.weight_decay = 1e-6
  c.optimizer.momentum = 0.9
  c.optimizer.warmup_epochs = 10.0
  c.optimizer.schedule = "cosine"  # cosine | constant
  c.optimizer.no_decay_regex = r"(^|/)(bias|scale)$"  # biases and norm parameters
  c.optimizer.frozen_regex = ""  # parameters matching this are not updated
  c.optimizer.lr_multipliers = ()  # ((regex, multiplier), ...): every matching multiplier applies
  c.optimizer.grad_clip_norm = 0.0

  c.online_probe = False  # a stop-gradient linear head trained on labels alongside pre-training
  c.evals = ml_collections.ConfigDict()  # name -> dict(type=..., every_steps=..., ...)

  c.label_efficiency = ml_collections.ConfigDict()
  c.label_efficiency.enabled = False
  c.label_efficiency.labels_per_class = (1, 5, 10, 50)
  c.label_efficiency.num_draws = 5
  c.label_efficiency.methods = ("ssl_linear_probe", "supervised_scratch", "ssl_finetune",
                                "pixels_logreg")
  c.label_efficiency.probe_steps = 300
  c.label_efficiency.scratch_steps = 150
  c.label_efficiency.scratch_batch_size = 32
  c.label_efficiency.scratch_learning_rate = 3e-3
  return c


def load(path_and_arg):
  """Loads `path.py[:arg]` and calls its get_config(arg)."""
  path, _, arg = path_and_arg.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} does not exist (expected configs/NAME.py[:ARG])")
  spec = importlib.util.spec_from_file_location("ssl_jax_user_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise AttributeError(f"config file {path!r} defines no get_config(arg=None)")
  return module.get_config(arg or None)


def check_known_keys(config, reference=None, prefix=""):
  """Raises KeyError naming the first key of `config` that the base schema does not have."""
  reference = base_config() if reference is None else reference
  for key, value in config.items():
    name = f"{prefix}{key}"
    if key not in reference:
      known = ", ".join(sorted(reference.keys()))
      raise KeyError(f"unknown config key {name!r}; known keys here: {known}")
    if key in FREE_FORM and not prefix:
      continue
    if isinstance(value, ml_collections.ConfigDict):
      check_known_keys(value, reference[key], prefix=f"{name}.")
    elif isinstance(reference[key], ml_collections.ConfigDict):
      raise TypeError(f"config key {name!r} must be a dict of settings, got {value!r}")


def override(config, assignments):
  """Applies `key.sub=value` strings (value parsed like the key's current type)."""
  for item in assignments:
    key, sep, raw = item.partition("=")
    if not sep:
      raise ValueError(f"override {item!r} must look like key.sub=value")
    parent, _, leaf = key.rpartition(".")
    node = config
    for part in parent.split(".") if parent else []:
      if part not in node:
        raise KeyError(f"unknown config key {key!r} (no {part!r})")
      node = node[part]
    if leaf not in node:
      raise KeyError(f"unknown config key {key!r}")
    current = node[leaf]
    value = raw if isinstance(current, str) else _parse_literal(raw)
    if isinstance(current, tuple) and isinstance(value, list):
      value = tuple(value)
    try:
      node[leaf] = value
    except TypeError as e:
      raise TypeError(f"config key {key!r}: cannot set {raw!r}: {e}") from None
  return config


def _parse_literal(raw):
  lowered = {"true": True, "false": False, "none": None}
  if raw.lower() in lowered:
    return lowered[raw.lower()]
  try:
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return raw


def finalize(config, workdir=None):
  """Validates, locks and (on process 0) writes DIR/config.json."""
  check_known_keys(config)
  if config.global_batch_size < 2:
    raise ValueError(f"global_batch_size={config.global_batch_size}: contrastive training needs >= 2")
  config.lock()
  if workdir is not None:
    import jax  # pylint: disable=g-import-not-at-top
    if jax.process_index() == 0:
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json(indent=2))
  return config


def parse_arg(arg, **defaults):
  """`get_config` variants: 'tiny,epochs=100,bs=512' -> {'tiny': True, 'epochs': 100, 'bs': 512}.

  Keys must be among `defaults`; values take the default's type.
  """
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, raw = item.partition("=")
    if key not in defaults:
      raise KeyError(f"config argument {key!r} unknown; accepted: {sorted(defaults)}")
    values[key] = type(defaults[key])(_parse_literal(raw)) if sep else True
  return values
