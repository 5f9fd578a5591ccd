"""The training loop every pretext task plugs into.

Builds data, model, task, optimiser and a device mesh from the config; runs the jitted, sharded
step; checkpoints; runs evaluators; writes metrics. The same code runs on one CPU, on simulated
CPU devices, and on GPU/TPU meshes.

So that the device never waits on the host: batches are copied to the devices a step ahead
(`pipeline.DevicePrefetch`), each step runs under a transfer guard that rejects implicit
host<->device copies, and checkpoints are written in the background (`checkpoint.py`).
"""
import dataclasses
import functools
import math
import os
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import checkpoint as checkpoint_lib
from ssl_jax import chunked
from ssl_jax import evaluators as evaluators_lib
from ssl_jax import metrics as metrics_lib
from ssl_jax import models
from ssl_jax.models import conv as conv_lib
from ssl_jax import optim
from ssl_jax import preemption
from ssl_jax import tasks
from ssl_jax.data import pipeline
from ssl_jax.data import sources

BATCH_AXES = ("data", "fsdp")


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  task_state: Any  # what the task keeps outside the gradient: EMA targets, queues, centres
  rng: jax.Array  # raw uint32 key; step keys are fold_in(rng, step)


def make_mesh(config):
  """A (data, fsdp) mesh; data=-1 takes every device not used by fsdp."""
  devices = jax.devices()
  fsdp = config.mesh.fsdp
  data = len(devices) // fsdp if config.mesh.data == -1 else config.mesh.data
  if data < 1 or fsdp < 1 or data * fsdp > len(devices) or (
      jax.process_count() > 1 and data * fsdp != len(devices)):
    raise ValueError(f"config.mesh data={config.mesh.data} x fsdp={fsdp} does not fit the "
                     f"{len(devices)} devices; use data=-1 to take them all")
  auto = jax.sharding.AxisType.Auto
  return jax.make_mesh((data, fsdp), BATCH_AXES, axis_types=(auto, auto),
                       devices=devices[:data * fsdp])


def check_batch_divides(global_batch_size, mesh):
  if global_batch_size < 2:
    raise ValueError(f"global_batch_size={global_batch_size}: needs at least 2 examples")
  if global_batch_size % mesh.size:
    raise ValueError(f"global_batch_size={global_batch_size} does not divide over {mesh.size} "
                     f"devices; use a multiple of {mesh.size}")


def param_sharding(mesh, x, min_size=2**16):
  """FSDP: shard a large parameter's largest divisible axis over 'fsdp'; replicate the rest."""
  fsdp = mesh.shape["fsdp"]
  if fsdp == 1 or x.size < min_size:
    return NamedSharding(mesh, P())
  for axis in np.argsort(x.shape)[::-1]:
    if x.shape[axis] % fsdp == 0:
      spec = [None] * x.ndim
      spec[axis] = "fsdp"
      return NamedSharding(mesh, P(*spec))
  return NamedSharding(mesh, P())


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
  return tasks.build(config.task, task_kwargs=dict(config.task_kwargs), augment=dict(config.augment),
                     image_size=config.data.image_size, num_classes=config.data.num_classes,
                     total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                     num_examples=num_examples)


def _online_probe_loss(logits, labels):
  """Cross-entropy and accuracy of the online probe on the labelled rows (label >= 0)."""
  labelled = labels >= 0
  count = jnp.maximum(labelled.sum(), 1)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
  accuracy = jnp.sum((jnp.argmax(logits, -1) == labels) * labelled) / count
  return jnp.sum(ce * labelled) / count, accuracy


