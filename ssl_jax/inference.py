"""A trained run used on new data: its encoder's features for any source the data layer reads.

`Trained.load(workdir)` rebuilds the run's encoder from WORKDIR/config.json and restores the
encoder the evaluators read (the task's `encoder_variables`: the online network, or the EMA
teacher where the task says so) from the latest checkpoint. Its modality (ssl_jax/modalities/)
reads the inputs: `read_inputs(config, workdir, spec, split)` gives rows to slice (images are
decoded batch by batch), their ids and labels.

`embed(...)` streams the features into FILE.npy (a memory-mapped array, so memory stays at one
batch plus the output's pages), FILE.ids.txt (one id a line: file path, row or index) and
FILE.labels.npy (-1: no label). It is resumable: FILE.progress.json records the rows written after
each flushed batch, so rerunning the same command after a kill continues there and never writes
a row twice; a finished output is left as it is. The batches are sharded over the run's mesh
(one process and its devices).
"""

import dataclasses
import io
import json
import math
import os
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import checkpoint as checkpoint_lib
from ssl_jax import modalities
from ssl_jax import models
from ssl_jax import sharding as sharding_lib
from ssl_jax import train_step
from ssl_jax.data import pipeline


def _tuples(value):
  """JSON lists back to the tuples the config schema uses."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def saved_config(workdir):
  """The config a run wrote into WORKDIR/config.json."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"--workdir={workdir!r} holds no config.json: expected the WORKDIR of a run of "
        "python -m ssl_jax.main"
    )
  with open(path) as f:
    return ml_collections.ConfigDict(_tuples(json.load(f)))


@dataclasses.dataclass
class Trained:
  config: Any  # the run's config (with what its modality filled in, e.g. the tokenizer)
  modality: Any  # its ssl_jax/modalities/ module
  mesh: Any
  variables: Any  # {collection: encoder subtree} on the devices
  step: int  # the checkpoint's step
  features: Callable  # jitted (variables, batch of raw inputs) -> features

  @classmethod
  def load(cls, workdir):
    config = saved_config(workdir)
    modality = modalities.of(config)
    config = modality.trained_config(config, workdir)
    encoder = models.build_encoder(config.model, image_size=config.data.image_size)
    task = train_step.build_task(config)
    state, step = checkpoint_lib.restore_saved(workdir, "--workdir")
    variables = task.encoder_variables(state["params"], state["model_state"], state["task_state"])
    mesh = sharding_lib.make_mesh(config)
    variables = jax.device_put(variables, NamedSharding(mesh, P()))

    @jax.jit
    def features(variables, inputs):
      return encoder.apply(variables, task.preprocess(inputs), train=False)

    return cls(config, modality, mesh, variables, int(step), features)


def _progress_path(out):
  return out + ".progress.json"


def _start(out, identity):
  """(memory-mapped output, rows already written): a fresh output, or the one a killed run left
  for the same `identity` (input, workdir, rows, feature width)."""
  progress = _progress_path(out)
  if os.path.isfile(progress) and os.path.isfile(out):
    with open(progress) as f:
      saved = json.load(f)
    if {k: saved.get(k) for k in identity} != identity:
      raise ValueError(
          f"{out} was started for {({k: saved.get(k) for k in identity})}, not {identity}; "
          "remove it (and its .progress.json) or choose another --out"
      )
    return np.load(out, mmap_mode="r+"), int(saved["done"])
  shape = (identity["rows"], identity["dim"])
  array = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=shape)
  _save_progress(out, {**identity, "done": 0})
  return array, 0


def _save_progress(out, progress):
  checkpoint_lib.write_atomically(_progress_path(out), json.dumps(progress))


def embed(workdir, source, out, *, split="train", batch_size=256, log_every_s=10.0):
  """Writes the features of `source` (its `split`) to `out` (.npy); see the module docstring.
  Returns the number of rows."""
  if not out.endswith(".npy"):
    raise ValueError(f"--out={out!r}: expected a .npy path (the ids and labels go beside it)")
  trained = Trained.load(workdir)
  inputs = trained.modality.read_inputs(trained.config, workdir, source, split)
  total = len(inputs.ids)
  if os.path.isfile(out) and not os.path.isfile(_progress_path(out)):
    print(
        f"{out} is complete ({total} rows); nothing to do (remove it to write it again)", flush=True
    )
    return total
  devices = trained.mesh.size
  batch_size = math.ceil(batch_size / devices) * devices  # every device gets the same rows
  sharding = NamedSharding(trained.mesh, P(sharding_lib.BATCH_AXES))
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  base = out[: -len(".npy")]
  checkpoint_lib.write_atomically(base + ".ids.txt", "".join(f"{i}\n" for i in inputs.ids))
  labels = io.BytesIO()
  np.save(labels, np.asarray(inputs.labels, np.int32))
  checkpoint_lib.write_atomically(base + ".labels.npy", labels.getvalue())
  example = np.asarray(inputs.rows[:1])
  dim = int(jax.eval_shape(trained.features, trained.variables, example).shape[-1])
  identity = {"input": source, "workdir": os.path.abspath(workdir), "rows": total, "dim": dim}
  array, done = _start(out, identity)
  if done:
    print(f"resuming {out} at row {done} of {total}", flush=True)
  started, last_log, first = time.perf_counter(), 0.0, done
  for start in range(done, total, batch_size):
    stop = min(start + batch_size, total)
    (batch,), mask = next(pipeline.padded((inputs.rows[start:stop],), batch_size))
    features = trained.features(trained.variables, jax.device_put(batch, sharding))
    array[start:stop] = np.asarray(features)[mask]
    array.flush()
    _save_progress(out, {**identity, "done": stop})
    elapsed = time.perf_counter() - started
    if elapsed - last_log >= log_every_s or stop == total:
      rate = (stop - first) / max(elapsed, 1e-9)
      eta = (total - stop) / max(rate, 1e-9)
      print(f"embedded {stop}/{total}  {rate:.1f} items/s  ETA {eta / 60:.1f} min", flush=True)
      last_log = elapsed
  del array
  os.remove(_progress_path(out))  # complete: a rerun leaves it as it is
  print(
      f"wrote {out} ({total} x {dim} float32 features of {workdir} step {trained.step}), "
      f"{base}.ids.txt, {base}.labels.npy",
      flush=True,
  )
  return total
