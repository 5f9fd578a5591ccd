"""The config schema: every key the library reads, with its type, default and meaning.

Config files start from `base_config()` (through ssl_jax/config.py, which loads, overrides and
checks configs against it); a command that reads more keys (the pretext ablation's `ablation`)
adds its own section and schema (`config.Schema`), not a key here.
"""

import ml_collections

# FixMatch's strong image view (finetune/inputs.py): random-resized-crop area, rotation and shear
# in degrees, shift as a fraction of the side, the share of views elastically distorted (at the
# pre-training views' strength, where the data has one) and the erased square's side (Cutout)
STRONG_IMAGES = dict(
    crop_scale=(0.35, 1.0),
    rotate_degrees=20.0,
    shear_degrees=15.0,
    translate=0.1,
    elastic_prob=0.5,
    erase=0.4,
)


def base_config():
  """Every key the library reads, with its type and default."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = "simclr"  # a module of ssl_jax/tasks/
  # the task's own settings (temperature, head widths, momentum, ...), checked against its signature
  c.task_kwargs = ml_collections.ConfigDict(dict(temperature=0.5))
  c.global_batch_size = 256
  # > 0: exact chunked backward (GradCache; ssl_jax/chunked.py) over chunks of this many examples
  # (all their views): memory scales with the chunk. Divides global_batch_size; chunkable tasks only
  # (simclr, barlow_twins, vicreg). BatchNorm statistics become per chunk ("ghost" BN); models
  # without BatchNorm (model.norm=group, task_kwargs.head_norm=none) get the exact gradient. 0: off
  c.micro_batch_size = 0
  c.micro_batch_loop = "auto"  # unroll | scan | auto (unroll on CPU, scan on GPU/TPU)
  # False (unroll only): keep each chunk's activations instead of recomputing them: no memory
  # saving, one forward pass less; for speed where small chunks run faster (XLA:CPU: 1.8x with
  # chunks of 32 at batch 256, under load; experiments/chunked.md)
  c.micro_batch_recompute = True
  c.total_epochs = 100.0
  c.total_steps = -1  # > 0 overrides total_epochs
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 3
  c.resume = ""  # a checkpoint directory to resume from when the workdir has none
  c.init_from = ""  # a checkpoint directory whose params initialise a fresh run
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  # persistent XLA compilation cache: 'auto' (~/.cache/ssl_jax/xla on GPU/TPU, off on CPU),
  # '' off, DIR
  c.compilation_cache_dir = "auto"
  c.profile_steps = ()  # (first, last): a jax.profiler trace of those steps in WORKDIR/profile

  c.data = ml_collections.ConfigDict()
  # mnist | npz:PATH (arrays, the CIFAR-10 JPEG bundle, or x_train/y_train/x_test/y_test series)
  # | tfds:NAME | folder:PATH | ucr:NAME (time series through aeon)
  c.data.source = "mnist"
  c.data.data_dir = ""  # TFDS data_dir for tfds:NAME ('': $TFDS_DATA_DIR or ~/tensorflow_datasets)
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 28
  c.data.channels = 1
  c.data.num_classes = 10
  c.data.holdout_per_class = 100  # embedded MNIST has no test split: hold these out per class
  # the held-out test split's own seed, so that config.seed changes the training, not the test set
  c.data.holdout_seed = 0
  c.data.num_workers = 0  # grain worker processes for host-side decode (0: in the main process)
  c.data.read_threads = 2  # grain threads reading batches (per process or worker)
  c.data.prefetch = 2  # batches read ahead (per worker)
  c.data.skip_corrupt = (
      False  # folders: skip unreadable files, listing them in WORKDIR/skipped_files.txt
  )
  c.data.train_subset = (
      ""  # file of indices or file names restricting the train split (label subsets)
  )
  c.data.eval_batch_size = 512

  # text runs (data.source bbc_news | jsonl:DIR | tfds:NAME; ssl_jax/modalities/text.py)
  c.text = ml_collections.ConfigDict()
  c.text.max_len = 128  # tokens per text ([CLS] ... [SEP]), truncated; padded to a multiple of 8
  c.text.vocab_size = 8000  # WordPiece vocabulary trained on the unlabelled texts (no checkpoint)
  c.text.lowercase = True
  c.text.min_frequency = 2  # WordPiece: pieces seen fewer times are not in the vocabulary
  c.text.label_pool_per_class = 0  # > 0: the study draws labels from this many per class (cost)
  c.text.test_per_class = 0  # > 0: score on a seeded sample of this many test texts per class
  # the bag_of_embeddings method (models/bag.py): tokens of each text it reads (the first ones, as
  # every encoder does), embedding size, hashed bigram rows (0: none, fastText's default)
  c.text.bag = ml_collections.ConfigDict(dict(max_len=512, dim=64, bigram_buckets=0))
  # TAPT (Gururangan et al. 2020): continued MLM of config.generic_model on the task's texts, for
  # the study's tapt_* methods
  c.text.tapt = ml_collections.ConfigDict(
      dict(steps=100, batch_size=16, learning_rate=1e-4, warmup_steps=10)
  )

  c.augment = ml_collections.ConfigDict(
      dict(
          crop_scale=(0.08, 1.0),
          crop_ratio=(3 / 4, 4 / 3),
          flip_prob=0.5,
          jitter_prob=0.8,
          jitter_strength=0.5,
          grayscale_prob=0.2,
          blur_prob=0.0,
          blur_sigma=(0.1, 2.0),
          solarize_prob=0.0,
          solarize_threshold=0.5,
          affine_prob=0.0,
          rotate_degrees=0.0,
          shear_degrees=0.0,
          translate=0.0,
          elastic_prob=0.0,
          elastic_alpha=0.0,
          elastic_sigma=4.0,
      )
  )  # image_ops.augment_view's keywords

  c.model = ml_collections.ConfigDict()
  c.model.name = "resnet"  # an encoder of ssl_jax/models/ (the registry)
  c.model.depth = 18  # resnet: 10 (small CPU variant), 18, 34, 50; ts_dilated_conv: residual blocks
  c.model.width_multiplier = 1.0
  # small: 3x3 stride 1, no max-pool (32px images); small_stride2: the same at stride 2 (cheap on
  # CPU for 28px digits); imagenet: 7x7 stride 2 + max-pool
  c.model.stem = "small"
  c.model.norm = "batch"  # batch (statistics over the global batch) | group
  # resnet: each block's last BatchNorm scale starts at 0 (True; SimCLR's TF code) or 1
  # (torchvision)
  c.model.zero_init_residual = True
  # auto (XLA's; on the CPU with a materialised kernel-gradient input, im2col for <= 2x2 maps) |
  # xla | materialised | wgrad | im2col (models/conv.py)
  c.model.conv_impl = "auto"
  # XLA:CPU's library for convolutions: eigen (3-18x faster here) | ynnpack (XLA's default);
  # models/conv.py
  c.model.cpu_conv_library = "eigen"
  c.model.dtype = "float32"  # activations; parameters and optimiser state stay float32
  c.model.variant = "ti"  # vit: mu (CPU tests), ti, s, b
  c.model.patch_size = 4  # vit: pixels per patch side (16 at 224 px, 4 at 32 px)
  c.model.posemb = "sincos2d"  # vit: sincos2d | learn
  c.model.pool = "gap"  # vit: cls (class token) | gap (global average pooling)
  c.model.hidden_dims = 64  # ts_dilated_conv: channels of the residual blocks
  c.model.repr_dims = 320  # ts_dilated_conv: representation channels per timestep
  # bert (models/bert_config.py): size tiny | mini | small | medium | base (the BERT miniatures) or
  # a local BERT checkpoint directory (config.json + model.safetensors: continued pre-training); > 0
  # overrides a dimension;
  # vocab_size 0: the run's tokenizer's (text runs set it); features by model.pool: cls | mean
  # bag (models/bag.py): fastText's bag of token (and hashed bigram) embeddings; the text study
  # sets it from text.bag and its tokenizer
  c.model.bag = ml_collections.ConfigDict(dict(vocab_size=0, dim=64, bigram_buckets=0, pad_id=0))
  c.model.bert = ml_collections.ConfigDict(
      dict(
          size="mini",
          num_layers=0,
          hidden_size=0,
          num_heads=0,
          intermediate_size=0,
          vocab_size=0,
          max_positions=512,
          dropout=0.1,
      )
  )

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "lars"  # lars | sgd | adamw
  c.optimizer.base_learning_rate = 0.3  # scaled by global_batch_size / 256
  c.optimizer.lr_scaling = "linear"  # linear | sqrt | none
  c.optimizer.weight_decay = 1e-6
  c.optimizer.momentum = 0.9
  c.optimizer.warmup_epochs = 10.0
  c.optimizer.schedule = "cosine"  # cosine | constant
  c.optimizer.no_decay_regex = r"(^|/)(bias|scale)$"  # biases and norm parameters
  c.optimizer.frozen_regex = ""  # parameters matching this are not updated
  c.optimizer.lr_multipliers = ()  # ((regex, multiplier), ...): every matching multiplier applies
  c.optimizer.grad_clip_norm = 0.0

  c.online_probe = False  # a stop-gradient linear head trained on labels alongside pre-training
  c.evals = ml_collections.ConfigDict()  # name -> dict(type=..., every_steps=..., ...)

  c.label_efficiency = ml_collections.ConfigDict()
  c.label_efficiency.enabled = False
  c.label_efficiency.labels_per_class = (1, 5, 10, 50)
  c.label_efficiency.num_draws = 5
  # also: ssl_finetune_last, ssl_lora, generic_probe, generic_finetune (ssl_jax/study/methods.py)
  c.label_efficiency.methods = (
      "ssl_linear_probe",
      "supervised_scratch",
      "ssl_finetune",
      "pixels_logreg",
  )
  # 'METHOD@BUDGET' (e.g. 'ssl_finetune@10'): keep that method's fit of draw 0 at that budget as a
  # classifier directory, WORKDIR/kept/METHOD-BUDGET, for python -m ssl_jax.predict ('': none)
  c.label_efficiency.keep = ""

  # a BERT-family checkpoint (hub name or local directory); when set, the text study adds
  # generic_probe and generic_finetune (ssl_jax/generic_models.py)
  c.generic_model = ""

  # fine-tuning on few labels (ssl_jax/finetune/): the study's trained methods and
  # `python -m ssl_jax.finetune`
  c.finetune = ml_collections.ConfigDict()
  # linear | last_n | full | lora | contrastive (the standalone command's mode)
  c.finetune.mode = "full"
  c.finetune.init_from = ""  # standalone: a pre-training checkpoint directory (WORKDIR/checkpoints)
  c.finetune.steps = 150  # length of the cosine learning-rate schedule
  # > 0: the schedule is at least this many passes over the labelled set (steps grows with the
  # budget: max(steps, ceil(epochs * labels / batch_size))), so a larger budget never trains less
  c.finetune.epochs = 0.0
  c.finetune.batch_size = 32  # examples per step, drawn with replacement from the labelled set
  c.finetune.learning_rate = 3e-3  # AdamW peak
  c.finetune.weight_decay = 0.0  # decoupled; not on biases, norms, embeddings
  c.finetune.label_smoothing = 0.1
  c.finetune.augment = True  # light per-modality augmentation of the labelled examples
  c.finetune.crop_scale = (0.5, 1.0)  # images: random-resized-crop area (flip: augment.flip_prob)
  # images: chance of an elastic distortion of strength augment.elastic_alpha / elastic_sigma
  c.finetune.elastic_prob = 0.0
  c.finetune.last_n = 1  # last_n: trained layer units (blocks / stages / transformer layers)
  # last_n: the unfrozen units' learning-rate factor; 1.0 beat 0.1 in CV on MNIST (experiments/)
  c.finetune.backbone_lr_multiplier = 1.0
  c.finetune.layer_decay = 1.0  # full: unit i of L at lr * layer_decay ** (L - 1 - i); 1: off
  c.finetune.layer_regex = ""  # how encoder parameters group into units ('': numbered prefixes)
  c.finetune.lora_rank = 4
  c.finetune.lora_alpha = 8.0  # adapters scaled by lora_alpha / lora_rank
  # 3x3 convolutions of ResNet blocks; attention query and value of our ViT and BERT
  c.finetune.lora_regex = (
      r"(BasicBlock_\d+/Conv_\d+|Bottleneck_\d+/Conv_1|attention/(self|attention)"
      r"/(query|value)|MultiHeadDotProductAttention_\d+/(query|value))/kernel$"
  )
  # ssl_distill / scratch_distill (SimCLRv2's distillation, finetune/fitting.py:DistillMethod):
  # the student's steps and batch on every training image, and the softmax temperature
  c.finetune.distill_steps = 300
  c.finetune.distill_batch_size = 128
  c.finetune.distill_temperature = 1.0
  # ssl_fixmatch / scratch_fixmatch (FixMatch, finetune/fixmatch.py): steps, labelled batch, pool
  # images per labelled one, the pseudo-label confidence threshold and the unlabelled term's
  # weight (the paper's 0.95, 1 and 7), distribution alignment of the weak predictions, and
  # FlexMatch's class-wise thresholds (fixmatch_flex: fixmatch_threshold scaled per class by how
  # often the class is predicted confidently)
  c.finetune.fixmatch_steps = 300
  c.finetune.fixmatch_batch_size = 16
  c.finetune.fixmatch_unlabeled_ratio = 7
  c.finetune.fixmatch_threshold = 0.95
  c.finetune.fixmatch_weight = 1.0
  c.finetune.fixmatch_align = False
  c.finetune.fixmatch_flex = False
  # the decay of the weights' moving average a FixMatch fit evaluates and returns (0: the last
  # weights; the paper's code: 0.999)
  c.finetune.fixmatch_ema = 0.0
  # the image strong view's strength (STRONG_IMAGES above says what each key does)
  c.finetune.strong = ml_collections.ConfigDict(STRONG_IMAGES)
  # FixMatch's start: this many pool images per class, those label propagation on the starting
  # encoder's features is surest of, join the labels with their propagated labels (0: off)
  c.finetune.fixmatch_labelprop = 0
  # finetune.mode=contrastive and the *_contrastive methods (SetFit's recipe,
  # finetune/contrastive.py):
  # the contrastive stage's steps (at least contrastive_epochs passes over the labels), batch and
  # AdamW rate; its head: logistic regression at C = contrastive_head_c on L2-normalised features
  c.finetune.contrastive_steps = 100
  c.finetune.contrastive_epochs = 0.0
  c.finetune.contrastive_batch_size = 16
  c.finetune.contrastive_learning_rate = 2e-5
  c.finetune.contrastive_head_c = 1.0  # scikit-learn's default, SetFit's head
  # ssl_labelprop and FixMatch's start (finetune/labelprop.py): kNN graph size, spreading alpha
  # (chosen on the validation digits at 1 label per class, experiments/README.md)
  c.finetune.labelprop_neighbors = 50
  c.finetune.labelprop_alpha = 0.7
  c.finetune.probe_steps = 300  # linear: full-batch Adam steps of the head on frozen features
  c.finetune.probe_learning_rate = 0.05
  c.finetune.probe_weight_decay = 1e-4  # linear: L2 penalty on the head's kernel
  c.finetune.kfold = 3  # CV folds on the labelled set (< 2, or a class with fewer labels: no CV)
  # CV also for a one-point grid: a CV estimate and an early-stopping step, at k more fits each
  c.finetune.cv_single_point = False
  c.finetune.eval_every = 25  # steps between validation-fold evaluations (early stopping)
  c.finetune.patience = 0  # stop after this many evaluations below the best (0: run to the end)
  # settings of one study method: {method: {finetune key: value}}, dotted keys for the grids, e.g.
  # {'supervised_scratch': {'grid.full.learning_rate': (1e-3, 3e-3)}}: a model from random weights
  # wants other rates than a pre-trained one (study/methods.py)
  c.finetune.per_method = ml_collections.ConfigDict()
  # the study's settings per budget: {labels per class as a string, or 'all': {finetune key:
  # value}}, e.g. {'10': {'fixmatch_steps': 4000}}; a method's per_method settings go over them.
  # They reach what the study chooses per budget (hyperparameters, grids, CV, schedules); what a
  # method reads once when built (augment, lora_regex, eval_every, patience) is per_method only
  c.finetune.per_budget = ml_collections.ConfigDict()
  # per-mode CV grids (keys: finetune/protocol.py:GRID_KEYS): () keeps the value above, one value
  # sets it for that mode alone, several are chosen between by the CV mean
  c.finetune.grid = ml_collections.ConfigDict(
      dict(
          # cheap: the head alone, on cached features
          linear=dict(
              probe_learning_rate=(),
              probe_weight_decay=(1e-4, 1e-3, 1e-2),
              label_smoothing=(0.0, 0.1),
          ),
          last_n=dict(
              learning_rate=(),
              weight_decay=(),
              label_smoothing=(),
              last_n=(),
              backbone_lr_multiplier=(),
          ),
          full=dict(learning_rate=(), weight_decay=(), label_smoothing=(), layer_decay=()),
          fixmatch=dict(
              learning_rate=(),
              weight_decay=(),
              label_smoothing=(),
              fixmatch_threshold=(),
              fixmatch_weight=(),
          ),
          contrastive=dict(learning_rate=(), weight_decay=(), contrastive_head_c=()),
          # cheap: no training; CV where every class has finetune.kfold labels
          labelprop=dict(labelprop_neighbors=(50, 20, 10), labelprop_alpha=(0.7, 0.9)),
          # adapters starting at zero need a larger step than full fine-tuning
          # (experiments/README.md)
          lora=dict(
              learning_rate=(1e-2,),
              weight_decay=(),
              label_smoothing=(),
              lora_rank=(),
              lora_alpha=(),
          ),
      )
  )
  return c
