"""BERT's full pre-training (Devlin et al. 2019): masked LM plus next-sentence prediction.

Pairs are made inside the jitted step from each example ([CLS] text [SEP], padded): segment A is
the first half of the text's tokens; with probability 1/2, segment B is the rest of the same text
(label 0, "IsNext"), otherwise the second half of another example of the batch, drawn at random
from the step's key (label 1, "NotNext"). The pair [CLS] A [SEP] B [SEP] (token types 0 for
[CLS] A [SEP], 1 for B [SEP]) is cut to the example's length by dropping B's last tokens. Masking
then follows tasks/mlm.py on the pair. The NSP head reads BERT's tanh pooler over [CLS]
(`bert/pooler`), which the evaluators' encoder does not use; `save_pretrained` writes a Hugging
Face `BertForPreTraining` checkpoint.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.losses.mlm_nsp import mlm_nsp
from ssl_jax.models import bert_heads
from ssl_jax.tasks import mlm


def make_pairs(rng, ids, *, pad_id, cls_id, sep_id, random_prob=0.5):
  """-> (pair ids (B, L), token types (B, L), NSP labels (B,)); see the module docstring."""
  b, l = ids.shape
  k_partner, k_random = jax.random.split(rng)
  rows = jnp.arange(b)
  content = jnp.sum(ids != pad_id, axis=1) - 2  # tokens between [CLS] and [SEP]
  half = content // 2
  perm = jax.random.permutation(k_partner, b)
  partner = jnp.where(perm == rows, (rows + 1) % b, perm)
  label = jax.random.bernoulli(k_random, random_prob, (b,)).astype(jnp.int32)
  source = jnp.where(label == 1, partner, rows)
  start_b = 1 + half[source]  # index in `ids` of B's first token
  len_b = jnp.minimum(content[source] - half[source], l - half - 3)
  p = jnp.arange(l)[None, :]
  a_end = half[:, None] + 1  # [SEP] after A sits here
  b_end = a_end + 1 + len_b[:, None]  # final [SEP]
  from_b = jnp.take_along_axis(
      ids[source], jnp.clip(start_b[:, None] + p - a_end - 1, 0, l - 1), axis=1
  )
  pair = jnp.where(
      p < a_end,
      ids,
      jnp.where(
          p == a_end, sep_id, jnp.where(p < b_end, from_b, jnp.where(p == b_end, sep_id, pad_id))
      ),
  )
  pair = pair.at[:, 0].set(cls_id)
  types = ((p > a_end) & (p <= b_end)).astype(jnp.int32)
  return pair.astype(ids.dtype), types, label


class PreTraining(nn.Module):
  """The encoder (with BERT's pooler) and BERT's pre-training heads (MLM + NSP) under `cls`."""

  encoder: nn.Module

  def setup(self):
    self.cls = bert_heads.PreTrainingHeads(self.encoder.config, dtype=self.encoder.dtype)

  def __call__(self, ids, positions=None, train=False, attention_mask=None, token_type_ids=None):
    """-> (MLM logits (B, P, V) at `positions`, NSP logits (B, 2), features (B, D))."""
    hidden, features, pooled = self.encoder(
        ids,
        train=train,
        attention_mask=attention_mask,
        token_type_ids=token_type_ids,
        per_token=True,
    )
    positions = jnp.zeros((ids.shape[0], 1), jnp.int32) if positions is None else positions
    mlm_logits, nsp_logits = self.cls(
        mlm.gather(hidden, positions), pooled, self.encoder.word_embeddings()
    )
    return mlm_logits, nsp_logits, features


class Task(mlm.Task):
  architecture = "BertForPreTraining"

  def __init__(
      self,
      *,
      random_next_prob=0.5,
      mask_prob=0.15,
      mask_token_prob=0.8,
      random_token_prob=0.1,
      whole_word=False,
      tokenizer="",
      **context,
  ):
    super().__init__(
        mask_prob=mask_prob,
        mask_token_prob=mask_token_prob,
        random_token_prob=random_token_prob,
        whole_word=whole_word,
        tokenizer=tokenizer,
        **context,
    )
    if not 0 <= random_next_prob <= 1:
      raise ValueError(f"task_kwargs.random_next_prob must lie in [0, 1], got {random_next_prob}")
    self.random_next_prob = random_next_prob

  def model(self, encoder):
    return PreTraining(encoder.clone(add_pooling_layer=True))

  def loss(self, model, variables, task_state, batch, rng, step):
    ids = batch["inputs"].astype(jnp.int32)
    pair_rng, mask_rng, dropout_rng = jax.random.split(rng, 3)
    v = self.vocab
    pair, types, label = make_pairs(
        pair_rng,
        ids,
        pad_id=v["pad_id"],
        cls_id=v["cls_id"],
        sep_id=v["sep_id"],
        random_prob=self.random_next_prob,
    )
    m = self.mask(mask_rng, pair)
    mlm_logits, nsp_logits, features = model.apply(
        variables,
        m["inputs"],
        m["positions"],
        train=True,
        attention_mask=pair != v["pad_id"],
        token_type_ids=types,
        rngs={"dropout": dropout_rng},
    )
    loss, metrics = mlm_nsp(mlm_logits, m["targets"], m["weights"], nsp_logits, label)
    return loss, (metrics, {}, {"features": features})

  def encoder_variables(self, params, model_state, task_state):
    """The encoder without the pooler (only the NSP head reads it)."""
    variables = super().encoder_variables(params, model_state, task_state)
    encoder = {k: v for k, v in variables["params"]["bert"].items() if k != "pooler"}
    return {**variables, "params": {**variables["params"], "bert": encoder}}
