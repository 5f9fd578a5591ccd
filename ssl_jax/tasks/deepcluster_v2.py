"""DeepCluster-v2 (Caron et al. 2020, appendix): k-means pseudo-labels from a memory bank.

Every step writes the normalised embeddings of both crops into a memory bank (task state, one
row per training example, indexed by `batch["index"]`); every `cluster_every_steps` steps
(default: once an epoch) spherical k-means (`ssl_jax/kmeans.py`, in JAX inside the jitted
step, empty clusters re-seeded) runs on the bank for each of the `num_prototypes` clusterings.
Crop c's bank serves clustering h when h % 2 == c, as in the official code. The centroids become
the prototypes: the loss is cross-entropy of embedding . centroid / temperature to the example's
cluster. An example that has no cluster yet (its row was not in the bank at the last
clustering; before the first clustering, every example) takes no part in the loss, as in
solo-learn (`ignore_index=-1`): until the first clustering the step trains nothing and fills the
bank. The official code instead fills the bank with a pass of the untrained encoder before
training, so its first epoch trains on clusters of untrained features. Labelling those examples
by their other crop's nearest random centroid, as this file did before, cost 2-4 kNN points at
k=20 and 4.5-7 at k=200 in each of 3 seeds at 450 steps (experiments/parity.md).
The cluster-size balance of the last clustering is logged (`cluster/empty_clusters`,
`cluster/largest_cluster_fraction`, `cluster/size_entropy`, 1 = even), so collapse shows.
"""

import jax
import jax.numpy as jnp

from ssl_jax import kmeans
from ssl_jax import tasks
from ssl_jax.losses.deepcluster_v2 import deepcluster_v2
from ssl_jax.models.heads import EncoderWithHeads, MLPHead


class Task(tasks.Task):

  def __init__(
      self,
      *,
      num_prototypes=(3000, 3000, 3000),
      projection_dims=(2048, 128),
      temperature=0.1,
      kmeans_iterations=10,
      cluster_every_steps=0,
      **context,
  ):
    super().__init__(**context)
    self.num_prototypes = tuple(int(k) for k in num_prototypes)
    if not self.num_prototypes or min(self.num_prototypes) < 2:
      raise ValueError(
          f"task_kwargs.num_prototypes={num_prototypes}: need clusterings of >= 2 clusters"
      )
    self.projection_dims, self.temperature = tuple(projection_dims), temperature
    self.kmeans_iterations = kmeans_iterations
    self.cluster_every_steps = cluster_every_steps or self.steps_per_epoch or 1
    if self.num_examples is not None and max(self.num_prototypes) > self.num_examples:
      raise ValueError(
          f"task_kwargs.num_prototypes={num_prototypes} exceeds the {self.num_examples} "
          "training examples"
      )

  def model(self, encoder):
    return EncoderWithHeads(encoder, MLPHead(self.projection_dims))

  def init_state(self, variables, rng):
    size, dim = self.num_examples, self.projection_dims[-1]
    keys = jax.random.split(rng, len(self.num_prototypes))
    return {
        "memory": jnp.zeros((2, size, dim), jnp.float32),
        "in_memory": jnp.zeros((size,), bool),
        "centroids": [
            kmeans.normalize(jax.random.normal(k, (n, dim)))
            for k, n in zip(keys, self.num_prototypes)
        ],
        "assignments": -jnp.ones((len(self.num_prototypes), size), jnp.int32),
        "balance": jnp.zeros((len(self.num_prototypes), 3), jnp.float32),
    }

  def loss(self, model, variables, task_state, batch, rng, step):
    n = batch["inputs"].shape[0]
    views = tasks.merge_views(self.views(rng, batch["inputs"]))
    (z, aux), new_state = model.apply(variables, views, train=True, mutable=["batch_stats"])
    z = kmeans.normalize(z).reshape((2, n, -1))
    targets = task_state["assignments"][:, batch["index"]]  # -1: no cluster yet, no loss
    loss, metrics = deepcluster_v2(
        z, task_state["centroids"], targets, temperature=self.temperature
    )
    balance = jnp.mean(task_state["balance"], axis=0)
    metrics.update(
        {
            "cluster/empty_clusters": balance[0],
            "cluster/largest_cluster_fraction": balance[1],
            "cluster/size_entropy": balance[2],
        }
    )
    outputs = {
        "features": aux["features"],
        "embeddings": jax.lax.stop_gradient(z),
        "index": batch["index"],
    }
    return loss, (metrics, new_state, outputs)

  def update_state(self, task_state, *, params, model_state, outputs, step):
    index = outputs["index"]
    memory = task_state["memory"].at[:, index].set(outputs["embeddings"])
    in_memory = task_state["in_memory"].at[index].set(True)
    state = {**task_state, "memory": memory, "in_memory": in_memory}

    def cluster(state):
      centroids, assignments, balances = [], [], []
      for head, k in enumerate(self.num_prototypes):
        rng = jax.random.fold_in(jax.random.PRNGKey(head), step)
        c, a, sizes = kmeans.kmeans(
            rng, state["memory"][head % 2], state["in_memory"], k, iterations=self.kmeans_iterations
        )
        b = kmeans.balance(sizes)
        centroids.append(c)
        assignments.append(a)
        balances.append(
            jnp.stack([b["empty_clusters"], b["largest_cluster_fraction"], b["size_entropy"]])
        )
      return {
          **state,
          "centroids": centroids,
          "assignments": jnp.stack(assignments),
          "balance": jnp.stack(balances),
      }

    due = (step + 1) % self.cluster_every_steps == 0
    return jax.lax.cond(due, cluster, lambda s: s, state)
