"""BERT's masking, MLM and NSP losses (numpy references, 1 vs 8 devices), the bert encoder's
pooling, and the save_pretrained export."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ssl_jax import config as config_lib
from ssl_jax import models
from ssl_jax.losses.mlm import masked_lm
from ssl_jax.losses.mlm_nsp import mlm_nsp
from ssl_jax.tasks import mlm
from ssl_jax.tasks import mlm_nsp as mlm_nsp_task

transformers = pytest.importorskip("transformers")

PAD, UNK, CLS, SEP, MASK = range(5)
VOCAB = 50
FIRST_CONTINUATION = 30  # ids >= 30 play the '##' pieces


def tables():
  special = np.zeros(VOCAB, bool)
  special[:5] = True
  continuation = np.zeros(VOCAB, bool)
  continuation[FIRST_CONTINUATION:] = True
  return special, continuation


def random_ids(rng, b, l, min_content=0):
  """[CLS] content [SEP] [PAD]...: content lengths from min_content to l - 2, a few [UNK]s."""
  ids = np.full((b, l), PAD, np.int32)
  for i in range(b):
    n = rng.integers(min_content, l - 1)
    ids[i, 0], ids[i, n + 1] = CLS, SEP
    ids[i, 1 : n + 1] = np.where(rng.random(n) < 0.05, UNK, rng.integers(5, VOCAB, n))
  return ids


@functools.partial(jax.jit, static_argnames=("whole_word",))
def _mask(rng, ids, whole_word=False):
  special, continuation = tables()
  return mask_tokens_fn(rng, ids, special, continuation, whole_word)


def mask_tokens_fn(rng, ids, special, continuation, whole_word):
  return mlm.mask_tokens(
      rng,
      ids,
      special=special,
      continuation=continuation,
      mask_id=MASK,
      vocab_size=VOCAB,
      whole_word=whole_word,
  )


def selected(out, l):
  """bool (B, L) of the selected positions, from the slots."""
  sel = np.zeros((len(out["positions"]), l), bool)
  rows, slots = np.nonzero(np.asarray(out["weights"]))
  sel[rows, np.asarray(out["positions"])[rows, slots]] = True
  return sel


def numpy_counts(ids, l, mask_prob=0.15):
  special, _ = tables()
  n = (~special[ids]).sum(1)
  count = np.floor(n.astype(np.float32) * np.float32(mask_prob) + np.float32(0.5)).astype(int)
  return np.where(n > 0, np.clip(count, 1, int(np.ceil(l * mask_prob))), 0)


def numpy_words(row):
  """[[positions of one word], ...] of one row: a maskable token and its continuations."""
  special, continuation = tables()
  words, previous_maskable = [], False
  for p, token in enumerate(row):
    if special[token]:
      previous_maskable = False
      continue
    if continuation[token] and previous_maskable:
      words[-1].append(p)
    else:
      words.append([p])
    previous_maskable = True
  return words


def test_masking_statistics_match_bert_recipe():
  rng = np.random.default_rng(0)
  b, l = 512, 64
  ids = random_ids(rng, b, l)
  special, _ = tables()
  counts = numpy_counts(ids, l)
  frequency = np.zeros((b, l))
  mask = random = kept = total = 0
  for draw in range(8):
    out = jax.device_get(_mask(jax.random.PRNGKey(draw), jnp.asarray(ids)))
    sel = selected(out, l)
    np.testing.assert_array_equal(sel.sum(1), counts)  # round(15 % of the maskable), exactly
    assert not np.any(sel & special[ids])  # special tokens never selected
    np.testing.assert_array_equal(out["inputs"][~sel], ids[~sel])  # nothing else changes
    np.testing.assert_array_equal(np.asarray(out["targets"])[out["weights"] > 0], ids[sel])
    assert out["positions"].shape == (b, 10)  # ceil(0.15 * 64)
    got, want = out["inputs"][sel], ids[sel]
    mask += np.sum(got == MASK)
    kept += np.sum(got == want)
    random += np.sum((got != MASK) & (got != want))
    total += sel.sum()
    frequency += sel
  # 80 / 10 / 10; a random token equals the original or [MASK] with probability 1 / VOCAB each
  expected = {"mask": 0.8 + 0.1 / VOCAB, "kept": 0.1 + 0.1 / VOCAB, "random": 0.1 - 0.2 / VOCAB}
  for name, value in (("mask", mask), ("kept", kept), ("random", random)):
    p = expected[name]
    assert abs(value / total - p) < 4 * np.sqrt(p * (1 - p) / total), (name, value / total)
  # each maskable token of a row is selected with probability count / n (uniform over positions)
  n = (~special[ids]).sum(1)
  eligible = ~special[ids] & (n[:, None] > 0)
  want = np.where(eligible, counts[:, None] / np.maximum(n[:, None], 1), 0)
  np.testing.assert_allclose((frequency.sum(0) / 8)[1:30], want.sum(0)[1:30], rtol=0.25)


def test_whole_word_masking_takes_whole_words_greedily():
  rng = np.random.default_rng(1)
  b, l = 256, 48
  ids = random_ids(rng, b, l)
  counts = numpy_counts(ids, l)
  out = jax.device_get(_mask(jax.random.PRNGKey(3), jnp.asarray(ids), whole_word=True))
  sel = selected(out, l)
  assert not np.any(sel & tables()[0][ids])
  taken = 0
  for i in range(b):
    words = numpy_words(ids[i])
    chosen = [w for w in words if sel[i, w].all()]
    assert all(sel[i, w].all() or not sel[i, w].any() for w in words), i  # whole words only
    left = counts[i] - sum(len(w) for w in chosen)
    assert left >= 0
    others = [len(w) for w in words if not sel[i, w].any()]
    assert not others or min(others) > left, i  # BERT's greedy: nothing else would fit
    taken += sum(len(w) for w in chosen)
  assert taken > 0.9 * counts.sum()


def numpy_masked_lm(logits, targets, weights):
  logits = logits.astype(np.float64)
  m = logits.max(-1, keepdims=True)
  logz = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
  ce = logz - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  return (ce * weights).sum() / weights.sum()


def _loss_inputs(rng, b=16, p=5, v=11):
  logits = rng.normal(size=(b, p, v)).astype(np.float32) * 2
  targets = rng.integers(0, v, (b, p)).astype(np.int32)
  weights = (rng.random((b, p)) < 0.7).astype(np.float32)
  nsp_logits = rng.normal(size=(b, 2)).astype(np.float32)
  nsp_labels = rng.integers(0, 2, b).astype(np.int32)
  return logits, targets, weights, nsp_logits, nsp_labels


def test_mlm_and_nsp_losses_match_numpy():
  logits, targets, weights, nsp_logits, nsp_labels = _loss_inputs(np.random.default_rng(0))
  loss, metrics = masked_lm(logits, targets, weights)
  np.testing.assert_allclose(loss, numpy_masked_lm(logits, targets, weights), rtol=1e-5)
  hits = ((logits.argmax(-1) == targets) * weights).sum() / weights.sum()
  np.testing.assert_allclose(metrics["mlm_accuracy"], hits, rtol=1e-6)
  total, metrics = mlm_nsp(logits, targets, weights, nsp_logits, nsp_labels)
  nsp = numpy_masked_lm(nsp_logits[:, None], nsp_labels[:, None], np.ones((len(nsp_labels), 1)))
  np.testing.assert_allclose(metrics["nsp_loss"], nsp, rtol=1e-5)
  np.testing.assert_allclose(total, numpy_masked_lm(logits, targets, weights) + nsp, rtol=1e-5)
  with pytest.raises(ValueError, match="must share"):
    masked_lm(logits, targets[:, :2], weights)


def _both_losses(logits, targets, weights, nsp_logits, nsp_labels, axis_name=None):
  a, _ = masked_lm(logits, targets, weights, axis_name=axis_name)
  b, _ = mlm_nsp(logits, targets, weights, nsp_logits, nsp_labels, axis_name=axis_name)
  return a + 2 * b  # both losses at once, with distinct weights in the gradient


def test_losses_on_8_devices_equal_one_device_values_and_gradients():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 (conftest.py)")
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  inputs = _loss_inputs(np.random.default_rng(1))
  inputs[2][:2] = 0  # a device whose first rows have no predictions
  grad = lambda fn: jax.jit(jax.value_and_grad(fn, argnums=(0, 3)))
  want = grad(_both_losses)(*inputs)
  sharded = jax.shard_map(
      functools.partial(_both_losses, axis_name="data"),
      mesh=mesh,
      in_specs=(P("data"),) * 5,
      out_specs=P(),
  )
  placed = [jax.device_put(x, jax.NamedSharding(mesh, P("data"))) for x in inputs]
  for got in (grad(sharded)(*inputs), grad(_both_losses)(*placed)):
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7), got, want)


def test_next_sentence_pairs():
  rng = np.random.default_rng(2)
  b, l = 64, 24
  ids = random_ids(rng, b, l, min_content=2)
  pair, types, label = jax.device_get(
      jax.jit(functools.partial(mlm_nsp_task.make_pairs, pad_id=PAD, cls_id=CLS, sep_id=SEP))(
          jax.random.PRNGKey(0), ids
      )
  )
  assert 0.3 < label.mean() < 0.7
  content = [ids[i, 1 : np.flatnonzero(ids[i] == SEP)[0]] for i in range(b)]
  for i in range(b):
    half = len(content[i]) // 2
    a = content[i][:half]
    assert pair[i, 0] == CLS and list(pair[i, 1 : half + 1]) == list(a) and pair[i, half + 1] == SEP
    seps = np.flatnonzero(pair[i] == SEP)
    segment_b = pair[i, half + 2 : seps[1]]
    assert np.all(pair[i, seps[1] + 1 :] == PAD) and np.all(types[i, half + 2 : seps[1] + 1] == 1)
    assert not types[i, : half + 2].any() and not types[i, seps[1] + 1 :].any()
    room = l - half - 3
    sources = [
        j for j in range(b) if list(content[j][len(content[j]) // 2 :][:room]) == list(segment_b)
    ]
    if label[i] == 0:
      assert i in sources  # the rest of the same text
    else:
      assert any(j != i for j in sources)  # the second half of another text


def bert_config(vocab=VOCAB, **overrides):
  c = config_lib.base_config()
  c.model.name = "bert"
  c.model.pool = "mean"
  c.model.bert.size = "tiny"
  c.model.bert.update(
      dict(
          num_layers=2,
          hidden_size=32,
          num_heads=2,
          intermediate_size=64,
          vocab_size=vocab,
          max_positions=64,
          **overrides,
      )
  )
  return c


def test_bert_encoder_pools():
  """Mean over the real tokens, or the final [CLS] state (the forward itself equals
  transformers' BERTs: tests/test_bert.py)."""
  c = bert_config()
  encoder = models.build_encoder(c.model)
  ids = jnp.asarray(random_ids(np.random.default_rng(3), 4, 16))
  variables = encoder.init(jax.random.PRNGKey(0), ids)
  features = np.asarray(encoder.apply(variables, ids))
  hidden, _ = encoder.apply(variables, ids, per_token=True)
  mask = np.asarray(ids != PAD).astype(np.float32)
  want = (np.asarray(hidden) * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
  np.testing.assert_allclose(features, want, rtol=1e-5, atol=1e-6)
  cls = models.build_encoder(_with_pool(c, "cls").model)
  np.testing.assert_allclose(
      np.asarray(cls.apply(variables, ids)), np.asarray(hidden)[:, 0], rtol=1e-5, atol=1e-6
  )
  assert encoder.config.num_hidden_layers == 2 and encoder.config.hidden_size == 32
  with pytest.raises(ValueError, match="accepted: \\['base', 'medium', 'mini', 'small', 'tiny'\\]"):
    models.build_encoder(bert_config(size="huge").model)
  with pytest.raises(ValueError, match="vocab_size is unset"):
    models.build_encoder(bert_config(vocab=0).model)


def _with_pool(c, pool):
  c = c.copy_and_resolve_references()
  c.model.pool = pool
  return c


def test_save_pretrained_round_trips(tmp_path):
  """The export (a Hugging Face checkpoint that transformers 5's PyTorch classes load with equal
  outputs: tests/test_bert.py) reads back into the same model, with its tokenizer."""
  import json  # pylint: disable=g-import-not-at-top
  from ssl_jax.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  from ssl_jax.models import bert_checkpoint  # pylint: disable=g-import-not-at-top

  tok = tokenizer_lib.train_wordpiece(["the cat sat on the mat", "a dog ran"] * 5, vocab_size=60)
  c = bert_config(vocab=len(tok))
  for task_cls in (mlm.Task, mlm_nsp_task.Task):
    task = task_cls()
    model = task.model(models.build_encoder(c.model))
    ids = jnp.asarray(
        tok(["the cat ran", "a dog sat on the mat"], padding=True, return_tensors="np")[
            "input_ids"
        ].astype(np.int32)
    )
    positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
    variables = model.init(jax.random.PRNGKey(1), ids, positions)
    ours = model.apply(variables, ids, positions)
    directory = str(tmp_path / task.architecture)
    task.save_pretrained(directory, model.encoder.config, variables["params"], tok)
    with open(f"{directory}/config.json") as f:
      assert json.load(f)["architectures"] == [task.architecture]
    loaded = bert_checkpoint.load(directory)
    params = {"encoder": {"bert": loaded["bert"]}, "cls": loaded["cls"]}
    again = model.apply({"params": params}, ids, positions)
    jax.tree.map(np.testing.assert_array_equal, again, ours)
    assert (
        transformers.AutoTokenizer.from_pretrained(directory)("the cat")["input_ids"]
        == tok("the cat")["input_ids"]
    )
    with open(f"{directory}/vocab.txt", encoding="utf-8") as f:  # BERT's own vocabulary file
      assert f.read().splitlines() == sorted(tok.get_vocab(), key=tok.get_vocab().get)
