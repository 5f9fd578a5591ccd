"""VICReg on CIFAR-10 with ResNet-18 (small-image stem), solo-learn's recipe.

  python -m ssl_jax.main --config=configs/vicreg_cifar10.py --workdir=/tmp/vicreg_cifar10 \
      --config.data.source=npz:/path/to/cifar10_jpeg_bytes.npz
  variants:  configs/vicreg_cifar10.py:epochs=200,bs=512   configs/vicreg_cifar10.py:tiny

Recipe (solo-learn scripts/pretrain/cifar/vicreg.yaml): batch 256, 1000 epochs, LARS lr 0.3 x
batch/256, weight decay 1e-4, projector 2048-2048-2048, weights 25 / 25 / 1, crop scale (0.2, 1),
solarisation with probability 0.1.
Published: 92.07% online linear top-1 after 1000 epochs (solo-learn README, ResNet-18).
`:tiny` runs on a 2-core CPU in minutes; measured figures in experiments/README.md.
"""

from ssl_jax import config as config_lib

recipes = config_lib.load_module("recipes.py", beside=__file__)


def get_config(arg=None):
  c, args = recipes.cifar10(
      arg,
      task="vicreg",
      task_kwargs=dict(
          projection_dims=(2048, 2048, 2048), sim_weight=25.0, var_weight=25.0, cov_weight=1.0
      ),
  )
  c.augment.crop_scale = (0.2, 1.0)
  c.augment.solarize_prob = 0.1
  c.optimizer.name = "lars"
  c.optimizer.base_learning_rate = 0.3
  c.optimizer.weight_decay = 1e-4
  if args["tiny"]:
    c.task_kwargs.projection_dims = (256, 256, 256)
  return c
