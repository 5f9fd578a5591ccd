"""Rotation prediction (Gidaris et al. 2018): classify which of 0/90/180/270 degrees an image was
turned by.

Each image of the batch is cropped/flipped once (`config.augment`; the paper uses no colour
distortion) and fed in all four rotations, made on the device, so the batch holds 4B images and
the classes are balanced. The head is a small MLP on the encoder's features.
"""

import jax.numpy as jnp

from ssl_jax import tasks
from ssl_jax.losses.classification import pretext_cross_entropy
from ssl_jax.models.heads import EncoderWithHeads, MLPHead


class Task(tasks.Task):

  def __init__(self, *, head_dims=(512,), **context):
    super().__init__(**context)
    self.head_dims = tuple(head_dims)

  def model(self, encoder):
    return EncoderWithHeads(encoder, MLPHead((*self.head_dims, 4)))

  def loss(self, model, variables, task_state, batch, rng, step):
    views = self.views(rng, batch["inputs"], num_views=1)[0]
    if views.shape[1] != views.shape[2]:
      raise ValueError(f"rotation needs square images, got {views.shape[1:3]}")
    rotated = jnp.concatenate([jnp.rot90(views, k, axes=(1, 2)) for k in range(4)])
    labels = jnp.repeat(jnp.arange(4), views.shape[0])
    (logits, aux), new_state = model.apply(variables, rotated, train=True, mutable=["batch_stats"])
    loss, metrics = pretext_cross_entropy(logits, labels)
    return loss, (metrics, new_state, {"features": aux["features"]})
