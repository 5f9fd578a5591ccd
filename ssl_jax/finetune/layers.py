"""Which parameters a fine-tuning mode trains, and at what learning rate, for any Flax encoder.

Parameters are handled as flat dicts keyed by '/'-joined paths
('encoder/BasicBlock_3/Conv_0/kernel'). An encoder's layers ("units") come from its parameter paths
in the order its modules first run: a unit is the shortest path prefix whose last name ends in a
number (`BasicBlock_3`, `encoder/layer/5`, `encoder/stages/2`), or what `layer_regex` matches;
parameters outside any numbered prefix (a stem, embeddings, a final norm) join the unit before them,
or form the first unit. The order comes from running the module once under `nn.intercept_methods`,
because pytree utilities sort dict keys (`BasicBlock_10` before `BasicBlock_2`).
"""

import re

import flax
import flax.linen as nn
import jax

NUMBERED_PREFIX = r"(?:[^/]*/)*?[^/]*\d(?=/)"
NO_DECAY = re.compile(
    r"(^|/)(bias|scale|embedding|pos_embedding|position_embeddings|cls|cls_token" r"|mask_token)$"
)


def flatten(tree):
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")


def unflatten(flat):
  return flax.traverse_util.unflatten_dict(flat, sep="/")


def call_order(module, example, **kwargs):
  """'/'-joined paths of `module`'s submodules in the order they first run (shapes only, no
  FLOPs)."""
  order = {}

  def record(next_fun, args, call_kwargs, context):
    order.setdefault("/".join(context.module.path), len(order))
    return next_fun(*args, **call_kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), example, **kwargs))
  return order


def units(param_paths, order, layer_regex=""):
  """[(unit name, [param paths])] in forward order; see the module docstring."""
  pattern = re.compile(layer_regex or NUMBERED_PREFIX)

  def first_run(path):
    module = path.rpartition("/")[0]
    while module not in order and "/" in module:
      module = module.rpartition("/")[0]
    return order.get(module, len(order))

  grouped, name = {}, None
  for path in sorted(param_paths, key=lambda p: (first_run(p), p)):
    match = pattern.match(path)
    if match:
      name = match.group(0)
    elif name is None:
      name = path.rpartition("/")[0] or path
    grouped.setdefault(name, []).append(path)
  if layer_regex and not any(pattern.match(p) for p in param_paths):
    raise ValueError(
        f"finetune.layer_regex={layer_regex!r} matches no encoder parameter; paths "
        f"look like {sorted(param_paths)[:3]}"
    )
  return list(grouped.items())


def encoder_depths(encoder_units):
  """{param path: depth from the top}: 0 for the last unit, 1 for the one before, ..."""
  count = len(encoder_units)
  return {p: count - 1 - i for i, (_, paths) in enumerate(encoder_units) for p in paths}


def decay_mask(paths):
  """{path: True where weight decay applies}: not to biases, norms, embeddings and tokens."""
  return {p: not NO_DECAY.search(p) for p in paths}


def count(flat):
  return int(sum(x.size for x in jax.tree.leaves(flat)))
