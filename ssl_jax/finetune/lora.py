"""LoRA (Hu et al. 2021) as a parameter transform: low-rank updates of selected kernels.

A selected kernel W, seen as a matrix (fan-in, fan-out), is used as
    W + (alpha / rank) * reshape(A @ B),   A: (fan-in, rank), B: (rank, fan-out)
where the fan-out is the last axis (Dense (in, out), Conv (kh, kw, in, out), an attention output
(heads, head_dim, out)), except for attention query/key/value kernels (in, heads, head_dim),
whose fan-out is (heads, head_dim).
with A drawn like a LeCun-normal kernel and B = 0, so at initialisation the model is the base
model exactly. The model's code is unchanged: the effective kernels are computed before `apply`,
so the same adapters work for our ResNets, ViTs and BERTs. `merge` returns the
effective parameters, i.e. the adapters folded into the base weights for export.

Adapters are a flat dict {f"{kernel path}/lora_a": A, f"{kernel path}/lora_b": B}.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np


def targets(shapes, regex):
  """Paths of the kernels `regex` selects in {path: shape} (Dense/Conv kernels: 2+ dimensions)."""
  pattern = re.compile(regex)
  chosen = [p for p, s in shapes.items() if pattern.search(p) and len(s) >= 2]
  if not chosen:
    raise ValueError(
        f"finetune.lora_regex={regex!r} selects no Dense/Conv kernel; kernel paths "
        f"look like {[p for p, s in shapes.items() if len(s) >= 2][:4]}"
    )
  return chosen


def fan_in_axes(path, shape):
  """How many leading axes of the kernel at `path` are its inputs."""
  return 1 if len(shape) == 3 and re.search(r"(query|key|value)/kernel$", path) else len(shape) - 1


def init(rng, shapes, paths, rank):
  """Adapters for the kernels at `paths` ({path: shape} gives their shapes): A random, B zero."""
  adapters = {}
  for i, path in enumerate(paths):
    shape = shapes[path]
    split = fan_in_axes(path, shape)
    fan_in, fan_out = int(np.prod(shape[:split])), int(np.prod(shape[split:]))
    a = jax.random.normal(jax.random.fold_in(rng, i), (fan_in, rank)) / np.sqrt(fan_in)
    adapters[f"{path}/lora_a"] = a.astype(jnp.float32)
    adapters[f"{path}/lora_b"] = jnp.zeros((rank, fan_out), jnp.float32)
  return adapters


def merge(flat_params, adapters, alpha):
  """The effective flat parameters: each adapted kernel W + (alpha / rank) * reshape(A @ B)."""
  merged = dict(flat_params)
  for key, a in adapters.items():
    if not key.endswith("/lora_a"):
      continue
    path = key[: -len("/lora_a")]
    b = adapters[f"{path}/lora_b"]
    base = flat_params[path]
    delta = (alpha / a.shape[-1]) * (a @ b)
    merged[path] = base + delta.reshape(base.shape).astype(base.dtype)
  return merged


def num_params(shapes, paths, rank):
  """Adapter parameters for the kernels at `paths` of {path: shape}."""
  return int(
      sum(
          rank
          * (
              np.prod(shapes[p][: fan_in_axes(p, shapes[p])])
              + np.prod(shapes[p][fan_in_axes(p, shapes[p]) :])
          )
          for p in paths
      )
  )
