"""Jigsaw puzzles (Noroozi & Favaro 2016) on CIFAR-10 with a ResNet-18 tile encoder.

  python -m ssl_jax.main --config=configs/jigsaw_cifar10.py --workdir=/tmp/jigsaw_cifar10 \
      --config.data.source=npz:/path/to/cifar10_jpeg_bytes.npz
  variants:  configs/jigsaw_cifar10.py:epochs=100,bs=256   configs/jigsaw_cifar10.py:tiny

Recipe (Noroozi & Favaro 2016, scaled to 32 px): 3x3 cells of 10 px with a random 8 px tile in
each (gap and jitter), 100 permutations of maximal Hamming distance, a shared tile encoder and a
permutation classifier, random grayscale against chromatic shortcuts; SGD lr 0.1, weight decay
5e-4. Published: the paper reports ImageNet transfer only (67.6% mAP on PASCAL VOC
classification); there is no CIFAR-10 figure for this recipe. `:tiny` runs on a 2-core CPU in
minutes; measured figures in experiments/README.md.
"""

from ssl_jax import config as config_lib

recipes = config_lib.load_module("recipes.py", beside=__file__)


def get_config(arg=None):
  c, args = recipes.cifar10(
      arg,
      task="jigsaw",
      epochs=100,
      bs=256,
      task_kwargs=dict(num_permutations=100, tile_size=8, head_dims=(512,)),
  )
  c.augment.update(crop_scale=(0.6, 1.0), jitter_prob=0.0, grayscale_prob=0.3)
  c.data.image_size = 30  # 3 cells of 10 px; CIFAR's 32 px images are resized on load
  c.optimizer.name = "sgd"
  c.optimizer.base_learning_rate = 0.1
  c.optimizer.weight_decay = 5e-4
  if args["tiny"]:
    c.task_kwargs.head_dims = (128,)
  return c
