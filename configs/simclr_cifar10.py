"""SimCLR on CIFAR-10 with ResNet-18 (small-image stem), the published single-GPU recipe.

  python -m ssl_jax.main --config=configs/simclr_cifar10.py --workdir=/tmp/simclr_cifar10 \
      --config.data.source=npz:/path/to/cifar10_jpeg_bytes.npz
  variants:  configs/simclr_cifar10.py:epochs=200,bs=512   configs/simclr_cifar10.py:tiny

Recipe (google-research/simclr README, CIFAR-10 command): batch 512, 1000 epochs, LARS with
learning rate 1.0 x batch/256, weight decay 1e-6, temperature 0.5, colour jitter strength 0.5,
no blur, ResNet-18 with a 3x3 stride-1 stem and no max-pool.
Published: about 91% linear-probe top-1 after 1000 epochs (google-research/simclr README);
kNN 0.848 after 200 epochs at batch 512 (lightly's CIFAR-10 benchmark, ResNet-18).
`:tiny` (ResNet-10 at width 0.25, 100 steps of batch 128) finishes on a 2-core CPU in minutes and
only checks that the pipeline learns; our measured figures are in experiments/README.md.
"""
from ssl_jax import config as config_lib


def get_config(arg=None):
  args = config_lib.parse_arg(arg, tiny=False, epochs=1000, bs=512)
  c = config_lib.base_config()
  c.data.source = "tfds:cifar10"
  c.data.image_size = 32
  c.data.channels = 3
  c.data.num_classes = 10
  c.global_batch_size = args["bs"]
  c.total_epochs = float(args["epochs"])
  c.task_kwargs.temperature = 0.5
  c.augment.crop_scale = (0.08, 1.0)
  c.augment.jitter_strength = 0.5
  c.augment.blur_prob = 0.0
  c.model.depth = 18
  c.model.stem = "small"
  c.model.projection_dims = (512, 512, 128)
  c.optimizer.name = "lars"
  c.optimizer.base_learning_rate = 1.0
  c.optimizer.weight_decay = 1e-6
  c.optimizer.warmup_epochs = 10.0
  c.online_probe = True
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2000
  c.evals.knn = dict(type="knn", every_steps=10 * 97, k=200, temperature=0.1)
  c.evals.linear_probe = dict(type="linear_probe", every_steps=100 * 97, steps=1000)
  if args["tiny"]:
    c.model.depth = 10
    c.model.width_multiplier = 0.25
    c.model.projection_dims = (128, 64)
    c.global_batch_size = 128
    c.total_steps = 100
    c.optimizer.warmup_epochs = 0.05
    c.log_every_steps = 10
    c.checkpoint_every_steps = 50
    c.evals.knn = dict(type="knn", every_steps=100, k=200, temperature=0.1)
    c.evals.linear_probe = dict(type="linear_probe", every_steps=100, steps=300)
  return c
