"""Eight simulated CPU devices for every test, so sharded code runs the way it does on a pod."""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
