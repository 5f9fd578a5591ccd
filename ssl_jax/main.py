"""Entry point: python -m ssl_jax.main --config=configs/NAME.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]"""
import argparse
import os
import sys

from ssl_jax import config as config_lib


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--config", required=True, help="configs/NAME.py[:ARG]")
  parser.add_argument("--workdir", required=True, help="checkpoints, metrics and results go here")
  args, rest = parser.parse_known_args(argv)
  overrides = []
  for item in rest:
    if not item.startswith("--config."):
      parser.error(f"unrecognised argument {item!r}; overrides look like --config.KEY=VALUE")
    overrides.append(item[len("--config."):])
  config = config_lib.override(config_lib.load(args.config), overrides)
  return config_lib.finalize(config, args.workdir), args.workdir


def initialize_distributed():
  """Multi-process runs: launchers set these variables (TPU pods and SLURM are auto-detected)."""
  import jax  # pylint: disable=g-import-not-at-top
  if "JAX_COORDINATOR_ADDRESS" in os.environ:
    jax.distributed.initialize(os.environ["JAX_COORDINATOR_ADDRESS"],
                               int(os.environ["JAX_NUM_PROCESSES"]), int(os.environ["JAX_PROCESS_ID"]))


def main(argv=None):
  initialize_distributed()
  config, workdir = parse(sys.argv[1:] if argv is None else argv)
  from ssl_jax import experiment  # pylint: disable=g-import-not-at-top
  experiment.run(config, workdir)


if __name__ == "__main__":
  main()
