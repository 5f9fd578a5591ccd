"""Eight simulated CPU devices for every test, so sharded code runs the way it does on a pod.

Compilation, not execution, is most of the suite's time (tiny models, a few steps each), so XLA's
CPU backend runs at optimisation level 1 in tests: the tests' BYOL train step (ResNet-10) compiles
in 9.5 s instead of 16 s, and the main job's pre-training step runs as fast with bit-identical
losses (2-core CPU). Level 0 compiles no faster than 1 but runs the end-to-end tests 3-5x slower.
Every comparison a test makes (1 vs 8 devices, resumed vs uninterrupted, chunked vs whole batch, JAX
vs numpy) runs under the same flags. SSL_JAX_TEST_XLA_OPT=default keeps XLA's own level.
"""

import os

_flags = [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]
if os.environ.get("SSL_JAX_TEST_XLA_OPT", "1") != "default":
  _flags.append("--xla_backend_optimization_level=" + os.environ.get("SSL_JAX_TEST_XLA_OPT", "1"))
os.environ["XLA_FLAGS"] = " ".join(filter(None, _flags))

import pytest  # noqa: E402  (after XLA_FLAGS, which must be set before JAX starts)


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """Identical programs compiled by several tests (e.g. a run and its resumed twin) compile once."""
  import jax  # pylint: disable=g-import-not-at-top

  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jit_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
  """A tiny image .npz (64 train, 32 test, 16x16 RGB): four colour classes with noise, learnable in
  a few steps but not trivially. The loop's tests (train, tasks, scale-out, preemption) share it."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  labels = np.arange(64) % 4
  base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]])[labels]
  images = np.clip(base[:, None, None, :] + rng.normal(0, 40, (64, 16, 16, 3)), 0, 255).astype(
      np.uint8
  )
  path = tmp_path_factory.mktemp("data") / "tiny.npz"
  np.savez(
      path,
      train_images=images,
      train_labels=labels,
      test_images=images[:32],
      test_labels=labels[:32],
  )
  return path
