"""BERT's masked language modelling (Devlin et al. 2019), from scratch or continued (TAPT).

Masking is drawn inside the jitted step from the step's key, so every epoch sees new masks
(RoBERTa's "dynamic masking") and a resumed run draws the same ones. Per sequence, as BERT's
`create_pretraining_data.py` does: of its n maskable tokens (special tokens, [PAD] [UNK] [CLS]
[SEP] [MASK], never are), round(mask_prob * n) (at least 1, half rounded up) are selected in random
order; with `whole_word`, whole words (a token and its '##' continuations) are taken in random
order, a word that would overflow the count skipped. A selected token becomes [MASK] with
probability `mask_token_prob`, a uniformly random token with `random_token_prob`, and stays
otherwise (80/10/10). The loss (losses/mlm.py) is the cross-entropy at the selected positions.

Static shapes: a sequence of length L has at most P = ceil(mask_prob * L) predictions (BERT's
max_predictions_per_seq, 20 at L=128); the selected positions are gathered into P slots (padding
slots weigh 0), and the MLM head and its vocabulary-sized decoder run on those P slots only,
not on all L tokens: at L=128 that is 6.4x less decoder work than scoring every position.

The tokenizer (its special and continuation ids) comes from `task_kwargs.tokenizer`, a directory
the text modality (modalities/text.py) fills in. The model is the registry's encoder
(models/bert.py) plus BERT's MLM head under `cls` (models/bert_heads.py), the decoder tied to the
word embeddings; `save_pretrained` writes it as a Hugging Face `BertForMaskedLM` checkpoint
(models/bert_checkpoint.py).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax import tasks
from ssl_jax.losses.mlm import masked_lm
from ssl_jax.models import bert_heads
from ssl_jax.models import bert_checkpoint


def max_predictions(length, mask_prob):
  return max(1, math.ceil(length * mask_prob))


def mask_counts(num_maskable, mask_prob, max_count):
  """Predictions per sequence: round-half-up(mask_prob * n) in float32, at least 1, at most
  `max_count`; 0 for a sequence with nothing to mask."""
  n = num_maskable.astype(jnp.float32)
  count = jnp.floor(n * jnp.float32(mask_prob) + 0.5).astype(jnp.int32)
  return jnp.where(num_maskable > 0, jnp.clip(count, 1, max_count), 0)


def select(rng, ids, *, special, continuation, mask_prob, whole_word):
  """bool (B, L): the tokens to predict (see the module docstring). special, continuation: bool
  tables (V,) over the vocabulary."""
  b, l = ids.shape
  eligible = ~special[ids]
  count = mask_counts(eligible.sum(1), mask_prob, max_predictions(l, mask_prob))
  score = jax.random.uniform(rng, (b, l))
  if not whole_word:
    score = jnp.where(eligible, score, 2.0)  # never ahead of a maskable token
    rank = jnp.argsort(jnp.argsort(score, axis=1), axis=1)
    return rank < count[:, None]
  before = jnp.pad(eligible[:, :-1], ((0, 0), (1, 0)))
  starts = eligible & (~continuation[ids] | ~before)
  word = jnp.where(eligible, jnp.cumsum(starts, axis=1) - 1, l)  # l: the bucket of the rest
  rows = jnp.arange(b)[:, None]
  length = jnp.zeros((b, l + 1), jnp.int32).at[rows, word].add(1)[:, :l]  # tokens per word
  order = jnp.argsort(jnp.where(length > 0, score, 2.0), axis=1)  # words in random order

  def take(total, word_length):  # greedy: a word is taken when it fits in what is left
    fits = (word_length > 0) & (total + word_length <= count)
    return total + jnp.where(fits, word_length, 0), fits

  _, taken = jax.lax.scan(
      take, jnp.zeros(b, jnp.int32), jnp.take_along_axis(length, order, axis=1).T
  )
  chosen = jnp.zeros((b, l + 1), bool).at[rows, order].set(taken.T)
  return jnp.take_along_axis(chosen, word, axis=1) & eligible


def mask_tokens(
    rng,
    ids,
    *,
    special,
    continuation,
    mask_id,
    vocab_size,
    mask_prob=0.15,
    mask_token_prob=0.8,
    random_token_prob=0.1,
    whole_word=False,
):
  """BERT's corruption of ids (B, L) -> {'inputs' (B, L), 'positions' (B, P), 'targets' (B, P),
  'weights' (B, P) float32}: the selected positions in order, padded with weight-0 slots."""
  b, l = ids.shape
  p = max_predictions(l, mask_prob)
  k_select, k_action, k_random = jax.random.split(rng, 3)
  chosen = select(
      k_select,
      ids,
      special=jnp.asarray(special),
      continuation=jnp.asarray(continuation),
      mask_prob=mask_prob,
      whole_word=whole_word,
  )
  steps = jnp.arange(l)
  first = jnp.sort(jnp.where(chosen, steps, l + steps), axis=1)[:, :p]
  real = first < l
  positions = jnp.where(real, first, 0)
  targets = jnp.take_along_axis(ids, positions, axis=1)
  action = jax.random.uniform(k_action, (b, p))
  random_ids = jax.random.randint(k_random, (b, p), 0, vocab_size, dtype=ids.dtype)
  replaced = jnp.where(
      action < mask_token_prob,
      jnp.asarray(mask_id, ids.dtype),
      jnp.where(action < mask_token_prob + random_token_prob, random_ids, targets),
  )
  rows = jnp.arange(b)[:, None]
  inputs = ids.at[rows, jnp.where(real, first, l)].set(replaced, mode="drop")
  return {
      "inputs": inputs,
      "positions": positions,
      "targets": targets,
      "weights": real.astype(jnp.float32),
  }


def gather(hidden, positions):
  """(B, L, D) states at positions (B, P) -> (B, P, D)."""
  return jnp.take_along_axis(hidden, positions[..., None], axis=1)


class MaskedLM(nn.Module):
  """The encoder and BERT's MLM head (transform + decoder tied to the word embeddings + bias)."""

  encoder: nn.Module

  def setup(self):
    self.cls = bert_heads.MLMHeads(self.encoder.config, dtype=self.encoder.dtype)

  def __call__(self, ids, positions=None, train=False, attention_mask=None):
    """-> (logits (B, P, V) at `positions` (B, P), features (B, D))."""
    hidden, features = self.encoder(ids, train=train, attention_mask=attention_mask, per_token=True)
    positions = jnp.zeros((ids.shape[0], 1), jnp.int32) if positions is None else positions
    logits = self.cls(gather(hidden, positions), self.encoder.word_embeddings())
    return logits, features


