"""The jitted, sharded pre-training step and everything it is built from (train.py runs it).

`build(config, ...)` makes the mesh, encoder, task, optimiser and the jitted `init_state` /
`train_step` / feature functions of one config (`Components`). The state (`TrainState`) holds the
model's params, the task's state outside the gradient (EMA targets, queues, centres) and, when
`config.online_probe` is on, the online probe: a linear head on the encoder's stop-gradient
features, trained on the labelled rows of each batch beside the pretext loss. The probe has its
own field: the model's params never contain it; it meets them only in the optimiser (one
optimiser over both, so its schedule, weight decay and clipping treat the probe as one more layer).
"""

import dataclasses
import functools
import math
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import chunked
from ssl_jax import models
from ssl_jax import optim
from ssl_jax import sharding as sharding_lib
from ssl_jax import tasks
from ssl_jax.data import pipeline
from ssl_jax.models import conv as conv_lib

PROBE = "online_probe"  # the probe's name in the optimiser's tree (and its metrics' prefix)


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any  # over the params and the probe (`trainable`)
  task_state: Any  # what the task keeps outside the gradient: EMA targets, queues, centres
  rng: jax.Array  # raw uint32 key; step keys are fold_in(rng, step)
  probe: Any = None  # the online probe's params (config.online_probe), else None


def trainable(params, probe):
  """What the optimiser updates: the params, and the online probe beside them when there is one."""
  return params if probe is None else {**params, PROBE: probe}


def split_trainable(tree, probe):
  """Inverse of `trainable`: (params, probe)."""
  if probe is None:
    return tree, None
  return {k: v for k, v in tree.items() if k != PROBE}, tree[PROBE]


@dataclasses.dataclass
class Components:
  mesh: Any
  encoder: Any
  model: Any
  task: Any
  tx: Any
  schedule: Callable
  state_sharding: Any
  batch_sharding: Any
  init_state: Callable
  train_step: Callable
  features_of: Callable  # (state, uint8 images) -> np.ndarray features
  artifacts_of: Any  # (state, uint8 images) -> {file name: picture} (Task.artifacts), or None

  def encoder_variables(self, state):
    """{collection: encoder subtree} of the encoder the evaluators read, for fine-tuning."""
    return self.task.encoder_variables(state.params, state.model_state, state.task_state)


def build_task(config, total_steps=None, steps_per_epoch=None, num_examples=None):
  return tasks.build(
      config.task,
      task_kwargs=dict(config.task_kwargs),
      augment=dict(config.augment),
      image_size=config.data.image_size,
      num_classes=config.data.num_classes,
      total_steps=total_steps,
      steps_per_epoch=steps_per_epoch,
      num_examples=num_examples,
  )


def online_probe_loss(logits, labels):
  """Cross-entropy and accuracy of the online probe on the labelled rows (label >= 0)."""
  labelled = labels >= 0
  count = jnp.maximum(labelled.sum(), 1)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
  accuracy = jnp.sum((jnp.argmax(logits, -1) == labels) * labelled) / count
  return jnp.sum(ce * labelled) / count, accuracy


