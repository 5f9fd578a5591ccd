"""Entry point: python -m ssl_jax.main --config=configs/NAME.py[:ARG] --workdir=DIR
[--config.KEY=VALUE ...]"""

import argparse
import os
import sys

from ssl_jax import config as config_lib


def parse(argv, schema=config_lib.BASE):
  """(locked config, workdir) from `--config=PATH.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]`;
  an unknown key or a wrong type stops here, before any work (ssl_jax/config.py)."""
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--config", required=True, help="configs/NAME.py[:ARG]")
  parser.add_argument("--workdir", required=True, help="checkpoints, metrics and results go here")
  args, rest = parser.parse_known_args(argv)
  config = config_lib.override(config_lib.load(args.config), overrides(parser, rest), schema)
  return config_lib.finalize(config, args.workdir, schema), args.workdir


def overrides(parser, rest):
  """The KEY=VALUE of each `--config.KEY=VALUE` left over by `parser`; anything else is an error."""
  found = []
  for item in rest:
    if not item.startswith("--config."):
      parser.error(f"unrecognised argument {item!r}; overrides look like --config.KEY=VALUE")
    found.append(item[len("--config.") :])
  return found


EXPLICIT = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize_distributed(environ=os.environ):
  """Starts `jax.distributed` when this is one process of several; returns the topology line.

  JAX's cluster detection comes first: TPU pod slices (all workers of a `gcloud ... tpu-vm ssh
  --worker=all`), SLURM (`srun`), Open MPI (`mpirun`) and Kubernetes. JAX_COORDINATOR_ADDRESS
  (host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID override what it detects
  (launch/local.py sets all three). A single SLURM or MPI task stays one process that sees every
  local device; with nothing detected the run is a single process.
  """
  import jax  # pylint: disable=g-import-not-at-top

  address, count, index = (environ.get(k) or None for k in EXPLICIT)
  single_task = any(environ.get(k) == "1" for k in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"))
  if not jax.distributed.is_initialized() and (address or count or index or not single_task):
    try:
      jax.distributed.initialize(
          address, int(count) if count else None, int(index) if index else None
      )
    except (ValueError, RuntimeError) as e:
      # without our variables: no cluster detected, or JAX already running in this process
      # (a library call, a test): a single process
      quiet = "coordinator_address" in str(e) or "must be called before" in str(e)
      if address or count or index or not quiet:
        given = ", ".join(f"{k}={environ.get(k)!r}" for k in EXPLICIT)
        raise ValueError(
            f"jax.distributed.initialize failed with {given}: {e}. Set all three "
            "variables, or none where the cluster is detected"
        ) from None
  line = (
      f"processes: {jax.process_count()}, this is {jax.process_index()}; devices: "
      f"{jax.local_device_count()} local, {jax.device_count()} global ({jax.default_backend()})"
  )
  if jax.process_index() == 0:
    print(line, flush=True)
  return line


def main(argv=None):
  initialize_distributed()
  config, workdir = parse(sys.argv[1:] if argv is None else argv)
  from ssl_jax import experiment  # pylint: disable=g-import-not-at-top
  from ssl_jax import preemption  # pylint: disable=g-import-not-at-top

  try:
    experiment.run(config, workdir)
  except preemption.Preempted as e:  # a clean stop: the scheduler restarts the same command
    import jax  # pylint: disable=g-import-not-at-top

    if jax.process_index() == 0:
      print(e, flush=True)


if __name__ == "__main__":
  main()
