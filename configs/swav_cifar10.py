"""SwAV on CIFAR-10 with ResNet-18 (small-image stem), solo-learn's recipe, optional multi-crop.

  python -m ssl_jax.main --config=configs/swav_cifar10.py --workdir=/tmp/swav_cifar10 \
      --config.data.source=npz:/path/to/cifar10_jpeg_bytes.npz
  variants:  configs/swav_cifar10.py:epochs=200,bs=512   configs/swav_cifar10.py:tiny
  multi-crop: --config.task_kwargs.num_local_crops=6 (16 px crops of scale 0.05-0.14, on the device)

Recipe (solo-learn scripts/pretrain/cifar/swav.yaml): batch 256, 1000 epochs, LARS lr 0.6 x
batch/256, weight decay 1e-6, projector 2048 -> 128, 3000 prototypes frozen for the first epoch,
temperature 0.1, Sinkhorn epsilon 0.05 with 3 iterations, a 3840-embedding queue from epoch 50,
two 32 px crops. Prototypes are excluded from weight decay here so that freezing is exact.
Published: 89.17% online linear top-1 after 1000 epochs (solo-learn README, ResNet-18).
`:tiny` (2 global + 2 local crops, 300 prototypes) runs on a 2-core CPU in minutes.
"""

from ssl_jax import config as config_lib

recipes = config_lib.load_module("recipes.py", beside=__file__)


def get_config(arg=None):
  c, args = recipes.cifar10(
      arg,
      task="swav",
      task_kwargs=dict(
          hidden_dims=(2048,),
          embedding_dim=128,
          num_prototypes=3000,
          temperature=0.1,
          epsilon=0.05,
          sinkhorn_iterations=3,
          freeze_prototypes_steps=195,
          queue_length=3840,
          num_local_crops=0,
      ),
  )
  c.optimizer.name = "lars"
  c.optimizer.base_learning_rate = 0.6
  c.optimizer.weight_decay = 1e-6
  c.optimizer.no_decay_regex = r"(^|/)(bias|scale|prototypes)$"
  if args["tiny"]:
    c.task_kwargs.update(
        hidden_dims=(256,),
        embedding_dim=64,
        num_prototypes=300,
        freeze_prototypes_steps=10,
        queue_length=0,
        num_local_crops=2,
    )
  return c
