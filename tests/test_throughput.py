"""Habits a GPU needs, checked on the CPU: the loop's steps make no implicit host<->device transfer,
batches reach the devices a step ahead, and checkpoints are written while later steps run.

The loop runs each step under `jax.transfer_guard("disallow")`. On the CPU, JAX enforces it for
host-to-device copies, but a device-to-host read of a CPU buffer is no copy at all, so JAX never
checks it; `cpu_reads_obey_the_guard` makes such reads obey the guard the loop set, as a GPU's do.
"""

import asyncio
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax._src import array as array_lib  # private: the CPU emulation reads JAX's own guard state
from jax._src.lib import guard_lib
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import sharding as sharding_lib

from ssl_jax import checkpoint as checkpoint_lib
from ssl_jax import train
from ssl_jax.data import pipeline
from ssl_jax.data import sources
from test_train import tiny_config


def _batch_sharding():
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  return NamedSharding(mesh, P("data"))


def _abstract(tree):
  """What `Checkpointer.restore` reads into: each array's shape, dtype and sharding."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def _quiet_config(data_path):
  """test_train's tiny run (the same compiled step), logging and checkpointing at its end only."""
  return tiny_config(data_path, log_every_steps=6, checkpoint_every_steps=6)


@pytest.fixture
def cpu_reads_obey_the_guard(monkeypatch):
  """Every read of a jax.Array's value (float(), np.asarray, .item(), jax.device_get) goes through
  `ArrayImpl._value`: under a "disallow" device-to-host guard, only an explicit get may pass."""
  original = array_lib.ArrayImpl._value

  def guarded(self):
    state = guard_lib.thread_local_state()
    disallowed = state.device_to_host == guard_lib.TransferGuardLevel.DISALLOW
    if disallowed and not state.explicit_device_get:
      raise RuntimeError(
          f"Disallowed device-to-host transfer: {self.aval} (CPU emulation of the "
          "accelerator's transfer guard; use jax.device_get)"
      )
    return original.fget(self)

  monkeypatch.setattr(array_lib.ArrayImpl, "_value", property(guarded))


def test_the_steps_run_under_a_transfer_guard(data_path, tmp_path, cpu_reads_obey_the_guard):
  run = train.train(_quiet_config(data_path), str(tmp_path / "clean"))
  assert int(run.state.step) == 6
  with jax.transfer_guard("disallow"), pytest.raises(RuntimeError, match="device-to-host"):
    float(run.state.step)  # the emulation is live


def test_an_implicit_device_to_host_transfer_in_a_step_raises(
    data_path, tmp_path, monkeypatch, cpu_reads_obey_the_guard
):
  def implicit_check(step, metrics):
    return float(metrics["loss"])  # float() of a device value: an implicit transfer

  monkeypatch.setattr(train, "_check_finite", implicit_check)
  with pytest.raises(Exception, match="Disallowed device-to-host transfer"):
    train.train(_quiet_config(data_path), str(tmp_path / "run"))


def test_an_implicit_host_to_device_transfer_in_a_step_raises(data_path, tmp_path, monkeypatch):
  monkeypatch.setattr(train, "_to_device", lambda local, sharding: local)  # numpy into the step
  with pytest.raises(Exception, match="Disallowed host-to-device transfer"):
    train.train(_quiet_config(data_path), str(tmp_path / "run"))


def test_device_prefetch_yields_the_same_batches_on_the_batch_sharding(data_path):
  source = sources.build(f"npz:{data_path}", "train", image_size=16, channels=3, num_classes=4)
  sharding = _batch_sharding()
  kwargs = dict(global_batch_size=16, seed=3, process_index=0, process_count=1)
  plain = pipeline.train_iterator(source, **kwargs)
  ahead = pipeline.train_iterator(source, **kwargs)
  prefetched = pipeline.DevicePrefetch(
      ahead, lambda b: sharding_lib.from_process_local(b, sharding), size=2
  )
  for n in range(1, 7):  # more than an epoch (4 batches)
    want, got = next(plain), next(prefetched)
    assert sorted(got) == sorted(want)
    for key in want:
      assert isinstance(got[key], jax.Array) and got[key].sharding == sharding, key
      np.testing.assert_array_equal(jax.device_get(got[key]), want[key], err_msg=key)
    assert prefetched.get_state() == plain.get_state() == {"next_batch": n}
    assert ahead.get_state() == {"next_batch": n + 1}  # the next batch is already on the devices
  resumed = pipeline.train_iterator(source, **kwargs)
  resumed.set_state(prefetched.get_state())
  np.testing.assert_array_equal(next(resumed)["index"], jax.device_get(next(prefetched)["index"]))
  for it in (plain, prefetched, resumed):
    it.close()


def _hold_json_writes(monkeypatch, until):
  """Makes orbax's write of the data position wait (in its background thread) until `until(item)`
  is true or 60 s pass; returns the list of `until`'s final answers, one per save."""
  original = ocp.handlers.JsonCheckpointHandler._save_fn  # pylint: disable=protected-access
  answers = []

  async def held(self, item, directory):
    deadline = time.time() + 60
    while not until(item) and time.time() < deadline:
      await asyncio.sleep(0.02)
    answers.append(until(item))
    await original(self, item, directory)

  monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "_save_fn", held)
  return answers


def test_checkpoint_save_returns_before_the_write_and_survives_donation(tmp_path, monkeypatch):
  sharding = _batch_sharding()
  state = {"w": jax.device_put(jnp.arange(64.0).reshape(16, 4), sharding), "step": jnp.int32(2)}
  want = jax.device_get(state)
  directory = tmp_path / "checkpoints"
  checkpointer = checkpoint_lib.Checkpointer(directory, keep=2)
  checkpointer.save(1, jax.tree.map(jnp.zeros_like, state), {"next_batch": 1})
  checkpointer.wait()

  released = []
  answers = _hold_json_writes(monkeypatch, lambda item: bool(released))
  checkpointer.save(2, state, {"next_batch": 2})
  assert checkpointer.saving(), "save returned only after the write"
  assert sorted(int(d) for d in os.listdir(directory) if d.isdigit()) == [1]  # 2 is temporary
  # the loop donates the saved state to the next step right away
  state = jax.jit(lambda s: jax.tree.map(lambda x: x + 1, s), donate_argnums=0)(state)
  assert checkpoint_lib._latest(directory)[1] == 1  # pylint: disable=protected-access
  released.append(True)
  checkpointer.wait()
  assert answers == [True] and not checkpointer.saving()
  restored, data_state = checkpointer.restore(_abstract(state))
  checkpointer.close()
  assert data_state == {"next_batch": 2}
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), want)


def test_the_loop_runs_on_while_a_checkpoint_is_written(data_path, tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")

  def logged_step_3(item):  # only step 2's save waits: for the loop to log step 3
    if item["next_batch"] != 2:
      return True
    path = os.path.join(workdir, "metrics.jsonl")
    return os.path.exists(path) and any(json.loads(l)["step"] >= 3 for l in open(path))

  answers = _hold_json_writes(monkeypatch, logged_step_3)
  run = train.train(tiny_config(data_path, checkpoint_every_steps=2), workdir)
  assert answers == [True, True, True], "the loop waited for step 2's checkpoint to be written"
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), keep=3)
  assert checkpointer.manager.all_steps() == [2, 4, 6]
  restored, data_state = checkpointer.restore(_abstract(run.state))
  checkpointer.close()
  assert data_state == {"next_batch": 6}
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), jax.device_get(run.state))
