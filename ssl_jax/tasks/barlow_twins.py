"""Barlow Twins (Zbontar et al. 2021): the cross-correlation of two views' embeddings -> identity.

Embeddings are standardised over the global batch inside the loss, so the value does not depend
on how the batch is split over devices. `scale_loss` multiplies the loss (solo-learn uses 0.1 on
CIFAR, which with LARS acts like a smaller learning rate on the non-normalised parameters).
"""

from ssl_jax import tasks
from ssl_jax.losses.barlow_twins import barlow_twins
from ssl_jax.models.heads import EncoderWithHeads, MLPHead


class Task(tasks.EmbeddingTask):

  def __init__(
      self,
      *,
      projection_dims=(2048, 2048, 2048),
      lambd=0.0051,
      scale_loss=1.0,
      head_norm="batch",
      **context,
  ):
    super().__init__(**context)
    self.projection_dims, self.lambd, self.scale_loss = tuple(projection_dims), lambd, scale_loss
    self.head_norm = head_norm  # "none": no BatchNorm in the projector (chunked steps stay exact)

  def model(self, encoder):
    return EncoderWithHeads(encoder, MLPHead(self.projection_dims, self.head_norm))

  def embedding_loss(self, embeddings):
    n = embeddings.shape[0] // 2
    loss, metrics = barlow_twins(embeddings[:n], embeddings[n:], lambd=self.lambd)
    return self.scale_loss * loss, metrics
