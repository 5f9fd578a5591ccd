"""Metrics: JSON lines and TensorBoard events from process 0, and a progress line on stdout."""
import json
import os
import time

import jax


class MetricWriter:

  def __init__(self, workdir, *, total_steps, global_batch_size):
    self.enabled = jax.process_index() == 0
    self.total_steps, self.global_batch_size = total_steps, global_batch_size
    self._last = None
    if self.enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step, scalars):
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self._jsonl.flush()
    for key, value in scalars.items():
      self._tb.add_scalar(key, value, step)
    self._tb.flush()

  def progress(self, step, loss):
    """Prints step, loss, images/s since the previous call and the ETA."""
    now = time.time()
    if self._last is not None and self.enabled and step > self._last[0]:
      rate = (step - self._last[0]) / (now - self._last[1])
      eta = (self.total_steps - step) / max(rate, 1e-9)
      print(f"step {step}/{self.total_steps}  loss {loss:.4f}  "
            f"{rate * self.global_batch_size:.1f} images/s  ETA {eta / 60:.1f} min", flush=True)
      self._last = (step, now)
      return rate * self.global_batch_size
    self._last = (step, now)
    return None

  def close(self):
    if self.enabled:
      self._jsonl.close()
      self._tb.close()