def build(config, *, input_shape, steps_per_epoch, total_steps, num_examples=None):
  """Everything jitted for one config: mesh, model, task, optimiser, init and step functions."""
  mesh = make_mesh(config)
  check_batch_divides(config.global_batch_size, mesh)
  encoder = models.build_encoder(config.model, image_size=config.data.image_size)
  task = build_task(config, total_steps, steps_per_epoch,
                    num_examples or steps_per_epoch * config.global_batch_size)
  chunked.check(task, task_name=config.task, micro_batch_size=config.micro_batch_size,
                global_batch_size=config.global_batch_size, num_devices=mesh.size,
                loop=config.micro_batch_loop, recompute=config.micro_batch_recompute)
  model = task.model(encoder)
  probe = nn.Dense(config.data.num_classes, name="online_probe") if config.online_probe else None
  dummy = task.example_input(input_shape)

  def init_variables(rng):
    variables = dict(model.init(jax.random.fold_in(rng, 0), dummy, train=False))
    if probe is not None:  # a stop-gradient linear head on the encoder's features
      inputs = task.preprocess(jnp.zeros((2,) + tuple(input_shape), jnp.float32))
      features = encoder.apply(tasks.subtree(variables, "encoder"), inputs, train=False)
      variables["params"] = {**variables["params"],
                             "online_probe": probe.init(jax.random.fold_in(rng, 2), features)["params"]}
    return variables

  abstract_vars = jax.eval_shape(init_variables, jax.random.PRNGKey(0))
  tx, schedule = optim.build(config, abstract_vars["params"], global_batch_size=config.global_batch_size,
                             total_steps=total_steps, steps_per_epoch=steps_per_epoch)
  batch_sharding = NamedSharding(mesh, P(BATCH_AXES))
  chunk_sharding = NamedSharding(mesh, P(None, BATCH_AXES))  # a chunk's (views, examples, ...)
  replicated = NamedSharding(mesh, P())

  def init(rng):
    variables = init_variables(rng)
    params = variables.pop("params")
    model_variables = {"params": {k: v for k, v in params.items() if k != "online_probe"}, **variables}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                      opt_state=tx.init(params),
                      task_state=task.init_state(model_variables, jax.random.fold_in(rng, 3)),
                      rng=jax.random.fold_in(rng, 1))

  abstract_state = jax.eval_shape(init, jax.random.PRNGKey(0))
  state_sharding = jax.tree.map(lambda x: param_sharding(mesh, x), abstract_state)
  compile_options = conv_lib.compiler_options(config.model.cpu_conv_library)
  init_state = jax.jit(init, out_shardings=state_sharding, compiler_options=compile_options)

  def step_fn(state, batch):
    rng = jax.random.fold_in(state.rng, state.step)

    def add_probe(probe_params, loss, metrics, outputs):
      features = jax.lax.stop_gradient(outputs["features"])
      labels = jnp.tile(batch["label"], features.shape[0] // batch["label"].shape[0])
      logits = probe.apply({"params": probe_params}, features)
      probe_loss, probe_accuracy = _online_probe_loss(logits, labels)
      metrics = {**metrics, "ssl_loss": loss, "online_probe/loss": probe_loss,
                 "online_probe/accuracy": probe_accuracy}
      return loss + probe_loss, metrics

    def loss_fn(params):
      model_params = {k: v for k, v in params.items() if k != "online_probe"}
      loss, (metrics, new_model_state, outputs) = task.loss(
          model, {"params": model_params, **state.model_state}, state.task_state, batch, rng,
          state.step)
      if probe is not None:
        loss, metrics = add_probe(params["online_probe"], loss, metrics, outputs)
      return loss, (metrics, new_model_state, outputs)

    if config.micro_batch_size:  # the same loss and gradients, chunk by chunk (chunked.py)
      model_params = {k: v for k, v in state.params.items() if k != "online_probe"}
      (loss, (metrics, new_model_state, outputs)), grads = chunked.value_and_grad(
          task, model, {"params": model_params, **state.model_state}, batch, rng,
          micro_batch_size=config.micro_batch_size, loop=config.micro_batch_loop,
          recompute=config.micro_batch_recompute,
          constrain=lambda x: jax.lax.with_sharding_constraint(x, chunk_sharding))
      if probe is not None:  # the probe sees stop-gradient features: its gradient is separate
        (loss, metrics), grads["online_probe"] = jax.value_and_grad(add_probe, has_aux=True)(
            state.params["online_probe"], loss, metrics, outputs)
    else:
      (loss, (metrics, new_model_state, outputs)), grads = jax.value_and_grad(
          loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = jax.tree.map(jnp.add, state.params, updates)
    model_state = {**state.model_state, **new_model_state}
    task_state = task.update_state(state.task_state, params=params, model_state=model_state,
                                   outputs=outputs, step=state.step)
    metrics = {**metrics, "loss": loss, "grad_norm": _global_norm(grads),
               "learning_rate": schedule(state.step)}
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state=model_state, task_state=task_state)
    return new_state, metrics

  train_step = jax.jit(step_fn, in_shardings=(state_sharding, batch_sharding),
                       out_shardings=(state_sharding, replicated), donate_argnums=0,
                       compiler_options=compile_options)

  @functools.partial(jax.jit, compiler_options=compile_options)
  def _features(state, images):
    variables = task.encoder_variables(state.params, state.model_state, state.task_state)
    return encoder.apply(variables, task.preprocess(images), train=False)

  eval_batch = math.ceil(config.data.eval_batch_size / mesh.size) * mesh.size

  def features_of(state, images):
    out = []
    for batch in pipeline.padded_batches(images, np.zeros(len(images), np.int32), eval_batch):
      x = jax.device_put(batch["image"], batch_sharding)
      out.append(np.asarray(_features(state, x))[batch["mask"]])
    return np.concatenate(out)

  @functools.partial(jax.jit, compiler_options=compile_options)
  def _artifacts(state, images, rng):
    variables = {"params": {k: v for k, v in state.params.items() if k != "online_probe"},
                 **state.model_state}
    return task.artifacts(model, variables, state.task_state, task.preprocess(images), rng)

  def artifacts_of(state, images):
    return jax.device_get(_artifacts(state, images, jax.random.fold_in(state.rng, 2**31 - 1)))

  if type(task).artifacts is tasks.Task.artifacts:
    artifacts_of = None

  return Components(mesh, encoder, model, task, tx, schedule, state_sharding, batch_sharding,
                    init_state, train_step, features_of, artifacts_of)


def _global_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def load_data(config, *, need_eval=True):
  """The train source and (when evaluation needs it) the eval source, per config.data."""
  d = config.data
  common = dict(holdout_per_class=d.holdout_per_class, seed=d.holdout_seed, data_dir=d.data_dir or None,
                image_size=d.image_size, channels=d.channels, num_classes=d.num_classes,
                skip_corrupt=d.skip_corrupt)
  train_source = sources.build(d.source, d.train_split, subset=d.train_subset or None, **common)
  test_source = sources.build(d.source, d.eval_split, **common) if need_eval else None
  return train_source, test_source


def schedule_lengths(config, num_examples):
  steps_per_epoch = num_examples // config.global_batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"{num_examples} training examples are fewer than global_batch_size="
                     f"{config.global_batch_size}")
  total = config.total_steps if config.total_steps > 0 else int(round(config.total_epochs * steps_per_epoch))
  return steps_per_epoch, max(total, 1)


