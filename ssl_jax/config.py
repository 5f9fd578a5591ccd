"""Experiment configs: loading, overrides, dotted keys, validation against the schema.

A config file defines `get_config(arg=None)` and starts from `base_config()` (config_schema.py),
so every key the library reads exists with its type; anything else is a typo and is refused
before work starts, naming the key and the closest valid one. configs/ is not a package: `load`
reads a config file by path, and a config reads a helper beside it the same way
(`load_module("recipes.py", beside=__file__)`: configs/recipes.py holds the CIFAR-10 and ViT
recipes that several configs share).

Command lines take ml_collections `config_flags`' syntax (`--config=PATH.py[:ARG]`,
`--config.KEY=VALUE`; ssl_jax/main.py), parsed by `override` rather than by config_flags itself:
config_flags (1.1) adds a key to a free-form dict (`--config.task_kwargs.mask_ratio=0.5`) only
with `accept_new_attributes`, which needs an unlocked config and takes a new key anywhere, and it
reads `a,b` or `a,` for a tuple of names as the one name 'a,b' or 'a,'. A dotted key
(`model.bert.size`) is read with `get`; `derive` makes a copy with changes.
"""

import ast
import difflib
import importlib.util
import os
from typing import Callable, NamedTuple

import ml_collections

from ssl_jax.config_schema import base_config

FREE_FORM = (
    "evals",
    "task_kwargs",
    "finetune.per_method",
    "finetune.per_budget",
)  # dicts whose keys the component reading them checks


class Schema(NamedTuple):
  """What a command accepts: `defaults()` holds every key with its type; the keys of the dicts
  at the dotted paths `free_form` are checked by the component that reads them."""

  defaults: Callable[[], ml_collections.ConfigDict]
  free_form: tuple = FREE_FORM


BASE = Schema(base_config)


def load_module(path, beside=None):
  """Executes the Python file `path` (relative to the file `beside`) and returns it as a module."""
  path = os.path.join(os.path.dirname(os.path.abspath(beside)), path) if beside else path
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} does not exist (expected configs/NAME.py[:ARG])")
  spec = importlib.util.spec_from_file_location("ssl_jax_user_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load(path_and_arg):
  """Loads `path.py[:arg]` and calls its get_config(arg)."""
  path, _, arg = path_and_arg.partition(":")
  module = load_module(path)
  if not hasattr(module, "get_config"):
    raise AttributeError(f"config file {path!r} defines no get_config(arg=None)")
  return module.get_config(arg or None)


def _dotted_keys(config, prefix=""):
  for key, value in config.items():
    yield f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      yield from _dotted_keys(value, f"{prefix}{key}.")


def unknown_key(key, config):
  """A KeyError naming `key` and the closest of `config`'s dotted keys."""
  close = difflib.get_close_matches(key, list(_dotted_keys(config)), n=1, cutoff=0.5)
  hint = f"; closest valid key: {close[0]!r}" if close else ""
  return KeyError(f"unknown config key {key!r}{hint}")


def check_known_keys(config, schema=BASE):
  """Raises KeyError naming the first key of `config` that the schema does not have."""
  reference = schema.defaults()

  def check(node, ref, prefix):
    for key, value in node.items():
      name = f"{prefix}{key}"
      if key not in ref:
        raise unknown_key(name, reference)
      if name in schema.free_form:
        continue
      if isinstance(value, ml_collections.ConfigDict):
        check(value, ref[key], f"{name}.")
      elif isinstance(ref[key], ml_collections.ConfigDict):
        raise TypeError(f"config key {name!r} must be a dict of settings, got {value!r}")

  check(config, reference, "")


def _parent(config, key):
  """(the dict holding `key`, its last part): 'a.b.c' -> (config.a.b, 'c')."""
  *parents, leaf = key.split(".")
  node = config
  for i, part in enumerate(parents):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise unknown_key(".".join(parents[: i + 1]), config)
    node = node[part]
  if not isinstance(node, ml_collections.ConfigDict):
    raise KeyError(f"config key {'.'.join(parents)!r} is a value, not a dict holding {leaf!r}")
  return node, leaf


def get(config, key):
  """The value at a dotted key: get(config, 'model.bert.size')."""
  node, leaf = _parent(config, key)
  if leaf not in node:
    raise unknown_key(key, config)
  return node[leaf]


def derive(config, changes):
  """A resolved copy of `config` (locked if it was) with {'a.b': value} changes (new keys too)."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    for key, value in changes.items():
      node, leaf = _parent(c, key)
      node[leaf] = value
  return c


def override(config, assignments, schema=BASE):
  """Applies `key.sub=value` strings (value parsed like the key's current type)."""
  for item in assignments:
    key, sep, raw = item.partition("=")
    if not sep:
      raise ValueError(f"override {item!r} must look like key.sub=value")
    node, leaf = _parent(config, key)
    if leaf not in node:
      parent = key.rpartition(".")[0]
      # a new task or evaluator setting: its reader checks it
      if not any(parent == f or parent.rpartition(".")[0] == f for f in schema.free_form):
        raise unknown_key(key, config)
      node[leaf] = parse_value(raw)
      continue
    current = node[leaf]
    if isinstance(current, tuple):  # "a,b", "a," or "a" (names or literals), or a literal tuple
      value = parse_value(raw)
      if not isinstance(value, (list, tuple)):
        value = [parse_value(part.strip()) for part in raw.split(",") if part.strip()]
      value = tuple(value)
    else:
      value = raw if isinstance(current, str) else parse_value(raw)
    try:
      node[leaf] = value
    except TypeError as e:
      raise TypeError(f"config key {key!r}: cannot set {raw!r}: {e}") from None
  return config


def parse_value(raw):
  """A command-line value: true/false/none (any case), a Python literal, else the string."""
  lowered = {"true": True, "false": False, "none": None}
  if raw.lower() in lowered:
    return lowered[raw.lower()]
  try:
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return raw


def parse_arg(arg, **defaults):
  """`get_config` variants: 'tiny,epochs=100,bs=512' -> {'tiny': True, 'epochs': 100, 'bs': 512}.

  Keys must be among `defaults`; values take the default's type.
  """
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, raw = item.partition("=")
    if key not in defaults:
      raise KeyError(f"config argument {key!r} unknown; accepted: {sorted(defaults)}")
    values[key] = type(defaults[key])(parse_value(raw)) if sep else True
  return values


def finalize(config, workdir=None, schema=BASE):
  """Validates, locks and (on process 0) writes DIR/config.json."""
  check_known_keys(config, schema)
  if config.global_batch_size < 2:
    raise ValueError(
        f"global_batch_size={config.global_batch_size}: contrastive training needs >= 2"
    )
  if config.micro_batch_size < 0 or (
      config.micro_batch_size and config.global_batch_size % config.micro_batch_size
  ):
    raise ValueError(
        f"config.micro_batch_size={config.micro_batch_size} must divide "
        f"global_batch_size={config.global_batch_size}, or be 0 (no chunking)"
    )
  if config.micro_batch_loop not in ("auto", "unroll", "scan"):
    raise ValueError(
        f"config.micro_batch_loop={config.micro_batch_loop!r}; accepted: "
        "'auto', 'unroll', 'scan'"
    )
  config.lock()
  if workdir is not None:
    import jax  # pylint: disable=g-import-not-at-top
    from etils import epath  # pylint: disable=g-import-not-at-top

    if jax.process_index() == 0:  # local or remote (gs://...) through epath
      epath.Path(workdir).mkdir(parents=True, exist_ok=True)
      (epath.Path(workdir) / "config.json").write_text(config.to_json(indent=2))
  return config
