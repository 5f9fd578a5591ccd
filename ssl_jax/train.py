"""The training loop every pretext task plugs into.

Reads the data, builds the jitted, sharded step of the config (`train_step.build`: mesh, model,
task, optimiser), restores or initialises the state, runs the steps, checkpoints, runs the
evaluators and writes metrics. The same code runs on one CPU, on simulated CPU devices, and on
GPU/TPU meshes.

So that the device never waits on the host: batches are copied to the devices a step ahead
(`pipeline.DevicePrefetch`), each step runs under a transfer guard that rejects implicit
host<->device copies, and checkpoints are written in the background (`checkpoint.py`).
"""

import dataclasses
import functools
import io
import math
import os
from typing import Any

import jax
import numpy as np
from PIL import Image

from ssl_jax import checkpoint as checkpoint_lib
from ssl_jax import evaluators as evaluators_lib
from ssl_jax import metrics as metrics_lib
from ssl_jax import models
from ssl_jax import preemption
from ssl_jax import sharding as sharding_lib
from ssl_jax.data import pipeline
from ssl_jax.data import sources
from ssl_jax.models import conv as conv_lib
from ssl_jax.train_step import build, build_task, Components, TrainState  # noqa: F401 (the API)


def load_data(config, *, need_eval=True):
  """The train source and (when evaluation needs it) the eval source, per config.data."""
  d = config.data
  common = dict(
      holdout_per_class=d.holdout_per_class,
      seed=d.holdout_seed,
      data_dir=d.data_dir or None,
      image_size=d.image_size,
      channels=d.channels,
      num_classes=d.num_classes,
      skip_corrupt=d.skip_corrupt,
  )
  train_source = sources.build(d.source, d.train_split, subset=d.train_subset or None, **common)
  test_source = sources.build(d.source, d.eval_split, **common) if need_eval else None
  return train_source, test_source


def schedule_lengths(config, num_examples):
  steps_per_epoch = num_examples // config.global_batch_size
  if steps_per_epoch == 0:
    raise ValueError(
        f"{num_examples} training examples are fewer than global_batch_size="
        f"{config.global_batch_size}"
    )
  total = (
      config.total_steps
      if config.total_steps > 0
      else int(round(config.total_epochs * steps_per_epoch))
  )
  return steps_per_epoch, max(total, 1)


def _write_artifacts(workdir, pictures):
  for name, picture in pictures.items():
    picture = np.clip(np.asarray(picture) * 255 + 0.5, 0, 255).astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(png, format="PNG")
    checkpoint_lib.write_atomically(os.path.join(workdir, name), png.getvalue())  # local or gs://


def _check_finite(step, metrics):
  loss, grad_norm = map(float, jax.device_get((metrics["loss"], metrics["grad_norm"])))
  if not math.isfinite(loss) or not math.isfinite(grad_norm):
    raise FloatingPointError(
        f"non-finite loss ({loss}) or gradient norm ({grad_norm}) at step {step}; "
        "stopping. The last good checkpoint is kept in the workdir; lower the learning rate or "
        "check the input data."
    )
  return loss


def _to_device(local, sharding):
  """A host batch -> global arrays on the batch sharding (an explicit transfer)."""
  local = {**local, "index": local["index"].astype(np.int32)}  # position in the training set
  return sharding_lib.from_process_local(local, sharding)


def _with_shipped_heads(params, heads):
  """`params` with each leaf of the task's heads that the checkpoint's `heads` hold at the same
  path and shape; says which heads start from the checkpoint and which start fresh."""
  from ssl_jax.finetune import layers  # pylint: disable=g-import-not-at-top

  for name in sorted(k for k in params if k != "encoder"):
    flat = layers.flatten(params[name])
    given = layers.flatten((heads or {}).get(name, {}))
    same = [p for p, x in flat.items() if p in given and np.shape(given[p]) == np.shape(x)]
    flat.update({p: np.asarray(given[p], np.asarray(flat[p]).dtype) for p in same})
    params = {**params, name: layers.unflatten(flat)}
    where = (
        "the checkpoint's"
        if len(same) == len(flat)
        else f"{len(same)} of {len(flat)} from the checkpoint"
    )
    print(
        f"the task's head {name!r}: {where if same else 'fresh (the checkpoint has none)'}",
        flush=True,
    )
  return params


