"""Text: tokenizer, MLM pre-training (and TAPT), the transformers export, the text study.

`pretrain(config, workdir)` for a text task (`mlm`, `mlm_nsp`):
 1. reads the corpus (`config.data.source`: bbc_news | jsonl:DIR | tfds:NAME, data/text.py);
 2. pre-trains `config.model` with the task on every pre-training text (the unlabelled texts and
    the train split's), with its tokenizer: a WordPiece one trained on those texts, or a
    checkpoint's own (data/tokenizer.py); the loop is train.py's, so checkpoints, exact resume
    (the tokenizer saved in WORKDIR/tokenizer is reused) and sharding are the image job's;
 3. writes the final model and tokenizer with `save_pretrained` into WORKDIR/hf_model
    (config.json + model.safetensors: `transformers.BertForMaskedLM.from_pretrained` loads it);
 4. with a `tapt_*` method in the study, TAPT (Gururangan et al. 2020): `config.generic_model`
    (a BERT checkpoint directory) with a new MLM head, MLM continued on the same texts for
    `config.text.tapt.steps` steps, in WORKDIR/tapt (its own checkpoints, resumable).
`study(config, pretrained)` builds the study's methods (text_study.py).
"""

import dataclasses
import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from ssl_jax import config as config_lib
from ssl_jax import train
from ssl_jax.data import text
from ssl_jax.data import text_tokens
from ssl_jax.data import tokenizer as tokenizer_lib
from ssl_jax.data import subsets
from ssl_jax.modalities import common
from ssl_jax.modalities import text_study
from ssl_jax.modalities import text_trained
from ssl_jax.study import methods as methods_lib

NAME = "text"
METHODS = (
    "ssl_linear_probe",
    "ssl_finetune",
    "ssl_lora",
    "ssl_contrastive",
    "supervised_scratch",
    "tfidf_logreg",
    "generic_probe",
    "generic_finetune",
    "generic_contrastive",
    "tapt_probe",
    "tapt_finetune",
    "tapt_lora",
    "tapt_contrastive",
    "bag_of_embeddings",
)
label_pool = text_study.label_pool
TAPT_PAYS_FROM = 1000  # experiments/text.md, "TAPT as a curve": the first step count that helped
# the hooks on a finished run (modalities/__init__.py, exporting.py): text_trained.py's
trained_config = text_trained.trained_config
read_inputs = text_trained.read_inputs
export_transformers = text_trained.export_transformers


def load_corpus(config):
  corpus = text.load(
      config.data.source,
      num_classes=config.data.num_classes,
      holdout_per_class=config.data.holdout_per_class,
      seed=config.data.holdout_seed,
      data_dir=config.data.data_dir or None,
  )
  for path, count in corpus.skipped_empty.items():
    print(f"skipped {count} empty text(s) in {path}", flush=True)
  per_class = config.text.test_per_class
  if per_class > 0 and per_class < np.bincount(corpus.test_labels).min():
    keep = subsets.per_class(corpus.test_labels, per_class, seed=config.data.holdout_seed + 104_729)
    corpus = dataclasses.replace(
        corpus,
        test_texts=[corpus.test_texts[i] for i in keep],
        test_labels=corpus.test_labels[keep],
    )
  return corpus


def last_logged(run, workdir):
  """The run's last logged metrics (from metrics.jsonl when it resumed at its final step)."""
  if run.history:
    return run.history[-1]
  path = os.path.join(workdir, "metrics.jsonl")
  rows = [json.loads(line) for line in open(path)] if os.path.isfile(path) else []
  rows = [r for r in rows if "loss" in r]
  return rows[-1] if rows else {}


@dataclasses.dataclass
class Encoder:
  config: Any  # the run's config, with its tokenizer and vocabulary filled in
  tokenizer: Any
  encoder_variables: Any  # {collection: encoder tree} as numpy, what fine-tuning starts from
  run: Any  # train.Run
  seconds: float
  last: dict  # the last logged pre-training metrics
  full_length: int = 0  # texts (pre-training and test) that fill text.max_len tokens: truncated


