"""Pretext tasks, selected by `config.task`: module `ssl_jax.tasks.<name>` defines `Task`.

The contract. A task subclasses `Task` below and decides three things; the loop (`train.py`)
knows nothing else about it:
  model(encoder)   the trained network: the registry's encoder, as a submodule named `encoder`,
                   plus this task's heads (projector, predictor, prototypes, decoder, ...).
  loss(...)        how a batch ({"inputs": uint8 images, token ids or series, "label": int32
                   (-1: unlabelled), "index": position in the training set}) becomes views /
                   masks / targets, which parts of the model run, and
                   which loss (`ssl_jax/losses/`) is called. Returns the loss, scalar metrics, the
                   model's new BatchNorm statistics and `outputs` for `update_state`.
  init_state / update_state
                   state that gradients do not train (EMA target networks, queues, centres): made
                   from the initial variables, updated inside the jitted step after the optimiser
                   step, sharded like the parameters and checkpointed with them.
`modality` ("image" by default; "text", "timeseries") names the ssl_jax/modalities/ entry that
loads the task's data and runs its study. `chunkable` (False by default) says the loss is a
function of the views' embeddings alone, with no task state; such tasks subclass `EmbeddingTask`,
and `config.micro_batch_size` may then run their step chunk by chunk with the exact full-batch
gradient (`ssl_jax/chunked.py`). `encoder_variables` says which encoder the evaluators read (the
online one by default); `artifacts` may return pictures the loop writes into the workdir at each
evaluation (MAE's reconstructions).

Task-specific settings come from `config.task_kwargs` as the subclass's keyword arguments; the
loop's context (`augment`, `image_size`, `num_classes`, `total_steps`, `steps_per_epoch`,
`num_examples`) reaches the base class.
An unknown task_kwargs key fails before any work, naming the key.
"""

import importlib
import inspect
import math
import pkgutil

import jax
import jax.numpy as jnp

from ssl_jax.data import image_ops

CONTEXT = ("augment", "image_size", "num_classes", "total_steps", "steps_per_epoch", "num_examples")


class Task:
  """Base class of every pretext task; see the module docstring for the contract."""

  chunkable = False  # True: EmbeddingTask's split into inputs / embed / embedding_loss
  modality = "image"  # the ssl_jax/modalities/ entry that loads its data and runs its study

  def __init__(
      self,
      *,
      augment=None,
      image_size=None,
      num_classes=None,
      total_steps=None,
      steps_per_epoch=None,
      num_examples=None,
  ):
    self.augment = dict(augment or {})
    self.image_size = image_size
    self.num_classes = num_classes
    self.total_steps = total_steps  # None while a config is only being validated
    self.steps_per_epoch = steps_per_epoch
    self.num_examples = num_examples  # training examples; batch["index"] indexes them

  def model(self, encoder):
    raise NotImplementedError

  def loss(self, model, variables, task_state, batch, rng, step):
    """-> (loss, (metrics, new_model_state, outputs)); `outputs['features']` (V*B, D), the encoder
    features of the V views in view-major order, feeds the loop's optional online probe."""
    raise NotImplementedError

  def init_state(self, variables, rng):
    del variables, rng
    return {}

  def update_state(self, task_state, *, params, model_state, outputs, step):
    del params, model_state, outputs, step
    return task_state

  def encoder_variables(self, params, model_state, task_state):
    """{collection: encoder subtree} of the encoder the evaluators read."""
    del task_state
    return subtree({"params": params, **model_state}, "encoder")

  def example_input(self, input_shape):
    """A batch of 2 dummy model inputs, for initialisation; `input_shape` is one stored
    example's."""
    size = self.image_size or input_shape[0]
    return jnp.zeros((2, size, size, input_shape[-1]), jnp.float32)

  def artifacts(self, model, variables, task_state, images, rng):
    """{file name: float (H, W, C) picture in [0, 1]} to write at each evaluation; none by
    default."""
    del model, variables, task_state, images, rng
    return {}

  def preprocess(self, images):
    """uint8 (B, H, W, C) -> float32 in [0, 1] at the task's image size (evaluation inputs)."""
    x = images.astype(jnp.float32) / 255.0
    if self.image_size and x.shape[1] != self.image_size:
      x = jax.image.resize(
          x, (x.shape[0], self.image_size, self.image_size, x.shape[3]), "bilinear"
      )
    return x

  def views(self, rng, images, num_views=2, **overrides):
    """`num_views` augmented views (V, B, S, S, C) of uint8 images, per `config.augment` +
    overrides."""
    kwargs = {"crop_size": self.image_size, **self.augment, **overrides}
    return image_ops.augment_views(
        rng, images.astype(jnp.float32) / 255.0, num_views=num_views, **kwargs
    )


