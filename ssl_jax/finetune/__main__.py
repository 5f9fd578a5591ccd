"""python -m ssl_jax.finetune --config=configs/NAME.py[:ARG] --workdir=DIR
[--config.KEY=VALUE ...]"""

from ssl_jax.finetune import standalone

if __name__ == "__main__":
  standalone.main()
