"""Evaluators selected by `config.evals.NAME = dict(type=..., every_steps=..., **kwargs)`.

Each has `.every_steps` and `.run(features_of) -> {metric: value}`, where `features_of(images)`
maps uint8 images to the frozen encoder's features for the current training state.
"""
import inspect

import jax
import numpy as np

from ssl_jax.data import image_ops
from ssl_jax.evaluators import collapse, knn, linear_probe

TYPES = {"knn": knn.KNN, "linear_probe": linear_probe.LinearProbe, "collapse": collapse.Collapse}


class EvalData:
  """Labelled train/test images; features are computed once per `features_of` and shared."""

  def __init__(self, train_images, train_labels, test_images, test_labels, num_classes, augment=None):
    keep = train_labels >= 0
    self.augment = dict(augment or {})  # image_ops.augment_view's keywords, for augmented pairs
    self.train_images, self.train_labels = train_images[keep], train_labels[keep]
    self.test_images, self.test_labels = test_images, test_labels
    self.num_classes = num_classes
    self._cache = (None, None)

  def features(self, features_of):
    if self._cache[0] is not features_of:
      self._cache = (features_of, (features_of(self.train_images), self.train_labels,
                                   features_of(self.test_images), self.test_labels))
    return self._cache[1]

  def augmented_pairs(self, n, seed):
    """Two augmented uint8 views of the first n test images (the pre-training augmentation)."""
    images = np.asarray(self.test_images[:n], np.float32) / 255.0
    views = image_ops.augment_views(jax.random.PRNGKey(seed), images, num_views=2, **self.augment)
    views = np.round(np.asarray(views) * 255).astype(np.uint8)
    return views[0], views[1]


def build(name, spec, data):
  spec = dict(spec)
  kind = spec.pop("type", None)
  if kind not in TYPES:
    raise ValueError(f"config.evals.{name}.type={kind!r}; accepted: {sorted(TYPES)}")
  cls = TYPES[kind]
  accepted = [p for p in inspect.signature(cls).parameters if p != "data"]
  unknown = sorted(set(spec) - set(accepted))
  if unknown or "every_steps" not in spec:
    raise KeyError(f"config.evals.{name}: unknown keys {unknown} or missing 'every_steps'; "
                   f"type {kind!r} accepts {accepted}")
  return cls(data=data, **spec)


def build_all(evals_config, data):
  return {name: build(name, spec, data) for name, spec in evals_config.items()}
