"""One fine-tuning mode's jitted, mesh-sharded train step, and the loop that runs it.

Modes that train encoder weights (`linear` fits a head on cached features: `linear.py`):
  last_n  the last `last_n` layer units of the encoder and the head train, the units at
          lr * backbone_lr_multiplier; the rest is frozen
  full    everything trains; unit i of L at lr * layer_decay ** (L - 1 - i) (1.0: no decay)
  lora    rank-`lora_rank` adapters on the kernels `lora_regex` selects, and the head; the base
          is frozen and the encoder runs in inference mode (BatchNorm statistics kept)
Frozen parameters are outside the gradient and the optimiser, so they stay bit-identical.
`full` and `last_n` run the encoder in training mode (batch statistics, dropout).

Targets (losses in objectives.py): integer labels (label-smoothed cross-entropy), or a teacher's
(N, classes) probabilities for distillation (`distillation_loss`, fitting.DistillMethod).
Optimiser: AdamW (decoupled weight decay, none on biases, norms and embeddings) with a cosine
learning rate over `steps`; the learning rate, weight decay, label smoothing, layer decay and
backbone multiplier are traced inputs, so one compiled step serves a whole hyperparameter grid;
only `last_n` and `lora_rank` (they change which arrays train) compile a new step.
The state is sharded by `sharding.param_sharding` (FSDP over 'fsdp' for large arrays), batches
over `sharding.BATCH_AXES`, as in pre-training.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax import sharding as sharding_lib
from ssl_jax.finetune import layers
from ssl_jax.finetune import lora
from ssl_jax.finetune import objectives

TRACED = (
    "learning_rate",
    "weight_decay",
    "label_smoothing",
    "steps",
    "backbone_lr_multiplier",
    "layer_decay",
    "distill_temperature",
)
ENCODER_MODES = ("last_n", "full", "lora")
ADAPTER_SUFFIXES = ("/lora_a", "/lora_b")


@dataclasses.dataclass
class Fit:
  variables: Any  # the fine-tuned classifier {collection: tree}, adapters merged
  adapters: Any  # LoRA's A and B ({} for other modes)
  steps_run: int
  best_step: int  # the step of the best validation accuracy (steps_run without validation)
  val_accuracy: float  # nan without validation
  history: list


class Finetuner:
  """The train step of `mode` for `model` (finetune.model.Model); compiled once, reused by fits."""

  traced = TRACED  # the hyperparameters the compiled step takes as inputs

  def __init__(
      self,
      model,
      mode,
      *,
      batch_size,
      last_n=1,
      lora_rank=4,
      lora_alpha=8.0,
      lora_regex="",
      augment=True,
  ):
    if mode not in ENCODER_MODES:
      raise ValueError(
          f"finetune mode {mode!r}; accepted: {ENCODER_MODES} (and 'linear', which "
          "fits a head on features: finetune/linear.py)"
      )
    if batch_size % model.mesh.size:
      raise ValueError(
          f"finetune.batch_size={batch_size} does not divide over {model.mesh.size} "
          f"devices; use a multiple of {model.mesh.size}"
      )
    self.model, self.mode, self.batch_size, self.augment = model, mode, batch_size, augment
    self.lora_alpha = lora_alpha
    paths = list(model.param_shapes)
    head = [p for p in paths if not p.startswith("encoder/")]
    unit_paths = [ps for _, ps in model.units]
    depth = layers.encoder_depths(model.units)
    self.lora_targets, self.depth = [], {}
    if mode == "full":
      trainable = paths
      self.depth = {p: depth.get(p, -1) for p in paths}  # -1: the head, at the full rate
    elif mode == "last_n":
      if not 1 <= last_n <= len(unit_paths):
        raise ValueError(
            f"finetune.last_n={last_n}; the encoder has {len(unit_paths)} layer units "
            f"({[n for n, _ in model.units]}); accepted: 1..{len(unit_paths)}"
        )
      trainable = head + [p for ps in unit_paths[-last_n:] for p in ps]
    else:
      trainable = head
      self.lora_targets = lora.targets(model.param_shapes, lora_regex)
      self.lora_rank = lora_rank
    self.trainable_paths = set(trainable)
    self.decay = layers.decay_mask(paths)
    self.adam = optax.scale_by_adam()
    self.encoder_train = mode in ("full", "last_n")
    abstract = jax.eval_shape(self._initial_state, model.abstract, jax.random.PRNGKey(0))
    self.state_sharding = model.sharding(abstract)
    options = model.compiler_options
    self._initial = jax.jit(
        self._initial_state, out_shardings=self.state_sharding, compiler_options=options
    )
    self._step = jax.jit(
        self._step_fn,
        in_shardings=(self.state_sharding, model.batch_sharding, model.replicated),
        out_shardings=(self.state_sharding, model.replicated),
        donate_argnums=0,
        compiler_options=options,
    )
    self._export = jax.jit(self._export_fn, compiler_options=options)

  def _initial_state(self, variables, rng):
    flat = layers.flatten(variables["params"])
    trainable = {p: x for p, x in flat.items() if p in self.trainable_paths}
    frozen = {p: x for p, x in flat.items() if p not in self.trainable_paths}
    if self.mode == "lora":
      shapes = {p: x.shape for p, x in flat.items()}
      trainable.update(
          lora.init(jax.random.fold_in(rng, 7), shapes, self.lora_targets, self.lora_rank)
      )
    return {
        "step": jnp.zeros((), jnp.int32),
        "trainable": trainable,
        "frozen": frozen,
        "opt_state": self.adam.init(trainable),
        "model_state": {c: v for c, v in variables.items() if c != "params"},
        "rng": rng,
    }

  def init_state(self, variables, seed):
    """The sharded train state from classifier variables (Model.init) and a seed."""
    return self._initial(variables, jax.random.PRNGKey(seed))

  def _params(self, trainable, frozen):
    adapters = {p: x for p, x in trainable.items() if p.endswith(ADAPTER_SUFFIXES)}
    flat = {**frozen, **{p: x for p, x in trainable.items() if p not in adapters}}
    if adapters:
      flat = lora.merge(flat, adapters, self.lora_alpha)
    return layers.unflatten(flat)

  def _multiplier(self, path, hp):
    if self.mode == "full" and self.depth.get(path, -1) >= 0:
      return hp["layer_decay"] ** self.depth[path]
    if self.mode == "last_n" and path.startswith("encoder/"):
      return hp["backbone_lr_multiplier"]
    return 1.0

  def _apply(self, trainable, state, x, rng):
    """The classifier's logits for inputs `x` and its new model state (BatchNorm statistics)."""
    variables = {"params": self._params(trainable, state["frozen"]), **state["model_state"]}
    if self.encoder_train:
      logits, model_state = self.model.module.apply(
          variables,
          x,
          train=True,
          mutable=list(state["model_state"]),
          rngs={"dropout": jax.random.fold_in(rng, 1)},
      )
      return logits, dict(model_state)
    return self.model.module.apply(variables, x, train=False), state["model_state"]

  def _loss(self, trainable, state, batch, hp, rng):
    """-> (loss, (model state, the labelled examples' logits, extra metrics))."""
    inputs = self.model.inputs
    x = inputs.augment(rng, batch["x"]) if self.augment else inputs.preprocess(batch["x"])
    logits, model_state = self._apply(trainable, state, x, rng)
    if batch["y"].ndim == 2:  # (N, classes) probabilities: a teacher's, to distil
      loss = objectives.distillation_loss(logits, batch["y"], hp["distill_temperature"])
    else:
      loss = objectives.smoothed_cross_entropy(logits, batch["y"], hp["label_smoothing"])
    return loss, (model_state, logits, {})

  def _step_fn(self, state, batch, hp):
    rng = jax.random.fold_in(state["rng"], state["step"])
    grad_fn = jax.value_and_grad(self._loss, has_aux=True)
    (loss, (model_state, logits, extra)), grads = grad_fn(state["trainable"], state, batch, hp, rng)
    adam, opt_state = self.adam.update(grads, state["opt_state"])
    progress = jnp.minimum(state["step"] / hp["steps"], 1.0)
    lr = hp["learning_rate"] * 0.5 * (1 + jnp.cos(math.pi * progress))
    trainable = {}
    for p, w in state["trainable"].items():
      decay = hp["weight_decay"] * float(self.decay.get(p, True))  # adapters decay
      trainable[p] = w - lr * self._multiplier(p, hp) * (adam[p] + decay * w)
    hard = batch["y"] if batch["y"].ndim == 1 else jnp.argmax(batch["y"], -1)
    metrics = {
        "loss": loss,
        "train_accuracy": jnp.mean(jnp.argmax(logits, -1) == hard),
        "learning_rate": lr,
        **extra,
    }
    return {
        **state,
        "step": state["step"] + 1,
        "trainable": trainable,
        "opt_state": opt_state,
        "model_state": model_state,
    }, metrics

  def _draw(self, sampler, x, y):
    """One step's host batch: `batch_size` labelled examples drawn with replacement."""
    idx = sampler.integers(0, len(x), self.batch_size)
    return {"x": x[idx], "y": y[idx]}

  def _export_fn(self, state):
    return {"params": self._params(state["trainable"], state["frozen"]), **state["model_state"]}

  def adapters(self, state):
    return {p: x for p, x in state["trainable"].items() if p.endswith(ADAPTER_SUFFIXES)}

  def num_adapter_params(self):
    if not self.lora_targets:
      return 0
    return lora.num_params(self.model.param_shapes, self.lora_targets, self.lora_rank)

  def trainable_params(self):
    """Parameters the optimiser updates: the trained model weights, LoRA's adapters, the head."""
    return int(
        sum(math.prod(self.model.param_shapes[p]) for p in self.trainable_paths)
        + self.num_adapter_params()
    )

  def fit(
      self,
      variables,
      x,
      y,
      *,
      hp,
      seed,
      stop_at=None,
      val=None,
      eval_every=25,
      patience=0,
      log_every=0,
  ):
    """Trains from classifier `variables` on (x, y); returns a `Fit`. y: integer labels (N,), or
    a teacher's probabilities (N, classes) to distil (`objectives.distillation_loss`).

    hp: the TRACED values; `steps` sets the cosine schedule's length, `stop_at` (<= steps) ends
    training early on that schedule. With `val` = (x, y) the validation accuracy is measured every
    `eval_every` steps; the best is kept (ties go to the later step) and, with `patience` > 0,
    training stops after `patience` evaluations in a row below the best.
    """
    steps = int(hp["steps"])
    if steps < 1:
      raise ValueError(f"finetune.steps={steps}: fine-tuning needs at least one step")
    stop_at = min(int(stop_at or steps), steps)
    state = self.init_state(variables, seed)
    hp_arrays = jax.device_put({k: np.float32(hp[k]) for k in self.traced}, self.model.replicated)
    sampler = np.random.default_rng(seed)
    best, below, history, step = (float("nan"), stop_at), 0, [], 0
    for step in range(1, stop_at + 1):
      batch = sharding_lib.from_host_copies(self._draw(sampler, x, y), self.model.batch_sharding)
      state, metrics = self._step(state, batch, hp_arrays)
      last = step == stop_at
      if log_every and (step % log_every == 0 or last):
        history.append({"step": step, **{k: float(v) for k, v in metrics.items()}})
      if val is not None and (step % eval_every == 0 or last):
        accuracy = self.model.accuracy(self._export(state), *val)
        if history and history[-1]["step"] == step:
          history[-1]["val_accuracy"] = accuracy
        if not accuracy < best[0]:  # also true for the first (nan)
          best, below = (accuracy, step), 0
        else:
          below += 1
          if patience and below >= patience:
            break
    if not math.isfinite(float(metrics["loss"])):
      raise FloatingPointError(
          f"fine-tuning ({self.mode}) reached a non-finite loss at step "
          f"{step}; lower finetune.learning_rate (now {hp['learning_rate']})"
      )
    return Fit(
        self._export(state),
        jax.device_get(self.adapters(state)),
        step,
        best[1] if val is not None else step,
        best[0],
        history,
    )