def global_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def build(config, *, input_shape, steps_per_epoch, total_steps, num_examples=None):
  """Everything jitted for one config: mesh, model, task, optimiser, init and step functions."""
  mesh = sharding_lib.make_mesh(config)
  sharding_lib.check_batch_divides(config.global_batch_size, mesh)
  encoder = models.build_encoder(config.model, image_size=config.data.image_size)
  task = build_task(
      config,
      total_steps,
      steps_per_epoch,
      num_examples or steps_per_epoch * config.global_batch_size,
  )
  chunked.check(
      task,
      task_name=config.task,
      micro_batch_size=config.micro_batch_size,
      global_batch_size=config.global_batch_size,
      num_devices=mesh.size,
      loop=config.micro_batch_loop,
      recompute=config.micro_batch_recompute,
  )
  model = task.model(encoder)
  probe = nn.Dense(config.data.num_classes, name=PROBE) if config.online_probe else None
  dummy = task.example_input(input_shape)

  def init_variables(rng):
    """(model variables, the probe's params or None)."""
    variables = dict(model.init(jax.random.fold_in(rng, 0), dummy, train=False))
    if probe is None:
      return variables, None
    inputs = task.preprocess(jnp.zeros((2,) + tuple(input_shape), jnp.float32))
    features = encoder.apply(tasks.subtree(variables, "encoder"), inputs, train=False)
    return variables, probe.init(jax.random.fold_in(rng, 2), features)["params"]

  abstract_vars, abstract_probe = jax.eval_shape(init_variables, jax.random.PRNGKey(0))
  tx, schedule = optim.build(
      config,
      trainable(abstract_vars["params"], abstract_probe),
      global_batch_size=config.global_batch_size,
      total_steps=total_steps,
      steps_per_epoch=steps_per_epoch,
  )
  batch_sharding = NamedSharding(mesh, P(sharding_lib.BATCH_AXES))
  chunk_sharding = NamedSharding(
      mesh, P(None, sharding_lib.BATCH_AXES)
  )  # a chunk's (views, examples, ...)
  replicated = NamedSharding(mesh, P())

  def init(rng):
    variables, probe_params = init_variables(rng)
    params = variables.pop("params")
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        model_state=variables,
        opt_state=tx.init(trainable(params, probe_params)),
        task_state=task.init_state({"params": params, **variables}, jax.random.fold_in(rng, 3)),
        rng=jax.random.fold_in(rng, 1),
        probe=probe_params,
    )

  abstract_state = jax.eval_shape(init, jax.random.PRNGKey(0))
  state_sharding = jax.tree.map(lambda x: sharding_lib.param_sharding(mesh, x), abstract_state)
  compile_options = conv_lib.compiler_options(config.model.cpu_conv_library)
  init_state = jax.jit(init, out_shardings=state_sharding, compiler_options=compile_options)

  def step_fn(state, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    variables = lambda params: {"params": params, **state.model_state}

    def add_probe(probe_params, loss, metrics, outputs):
      features = jax.lax.stop_gradient(outputs["features"])
      labels = jnp.tile(batch["label"], features.shape[0] // batch["label"].shape[0])
      logits = probe.apply({"params": probe_params}, features)
      probe_loss, probe_accuracy = online_probe_loss(logits, labels)
      metrics = {
          **metrics,
          "ssl_loss": loss,
          f"{PROBE}/loss": probe_loss,
          f"{PROBE}/accuracy": probe_accuracy,
      }
      return loss + probe_loss, metrics

    def loss_fn(trained):
      params, probe_params = split_trainable(trained, state.probe)
      loss, (metrics, new_model_state, outputs) = task.loss(
          model, variables(params), state.task_state, batch, rng, state.step
      )
      if probe is not None:
        loss, metrics = add_probe(probe_params, loss, metrics, outputs)
      return loss, (metrics, new_model_state, outputs)

    if config.micro_batch_size:  # the same loss and gradients, chunk by chunk (chunked.py)
      (loss, (metrics, new_model_state, outputs)), grads = chunked.value_and_grad(
          task,
          model,
          variables(state.params),
          batch,
          rng,
          micro_batch_size=config.micro_batch_size,
          loop=config.micro_batch_loop,
          recompute=config.micro_batch_recompute,
          constrain=lambda x: jax.lax.with_sharding_constraint(x, chunk_sharding),
      )
      if probe is not None:  # the probe sees stop-gradient features: its gradient is separate
        (loss, metrics), probe_grads = jax.value_and_grad(add_probe, has_aux=True)(
            state.probe, loss, metrics, outputs
        )
        grads = trainable(grads, probe_grads)
    else:
      (loss, (metrics, new_model_state, outputs)), grads = jax.value_and_grad(
          loss_fn, has_aux=True
      )(trainable(state.params, state.probe))
    current = trainable(state.params, state.probe)
    updates, opt_state = tx.update(grads, state.opt_state, current)
    params, probe_params = split_trainable(jax.tree.map(jnp.add, current, updates), state.probe)
    model_state = {**state.model_state, **new_model_state}
    task_state = task.update_state(
        state.task_state, params=params, model_state=model_state, outputs=outputs, step=state.step
    )
    metrics = {
        **metrics,
        "loss": loss,
        "grad_norm": global_norm(grads),
        "learning_rate": schedule(state.step),
    }
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        model_state=model_state,
        task_state=task_state,
        probe=probe_params,
    )
    return new_state, metrics

  train_step = jax.jit(
      step_fn,
      in_shardings=(state_sharding, batch_sharding),
      out_shardings=(state_sharding, replicated),
      donate_argnums=0,
      compiler_options=compile_options,
  )

  @functools.partial(jax.jit, compiler_options=compile_options)
  def _features(state, images):
    variables = task.encoder_variables(state.params, state.model_state, state.task_state)
    return encoder.apply(variables, task.preprocess(images), train=False)

  eval_batch = math.ceil(config.data.eval_batch_size / mesh.size) * mesh.size

  def features_of(state, images):
    out = []
    for (batch,), mask in pipeline.padded((images,), eval_batch):
      out.append(np.asarray(_features(state, jax.device_put(batch, batch_sharding)))[mask])
    return np.concatenate(out)

  @functools.partial(jax.jit, compiler_options=compile_options)
  def _artifacts(state, images, rng):
    variables = {"params": state.params, **state.model_state}
    return task.artifacts(model, variables, state.task_state, task.preprocess(images), rng)

  def artifacts_of(state, images):
    return jax.device_get(_artifacts(state, images, jax.random.fold_in(state.rng, 2**31 - 1)))

  has_artifacts = type(task).artifacts is not tasks.Task.artifacts
  return Components(
      mesh,
      encoder,
      model,
      task,
      tx,
      schedule,
      state_sharding,
      batch_sharding,
      init_state,
      train_step,
      features_of,
      artifacts_of if has_artifacts else None,
  )
