"""The text study's methods, built on the labelled train texts and scored on the test split.

The labels are drawn from a pool of `text.label_pool_per_class` per class (`label_pool`; a class
with fewer labelled texts gives all it has, and budgets it cannot meet are skipped by the study's
loop with a printed note). The methods (study/methods.py names them):
  ssl_linear_probe / ssl_finetune / ssl_lora   the pre-trained model (probe, full, LoRA)
  supervised_scratch                           the same architecture from random weights
  bag_of_embeddings                            fastText's model from random weights (models/bag.py)
                                               on the first `text.bag.max_len` tokens
  tfidf_logreg                                 TF-IDF + logistic regression (study/baselines.py)
  generic_probe / generic_finetune             config.generic_model as it ships
  tapt_probe / tapt_finetune / tapt_lora       config.generic_model after TAPT
Encoders read the first `config.text.max_len` tokens of each text (head truncation: a news
article's or review's opening carries its topic; TF-IDF reads the whole text); the generic and
TAPT encoders mean-pool (the sentence-transformers recipe). Each method's fine-tuning settings are
`config.finetune` with its `finetune.per_method` entry over it: configs/text_default.py gives the
models from random weights their own learning rates and schedules.
"""

import functools

import numpy as np

from ssl_jax import config_schema
from ssl_jax import models
from ssl_jax.data import subsets
from ssl_jax.data import text_tokens
from ssl_jax.data import tokenizer as tokenizer_lib
from ssl_jax.finetune import inputs as inputs_lib
from ssl_jax.finetune import model as model_lib
from ssl_jax.modalities import common
from ssl_jax.study import baselines
from ssl_jax.study import methods as methods_lib


def label_pool(config, corpus, log=functools.partial(print, flush=True)):
  """Indices of the labelled train texts the study draws from: `text.label_pool_per_class` of
  each class when > 0 (fewer texts to encode for the probes), all of a smaller class."""
  labelled = corpus.labelled_train()
  per_class = config.text.label_pool_per_class
  if per_class <= 0:
    return labelled
  largest = max(config.label_efficiency.labels_per_class)
  if per_class < largest:
    raise ValueError(
        f"config.text.label_pool_per_class={per_class} is below the largest budget "
        f"{largest} labels per class (label_efficiency.labels_per_class); raise "
        "text.label_pool_per_class or lower the budgets"
    )
  labels = corpus.train_labels[labelled]
  counts = np.bincount(labels)
  for c in np.flatnonzero((counts < per_class) & (counts > 0)):
    log(
        f"text.label_pool_per_class={per_class}: class {c} has {counts[c]} labelled train "
        "texts; the pool takes all of them"
    )
  picked = subsets.per_class(labels, per_class, seed=config.seed + 7919, at_most=True)
  return labelled[picked]


def bag_model(config, tokenizer):
  """The model config of models/bag.py's encoder (`config.text.bag`, `config.model.dtype`) over
  `tokenizer`'s vocabulary."""
  model = config_schema.base_config().model
  model.name, model.dtype = "bag", config.model.dtype
  model.bag.update(
      dim=int(config.text.bag.dim),
      bigram_buckets=int(config.text.bag.bigram_buckets),
      vocab_size=len(tokenizer),
      pad_id=int(tokenizer.pad_token_id),
  )
  return model


def study(config, pretrained, *, generic):
  """common.Study of the text methods; `generic`: the model config of config.generic_model."""
  corpus, ssl, tapt = pretrained.more
  pool = label_pool(config, corpus)
  names, ft = list(config.label_efficiency.methods), config.finetune
  num_classes, mesh = corpus.num_classes, ssl.run.components.mesh
  pool_texts = [corpus.train_texts[i] for i in pool]
  texts = pool_texts + list(corpus.test_texts)

  def start(model_config, tokenizer, inits, max_len=config.text.max_len):
    """Starts {where: init} on one classifier (one compile) of `model_config`'s encoder."""
    ids = text_tokens.encode(tokenizer, texts, max_len=max_len)
    model = model_lib.Model(
        models.build_encoder(model_config),
        num_classes=num_classes,
        mesh=mesh,
        inputs=inputs_lib.Tokens(pad_id=tokenizer.pad_token_id),
        example=ids[: len(pool)],
        eval_batch_size=config.data.eval_batch_size,
        layer_regex=ft.layer_regex,
    )
    return {
        where: methods_lib.Start(
            model,
            init,
            ids[: len(pool)],
            ids[len(pool) :],
            lambda x, init=init: model.features(init, x),
        )
        for where, init in inits.items()
    }

  starts = {}
  if any(n.startswith("ssl_") or n == "supervised_scratch" for n in names):
    starts.update(
        start(ssl.config.model, ssl.tokenizer, {"ssl": ssl.encoder_variables, "scratch": None})
    )
  if "bag_of_embeddings" in names:
    bag = bag_model(config, ssl.tokenizer)
    starts.update(start(bag, ssl.tokenizer, {"bag": None}, max_len=config.text.bag.max_len))
  if any(n.startswith(("generic_", "tapt_")) for n in names):
    inits = {"generic": {"params": models.pretrained_params(generic)}}
    if tapt is not None:
      inits["tapt"] = tapt.encoder_variables
    starts.update(start(generic, tokenizer_lib.load(config.generic_model), inits))
  found = {}
  if "tfidf_logreg" in names:
    tfidf = baselines.TfidfLogreg(num_classes, corpus.pretraining_texts())
    found["tfidf_logreg"] = (tfidf, tfidf.features(pool_texts), tfidf.features(corpus.test_texts))
  pad_to = common.pad_to(config.label_efficiency, num_classes, len(pool))
  built = methods_lib.build(
      names, starts, found, ft, num_classes=num_classes, mesh=mesh, pad_to=pad_to
  )
  title = f"{corpus.name}: {config.task} ({config.model.bert.size} BERT), TAPT of the generic"
  return common.Study(
      built,
      corpus.train_labels[pool],
      corpus.test_labels,
      title,
      extra={"label_pool": len(pool)},
      classes=corpus.classes,
  )
