"""VICReg (Bardes et al. 2022): invariance + variance + covariance terms on two views' embeddings.

Variance and covariance are taken over the global batch inside the loss.
"""

from ssl_jax import tasks
from ssl_jax.losses.vicreg import vicreg
from ssl_jax.models.heads import EncoderWithHeads, MLPHead


class Task(tasks.EmbeddingTask):

  def __init__(
      self,
      *,
      projection_dims=(2048, 2048, 2048),
      sim_weight=25.0,
      var_weight=25.0,
      cov_weight=1.0,
      head_norm="batch",
      **context,
  ):
    super().__init__(**context)
    self.projection_dims = tuple(projection_dims)
    self.head_norm = head_norm  # "none": no BatchNorm in the projector (chunked steps stay exact)
    self.weights = dict(sim_weight=sim_weight, var_weight=var_weight, cov_weight=cov_weight)

  def model(self, encoder):
    return EncoderWithHeads(encoder, MLPHead(self.projection_dims, self.head_norm))

  def embedding_loss(self, embeddings):
    n = embeddings.shape[0] // 2
    return vicreg(embeddings[:n], embeddings[n:], **self.weights)
