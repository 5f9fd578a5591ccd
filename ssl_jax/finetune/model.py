"""A classifier (any registry or generic encoder + a linear head) placed on the training mesh.

Holds what every fine-tuning mode of one classifier shares: initialisation (optionally from a
pre-trained encoder's {collection: subtree}), the encoder's layer units, and the padded, masked,
mesh-sharded evaluation (one compiled program for every mode, fold and label draw).
"""

import math

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import sharding as sharding_lib
from ssl_jax.data import pipeline
from ssl_jax.data import sources
from ssl_jax.finetune import layers


class Classifier(nn.Module):
  """A linear head on the encoder's features; with `normalize_features`, on their L2-normalised
  version (the contrastive mode's head, as sentence-transformers' Normalize module feeds SetFit's).
  """

  encoder: nn.Module
  num_classes: int
  normalize_features: bool = False

  @nn.compact
  def __call__(self, x, train=False, with_features=False):
    """Logits, or (logits, the encoder's features) `with_features`."""
    features = self.encoder(x, train=train)
    read = features
    if self.normalize_features:
      norm = jnp.linalg.norm(features.astype(jnp.float32), axis=-1, keepdims=True)
      read = features / jnp.maximum(norm, 1e-12).astype(features.dtype)
    logits = nn.Dense(self.num_classes, name="head")(read)
    return (logits, features) if with_features else logits


def _rows(x):
  """`x` as something to slice batches from: a lazily decoded split stays lazy."""
  return x if isinstance(x, sources.LazyImages) else np.asarray(x)


class Model:
  """`encoder` + head on `mesh`; `inputs` (finetune.inputs) preprocesses raw arrays like
  `example`."""

  def __init__(
      self,
      encoder,
      *,
      num_classes,
      mesh,
      inputs,
      example,
      eval_batch_size=512,
      layer_regex="",
      compiler_options=None,
      normalize_features=False,
  ):
    self._arguments = dict(
        encoder=encoder,
        num_classes=num_classes,
        mesh=mesh,
        inputs=inputs,
        example=example,
        eval_batch_size=eval_batch_size,
        layer_regex=layer_regex,
        compiler_options=compiler_options,
        normalize_features=normalize_features,
    )
    self.encoder, self.num_classes, self.mesh, self.inputs = encoder, num_classes, mesh, inputs
    # every jit of this model and its finetuners (models/conv.py: XLA:CPU's convolution library)
    self.compiler_options = compiler_options
    self.normalize_features = normalize_features
    self.module = Classifier(encoder, num_classes, normalize_features)
    self.batch_sharding = NamedSharding(mesh, P(sharding_lib.BATCH_AXES))
    self.replicated = NamedSharding(mesh, P())
    self.example = self.inputs.preprocess(jnp.asarray(np.asarray(example[:2])))
    self.abstract = jax.eval_shape(self.module.init, jax.random.PRNGKey(0), self.example)
    self.param_shapes = {p: x.shape for p, x in layers.flatten(self.abstract["params"]).items()}
    encoder_paths = [p[len("encoder/") :] for p in self.param_shapes if p.startswith("encoder/")]
    order = layers.call_order(encoder, self.example)
    self.units = [
        (f"encoder/{name}", [f"encoder/{p}" for p in paths])
        for name, paths in layers.units(encoder_paths, order, layer_regex)
    ]
    self.eval_batch_size = math.ceil(eval_batch_size / mesh.size) * mesh.size
    self._init = jax.jit(self.module.init, compiler_options=compiler_options)
    self._correct = jax.jit(self._correct_fn, compiler_options=compiler_options)
    self.finetuners = {}  # (mode, static settings) -> step.Finetuner, shared by every method
    self._features = jax.jit(self._features_fn, compiler_options=compiler_options)
    self._logits = jax.jit(self._logits_fn, compiler_options=compiler_options)

  def twin(self, **changes):
    """The same classifier with some constructor arguments changed (its own compiled programs)."""
    return Model(**{**self._arguments, **changes})

  def sharding(self, tree):
    """The mesh placement of a state or variables tree: FSDP rules of pre-training."""
    return jax.tree.map(lambda x: sharding_lib.param_sharding(self.mesh, x), tree)

  def place(self, tree):
    return jax.device_put(tree, self.sharding(tree), may_alias=False)

  def init(self, seed, encoder=None):
    """Variables from seed; `encoder` ({collection: encoder subtree}) replaces the encoder's
    part."""
    variables = jax.device_get(self._init(jax.random.PRNGKey(seed), self.example))
    variables = flax.core.unfreeze(variables)
    for collection, tree in (encoder or {}).items():
      if collection not in variables or "encoder" not in variables[collection]:
        raise ValueError(
            f"the pre-trained encoder has a collection {collection!r} that the "
            f"classifier's encoder lacks (it has {sorted(variables)})"
        )
      expected = layers.flatten(variables[collection]["encoder"])
      given = layers.flatten(jax.device_get(tree))
      shape = lambda flat, p: tuple(np.shape(flat[p])) if p in flat else None
      wrong = sorted(p for p in set(expected) | set(given) if shape(given, p) != shape(expected, p))
      if wrong:
        p = wrong[0]
        raise ValueError(
            f"the pre-trained encoder does not fit config.model: {collection}/{p} has "
            f"shape {shape(given, p)}, the model expects {shape(expected, p)}"
        )
      given = {p: np.asarray(x) for p, x in given.items()}
      variables[collection]["encoder"] = layers.unflatten(given)
    return variables

  def _correct_fn(self, variables, x, y, mask):
    logits = self._logits_fn(variables, x)
    return jnp.sum((jnp.argmax(logits, -1) == y) & mask)

  def _logits_fn(self, variables, x):
    return self.module.apply(variables, self.inputs.preprocess(x), train=False)

  def _features_fn(self, encoder_variables, x):
    return self.encoder.apply(encoder_variables, self.inputs.preprocess(x), train=False)

  def accuracy(self, variables, x, y):
    """Test accuracy of the classifier `variables` on (x, y): padded batches, masked rows."""
    correct = 0
    for (bx, by), mask in pipeline.padded((_rows(x), np.asarray(y)), self.eval_batch_size):
      args = sharding_lib.from_host_copies((bx, by, mask), self.batch_sharding)
      correct += int(self._correct(variables, *args))
    return correct / len(x)

  def _per_batch(self, fn, variables, x):
    """fn(variables, batch) over padded batches of raw inputs x, real rows only, as numpy."""
    variables = self.place(variables)
    out = []
    for (bx,), mask in pipeline.padded((_rows(x),), self.eval_batch_size):
      out.append(
          np.asarray(fn(variables, sharding_lib.from_host_copies(bx, self.batch_sharding)))[mask]
      )
    return np.concatenate(out)

  def features(self, encoder_variables, x):
    """Features (N, D) of raw inputs x under `encoder_variables` ({collection: tree}), as numpy."""
    return self._per_batch(self._features, encoder_variables, x)

  def logits(self, variables, x):
    """The classifier's logits (N, num_classes) on raw inputs x, in inference mode, as numpy."""
    return self._per_batch(self._logits, variables, x)

  def num_params(self, prefix=""):
    return int(sum(math.prod(s) for p, s in self.param_shapes.items() if p.startswith(prefix)))