def _restore_or_init(config, comps, checkpointer):
  """Resume order: this workdir's latest checkpoint, config.resume, config.init_from, scratch."""
  abstract = jax.eval_shape(comps.init_state, jax.random.PRNGKey(config.seed))
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract,
      comps.state_sharding,
  )
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
    else:  # the encoder's own weights (a checkpoint directory), and its heads where it has them
      print("initialising the encoder from its pretrained weights", flush=True)
      params = {**jax.device_get(state.params), "encoder": shipped}
      params = _with_shipped_heads(params, models.pretrained_heads(config.model))
      loaded = {"params": params, "model_state": state.model_state}
    params = jax.device_put(loaded["params"], comps.state_sharding.params)
    model_state = jax.device_put(loaded["model_state"], comps.state_sharding.model_state)
    # task state (EMA targets, ...) starts from the loaded weights, as it would from fresh ones
    task_state = jax.jit(comps.task.init_state, out_shardings=comps.state_sharding.task_state)(
        {"params": params, **model_state}, jax.random.fold_in(jax.random.PRNGKey(config.seed), 3)
    )
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
  """config.profile_steps=(first, last): steps first..last (1-based, as in the metrics) are
  traced."""
  if not config.profile_steps:
    return None
  if len(config.profile_steps) != 2 or not 1 <= config.profile_steps[0] <= config.profile_steps[1]:
    raise ValueError(
        f"config.profile_steps={config.profile_steps!r}: expected (first, last) with "
        "1 <= first <= last, or () for no trace"
    )
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
  comps = build(
      config,
      input_shape=train_source[0]["inputs"].shape,
      steps_per_epoch=steps_per_epoch,
      total_steps=total_steps,
      num_examples=len(train_source),
  )
  if jax.process_index() == 0:
    print(
        f"mesh: data={comps.mesh.shape['data']} x fsdp={comps.mesh.shape['fsdp']} over "
        f"{comps.mesh.size} of {jax.device_count()} {jax.default_backend()} devices",
        flush=True,
    )
    if config.model.name == "resnet":  # the encoder built on models/conv.py
      print(conv_lib.describe(config.model.conv_impl, config.model.cpu_conv_library), flush=True)
  checkpointer = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints
  )
  state, data_state = _restore_or_init(config, comps, checkpointer)
  data_iter = pipeline.train_iterator(
      train_source,
      global_batch_size=config.global_batch_size,
      seed=config.seed,
      num_workers=config.data.num_workers,
      read_threads=config.data.read_threads,
      prefetch=config.data.prefetch,
  )
  if data_state is not None:
    data_iter.set_state(data_state)
  batches = pipeline.DevicePrefetch(
      data_iter, functools.partial(_to_device, sharding=comps.batch_sharding), size=2
  )

  evaluators = {}
  if config.evals:
    # a large decoded split streams: its images are decoded batch by batch at every evaluation
    eval_data = evaluators_lib.EvalData(
        *sources.eval_arrays(train_source),
        *sources.eval_arrays(test_source),
        num_classes=config.data.num_classes,
        augment=dict(config.augment),
    )
    evaluators = evaluators_lib.build_all(config.evals, eval_data)
  sample_source = test_source or train_source
  sample_images = np.stack([sample_source[i]["inputs"] for i in range(min(8, len(sample_source)))])
  writer = metrics_lib.MetricWriter(
      workdir, total_steps=total_steps, global_batch_size=config.global_batch_size
  )
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
