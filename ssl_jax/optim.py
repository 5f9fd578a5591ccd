"""Optimisers from the config: LARS (SimCLR's recipe), SGD, AdamW; warm-up + cosine; regex groups.

Parameter groups follow big_vision's habit: a parameter's '/'-joined path is matched against
regexes; `frozen_regex` freezes a group, `lr_multipliers` scales one, `no_decay_regex` exempts
biases and norm parameters from weight decay (and from LARS's trust ratio).
"""

import math
import re

import flax
import jax
import optax


def learning_rate(config, global_batch_size, total_steps, steps_per_epoch):
  opt = config.optimizer
  scale = {
      "linear": global_batch_size / 256,
      "sqrt": math.sqrt(global_batch_size / 256),
      "none": 1.0,
  }
  if opt.lr_scaling not in scale:
    raise ValueError(f"optimizer.lr_scaling={opt.lr_scaling!r}; accepted: {sorted(scale)}")
  peak = opt.base_learning_rate * scale[opt.lr_scaling]
  warmup = min(int(round(opt.warmup_epochs * steps_per_epoch)), max(total_steps - 1, 0))
  if opt.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1))
  if opt.schedule == "constant":
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak)], [warmup]
    )
  raise ValueError(f"optimizer.schedule={opt.schedule!r}; accepted: 'cosine', 'constant'")


def param_paths(params):
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
  return flax.traverse_util.unflatten_dict({k: k for k in flat}, sep="/")


def _mask(params, pattern, match=True):
  regex = re.compile(pattern)
  return jax.tree.map(lambda path: bool(regex.search(path)) == match, param_paths(params))


def build(config, params, *, global_batch_size, total_steps, steps_per_epoch):
  opt = config.optimizer
  schedule = learning_rate(config, global_batch_size, total_steps, steps_per_epoch)
  decay_mask = _mask(params, opt.no_decay_regex, match=False)
  if opt.name == "lars":
    tx = optax.lars(
        schedule,
        weight_decay=opt.weight_decay,
        weight_decay_mask=decay_mask,
        trust_ratio_mask=decay_mask,
        momentum=opt.momentum,
    )
  elif opt.name == "sgd":
    tx = optax.chain(
        optax.add_decayed_weights(opt.weight_decay, decay_mask),
        optax.sgd(schedule, momentum=opt.momentum, nesterov=True),
    )
  elif opt.name == "adamw":
    tx = optax.adamw(schedule, weight_decay=opt.weight_decay, mask=decay_mask)
  else:
    raise ValueError(f"optimizer.name={opt.name!r}; accepted: 'lars', 'sgd', 'adamw'")
  parts = [optax.clip_by_global_norm(opt.grad_clip_norm)] if opt.grad_clip_norm > 0 else []
  parts.append(tx)
  for pattern, multiplier in opt.lr_multipliers:
    parts.append(optax.masked(optax.scale(multiplier), _mask(params, pattern)))
  if opt.frozen_regex:
    frozen = _mask(params, opt.frozen_regex)
    if not any(jax.tree.leaves(frozen)):
      raise ValueError(
          f"optimizer.frozen_regex={opt.frozen_regex!r} matches no parameter; "
          f"paths look like {jax.tree.leaves(param_paths(params))[:3]}"
      )
    # set_to_zero also keeps no optimiser state for the frozen group
    tx = optax.multi_transform(
        {"train": optax.chain(*parts), "frozen": optax.set_to_zero()},
        jax.tree.map(lambda f: "frozen" if f else "train", frozen),
    )
  else:
    tx = optax.chain(*parts)
  return tx, schedule
