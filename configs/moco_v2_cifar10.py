"""MoCo v2 (symmetrised, "MoCo v2+") on CIFAR-10 with ResNet-18 (small-image stem).

  python -m ssl_jax.main --config=configs/moco_v2_cifar10.py --workdir=/tmp/moco_v2_cifar10 \
      --config.data.source=npz:/path/to/cifar10_jpeg_bytes.npz
  variants:  configs/moco_v2_cifar10.py:epochs=200,bs=512   configs/moco_v2_cifar10.py:tiny

Recipe (solo-learn scripts/pretrain/cifar/mocov2plus.yaml): batch 256, 1000 epochs, SGD lr 0.3 x
batch/256, weight decay 1e-4, head 2048-256 without BatchNorm, queue 32768, temperature 0.2, key
momentum 0.99 -> 0.999 (cosine), crop scale (0.2, 1). BatchNorm is global (no Shuffle-BN; see
ssl_jax/tasks/moco_v2.py).
Published: 92.94% online linear top-1 after 1000 epochs (solo-learn README, ResNet-18).
`:tiny` (queue 4096) runs on a 2-core CPU in minutes; measured figures in experiments/README.md.
"""

from ssl_jax import config as config_lib

recipes = config_lib.load_module("recipes.py", beside=__file__)


def get_config(arg=None):
  c, args = recipes.cifar10(
      arg,
      task="moco_v2",
      task_kwargs=dict(
          temperature=0.2,
          queue_size=32768,
          projection_dims=(2048, 256),
          head_norm="none",
          base_momentum=0.99,
          final_momentum=0.999,
      ),
  )
  c.augment.crop_scale = (0.2, 1.0)
  c.optimizer.name = "sgd"
  c.optimizer.base_learning_rate = 0.3
  c.optimizer.weight_decay = 1e-4
  if args["tiny"]:
    c.task_kwargs.projection_dims = (256, 64)
    c.task_kwargs.queue_size = 4096
  return c