class Task(tasks.Task):
  modality = "text"  # ssl_jax/modalities/text.py: tokenizer, TAPT, export, text study
  architecture = "BertForMaskedLM"  # what `save_pretrained` writes

  def __init__(
      self,
      *,
      mask_prob=0.15,
      mask_token_prob=0.8,
      random_token_prob=0.1,
      whole_word=False,
      tokenizer="",
      **context,
  ):
    super().__init__(**context)
    if not 0 < mask_prob < 1:
      raise ValueError(f"task_kwargs.mask_prob must lie in (0, 1), got {mask_prob}")
    if not (
        mask_token_prob >= 0 and random_token_prob >= 0 and mask_token_prob + random_token_prob <= 1
    ):
      raise ValueError(
          f"task_kwargs.mask_token_prob={mask_token_prob} and random_token_prob="
          f"{random_token_prob} must be >= 0 with a sum <= 1"
      )
    self.mask_prob, self.mask_token_prob = mask_prob, mask_token_prob
    self.random_token_prob, self.whole_word = random_token_prob, bool(whole_word)
    self.tokenizer_dir = tokenizer
    self._vocab = None

  @property
  def vocab(self):
    """The tokenizer's special/continuation tables, [MASK] and [PAD] ids and size (read once)."""
    if self._vocab is None:
      if not self.tokenizer_dir:
        raise ValueError(
            f"task {type(self).__module__} needs task_kwargs.tokenizer (a tokenizer "
            "directory); the text loop sets it"
        )
      from ssl_jax.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top

      tok = tokenizer_lib.load(self.tokenizer_dir)
      special = np.zeros(len(tok), bool)
      special[[i for i in tok.all_special_ids if i is not None]] = True
      self._vocab = {
          "special": special,
          "continuation": tokenizer_lib.continuation_table(tok),
          "mask_id": tok.mask_token_id,
          "pad_id": tok.pad_token_id,
          "vocab_size": len(tok),
          "cls_id": tok.cls_token_id,
          "sep_id": tok.sep_token_id,
      }
    return self._vocab

  def model(self, encoder):
    return MaskedLM(encoder)

  def example_input(self, input_shape):
    return jnp.zeros((2,) + tuple(input_shape), jnp.int32)

  def preprocess(self, inputs):
    return inputs.astype(jnp.int32)

  def mask(self, rng, ids):
    v = self.vocab
    return mask_tokens(
        rng,
        ids,
        special=v["special"],
        continuation=v["continuation"],
        mask_id=v["mask_id"],
        vocab_size=v["vocab_size"],
        mask_prob=self.mask_prob,
        mask_token_prob=self.mask_token_prob,
        random_token_prob=self.random_token_prob,
        whole_word=self.whole_word,
    )

  def loss(self, model, variables, task_state, batch, rng, step):
    ids = batch["inputs"].astype(jnp.int32)
    mask_rng, dropout_rng = jax.random.split(rng)
    m = self.mask(mask_rng, ids)
    logits, features = model.apply(
        variables,
        m["inputs"],
        m["positions"],
        train=True,
        attention_mask=ids != self.vocab["pad_id"],
        rngs={"dropout": dropout_rng},
    )
    loss, metrics = masked_lm(logits, m["targets"], m["weights"])
    return loss, (metrics, {}, {"features": features})

  def checkpoint_params(self, params):
    """The model's params in the checkpoint layout of `architecture`."""
    return {"bert": params["encoder"]["bert"], "cls": params["cls"]}

  def save_pretrained(self, directory, config, params, tokenizer):
    """Writes the model as a Hugging Face `architecture` checkpoint (config.json,
    model.safetensors) and the tokenizer into `directory`:
    `transformers.<architecture>.from_pretrained(directory)` loads it, and so does
    `config.model.bert.size=directory` here."""
    bert_checkpoint.save(
        directory,
        config,
        jax.device_get(self.checkpoint_params(params)),
        self.architecture,
        tokenizer,
    )
