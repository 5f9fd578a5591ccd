"""Metrics: JSON lines and TensorBoard events from process 0, and a progress line on stdout.

The workdir may be remote (gs://...): files go through etils epath (gs:// needs gcsfs), TensorBoard
events through tensorboardX (gs:// needs google-cloud-storage).
"""

import json
import os
import time

import jax
from etils import epath


class MetricWriter:

  def __init__(self, workdir, *, total_steps, global_batch_size, tensorboard=True):
    self.enabled = jax.process_index() == 0
    self.total_steps, self.global_batch_size = total_steps, global_batch_size
    self._last, self._jsonl, self._tb = None, None, None
    if self.enabled:
      workdir = os.fspath(workdir)
      self._path = epath.Path(workdir) / "metrics.jsonl"
      self._path.parent.mkdir(parents=True, exist_ok=True)
      # object stores cannot append: a remote file is rewritten whole from the lines kept here
      self._remote = "://" in workdir
      self._lines = (
          self._path.read_text().splitlines(keepends=True)
          if self._remote and self._path.exists()
          else []
      )
      if not self._remote:
        self._jsonl = self._path.open("a")
      if tensorboard:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

        self._tb = SummaryWriter(workdir.rstrip("/") + "/tensorboard")

  def write(self, step, scalars):
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    line = json.dumps({"step": int(step), **scalars}) + "\n"
    if self._remote:
      self._lines.append(line)
      self._path.write_text("".join(self._lines))
    else:
      self._jsonl.write(line)
      self._jsonl.flush()
    if self._tb is not None:
      for key, value in scalars.items():
        self._tb.add_scalar(key, value, step)
      self._tb.flush()

  def progress(self, step, loss):
    """Prints step, loss, images/s since the previous call and the ETA."""
    now = time.time()
    if self._last is not None and self.enabled and step > self._last[0]:
      rate = (step - self._last[0]) / (now - self._last[1])
      eta = (self.total_steps - step) / max(rate, 1e-9)
      print(
          f"step {step}/{self.total_steps}  loss {loss:.4f}  "
          f"{rate * self.global_batch_size:.1f} images/s  ETA {eta / 60:.1f} min",
          flush=True,
      )
      self._last = (step, now)
      return rate * self.global_batch_size
    self._last = (step, now)
    return None

  def close(self):
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()
