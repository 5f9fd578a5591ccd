"""The `linear` mode: a softmax-regression head on a frozen encoder's features (or on pixels).

The frozen encoder runs once (in inference mode, without augmentation: its features are then
fixed), so the head is fitted full-batch on the cached features: standardised with the labelled
set's statistics (with a floor on small standard deviations), Adam for `steps` steps, an L2
penalty `weight_decay * |W|^2`, label smoothing. The rows are sharded over the mesh's batch axes
and padded rows carry zero weight, so one compiled fit serves every subset size up to `pad_to`.
The fitted head is returned in the raw feature space (standardisation folded in), as the kernel
and bias of the classifier's `head`.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import sharding as sharding_lib

STD_FLOOR = 0.1


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit(x, y, weight, hp, *, num_classes, steps):
  params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}
  tx = optax.adam(hp["learning_rate"])
  targets = optax.smooth_labels(jax.nn.one_hot(y, num_classes), hp["label_smoothing"])

  def loss_fn(p):
    ce = optax.softmax_cross_entropy(x @ p["w"] + p["b"], targets)
    return jnp.sum(ce * weight) / jnp.sum(weight) + hp["weight_decay"] * jnp.sum(p["w"] ** 2)

  def step(carry, _):
    p, s = carry
    updates, s = tx.update(jax.grad(loss_fn)(p), s, p)
    return (optax.apply_updates(p, updates), s), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
  return params


def fit(
    features,
    labels,
    *,
    num_classes,
    mesh,
    learning_rate,
    weight_decay,
    label_smoothing=0.0,
    steps=300,
    pad_to=None,
    standardize=True,
):
  """{'kernel': (D, K), 'bias': (K,)} of a head fitted on (features, labels); see the docstring.
  `mesh` None: on the default device (the periodic evaluator's probe). `standardize=False`
  divides every feature by the rows' mean L2 norm instead (one scale, unit-norm rows stay about
  unit-norm: the contrastive mode's head, finetune/contrastive.py)."""
  features = np.asarray(features, np.float32)
  labels = np.asarray(labels)
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"labels must lie in [0, {num_classes}); got [{labels.min()}, {labels.max()}]")
  if standardize:
    mean = features.mean(0)
    std = np.maximum(features.std(0), STD_FLOOR * features.std(0).mean() + 1e-8)
  else:
    mean = np.zeros(features.shape[1], np.float32)
    std = np.full(features.shape[1], np.linalg.norm(features, axis=1).mean() + 1e-8, np.float32)
  n = len(features)
  devices = 1 if mesh is None else mesh.size
  rows = math.ceil(max(pad_to or n, n) / devices) * devices
  x = np.pad((features - mean) / std, ((0, rows - n), (0, 0)))
  y = np.pad(labels, (0, rows - n))
  weight = np.pad(np.ones(n, np.float32), (0, rows - n))
  hp = {
      "learning_rate": np.float32(learning_rate),
      "weight_decay": np.float32(weight_decay),
      "label_smoothing": np.float32(label_smoothing),
  }
  rows_data = (x, y, weight)
  if mesh is not None:
    rows_data = sharding_lib.from_host_copies(
        rows_data, NamedSharding(mesh, P(sharding_lib.BATCH_AXES))
    )
  params = jax.device_get(_fit(*rows_data, hp, num_classes=num_classes, steps=steps))
  kernel = params["w"] / std[:, None]
  return {"kernel": kernel, "bias": params["b"] - mean @ kernel}


def accuracy(head, features, labels):
  logits = np.asarray(features, np.float32) @ head["kernel"] + head["bias"]
  return float(np.mean(np.argmax(logits, -1) == np.asarray(labels)))


def num_params(head):
  return int(head["kernel"].size + head["bias"].size)
