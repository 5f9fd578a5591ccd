"""Orbax checkpoints of the train state and the data iterator's position.

Orbax writes each step into a temporary directory and renames it when complete, so a crash
mid-save leaves the previous checkpoint as the latest one. Directories may be local or remote
(gs://...: etils epath and tensorstore). Restores are sharding-aware: arrays are read straight
into the shardings of the abstract state they are given, so a checkpoint written on one mesh
(say data=8) resumes on another (data=2 x fsdp=4, or fewer devices).
"""
import os

import orbax.checkpoint as ocp
from etils import epath


def _absolute(directory):
  """Local paths made absolute (orbax needs it); URIs such as gs://bucket/dir kept as they are."""
  directory = os.fspath(directory)
  return directory if "://" in directory else os.path.abspath(directory)


class Checkpointer:

  def __init__(self, directory, *, keep):
    self.directory = _absolute(directory)
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step, state, data_state):
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    data=ocp.args.JsonSave(data_state)))

  def restore(self, abstract_state, step=None):
    step = self.manager.latest_step() if step is None else step
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    return restored["state"], restored["data"]

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()


def _latest(directory):
  """A manager over another run's checkpoint directory and its latest step."""
  if not epath.Path(directory).is_dir():
    raise FileNotFoundError(f"checkpoint directory {directory!r} does not exist")
  manager = ocp.CheckpointManager(_absolute(directory))
  step = manager.latest_step()
  if step is None:
    manager.close()
    raise FileNotFoundError(f"no checkpoint found in {directory!r}")
  return manager, step


def restore_from(directory, abstract_state):
  """Latest checkpoint under another run's checkpoint directory (config.resume)."""
  manager, step = _latest(directory)
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
  manager.close()
  return restored["state"], restored["data"]


def restore_params(directory):
  """Params and model state (e.g. BatchNorm statistics) of another run, whatever its optimiser."""
  manager, step = _latest(directory)
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  manager.close()
  state = restored["state"]
  return {"params": state["params"], "model_state": state["model_state"]}
