"""DeepCluster-v2 on CIFAR-10 with ResNet-18 (small-image stem), solo-learn's recipe.

  python -m ssl_jax.main --config=configs/deepcluster_v2_cifar10.py --workdir=/tmp/dcv2_cifar10 \
      --config.data.source=npz:/path/to/cifar10_jpeg_bytes.npz
  variants:  configs/deepcluster_v2_cifar10.py:epochs=200,bs=512
             configs/deepcluster_v2_cifar10.py:tiny

Recipe (solo-learn scripts/pretrain/cifar/deepclusterv2.yaml): batch 256, 1000 epochs, LARS lr
0.6 x batch/256, weight decay 1e-6, projector 2048 -> 128, three k-means clusterings of 3000
prototypes redone every epoch on the memory bank, temperature 0.1.
Published: 88.85% online linear top-1 after 1000 epochs (solo-learn README, ResNet-18).
`:tiny` clusters every 25 steps (two clusterings of 100) and runs on a 2-core CPU in minutes.
"""

from ssl_jax import config as config_lib

recipes = config_lib.load_module("recipes.py", beside=__file__)


def get_config(arg=None):
  c, args = recipes.cifar10(
      arg,
      task="deepcluster_v2",
      task_kwargs=dict(
          num_prototypes=(3000, 3000, 3000),
          projection_dims=(2048, 128),
          temperature=0.1,
          kmeans_iterations=10,
          cluster_every_steps=0,
      ),
  )
  c.optimizer.name = "lars"
  c.optimizer.base_learning_rate = 0.6
  c.optimizer.weight_decay = 1e-6
  if args["tiny"]:
    c.task_kwargs.update(
        num_prototypes=(100, 100), projection_dims=(256, 64), cluster_every_steps=25
    )
  return c
