"""Preemption: on SIGTERM (the notice clouds and SLURM send) finish the step, checkpoint, exit 0.

With `jax.distributed` initialised, JAX's preemption service catches SIGTERM on any process and
the processes agree on one step at which all of them stop
(`multihost_utils.reached_preemption_sync_point`, which orbax's `reached_preemption` wraps). In
a single process a Python handler records the signal and the loop stops after the current step.
"""

import signal
import threading

import jax
from jax.experimental import multihost_utils


class Preempted(Exception):
  """Raised by the training loop once the preemption checkpoint is written."""

  def __init__(self, step, directory):
    super().__init__(
        f"preempted: finished step {step}, saved its checkpoint in {directory}; "
        "re-run the same command to resume"
    )
    self.step, self.directory = step, directory


class Watch:
  """`watch = Watch().start()`; `watch.reached(step)` after every step; `watch.stop()` at the
  end."""

  def __init__(self):
    self.distributed = jax.distributed.is_initialized()
    self._notice = False
    self._previous = None

  def start(self):
    # Under jax.distributed the preemption service owns SIGTERM; a Python handler would replace it.
    if not self.distributed and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
    return self

  def stop(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self._notice = True  # nothing else here: the handler interrupts arbitrary code

  def reached(self, step):
    """True at the step where every process should save and stop; all processes call it per step."""
    if not self.distributed:
      return self._notice
    try:
      return bool(multihost_utils.reached_preemption_sync_point(step))
    except RuntimeError:  # the service is off (jax_enable_preemption_service=False)
      return False
