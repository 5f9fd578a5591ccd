"""A finished text run: its config as its encoder was built (`trained_config`), new texts tokenized
for it (`read_inputs`; inference.py) and its MLM model as transformers' BertForMaskedLM
(`export_transformers`; exporting.py). The text modality (text.py) exposes them as its hooks.
"""

import os

import numpy as np

from ssl_jax import config as config_lib
from ssl_jax import models
from ssl_jax import train
from ssl_jax.data import text
from ssl_jax.data import text_tokens
from ssl_jax.data import tokenizer as tokenizer_lib
from ssl_jax.modalities import common


def trained_config(config, workdir):
  """The run's config as its encoder was built: with the run's tokenizer (WORKDIR/tokenizer) and
  its vocabulary size, as text.py's `pretrain_encoder` sets them."""
  tok_dir = os.path.join(workdir, "tokenizer")
  if not os.path.isfile(os.path.join(tok_dir, "tokenizer_config.json")):
    raise FileNotFoundError(f"{tok_dir} holds no tokenizer: expected a text run's WORKDIR")
  checkpoint = os.path.isdir(config.model.bert.size)
  vocab = 0 if checkpoint else len(tokenizer_lib.load(tok_dir))
  return config_lib.derive(
      config, {"task_kwargs.tokenizer": tok_dir, "model.bert.vocab_size": vocab}
  )


def export_transformers(config, workdir, out):
  """The run's MLM model (encoder and head) as transformers' BertForMaskedLM with its tokenizer
  in `out` (what the run also wrote into WORKDIR/hf_model), from the latest checkpoint."""
  from ssl_jax import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top

  state, _ = checkpoint_lib.restore_saved(workdir, "--workdir")
  encoder = models.build_encoder(config.model)
  task = train.build_task(config)
  tok = tokenizer_lib.load(os.path.join(workdir, "tokenizer"))
  task.save_pretrained(out, encoder.config, state["params"], tok)
  print(f"wrote {out} ({task.architecture} + tokenizer)", flush=True)
  return out


def read_inputs(config, workdir, spec, split):
  """Texts tokenized with the run's tokenizer, at most `config.text.max_len` tokens (longer texts
  are truncated, and counted). `jsonl:FILE` reads one file (ids `FILE[row]`); any other corpus
  spec (`jsonl:DIR`, `bbc_news`, `tfds:NAME`) its `split`: 'train', 'test' or 'unlabeled'."""
  path = spec.partition(":")[2]
  if spec.startswith("jsonl:") and os.path.isfile(path):
    texts, labels, _ = text.read_jsonl(path)
    ids = [f"{path}[{i}]" for i in range(len(texts))]
  else:
    corpus = text.load(
        spec,
        holdout_per_class=config.data.holdout_per_class,
        seed=config.data.holdout_seed,
        data_dir=config.data.data_dir or None,
    )
    splits = {
        "train": (corpus.train_texts, corpus.train_labels),
        "test": (corpus.test_texts, corpus.test_labels),
        "unlabeled": (corpus.unlabeled_texts, np.full(len(corpus.unlabeled_texts), -1, np.int32)),
    }
    if split not in splits:
      raise ValueError(f"--split={split!r} for text corpus {spec!r}; accepted: {sorted(splits)}")
    texts, labels = splits[split]
    ids = [f"{corpus.name}:{split}[{i}]" for i in range(len(texts))]
  tok = tokenizer_lib.load(os.path.join(workdir, "tokenizer"))
  rows = text_tokens.encode(tok, list(texts), max_len=config.text.max_len)
  full = int(np.sum(rows[:, -1] != tok.pad_token_id)) if len(rows) else 0
  print(f"{len(texts)} texts, {full} truncated at or filling {rows.shape[1]} tokens", flush=True)
  return common.Inputs(rows, ids, np.asarray(labels, np.int32))