class EmbeddingTask(Task):
  """A task whose loss sees only the embeddings of augmented views: chunkable.

  The step is split in three so that `ssl_jax/chunked.py` can run the model on a few examples at
  a time and still take the loss over the whole batch: `inputs` makes the views, `embed` runs the
  model on (some of) them, `embedding_loss` scores the whole batch's embeddings. Subclasses define
  `model` and `embedding_loss`.
  """

  chunkable = True

  def inputs(self, batch, rng):
    """(V, B, ...) model inputs: V augmented views of the batch's B examples."""
    return self.views(rng, batch["inputs"])

  def embed(self, model, variables, inputs):
    """(V, b, ...) inputs -> (embeddings, outputs, new model state).

    embeddings and every leaf of outputs have V * b rows, view-major (rows [0, b) are view 0);
    outputs are not differentiated (`features` feeds the online probe).
    """
    (z, aux), new_state = model.apply(
        variables, merge_views(inputs), train=True, mutable=["batch_stats"]
    )
    return z, {"features": aux["features"]}, new_state

  def embedding_loss(self, embeddings):
    """The whole batch's (V * B, D) view-major embeddings -> (loss, metrics)."""
    raise NotImplementedError

  def loss(self, model, variables, task_state, batch, rng, step):
    del task_state, step
    z, outputs, new_state = self.embed(model, variables, self.inputs(batch, rng))
    loss, metrics = self.embedding_loss(z)
    return loss, (metrics, new_state, outputs)


def subtree(variables, name):
  """{collection: variables[collection][name]} for every collection that has `name`."""
  return {k: v[name] for k, v in variables.items() if name in v}


def merge_views(views):
  """(V, B, ...) -> (V*B, ...), view-major: rows [0, B) are view 0."""
  return views.reshape((-1,) + views.shape[2:])


def ema(target, online, momentum):
  """target <- momentum * target + (1 - momentum) * online, leaf by leaf."""
  return jax.tree.map(lambda t, o: momentum * t + (1 - momentum) * o, target, online)


def momentum_target(variables, parts=("encoder", "projection")):
  """A momentum (EMA) target network: a copy of the online variables of `parts`."""
  return {c: {p: v[p] for p in parts if p in v} for c, v in variables.items()}


def update_momentum_target(target, params, target_model_state, momentum):
  """EMA of the online params into the target; BatchNorm statistics from the target's own
  forward."""
  online = {p: params[p] for p in target["params"]}
  return {**target, **target_model_state, "params": ema(target["params"], online, momentum)}


def cosine_momentum(step, total_steps, *, base, final=1.0):
  """BYOL's schedule: final - (final - base) * (cos(pi * step / total) + 1) / 2."""
  progress = jnp.minimum(step / max(total_steps or 1, 1), 1.0)
  return final - (final - base) * (jnp.cos(math.pi * progress) + 1) / 2


def available():
  return sorted(m.name for m in pkgutil.iter_modules(__path__))


def get(name):
  """The Task class of task `name`."""
  if name not in available():
    raise ValueError(f"unknown config.task {name!r}; accepted: {available()}")
  return importlib.import_module(f"ssl_jax.tasks.{name}").Task


def build(name, *, task_kwargs=None, **context):
  """The task `name` with `task_kwargs` (validated against its signature) and the loop's context."""
  cls = get(name)
  unexpected = sorted(set(context) - set(CONTEXT))
  if unexpected:
    raise TypeError(f"tasks.build got context {unexpected}; the context keys are {CONTEXT}")
  own = [
      p.name
      for p in inspect.signature(cls).parameters.values()
      if p.kind == p.KEYWORD_ONLY and p.name not in CONTEXT
  ]
  task_kwargs = dict(task_kwargs or {})
  unknown = sorted(set(task_kwargs) - set(own))
  if unknown:
    raise KeyError(
        f"config.task_kwargs has keys {unknown} that task {name!r} does not take; "
        f"accepted: {sorted(own)}"
    )
  return cls(**task_kwargs, **context)
