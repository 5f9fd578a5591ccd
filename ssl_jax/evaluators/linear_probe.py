"""Linear probe: softmax regression on frozen features, and its periodic evaluator.

Features are standardised with the training set's statistics; the classifier is fitted full-batch
with Adam and L2 weight decay. Padded rows carry zero weight, so one compiled fit serves every
subset size up to the padded length.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

STD_FLOOR = 0.1


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit(x, y, weight, *, num_classes, steps, learning_rate, weight_decay):
  params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}
  tx = optax.adam(learning_rate)

  def loss_fn(p):
    logits = x @ p["w"] + p["b"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.sum(ce * weight) / jnp.sum(weight) + weight_decay * jnp.sum(p["w"] ** 2)

  def step(carry, _):
    p, s = carry
    grads = jax.grad(loss_fn)(p)
    updates, s = tx.update(grads, s, p)
    return (optax.apply_updates(p, updates), s), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
  return params


def fit(features, labels, num_classes, *, steps=500, learning_rate=0.05, weight_decay=1e-4,
        pad_to=None):
  """Returns a classifier `predict(features) -> labels` fitted on (features, labels)."""
  features = np.asarray(features, np.float32)
  labels = np.asarray(labels)
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"probe labels must lie in [0, {num_classes}); got range "
                     f"[{labels.min()}, {labels.max()}]")
  mean = features.mean(0)
  std = np.maximum(features.std(0), STD_FLOOR * features.std(0).mean() + 1e-8)
  n = len(features)
  pad = max(pad_to or n, n) - n
  x = np.pad((features - mean) / std, ((0, pad), (0, 0)))
  y = np.pad(labels, (0, pad))
  weight = np.pad(np.ones(n, np.float32), (0, pad))
  params = _fit(x, y, weight, num_classes=num_classes, steps=steps,
                learning_rate=learning_rate, weight_decay=weight_decay)

  def predict(test_features):
    z = (np.asarray(test_features, np.float32) - mean) / std
    return np.asarray(jnp.argmax(z @ params["w"] + params["b"], axis=-1))

  return predict


def accuracy(predict, features, labels):
  return float(np.mean(predict(features) == np.asarray(labels)))


class LinearProbe:
  """Fits a linear probe on frozen features of the labelled train split; reports test accuracy."""

  def __init__(self, *, data, every_steps, steps=500, learning_rate=0.05, weight_decay=1e-4):
    self.data, self.every_steps = data, every_steps
    self.kwargs = dict(steps=steps, learning_rate=learning_rate, weight_decay=weight_decay)

  def run(self, features_of):
    train_x, train_y, test_x, test_y = self.data.features(features_of)
    predict = fit(train_x, train_y, self.data.num_classes, **self.kwargs)
    return {"accuracy": accuracy(predict, test_x, test_y),
            "train_accuracy": accuracy(predict, train_x, train_y)}
