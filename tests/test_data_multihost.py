"""Two JAX processes on loopback: disjoint, complete shards per epoch, and the 1-process global
batch.

This file is also the worker: `python tests/test_data_multihost.py ADDRESS PROCESS_ID OUT.npz`.
"""

import os
import socket
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLOBAL_BATCH, STEPS, SEED = 8, 6, 5


def _source():
  from ssl_jax.data import sources  # pylint: disable=g-import-not-at-top

  images = np.arange(24, dtype=np.uint8)[:, None, None, None] * np.ones((1, 3, 3, 1), np.uint8)
  return sources.ArraySource(images, np.arange(24, dtype=np.int32) % 4)


def _worker(address, process_id, out):
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  from ssl_jax import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  from ssl_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  jax.distributed.initialize(address, num_processes=2, process_id=process_id)
  mesh = jax.make_mesh((jax.device_count(),), ("data",), devices=jax.devices())
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  it = pipeline.train_iterator(_source(), global_batch_size=GLOBAL_BATCH, seed=SEED)
  local_index, global_index, global_image = [], [], []
  for _ in range(STEPS):
    local = next(it)
    batch = sharding_lib.from_process_local(local, sharding)
    assert batch["inputs"].shape == (GLOBAL_BATCH, 3, 3, 1), batch["inputs"].shape
    local_index.append(local["index"])
    global_index.append(multihost_utils.process_allgather(batch["index"], tiled=True))
    global_image.append(multihost_utils.process_allgather(batch["inputs"], tiled=True))
  np.savez(
      out,
      local_index=np.stack(local_index),
      global_index=np.stack(global_index),
      global_image=np.stack(global_image),
      devices=jax.device_count(),
  )
  jax.distributed.shutdown()


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_cover_each_epoch_once_and_match_one_process(tmp_path):
  from ssl_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  address = f"127.0.0.1:{_free_port()}"
  env = dict(
      os.environ,
      JAX_PLATFORMS="cpu",
      XLA_FLAGS="--xla_force_host_platform_device_count=2",
      PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
  )
  procs = [
      subprocess.Popen(
          [sys.executable, __file__, address, str(p), str(tmp_path / f"p{p}.npz")],
          env=env,
          stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT,
      )
      for p in range(2)
  ]
  for p in procs:
    output = p.communicate(timeout=120)[0].decode()
    assert p.returncode == 0, output[-3000:]
  runs = [np.load(tmp_path / f"p{p}.npz") for p in range(2)]
  assert int(runs[0]["devices"]) == 4  # the mesh spans both processes' devices

  reference = pipeline.train_iterator(
      _source(), global_batch_size=GLOBAL_BATCH, seed=SEED, process_index=0, process_count=1
  )
  want = [next(reference) for _ in range(STEPS)]
  for run in runs:  # every process sees the same assembled global batch as one process alone
    np.testing.assert_array_equal(run["global_index"], np.stack([w["index"] for w in want]))
    np.testing.assert_array_equal(run["global_image"], np.stack([w["inputs"] for w in want]))
  local = [run["local_index"] for run in runs]  # (STEPS, 4) each
  np.testing.assert_array_equal(np.concatenate(local, axis=1), np.stack([w["index"] for w in want]))
  for epoch in range(2):  # 24 examples, 3 global batches an epoch
    parts = [set(l[3 * epoch : 3 * epoch + 3].ravel().tolist()) for l in local]
    assert not parts[0] & parts[1]
    assert parts[0] | parts[1] == set(range(24))


if __name__ == "__main__":
  sys.path.insert(0, REPO)
  _worker(sys.argv[1], int(sys.argv[2]), sys.argv[3])