def pretrain_encoder(config, workdir, corpus):
  """Steps 2-3 of the module docstring for `config` in `workdir`."""
  started = time.perf_counter()
  size = config.model.bert.size
  checkpoint = size if config.model.name == "bert" and os.path.isdir(size) else ""
  texts = corpus.pretraining_texts()
  tok, tok_dir = tokenizer_lib.for_run(
      workdir,
      texts,
      vocab_size=config.text.vocab_size,
      lowercase=config.text.lowercase,
      min_frequency=config.text.min_frequency,
      checkpoint=checkpoint,
      save=jax.process_index() == 0,
  )
  ids = text_tokens.encode(tok, texts + list(corpus.test_texts), max_len=config.text.max_len)
  train_source = text_tokens.TokenSource(
      ids[: len(texts)], corpus.pretraining_labels(), name=f"{corpus.name}:pretraining"
  )
  test_source = text_tokens.TokenSource(
      ids[len(texts) :], corpus.test_labels, name=f"{corpus.name}:test"
  )
  full_length = int(np.sum(ids[:, -1] != tok.pad_token_id))
  print(
      f"{corpus.name}: {len(texts)} pre-training texts, {len(corpus.test_texts)} test texts, "
      f"{len(tok)} tokens in the vocabulary; {full_length} of {len(ids)} texts fill "
      f"text.max_len={config.text.max_len} tokens (their first tokens are read, the rest cut)",
      flush=True,
  )
  run_config = config_lib.derive(
      config,
      {"task_kwargs.tokenizer": tok_dir, "model.bert.vocab_size": 0 if checkpoint else len(tok)},
  )
  run = train.train(run_config, workdir, data=(train_source, test_source))
  if jax.process_index() == 0:
    hf_dir = os.path.join(workdir, "hf_model")
    run.components.task.save_pretrained(
        hf_dir, run.components.encoder.config, run.state.params, tok
    )
    print(f"wrote {hf_dir} ({run.components.task.architecture} + tokenizer)", flush=True)
  encoder_variables = jax.device_get(run.components.encoder_variables(run.state))
  return Encoder(
      run_config,
      tok,
      encoder_variables,
      run,
      time.perf_counter() - started,
      last_logged(run, workdir),
      full_length,
  )


def tapt_config(config, num_texts=0):
  """Continued MLM of config.generic_model (a BERT checkpoint directory) per config.text.tapt."""
  if not config.generic_model or not os.path.isdir(config.generic_model):
    raise ValueError(
        f"the tapt_* methods need config.generic_model to be a local BERT checkpoint "
        f"directory; got {config.generic_model!r}"
    )
  tapt = config.text.tapt
  steps_per_epoch = max(num_texts // tapt.batch_size, 1)
  mlm_kwargs = {k: v for k, v in config.task_kwargs.items() if k != "random_next_prob"}
  return config_lib.derive(
      config,
      {
          "task_kwargs": ml_collections.ConfigDict(mlm_kwargs),
          "task": "mlm",
          "model.name": "bert",
          "model.bert.size": config.generic_model,
          "model.bert.vocab_size": 0,
          "model.pool": "mean",
          "total_steps": int(tapt.steps),
          "global_batch_size": int(tapt.batch_size),
          "optimizer.name": "adamw",
          "optimizer.base_learning_rate": float(tapt.learning_rate),
          "optimizer.lr_scaling": "none",
          "optimizer.schedule": "cosine",
          "optimizer.warmup_epochs": tapt.warmup_steps / steps_per_epoch,
      },
  )


def check(config):
  names = list(config.label_efficiency.methods)
  methods_lib.check(names, METHODS, NAME, config.finetune.per_method)
  generic = [m for m in names if m.startswith(("generic_", "tapt_"))]
  if generic and not os.path.isdir(config.generic_model or ""):
    raise ValueError(
        f"label_efficiency.methods {generic} need config.generic_model, a local BERT "
        f"checkpoint directory; got {config.generic_model!r}"
    )


def pretrain(config, workdir):
  """Steps 1-4 of the module docstring -> common.Pretrained (more: corpus, ssl and TAPT
  Encoders)."""
  corpus = load_corpus(config)
  ssl = pretrain_encoder(config, workdir, corpus)
  study = config.label_efficiency
  tapt = None
  if study.enabled and any(m.startswith("tapt_") for m in study.methods):
    tapt_dir = os.path.join(workdir, "tapt")
    os.makedirs(tapt_dir, exist_ok=True)
    tapt = pretrain_encoder(tapt_config(config, len(corpus.pretraining_texts())), tapt_dir, corpus)
    if config.text.tapt.steps < TAPT_PAYS_FROM:
      print(
          f"TAPT ran {config.text.tapt.steps} steps (text.tapt.steps). On BBC News it paid from "
          f"about {TAPT_PAYS_FROM:,} steps of 16 (a fresh MLM head on MiniLM: 200 steps did not "
          "help); measured curve: experiments/text.md, the longer run: configs/text_full.py",
          flush=True,
      )
  extra = {
      "dataset": corpus.name,
      "num_classes": corpus.num_classes,
      "num_pretraining_texts": len(corpus.pretraining_texts()),
      "num_test": len(corpus.test_texts),
      "max_len": config.text.max_len,
      "texts_at_max_len": ssl.full_length,  # truncated (or exactly max_len tokens long)
      "pretraining_seconds": ssl.seconds,
      "pretraining": ssl.last,
      "skipped_empty_texts": corpus.skipped_empty,
  }
  if tapt is not None:
    extra.update(tapt_seconds=tapt.seconds, tapt=tapt.last)
  return common.Pretrained(ssl.run, extra, more=(corpus, ssl, tapt))


def study(config, pretrained):
  """The text study's methods (text_study.py)."""
  names = config.label_efficiency.methods
  uses_generic = any(n.startswith(("generic_", "tapt_")) for n in names)
  return text_study.study(
      config, pretrained, generic=tapt_config(config).model if uses_generic else None
  )
