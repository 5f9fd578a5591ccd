"""DeepCluster-v2, the PyTorch peer, written from the paper (Caron et al. 2020, appendix) and the
structure of solo-learn's implementation (solo-learn 1.0.2 on PyPI predates torch 2; lightly has no
DeepCluster-v2), on our recipe.

  /tmp/parity_venv/bin/python experiments/parity/torch_deepcluster_v2.py --seed=0

As ssl_jax/tasks/deepcluster_v2.py: both views in one forward pass, projector MLPHead(dims),
L2-normalised embeddings written into a memory bank (one row per training digit and crop); every
cluster_every_steps steps spherical k-means (kmeans_iterations iterations, centroids started at
random bank rows) runs for each clustering h on crop h % 2's bank; the centroids are the
prototypes (fixed between clusterings, as solo-learn's); the loss is the cross-entropy of
embedding . centroid / temperature to the example's cluster, averaged over clusterings, crops and
examples; an example without a cluster yet (before the first clustering, every example) takes no
part in the loss, on both sides. Where this follows the official code rather than ours: an empty
cluster keeps its old centroid (ours re-seeds it with a random bank row).
"""

import torch
import torch.nn.functional as F

import torch_common as tc


def kmeans(bank, valid, k, iterations, generator):
  rows = torch.nonzero(valid).squeeze(1)
  data = bank[rows]
  centroids = data[torch.randperm(len(data), generator=generator)[:k]].clone()
  for _ in range(iterations):
    labels = (data @ centroids.T).argmax(1)
    sums = torch.zeros_like(centroids).index_add_(0, labels, data)
    counts = torch.bincount(labels, minlength=k)
    filled = counts > 0
    centroids[filled] = F.normalize(sums[filled] / counts[filled, None], dim=1)
  assignments = torch.full((len(bank),), -1, dtype=torch.long)
  assignments[rows] = (data @ centroids.T).argmax(1)
  return centroids, assignments


class DeepClusterV2:
  needs_index = True

  def __init__(self, recipe, data, seed):
    kw = recipe["task_kwargs"]
    self.num_prototypes, self.temperature = kw["num_prototypes"], kw["temperature"]
    self.iterations, self.every = kw["kmeans_iterations"], kw["cluster_every_steps"] or (
        recipe["num_examples"] // recipe["global_batch_size"]
    )
    self.encoder = tc.backbone(recipe, data["train_images"].shape[-1])
    self.projection = tc.head(self.encoder.dim, kw["projection_dims"])
    self.modules = torch.nn.ModuleDict(dict(encoder=self.encoder, projection=self.projection))
    self.views = tc.Views(recipe, seed)
    n, dim = len(data["train_images"]), kw["projection_dims"][-1]
    self.generator = torch.Generator().manual_seed(seed)
    self.bank = torch.zeros(2, n, dim)
    self.in_bank = torch.zeros(n, dtype=torch.bool)
    self.centroids = [
        F.normalize(torch.randn(k, dim, generator=self.generator), dim=1)
        for k in self.num_prototypes
    ]
    self.assignments = torch.full((len(self.num_prototypes), n), -1, dtype=torch.long)
    self.index = None

  def step(self, step, images, index):
    z = F.normalize(self.projection(self.encoder(self.views(step, images).flatten(0, 1))), dim=1)
    z = z.view(2, len(images), -1)
    loss = 0.0
    for h, centroids in enumerate(self.centroids):
      logits = z @ centroids.T / self.temperature  # (2, n, K)
      targets = self.assignments[h, index].repeat(2)
      if (targets >= 0).any():  # before the first clustering no example has a cluster
        loss = loss + F.cross_entropy(logits.flatten(0, 1), targets, ignore_index=-1) / len(
            self.centroids
        )
      else:
        loss = loss + 0.0 * logits.sum()
    self.bank[:, index] = z.detach()
    self.in_bank[index] = True
    return loss

  def after_step(self, step):
    if (step + 1) % self.every:
      return
    for h, k in enumerate(self.num_prototypes):
      self.centroids[h], self.assignments[h] = kmeans(
          self.bank[h % 2], self.in_bank, k, self.iterations, self.generator
      )


if __name__ == "__main__":
  tc.run("deepcluster_v2", DeepClusterV2)
