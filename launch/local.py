"""Local launcher: run the entry point as N JAX processes on this machine (loopback only).

  python launch/local.py --num_processes=2 --devices_per_process=4 -- \
      --config=configs/default.py --workdir=/tmp/run

Each process gets JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, which
`ssl_jax.main` passes to `jax.distributed.initialize`; with --devices_per_process the CPU is
split into that many simulated devices per process. Exits with the first non-zero status.
"""

import argparse
import os
import socket
import subprocess
import sys


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(num_processes, main_args, devices_per_process=0, module="ssl_jax.main"):
  address = f"127.0.0.1:{free_port()}"
  procs = []
  for index in range(num_processes):
    env = dict(
        os.environ,
        JAX_COORDINATOR_ADDRESS=address,
        JAX_NUM_PROCESSES=str(num_processes),
        JAX_PROCESS_ID=str(index),
        JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"),
    )
    if devices_per_process:
      env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices_per_process}"
    procs.append(subprocess.Popen([sys.executable, "-m", module, *main_args], env=env))
  codes = [p.wait() for p in procs]
  return next((c for c in codes if c), 0)


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=0)
  args, rest = parser.parse_known_args()
  sys.exit(launch(args.num_processes, [a for a in rest if a != "--"], args.devices_per_process))


if __name__ == "__main__":
  main()
