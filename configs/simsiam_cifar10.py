"""SimSiam on CIFAR-10 with ResNet-18 (small-image stem), solo-learn's recipe.

  python -m ssl_jax.main --config=configs/simsiam_cifar10.py --workdir=/tmp/simsiam_cifar10 \
      --config.data.source=npz:/path/to/cifar10_jpeg_bytes.npz
  variants:  configs/simsiam_cifar10.py:epochs=800,bs=512   configs/simsiam_cifar10.py:tiny

Recipe (solo-learn scripts/pretrain/cifar/simsiam.yaml): batch 256, 1000 epochs, SGD lr 0.5 x
batch/256, weight decay 1e-5, projector 2048-2048 (BatchNorm on the output), predictor 512-2048,
crop scale (0.2, 1) ("symmetric_weak" augmentations).
Published: 90.51% online linear top-1 after 1000 epochs (solo-learn README, ResNet-18); the
SimSiam paper reports 91.8% kNN-free linear accuracy on CIFAR-10 after 800 epochs (Chen & He 2021,
fig. D.1).
`:tiny` runs on a 2-core CPU in minutes; measured figures in experiments/README.md.
"""

from ssl_jax import config as config_lib

recipes = config_lib.load_module("recipes.py", beside=__file__)


def get_config(arg=None):
  c, args = recipes.cifar10(
      arg,
      task="simsiam",
      task_kwargs=dict(projection_dims=(2048, 2048), prediction_dims=(512, 2048)),
  )
  c.augment.crop_scale = (0.2, 1.0)
  c.optimizer.name = "sgd"
  c.optimizer.base_learning_rate = 0.5
  c.optimizer.weight_decay = 1e-5
  if args["tiny"]:
    c.task_kwargs.projection_dims = (256, 256)
    c.task_kwargs.prediction_dims = (64, 256)
  return c
