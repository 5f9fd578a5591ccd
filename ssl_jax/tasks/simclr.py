"""SimCLR (Chen et al. 2020): two augmented views per image, NT-Xent on projected embeddings.

Views are made on the device inside the jitted step. BatchNorm sees both views of the whole
global batch at once, so its statistics are global (SimCLR's "global BN").
"""
import jax
import jax.numpy as jnp
import optax

from ssl_jax.data import image_ops
from ssl_jax.losses.ntxent import ntxent


class Task:

  def __init__(self, *, temperature=0.5, augment=None, image_size=None):
    if not temperature > 0:
      raise ValueError(f"task_kwargs.temperature must be > 0, got {temperature}")
    self.temperature = temperature
    self.augment = dict(augment or {})
    self.image_size = image_size

  def loss(self, model, variables, batch, rng, *, train=True):
    """Returns (loss, (metrics, new_model_state)); `batch['image']` is uint8 (B, H, W, C)."""
    images = batch["image"].astype(jnp.float32) / 255.0
    views = image_ops.augment_views(rng, images, num_views=2, crop_size=self.image_size,
                                    **self.augment)
    n = images.shape[0]
    (z, aux), new_state = model.apply(variables, views.reshape((2 * n,) + views.shape[2:]),
                                      train=train, mutable=["batch_stats"] if train else [])
    loss, metrics = ntxent(z[:n], z[n:], temperature=self.temperature)
    if "probe_logits" in aux:  # online probe: stop-gradient features, so only the probe learns
      labels = jnp.concatenate([batch["label"], batch["label"]])
      labelled = labels >= 0
      ce = optax.softmax_cross_entropy_with_integer_labels(aux["probe_logits"], jnp.maximum(labels, 0))
      count = jnp.maximum(labelled.sum(), 1)
      probe_loss = jnp.sum(ce * labelled) / count
      metrics["online_probe/loss"] = probe_loss
      metrics["online_probe/accuracy"] = jnp.sum(
          (jnp.argmax(aux["probe_logits"], -1) == labels) * labelled) / count
      metrics["ssl_loss"] = loss
      loss = loss + probe_loss
    return loss, (metrics, new_state)

  def features(self, model, variables, images):
    """Frozen encoder features for uint8 images (evaluation, no augmentation)."""
    x = images.astype(jnp.float32) / 255.0
    if self.image_size and x.shape[1] != self.image_size:
      x = jax.image.resize(x, (x.shape[0], self.image_size, self.image_size, x.shape[3]), "bilinear")
    (_, aux) = model.apply(variables, x, train=False)
    return aux["features"]
