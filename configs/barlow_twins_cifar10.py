"""Barlow Twins on CIFAR-10 with ResNet-18 (small-image stem), solo-learn's recipe.

  python -m ssl_jax.main --config=configs/barlow_twins_cifar10.py --workdir=/tmp/barlow_cifar10 \
      --config.data.source=npz:/path/to/cifar10_jpeg_bytes.npz
  variants:  configs/barlow_twins_cifar10.py:epochs=200,bs=512
             configs/barlow_twins_cifar10.py:tiny

Recipe (solo-learn scripts/pretrain/cifar/barlow.yaml): batch 256, 1000 epochs, LARS lr 0.3 x
batch/256, weight decay 1e-4, projector 2048-2048-2048, lambda 0.0051, loss scaled by 0.1.
solo-learn uses asymmetric augmentations (solarisation on one view); ours are symmetric.
Published: 92.10% online linear top-1 after 1000 epochs (solo-learn README, ResNet-18).
`:tiny` runs on a 2-core CPU in minutes; measured figures in experiments/README.md.
"""

from ssl_jax import config as config_lib

recipes = config_lib.load_module("recipes.py", beside=__file__)


def get_config(arg=None):
  c, args = recipes.cifar10(
      arg,
      task="barlow_twins",
      task_kwargs=dict(projection_dims=(2048, 2048, 2048), lambd=0.0051, scale_loss=0.1),
  )
  c.optimizer.name = "lars"
  c.optimizer.base_learning_rate = 0.3
  c.optimizer.weight_decay = 1e-4
  if args["tiny"]:
    c.task_kwargs.projection_dims = (256, 256, 256)
  return c
