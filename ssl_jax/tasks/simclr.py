"""SimCLR (Chen et al. 2020): two augmented views per image, NT-Xent on projected embeddings.

Views are made on the device inside the jitted step. BatchNorm sees both views of the whole
global batch at once, so its statistics are global (SimCLR's "global BN"), unless
`config.micro_batch_size` chunks the step: then they are per chunk, and a GroupNorm encoder with
`head_norm='none'` keeps the gradient exact (`ssl_jax/chunked.py`).
"""

from ssl_jax import tasks
from ssl_jax.losses.ntxent import ntxent
from ssl_jax.models.heads import EncoderWithHeads, MLPHead


class Task(tasks.EmbeddingTask):

  def __init__(self, *, temperature=0.5, projection_dims=(512, 128), head_norm="batch", **context):
    super().__init__(**context)
    if not temperature > 0:
      raise ValueError(f"task_kwargs.temperature must be > 0, got {temperature}")
    self.temperature = temperature
    self.projection_dims = tuple(projection_dims)
    self.head_norm = head_norm

  def model(self, encoder):
    return EncoderWithHeads(encoder, MLPHead(self.projection_dims, self.head_norm))

  def embedding_loss(self, embeddings):
    n = embeddings.shape[0] // 2
    return ntxent(embeddings[:n], embeddings[n:], temperature=self.temperature)
