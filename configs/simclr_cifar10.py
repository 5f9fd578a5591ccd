"""SimCLR on CIFAR-10 with ResNet-18 (small-image stem), the published single-GPU recipe.

  python -m ssl_jax.main --config=configs/simclr_cifar10.py --workdir=/tmp/simclr_cifar10 \
      --config.data.source=npz:/path/to/cifar10_jpeg_bytes.npz
  variants:  configs/simclr_cifar10.py:epochs=200,bs=512   configs/simclr_cifar10.py:tiny

Recipe (google-research/simclr README, CIFAR-10 command): batch 512, 1000 epochs, LARS with
learning rate 1.0 x batch/256, weight decay 1e-6, temperature 0.5, colour jitter strength 0.5,
no blur, ResNet-18 with a 3x3 stride-1 stem and no max-pool.
Published: about 91% linear-probe top-1 after 1000 epochs (google-research/simclr README);
90.74% online linear top-1 after 1000 epochs at batch 256 (solo-learn README, ResNet-18);
kNN 0.848 after 200 epochs at batch 512 (lightly's CIFAR-10 benchmark, ResNet-18).
`:tiny` (ResNet-10 at width 0.25, 100 steps of batch 128) finishes on a 2-core CPU in minutes and
only checks that the pipeline learns; our measured figures are in experiments/README.md.
"""

from ssl_jax import config as config_lib

recipes = config_lib.load_module("recipes.py", beside=__file__)


def get_config(arg=None):
  c, args = recipes.cifar10(
      arg, task="simclr", bs=512, task_kwargs=dict(temperature=0.5, projection_dims=(512, 512, 128))
  )
  c.optimizer.name = "lars"
  c.optimizer.base_learning_rate = 1.0
  c.optimizer.weight_decay = 1e-6
  if args["tiny"]:
    c.task_kwargs.projection_dims = (128, 64)
  return c
