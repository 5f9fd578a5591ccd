"""BERT masked-language-model pre-training on IMDB reviews, then few-label sentiment classification.

  python -m ssl_jax.main --config=configs/bert_mlm_imdb.py:path=DIR --workdir=/tmp/bert_imdb
  python -m ssl_jax.main --config=configs/bert_mlm_imdb.py:tiny,path=DIR \
      --workdir=/tmp/bert_imdb_tiny
  python -m ssl_jax.main --config=configs/bert_mlm_imdb.py:path=DIR,size=small --workdir=DIR

Data: IMDB (Maas et al. 2011; aclImdb v1.0) as jsonl:DIR, DIR given as `:path=DIR` (or
`--config.data.source=jsonl:DIR`), DIR holding imdb_train.jsonl.gz (25,000 labelled reviews),
imdb_test.jsonl.gz (25,000) and imdb_unsup.jsonl.gz (50,000 unlabelled). MLM pre-training reads the
75,000 train and unlabelled reviews; a WordPiece vocabulary of 30,522 pieces (BERT's size) is
trained on them. The model is a BERT miniature (`size`, default mini = L4/H256, Turc et al. 2019) at
256 tokens per review, batch 128, AdamW at 5e-4 with 1,000 warm-up steps and weight decay 0.01,
100,000 steps (an accelerator run; `:tiny` is a CPU smoke run: BERT-tiny, 128 tokens, 300 steps,
1,000 test reviews). Then the label-efficiency study (1 / 10 / 100 / 1,000 labels per class) against
TF-IDF + logistic regression and the same BERT trained from scratch on the labels.

Published reference figures (whole training set, 25,000 labels):
  - Maas et al. 2011 (their word vectors + bag of words): 88.89 % test accuracy.
  - Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?": BERT-base fine-tuned,
    5.40 % test error (94.6 % accuracy); with further MLM pre-training on IMDB's own texts first
    (within-task pre-training), 4.37 % (95.6 %).
  - Gururangan et al. 2020 (RoBERTa-base, macro-F1 on their IMDB split): 95.0 fine-tuned,
    95.5 after TAPT, 95.6 after DAPT + TAPT.
These are BERT-base/RoBERTa-base figures with full labels; a miniature pre-trained here sits below
them. Our measurements: experiments/text.md.
"""

from ssl_jax import config as config_lib


def get_config(arg=None):
  args = config_lib.parse_arg(arg, tiny=False, path="", size="mini")
  c = config_lib.base_config()
  c.task = "mlm"
  c.task_kwargs = dict(mask_prob=0.15, mask_token_prob=0.8, random_token_prob=0.1, whole_word=False)
  c.data.source = f"jsonl:{args['path']}"
  c.data.num_classes = 2
  c.data.eval_batch_size = 256
  c.text.max_len = 256
  c.text.vocab_size = 30522
  c.model.name = "bert"
  c.model.pool = "mean"
  c.model.bert.size = args["size"]
  c.global_batch_size = 128
  c.total_steps = 100_000
  c.optimizer.name = "adamw"
  c.optimizer.base_learning_rate = 5e-4
  c.optimizer.lr_scaling = "none"
  c.optimizer.weight_decay = 0.01
  c.optimizer.warmup_epochs = 1000 / (75_000 // 128)  # 1,000 steps
  c.optimizer.schedule = "cosine"
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2000
  c.label_efficiency.enabled = True
  c.label_efficiency.labels_per_class = (1, 10, 100, 1000)
  c.label_efficiency.num_draws = 3
  c.label_efficiency.methods = (
      "tfidf_logreg",
      "supervised_scratch",
      "ssl_linear_probe",
      "ssl_finetune",
      "ssl_lora",
  )
  c.text.label_pool_per_class = 2000
  c.finetune.steps = 500
  c.finetune.batch_size = 32
  c.finetune.learning_rate = 1e-4
  c.finetune.weight_decay = 0.01
  c.finetune.grid.lora.learning_rate = (1e-3,)
  if args["tiny"]:
    c.model.bert.size = "tiny"
    c.text.max_len = 128
    c.text.vocab_size = 8000
    c.global_batch_size = 32
    c.total_steps = 300
    c.optimizer.base_learning_rate = 1e-3
    c.optimizer.warmup_epochs = 30 / (75_000 // 32)
    c.log_every_steps = 50
    c.checkpoint_every_steps = 300
    c.label_efficiency.labels_per_class = (1, 10, 100)
    c.label_efficiency.num_draws = 2
    c.text.label_pool_per_class = 200
    c.text.test_per_class = 500  # 1,000 of the 25,000 test reviews
    c.finetune.steps = 100
    c.data.eval_batch_size = 128
  return c
