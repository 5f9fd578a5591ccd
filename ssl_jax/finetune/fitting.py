"""The methods the protocol (protocol.py) selects hyperparameters for, fits and scores.

Each has `mode`, `fit(hp, x, y, *, seed, val=None, log_every=0) -> step.Fit`, `score(fitted, x,
y)` and `counts(hp)` -> (trainable, total parameters) (study/loop.py's contract):
  EncoderMethod   an encoder mode (last_n, full, lora: step.py) from given or random weights
  DistillMethod   SimCLRv2's distillation of another method's classifier into a student
  FixMatchMethod  FixMatch (fixmatch.py), optionally with label propagation's surest labels
  LinearMethod    a head on features the caller computed (linear.py)
"""

import numpy as np

from ssl_jax.finetune import linear
from ssl_jax.finetune import protocol
from ssl_jax.finetune import step as step_lib


class EncoderMethod:
  """Trains `model` (finetune.model.Model) in `mode` from `init` ({collection: encoder subtree})
  or, with `init=None`, from random weights (the from-scratch baseline)."""

  def __init__(self, model, mode, finetune_config, init=None):
    self.model, self.mode, self.config, self.init = model, mode, finetune_config, init

  def finetuner(self, hp):
    settings = dict(batch_size=int(hp["batch_size"]), augment=bool(self.config.augment))
    if self.mode == "last_n":
      settings.update(last_n=int(hp["last_n"]))
    if self.mode == "lora":
      settings.update(
          lora_rank=int(hp["lora_rank"]),
          lora_alpha=float(hp["lora_alpha"]),
          lora_regex=self.config.lora_regex,
      )
    key = (self.mode,) + tuple(sorted(settings.items()))
    if key not in self.model.finetuners:
      self.model.finetuners[key] = step_lib.Finetuner(self.model, self.mode, **settings)
    return self.model.finetuners[key]

  def fit(self, hp, x, y, *, seed, val=None, log_every=0):
    hp = protocol.scheduled(hp, len(y))
    return self.finetuner(hp).fit(
        self.model.init(seed, self.init),
        x,
        y,
        hp=hp,
        seed=seed,
        stop_at=hp.get("stop_at"),
        val=val,
        eval_every=self.config.eval_every,
        patience=self.config.patience,
        log_every=log_every,
        **self.fit_inputs(),
    )

  def fit_inputs(self):
    """What the finetuner's fit takes beyond the labels (FixMatch: its unlabelled pool)."""
    return {}

  def score(self, fitted, x, y):
    return self.model.accuracy(fitted.variables, x, y)

  def counts(self, hp):
    finetuner = self.finetuner(hp)
    return finetuner.trainable_params(), self.model.num_params() + finetuner.num_adapter_params()


