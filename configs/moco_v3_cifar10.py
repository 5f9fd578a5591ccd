"""MoCo v3 on CIFAR-10 with ResNet-18 (small-image stem), solo-learn's recipe.

  python -m ssl_jax.main --config=configs/moco_v3_cifar10.py --workdir=/tmp/moco_v3_cifar10 \
      --config.data.source=npz:/path/to/cifar10_jpeg_bytes.npz
  variants:  configs/moco_v3_cifar10.py:epochs=200,bs=512   configs/moco_v3_cifar10.py:tiny
             configs/moco_v3_cifar10.py:vit (ViT-S/4 with AdamW)
             configs/moco_v3_cifar10.py:tiny,vit

Recipe (solo-learn scripts/pretrain/cifar/mocov3.yaml): batch 256, 1000 epochs, LARS lr 0.3 x
batch/256, weight decay 1e-6, projector 4096-256, predictor 4096-256, temperature 0.2, momentum
0.99 -> 1 (cosine). solo-learn uses asymmetric augmentations; ours are symmetric.
Published: 93.10% online linear top-1 after 1000 epochs (solo-learn README, ResNet-18).
`:tiny` runs on a 2-core CPU in minutes; measured figures in experiments/README.md.
"""

from ssl_jax import config as config_lib

recipes = config_lib.load_module("recipes.py", beside=__file__)


def get_config(arg=None):
  c, args = recipes.cifar10(
      arg,
      task="moco_v3",
      vit=False,
      task_kwargs=dict(
          temperature=0.2,
          projection_dims=(4096, 256),
          prediction_dims=(4096, 256),
          base_momentum=0.99,
          final_momentum=1.0,
      ),
  )
  c.optimizer.name = "lars"
  c.optimizer.base_learning_rate = 0.3
  c.optimizer.weight_decay = 1e-6
  if args["vit"]:
    recipes.use_vit(c, tiny=args["tiny"])
  if args["tiny"]:
    c.task_kwargs.projection_dims = (256, 64)
    c.task_kwargs.prediction_dims = (256, 64)
  return c
