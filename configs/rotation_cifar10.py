"""Rotation prediction (Gidaris et al. 2018) on CIFAR-10 with ResNet-18 (small-image stem).

  python -m ssl_jax.main --config=configs/rotation_cifar10.py --workdir=/tmp/rotation_cifar10 \
      --config.data.source=npz:/path/to/cifar10_jpeg_bytes.npz
  variants:  configs/rotation_cifar10.py:epochs=100,bs=128   configs/rotation_cifar10.py:tiny

Recipe (Gidaris et al. 2018, CIFAR-10 section, adapted to our ResNet): all four rotations of
each image in the batch, SGD with Nesterov momentum 0.9, learning rate 0.1 x batch/128 (here as
base 0.2 x batch/256), weight decay 5e-4, 100 epochs with cosine decay, crops and flips only.
Published: the paper's RotNet (a 4-block NIN) reaches 89.06% CIFAR-10 accuracy with a
non-linear classifier on its second block's feature maps (table 1); no ResNet-18 kNN figure is
published. `:tiny` runs on a 2-core CPU in minutes; measured figures in experiments/README.md.
"""

from ssl_jax import config as config_lib

recipes = config_lib.load_module("recipes.py", beside=__file__)


def get_config(arg=None):
  c, args = recipes.cifar10(
      arg, task="rotation", epochs=100, bs=128, task_kwargs=dict(head_dims=(512,))
  )
  c.augment.update(crop_scale=(0.5, 1.0), jitter_prob=0.0, grayscale_prob=0.0)
  c.optimizer.name = "sgd"
  c.optimizer.base_learning_rate = 0.2
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_epochs = 1.0
  if args["tiny"]:
    c.task_kwargs.head_dims = (128,)
    c.global_batch_size = 64  # four rotations each: 256 images per step
  return c