class DistillMethod:
  """SimCLRv2's third step (Chen et al. 2020b, "Big self-supervised models are strong
  semi-supervised learners", Sec. 2.3): a student trained on the unlabelled images against the
  predictions of a teacher, another method's classifier fitted on the labels.

  The pool is every training image (`pool`, labels unused); its targets are the teacher's
  probabilities at `distill_temperature`, except the labelled examples', which are their labels.
  The student (`student`: an EncoderMethod in `full` mode, from its own `init`) trains for
  `distill_steps` steps of `distill_batch_size` with the teacher's learning rate and weight decay
  and the same augmentation. `teacher` names the method whose fit it distils; that method has no
  CV of its own here, it takes the teacher's hyperparameters.
  """

  mode = "distill"

  def __init__(self, student, teacher, pool):
    self.student, self.teacher, self.pool = student, teacher, pool

  def hyperparameters(self, teacher_hp, finetune_config=None):
    """The teacher's hyperparameters with the student's schedule from `finetune_config` (the
    study's settings for this budget; None: the student's own config)."""
    ft = finetune_config or self.student.config
    return {
        **teacher_hp,
        "steps": int(ft.distill_steps),
        "batch_size": int(ft.distill_batch_size),
        "distill_steps": int(ft.distill_steps),
        "distill_batch_size": int(ft.distill_batch_size),
        "distill_temperature": float(ft.distill_temperature),
        "stop_at": None,
    }

  def targets(self, teacher_fit, subset, y, temperature):
    """(N, classes) targets over the pool: softmax(teacher logits / T), labels at `subset`."""
    logits = self.student.model.logits(teacher_fit.variables, self.pool).astype(np.float64)
    z = logits / temperature
    probs = np.exp(z - z.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    probs[subset] = np.eye(probs.shape[1])[y]
    return probs.astype(np.float32)

  def fit(self, hp, x, y, *, seed, teacher_fit, subset, val=None, log_every=0):
    """`teacher_fit`: the teacher's Fit on these labels (x, y), drawn at pool rows `subset`."""
    del x  # the labelled images are the pool's rows `subset`
    targets = self.targets(teacher_fit, subset, y, hp["distill_temperature"])
    return self.student.fit(hp, self.pool, targets, seed=seed, val=val, log_every=log_every)

  def score(self, fitted, x, y):
    return self.student.score(fitted, x, y)

  def counts(self, hp):
    return self.student.counts(hp)


class FixMatchMethod(EncoderMethod):
  """FixMatch (finetune/fixmatch.py) from `init` (None: random weights) on the drawn labels and
  every training image (`pool`, labels unused): `full` fine-tuning plus the pseudo-label term, for
  `steps` steps of `batch_size` labelled and `fixmatch_unlabeled_ratio` times as many pool images.
  Its grid is `finetune.grid.fixmatch`; with too few labels for CV it takes the grid's first point.
  """

  def __init__(self, model, finetune_config, pool, init=None):
    super().__init__(model, "fixmatch", finetune_config, init=init)
    self.pool = pool

  @staticmethod
  def defaults(finetune_config):
    """The `full` mode's settings, with FixMatch's own steps and labelled batch."""
    return {
        **protocol.defaults(finetune_config),
        "steps": int(finetune_config.fixmatch_steps),
        "batch_size": int(finetune_config.fixmatch_batch_size),
    }

  def finetuner(self, hp):
    from ssl_jax.finetune import fixmatch  # pylint: disable=g-import-not-at-top

    settings = dict(
        batch_size=int(hp["batch_size"]),
        unlabeled_ratio=int(hp["fixmatch_unlabeled_ratio"]),
        align=bool(hp["fixmatch_align"]),
        flex_pool=len(self.pool) if hp["fixmatch_flex"] else 0,
        ema=float(hp["fixmatch_ema"]),
    )
    key = (self.mode,) + tuple(sorted(settings.items()))
    if key not in self.model.finetuners:
      self.model.finetuners[key] = fixmatch.FixMatchFinetuner(self.model, **settings)
    return self.model.finetuners[key]

  def fit_inputs(self):
    return {"pool": self.pool}

  def fit(self, hp, x, y, *, seed, val=None, log_every=0):
    """EncoderMethod.fit, after `fixmatch_labelprop` > 0 adds that many pool images per class
    with the labels label propagation gives them on the starting encoder's features."""
    if int(hp["fixmatch_labelprop"]) > 0:
      x, y = self.propagated(hp, x, y, seed)
    return super().fit(hp, x, y, seed=seed, val=val, log_every=log_every)

  def propagated(self, hp, x, y, seed):
    """(x, y) and the pool rows label propagation is surest of (finetune/labelprop.py)."""
    from ssl_jax.finetune import labelprop  # pylint: disable=g-import-not-at-top

    start = self.model.init(seed, self.init)
    encoder = {k: v["encoder"] for k, v in start.items() if "encoder" in v}
    features = lambda images: self.model.features(encoder, images)
    spread = labelprop.spread(
        features(x),
        y,
        features(self.pool),
        neighbors=hp["labelprop_neighbors"],
        alpha=hp["labelprop_alpha"],
    )
    rows, labels = labelprop.confident(
        spread.label_distributions_[len(x) :], int(hp["fixmatch_labelprop"]), self.model.num_classes
    )
    return (
        np.concatenate([np.asarray(x), np.asarray(self.pool[rows])]),
        np.concatenate([np.asarray(y), labels.astype(np.asarray(y).dtype)]),
    )


class LinearMethod:
  """Fits a head on features (N, D) that the caller computed (frozen encoder, or pixels)."""

  mode = "linear"

  def __init__(self, num_classes, mesh, finetune_config, *, pad_to=None, encoder_params=0):
    self.num_classes, self.mesh, self.config = num_classes, mesh, finetune_config
    self.pad_to, self.encoder_params = pad_to, encoder_params
    self._dim = None

  def fit(self, hp, x, y, *, seed, val=None, log_every=0):
    del seed, log_every  # a deterministic full-batch fit
    self._dim = x.shape[1]
    head = linear.fit(
        x,
        y,
        num_classes=self.num_classes,
        mesh=self.mesh,
        learning_rate=hp["probe_learning_rate"],
        weight_decay=hp["probe_weight_decay"],
        label_smoothing=hp["label_smoothing"],
        steps=int(hp["probe_steps"]),
        pad_to=self.pad_to,
    )
    val_accuracy = linear.accuracy(head, *val) if val is not None else float("nan")
    return step_lib.Fit(
        {"params": {"head": head}},
        {},
        int(hp["probe_steps"]),
        int(hp["probe_steps"]),
        val_accuracy,
        [],
    )

  def score(self, fitted, x, y):
    return linear.accuracy(fitted.variables["params"]["head"], x, y)

  def counts(self, hp):
    del hp
    head = (self._dim + 1) * self.num_classes
    return head, head + self.encoder_params
