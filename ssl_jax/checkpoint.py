"""Orbax checkpoints of the train state and the data iterator's position.

Saves are asynchronous: `save` returns once the arrays are copied off the devices, and orbax
writes them in a background thread while the next steps run; `wait()` blocks until the last save
is on disk (the loop calls it before it exits). Each step is written into a temporary directory
and renamed when complete, so a crash mid-save leaves the previous checkpoint as the latest one.
Directories may be local or remote (gs://...: etils epath and tensorstore). Restores are
sharding-aware: arrays are read straight into the shardings of the abstract state they are
given, so a checkpoint written on one mesh (say data=8) resumes on another (data=2 x fsdp=4, or
fewer devices).
"""

import os

import orbax.checkpoint as ocp
from etils import epath


def write_atomically(path, data):
  """Writes `data` (text or bytes) to `path` (local, or remote such as gs://... through epath)
  through a temporary file and a rename: a kill never leaves half a file, and the previous
  version stays until the new one is complete."""
  path = epath.Path(path)
  temporary = path.parent / (path.name + ".tmp")
  if isinstance(data, bytes):
    temporary.write_bytes(data)
  else:
    temporary.write_text(data)
  temporary.replace(path)


def _absolute(directory):
  """Local paths made absolute (orbax needs it); URIs such as gs://bucket/dir kept as they are."""
  directory = os.fspath(directory)
  return directory if "://" in directory else os.path.abspath(directory)


class Checkpointer:
  """The loop's checkpoints under `directory`: the latest `keep` steps (None: all of them)."""

  def __init__(self, directory, *, keep):
    self.directory = _absolute(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(keep),
            enable_async_checkpointing=True,
            create=True,
        ),
    )

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step, state, data_state):
    """Starts writing `state` and the data position; returns before the files are written.

    The state's device buffers may be donated to the next step as soon as this returns: orbax
    has copied them to host memory by then. A save still in flight is finished first.
    """
    self.manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
        ),
    )

  def restore(self, abstract_state, step=None):
    step = self.manager.latest_step() if step is None else step
    restored = self.manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
        ),
    )
    return restored["state"], restored["data"]

  def wait(self):
    """Blocks until the last save is on disk (renamed from its temporary directory)."""
    self.manager.wait_until_finished()

  def saving(self):
    """True while a save started by `save` is still being written."""
    return self.manager.is_saving_in_progress()

  def close(self):
    self.manager.close()


def _latest(directory, what="checkpoint directory"):
  """A manager over another run's checkpoint directory (or its workdir) and its latest step."""
  directory = os.fspath(directory)
  if epath.Path(directory, "checkpoints").is_dir():
    directory = os.path.join(directory, "checkpoints")
  if not epath.Path(directory).is_dir():
    raise FileNotFoundError(
        f"{what}={directory!r} does not exist (expected a run's WORKDIR or " "WORKDIR/checkpoints)"
    )
  manager = ocp.CheckpointManager(_absolute(directory))
  step = manager.latest_step()
  if step is None:
    manager.close()
    raise FileNotFoundError(f"{what}={directory!r} holds no checkpoint")
  return manager, step


def restore_from(directory, abstract_state):
  """Latest checkpoint under another run's checkpoint directory (config.resume)."""
  manager, step = _latest(directory, "config.resume")
  restored = manager.restore(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
      ),
  )
  manager.close()
  return restored["state"], restored["data"]


def restore_saved(directory, what="config.init_from"):
  """(the saved train state as a dict of host arrays, its step): the latest checkpoint of another
  run, whatever its optimiser and mesh. `what` names the setting in errors."""
  manager, step = _latest(directory, what)
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  manager.close()
  return restored["state"], step


def restore_params(directory):
  """Params and model state (e.g. BatchNorm statistics) of another run, whatever its optimiser."""
  state, _ = restore_saved(directory)
  return {"params": state["params"], "model_state": state["model_state"]}