def _write_artifacts(workdir, pictures):
  import io  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for name, picture in pictures.items():
    picture = np.clip(np.asarray(picture) * 255 + 0.5, 0, 255).astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(png, format="PNG")
    path = epath.Path(workdir) / name  # local or remote (gs://...)
    temporary = path.parent / (path.name + ".tmp.png")
    temporary.write_bytes(png.getvalue())
    temporary.replace(path)  # a reader never sees half a file


def _check_finite(step, metrics):
  loss, grad_norm = map(float, jax.device_get((metrics["loss"], metrics["grad_norm"])))
  if not math.isfinite(loss) or not math.isfinite(grad_norm):
    raise FloatingPointError(
        f"non-finite loss ({loss}) or gradient norm ({grad_norm}) at step {step}; "
        "stopping. The last good checkpoint is kept in the workdir; lower the learning rate or "
        "check the input data.")
  return loss


def _to_device(local, sharding):
  """A host batch -> global arrays on the batch sharding (an explicit transfer)."""
  local = {**local, "index": local["index"].astype(np.int32)}  # position in the training set
  return pipeline.to_global(local, sharding)


def _restore_or_init(config, comps, checkpointer):
  """Resume order: this workdir's latest checkpoint, config.resume, config.init_from, scratch."""
  abstract = jax.eval_shape(comps.init_state, jax.random.PRNGKey(config.seed))
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, comps.state_sharding)
  if checkpointer.latest_step() is not None:
    print(f"resuming from {checkpointer.directory} step {checkpointer.latest_step()}", flush=True)
    return checkpointer.restore(abstract)
  if config.resume:
    print(f"resuming from config.resume={config.resume}", flush=True)
    return checkpoint_lib.restore_from(config.resume, abstract)
  state = comps.init_state(jax.random.PRNGKey(config.seed))
  shipped = None if config.init_from else models.pretrained_params(config.model)
  if config.init_from or shipped is not None:
    if config.init_from:
      print(f"initialising params from config.init_from={config.init_from}", flush=True)
      loaded = checkpoint_lib.restore_params(config.init_from)
    else:  # the encoder's own weights (a checkpoint directory); the task's heads stay fresh
      print("initialising the encoder from its pretrained weights", flush=True)
      loaded = {"params": {**state.params, "encoder": shipped}, "model_state": state.model_state}
    params = jax.device_put(loaded["params"], comps.state_sharding.params)
    model_state = jax.device_put(loaded["model_state"], comps.state_sharding.model_state)
    # task state (EMA targets, ...) starts from the loaded weights, as it would from fresh ones
    model_variables = {"params": {k: v for k, v in params.items() if k != "online_probe"},
                       **model_state}
    task_state = jax.jit(comps.task.init_state, out_shardings=comps.state_sharding.task_state)(
        model_variables, jax.random.fold_in(jax.random.PRNGKey(config.seed), 3))
    state = state.replace(params=params, model_state=model_state, task_state=task_state)
  return state, None


