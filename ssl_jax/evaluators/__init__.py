"""Evaluators selected by `config.evals.NAME = dict(type=..., every_steps=..., **kwargs)`.

Each has `.every_steps` and `.run(features_of) -> {metric: value}`, where `features_of(inputs)`
maps the modality's raw inputs (uint8 images, token ids, series) to the frozen encoder's features
for the current training state. Every evaluator works for every modality: kNN, the linear probe
and the SVM read features only; the collapse diagnostics compare two views of the same inputs,
made by the modality's own augmentation (`EvalData.augmented_pairs`).
"""

import inspect

import jax
import numpy as np

from ssl_jax.data import image_ops
from ssl_jax.evaluators import collapse, knn, linear_probe, svm

TYPES = {
    "knn": knn.KNN,
    "linear_probe": linear_probe.LinearProbe,
    "collapse": collapse.Collapse,
    "svm": svm.SVM,
}


class EvalData:
  """Labelled train/test inputs; features are computed once per `features_of` and shared."""

  def __init__(
      self, train_inputs, train_labels, test_inputs, test_labels, num_classes, augment=None
  ):
    keep = np.asarray(train_labels) >= 0
    self.augment = dict(augment or {})  # image_ops.augment_view's keywords, for augmented pairs
    self.train_inputs, self.train_labels = train_inputs[keep], np.asarray(train_labels)[keep]
    self.test_inputs, self.test_labels = test_inputs, test_labels
    # config.data.num_classes may be 0 (series: the classes come with the data)
    self.num_classes = max(
        int(num_classes or 0),
        int(np.max(self.train_labels, initial=-1)) + 1,
        int(np.max(np.asarray(test_labels), initial=-1)) + 1,
    )
    self._cache = (None, None)

  def features(self, features_of):
    if self._cache[0] is not features_of:
      self._cache = (
          features_of,
          (
              features_of(self.train_inputs),
              self.train_labels,
              features_of(self.test_inputs),
              self.test_labels,
          ),
      )
    return self._cache[1]

  def augmented_pairs(self, n, seed):
    """Two augmented views of the first n test inputs, as raw inputs again: images get the
    pre-training augmentation (`augment`, back to uint8), token ids and series the fine-tuning
    views of their modality (finetune/inputs.py: token dropping; scaling and jitter)."""
    from ssl_jax.finetune import inputs as inputs_lib  # pylint: disable=g-import-not-at-top

    x = np.asarray(self.test_inputs[:n])
    rng = jax.random.PRNGKey(seed)
    kind = inputs_lib.for_arrays(x)
    if isinstance(kind, inputs_lib.Images):
      views = image_ops.augment_views(
          rng, x.astype(np.float32) / 255.0, num_views=2, **self.augment
      )
      views = np.round(np.asarray(views) * 255).astype(np.uint8)
      return views[0], views[1]
    return tuple(
        np.asarray(kind.augment(jax.random.fold_in(rng, v), x)).astype(x.dtype) for v in range(2)
    )


def build(name, spec, data):
  spec = dict(spec)
  kind = spec.pop("type", None)
  if kind not in TYPES:
    raise ValueError(f"config.evals.{name}.type={kind!r}; accepted: {sorted(TYPES)}")
  cls = TYPES[kind]
  accepted = [p for p in inspect.signature(cls).parameters if p != "data"]
  unknown = sorted(set(spec) - set(accepted))
  if unknown or "every_steps" not in spec:
    raise KeyError(
        f"config.evals.{name}: unknown keys {unknown} or missing 'every_steps'; "
        f"type {kind!r} accepts {accepted}"
    )
  return cls(data=data, **spec)


def build_all(evals_config, data):
  return {name: build(name, spec, data) for name, spec in evals_config.items()}
