"""Entry point of the pretext ablation (ssl_jax/ablation/): every image task, one protocol.

python -m ssl_jax.ablate --config=configs/ablate.py[:quick] --workdir=DIR [--config.KEY=VALUE ...]
"""

import sys

from ssl_jax import main as main_lib
from ssl_jax.ablation import planning
from ssl_jax.ablation import running


def parse(argv):
  """(config, workdir) checked against the ablation's schema: the library's keys and `ablation`."""
  return main_lib.parse(argv, planning.SCHEMA)


def main(argv=None):
  main_lib.initialize_distributed()
  return running.run(*parse(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
  main()
