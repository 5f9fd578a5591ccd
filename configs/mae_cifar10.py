"""MAE on CIFAR-10 with a ViT-Tiny (patch 2 at 32 px), the community CIFAR recipe.

  python -m ssl_jax.main --config=configs/mae_cifar10.py --workdir=/tmp/mae_cifar10 \
      --config.data.source=npz:/path/to/cifar10_jpeg_bytes.npz
  variants:  configs/mae_cifar10.py:epochs=400,bs=512   configs/mae_cifar10.py:tiny
  masking:   --config.task_kwargs.mask_ratio=0.5   (the paper's default is 0.75)

Recipe (He et al. 2022, adapted to CIFAR-10 as in IcarusWizard/MAE): ViT-Ti, mask ratio 0.75,
normalised-pixel targets, a 4-block decoder of width 192, AdamW (lr 1.5e-4 x batch/256, betas
0.9/0.95 are optax's 0.9/0.999 here, weight decay 0.05), cosine schedule with warm-up, crops of
scale (0.2, 1) and flips only. Each evaluation writes DIR/reconstructions.png.
Published: 89.77% top-1 after 2000 pre-training epochs and fine-tuning, against 74.13% for the
same ViT-T trained from scratch (IcarusWizard/MAE README; the MAE paper itself reports ImageNet
only). MAE's features are known to be weak under a frozen linear probe or kNN; fine-tuning is its
protocol. `:tiny` (ViT-mu, 100 steps of batch 128) runs on a 2-core CPU in minutes.
"""

from ssl_jax import config as config_lib

recipes = config_lib.load_module("recipes.py", beside=__file__)


def get_config(arg=None):
  c, args = recipes.cifar10(
      arg,
      task="mae",
      epochs=2000,
      bs=4096,
      task_kwargs=dict(
          mask_ratio=0.75, norm_pix=True, decoder_width=192, decoder_depth=4, decoder_heads=3
      ),
  )
  recipes.use_encoder(c, "vit")
  c.model.variant = "ti"
  c.model.patch_size = 2
  c.model.pool = "cls"
  c.augment.update(crop_scale=(0.2, 1.0), jitter_prob=0.0, grayscale_prob=0.0)
  c.optimizer.name = "adamw"
  c.optimizer.base_learning_rate = 1.5e-4
  c.optimizer.weight_decay = 0.05
  c.optimizer.warmup_epochs = 200.0
  if args["tiny"]:
    c.model.variant = "mu"
    c.model.patch_size = 4
    c.task_kwargs.update(decoder_width=64, decoder_depth=1, decoder_heads=2)
    c.optimizer.base_learning_rate = 2e-3
  return c
