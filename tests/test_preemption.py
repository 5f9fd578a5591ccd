"""Preemption: a real SIGTERM to a real run checkpoints the current step and exits 0; the same
command resumes to the uninterrupted run's losses. With two processes the notice reaches both, and
they stop at one step."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from ssl_jax import experiment
from ssl_jax import main as main_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_STEPS = 30


def command(data_path, workdir, *extra):
  """`python -m ssl_jax.main` arguments: the default config shrunk to a run of seconds (a 2-block
  ViT)."""
  return [
      "--config=configs/default.py",
      f"--workdir={workdir}",
      f"--config.data.source=npz:{data_path}",
      "--config.data.image_size=16",
      "--config.data.channels=3",
      "--config.data.num_classes=4",
      "--config.global_batch_size=16",
      f"--config.total_steps={TOTAL_STEPS}",
      "--config.log_every_steps=1",
      "--config.checkpoint_every_steps=1000",
      "--config.model.name=vit",
      "--config.model.variant=mu",
      "--config.model.patch_size=8",
      "--config.task_kwargs.projection_dims=(32,16)",
      "--config.optimizer.warmup_epochs=1.0",
      "--config.label_efficiency.enabled=False",
      # this session's cache (conftest): what a subprocess compiles, the test process reuses
      f"--config.compilation_cache_dir={jax.config.jax_compilation_cache_dir}",
      *extra,
  ]


def losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [r for r in map(json.loads, f) if "loss" in r]
  assert len({r["step"] for r in rows}) == len(rows), "a step was logged twice"
  return {r["step"]: r["loss"] for r in rows}


def checkpoint_steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def _env(**more):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  for key in main_lib.EXPLICIT:
    env.pop(key, None)
  env.update(more)
  return env


def _preempted_line(output):
  lines = [l for l in output.splitlines() if l.startswith("preempted: finished step")]
  assert lines, "no preemption line:\n" + output[-3000:]
  return lines[0]


def _sigterm_when_logged(procs, workdir, target, step=2, timeout=240):
  """Waits until metrics.jsonl shows `step`, then sends SIGTERM to `target`."""
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + timeout
  while time.time() < deadline:
    if any(p.poll() is not None for p in procs):
      break
    if os.path.exists(path) and any(json.loads(l).get("step", 0) >= step for l in open(path)):
      target.send_signal(signal.SIGTERM)
      return
    time.sleep(0.05)
  outputs = [p.communicate(timeout=60)[0] for p in procs]
  raise AssertionError("the run ended or stalled before step %d:\n%s" % (step, outputs[0][-3000:]))


def test_sigterm_saves_the_current_step_exits_0_and_the_same_command_resumes(data_path, tmp_path):
  interrupted, whole = str(tmp_path / "interrupted"), str(tmp_path / "whole")
  args = command(data_path, interrupted, "--config.mesh.data=1")
  proc = subprocess.Popen(
      [sys.executable, "-m", "ssl_jax.main", *args],
      cwd=REPO,
      env=_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )
  _sigterm_when_logged([proc], interrupted, proc)
  output = proc.communicate(timeout=120)[0]
  assert proc.returncode == 0, output[-3000:]
  line = _preempted_line(output)
  stopped = int(line.split("finished step ")[1].split(",")[0])
  assert 2 <= stopped < TOTAL_STEPS, line
  assert checkpoint_steps(interrupted) == [stopped]
  assert sorted(losses(interrupted)) == list(range(1, stopped + 1))

  # the same command again (in this process: identical arguments through the same parse and run)
  experiment.run(main_lib.parse(args)[0], interrupted)
  experiment.run(main_lib.parse(command(data_path, whole, "--config.mesh.data=1"))[0], whole)
  got, want = losses(interrupted), losses(whole)
  assert sorted(got) == list(range(1, TOTAL_STEPS + 1))
  for step in want:
    assert (
        got[step] == want[step]
    ), f"step {step}: resumed {got[step]} != uninterrupted {want[step]}"


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


# two processes compile the step side by side: about 25 s on 2 idle cores, 80 s loaded
@pytest.mark.slow
def test_two_processes_stop_together_on_one_sigterm(data_path, tmp_path):
  """launch/local.py's variables (the explicit override); SIGTERM to process 1 only."""
  workdir = str(tmp_path / "run")
  address = f"127.0.0.1:{_free_port()}"
  # long enough that the notice, relayed through the coordination service, lands before the end
  args = command(data_path, workdir, "--config.total_steps=1000")
  procs = [
      subprocess.Popen(
          [sys.executable, "-m", "ssl_jax.main", *args],
          cwd=REPO,
          env=_env(
              JAX_COORDINATOR_ADDRESS=address,
              JAX_NUM_PROCESSES="2",
              JAX_PROCESS_ID=str(i),
              XLA_FLAGS="--xla_force_host_platform_device_count=1",
          ),
          stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT,
          text=True,
      )
      for i in range(2)
  ]
  _sigterm_when_logged(procs, workdir, procs[1])
  outputs = [p.communicate(timeout=180)[0] for p in procs]
  for p, output in zip(procs, outputs):
    assert p.returncode == 0, output[-3000:]
  assert "processes: 2, this is 0; devices: 1 local, 2 global (cpu)" in outputs[0]
  assert "mesh: data=2 x fsdp=1 over 2 of 2 cpu devices" in outputs[0]
  line = _preempted_line(outputs[0])
  stopped = int(line.split("finished step ")[1].split(",")[0])
  assert 2 <= stopped < 1000, line
  assert checkpoint_steps(workdir) == [stopped]
