"""BYOL on CIFAR-10 with ResNet-18 (small-image stem), solo-learn's recipe.

  python -m ssl_jax.main --config=configs/byol_cifar10.py --workdir=/tmp/byol_cifar10 \
      --config.data.source=npz:/path/to/cifar10_jpeg_bytes.npz
  variants:  configs/byol_cifar10.py:epochs=200,bs=512   configs/byol_cifar10.py:tiny

Recipe (solo-learn scripts/pretrain/cifar/byol.yaml): batch 256, 1000 epochs, LARS lr 1.0 x
batch/256, weight decay 1e-5, projector 4096-256, predictor 4096-256, target momentum 0.99 -> 1
(cosine). solo-learn uses asymmetric augmentations (solarisation on one view); ours are symmetric.
Published: 92.58% online linear top-1 after 1000 epochs (solo-learn README, ResNet-18).
`:tiny` runs on a 2-core CPU in minutes; measured figures in experiments/README.md.
"""

from ssl_jax import config as config_lib

recipes = config_lib.load_module("recipes.py", beside=__file__)


def get_config(arg=None):
  c, args = recipes.cifar10(
      arg,
      task="byol",
      task_kwargs=dict(
          projection_dims=(4096, 256),
          prediction_dims=(4096, 256),
          base_momentum=0.99,
          final_momentum=1.0,
      ),
  )
  c.optimizer.name = "lars"
  c.optimizer.base_learning_rate = 1.0
  c.optimizer.weight_decay = 1e-5
  if args["tiny"]:
    c.task_kwargs.projection_dims = (256, 64)
    c.task_kwargs.prediction_dims = (256, 64)
  return c