@dataclasses.dataclass
class Run:
  state: TrainState
  components: Components
  train_source: Any
  test_source: Any
  history: list

  def features_of(self, images):
    return self.components.features_of(self.state, images)


def _set_compilation_cache(directory):
  """config.compilation_cache_dir: 'auto' caches in ~/.cache/ssl_jax/xla on GPU/TPU, not on CPU."""
  if directory == "auto":
    directory = "" if jax.default_backend() == "cpu" else os.path.expanduser("~/.cache/ssl_jax/xla")
  if directory:
    jax.config.update("jax_compilation_cache_dir", directory)


def _profile_range(config):
  """config.profile_steps=(first, last): steps first..last (1-based, as in the metrics) are traced."""
  if not config.profile_steps:
    return None
  if len(config.profile_steps) != 2 or not 1 <= config.profile_steps[0] <= config.profile_steps[1]:
    raise ValueError(f"config.profile_steps={config.profile_steps!r}: expected (first, last) with "
                     "1 <= first <= last, or () for no trace")
  return tuple(config.profile_steps)


def train(config, workdir, data=None):
  """Pre-trains per the config, resuming from the workdir when it holds a checkpoint.

  `data`: (train source, test source or None) built by the caller (text runs tokenize first);
  None reads `config.data`.

  On SIGTERM (preemption) it finishes the current step, checkpoints it with the data position
  and raises `preemption.Preempted`; running again resumes where it stopped.
  """
  _set_compilation_cache(config.compilation_cache_dir)
  profile = _profile_range(config)
  need_eval = bool(config.evals) or config.label_efficiency.enabled
  train_source, test_source = data or load_data(config, need_eval=need_eval)
  if jax.process_index() == 0:
    sources.write_skipped(os.path.join(workdir, "skipped_files.txt"), train_source, test_source)
  if config.online_probe and not np.any(np.asarray(train_source.labels) >= 0):
    raise ValueError("config.online_probe=True needs labels in the training split")
  steps_per_epoch, total_steps = schedule_lengths(config, len(train_source))
  comps = build(config, input_shape=train_source[0]["image"].shape, steps_per_epoch=steps_per_epoch,
                total_steps=total_steps, num_examples=len(train_source))
  if jax.process_index() == 0:
    print(f"mesh: data={comps.mesh.shape['data']} x fsdp={comps.mesh.shape['fsdp']} over "
          f"{comps.mesh.size} of {jax.device_count()} {jax.default_backend()} devices", flush=True)
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                             keep=config.keep_checkpoints)
  state, data_state = _restore_or_init(config, comps, checkpointer)
  data_iter = pipeline.train_iterator(
      train_source, global_batch_size=config.global_batch_size, seed=config.seed,
      num_workers=config.data.num_workers, read_threads=config.data.read_threads,
      prefetch=config.data.prefetch)
  if data_state is not None:
    data_iter.set_state(data_state)
  batches = pipeline.DevicePrefetch(
      data_iter, functools.partial(_to_device, sharding=comps.batch_sharding), size=2)

  evaluators = {}
  if config.evals:
    # a large decoded split streams: its images are decoded batch by batch at every evaluation
    eval_data = evaluators_lib.EvalData(*sources.eval_arrays(train_source),
                                        *sources.eval_arrays(test_source),
                                        num_classes=config.data.num_classes,
                                        augment=dict(config.augment))
    evaluators = evaluators_lib.build_all(config.evals, eval_data)
  sample_source = test_source or train_source
  sample_images = np.stack([sample_source[i]["image"] for i in range(min(8, len(sample_source)))])
  writer = metrics_lib.MetricWriter(workdir, total_steps=total_steps,
                                    global_batch_size=config.global_batch_size)
  history = []
  step = int(state.step)
  writer.progress(step, float("nan"))
  previous, saved = None, None
  watch, tracing = preemption.Watch().start(), False
  try:
    while step < total_steps:
      if profile and step + 1 == profile[0]:
        jax.profiler.start_trace(os.path.join(workdir, "profile"))
        tracing = True
      # Every step's own work runs under the guard: an implicit host<->device transfer here
      # (float(x) of a device value, a numpy array passed to the step) would stall the device
      # every step, so it raises; explicit device_put / device_get are allowed. (On the CPU JAX
      # checks host-to-device copies only: tests/test_throughput.py emulates the rest.)
      with jax.transfer_guard("disallow"):
        batch = next(batches)  # already on the devices; the next one is being copied
        state, metrics = comps.train_step(state, batch)
        if previous is not None:  # one step behind, so the host does not stall the device
          _check_finite(*previous)
      step += 1
      previous = (step, metrics)
      if tracing and step == profile[1]:
        jax.block_until_ready(metrics)
        jax.profiler.stop_trace()
        tracing = False
      if step % config.log_every_steps == 0 or step == total_steps:
        scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
        _check_finite(step, metrics)
        rate = writer.progress(step, scalars["loss"])
        if rate:
          scalars["images_per_s"] = rate
        writer.write(step, scalars)
        history.append({"step": step, **scalars})
      due = [n for n, e in evaluators.items() if step % e.every_steps == 0 or step == total_steps]
      if (due or step == total_steps) and comps.artifacts_of is not None:
        pictures = comps.artifacts_of(state, sample_images)  # every process runs the computation
        if jax.process_index() == 0:
          _write_artifacts(workdir, pictures)
      if due:
        features_of = lambda images: comps.features_of(state, images)
        for name in due:
          results = {f"{name}/{k}": v for k, v in evaluators[name].run(features_of).items()}
          print("  " + "  ".join(f"{k}={v:.4g}" for k, v in results.items()), flush=True)
          writer.write(step, results)
          history.append({"step": step, **results})
      if step % config.checkpoint_every_steps == 0 or step == total_steps:
        _check_finite(step, metrics)  # never save a state whose loss went non-finite
        checkpointer.save(step, state, batches.get_state())
        saved = step
      if watch.reached(step):  # every process calls this at every step
        _check_finite(step, metrics)
        if saved != step:
          checkpointer.save(step, state, batches.get_state())
        checkpointer.wait()
        raise preemption.Preempted(step, checkpointer.directory)
  finally:
    watch.stop()
    batches.close()  # grain workers release the shared memory of batches read ahead
    if tracing:
      jax.profiler.stop_trace()
    checkpointer.wait()
    checkpointer.close()
    writer.close()
  return Run(state, comps, train_source, test_source, history)
