"""Eight simulated CPU devices for every test, so sharded code runs the way it does on a pod."""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import pytest  # noqa: E402  (after XLA_FLAGS, which must be set before JAX starts)


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """Identical programs compiled by several tests (e.g. a run and its resumed twin) compile once."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jit_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
