"""The study's methods by name, for every modality.

A name is a starting point and a way to fit it (finetune/):
  ssl_linear_probe   linear    a head on the frozen pre-trained encoder's features
  ssl_finetune       full      the pre-trained encoder and a head, all trained
  ssl_finetune_last  last_n    its last `finetune.last_n` layer units and the head; the rest frozen
  ssl_lora           lora      low-rank adapters on the frozen pre-trained encoder, and the head
  ssl_distill        distill   SimCLRv2's third step: ssl_finetune's fit of the draw teaches a
                               student (from the pre-trained encoder) on every training example
  ssl_fixmatch       fixmatch  FixMatch from the pre-trained encoder: the labels and pseudo-labels
                               on every training example, trained together
  ssl_labelprop      labelprop label propagation over a kNN graph of the frozen features of the
                               labelled and every training example
  ssl_svm            svm       TS2Vec's protocol: an RBF SVM on the frozen features
  ssl_contrastive    contrastive  SetFit's recipe (finetune/contrastive.py): the encoder tuned on
                               pairs of the labelled examples, then a logistic-regression head
  supervised_scratch full      the same architecture from random weights, on the labels only
  scratch_distill    distill   ssl_distill from supervised_scratch's fit, the student from random
                               weights: self-training without pre-training, its control
  scratch_fixmatch   fixmatch  ssl_fixmatch from random weights, its control
  generic_probe      linear    a head on a generic pretrained model's features
                               (config.generic_model)
  generic_finetune   full      that generic model fine-tuned
  generic_contrastive  contrastive  the generic model tuned as ssl_contrastive
  tapt_probe / tapt_finetune / tapt_lora / tapt_contrastive   the generic model after TAPT (text)
  bag_of_embeddings  full      fastText's model (models/bag.py) from random weights (text)
and the classical baselines, which read the raw inputs (study/baselines.py): pixels_logreg,
tfidf_logreg, raw_logreg, nn1_euclidean. A modality builds the starting points it has
(`Start`s named ssl, scratch, generic, tapt, bag) and the baselines it offers; `build` does the
rest. Each method reads `config.finetune` with its own `finetune.per_method.<name>` settings over
it (`settings_for`): a model from random weights wants other rates than a pre-trained one. The
study's hyperparameters for a budget also take `finetune.per_budget.<labels per class>`'s settings
(under the method's own): more labels may want a longer schedule.
"""

import dataclasses
from typing import Any, Callable

import ml_collections

from ssl_jax import config as config_lib
from ssl_jax.finetune import fitting
from ssl_jax.finetune import layers

# name: (starting point, mode)
ENCODER_METHODS = {
    "ssl_linear_probe": ("ssl", "linear"),
    "ssl_finetune": ("ssl", "full"),
    "ssl_finetune_last": ("ssl", "last_n"),
    "ssl_lora": ("ssl", "lora"),
    "ssl_distill": ("ssl", "distill"),
    "ssl_fixmatch": ("ssl", "fixmatch"),
    "ssl_labelprop": ("ssl", "labelprop"),
    "ssl_svm": ("ssl", "svm"),
    "ssl_contrastive": ("ssl", "contrastive"),
    "supervised_scratch": ("scratch", "full"),
    "scratch_distill": ("scratch", "distill"),
    "scratch_fixmatch": ("scratch", "fixmatch"),
    "generic_probe": ("generic", "linear"),
    "generic_finetune": ("generic", "full"),
    "generic_contrastive": ("generic", "contrastive"),
    "tapt_probe": ("tapt", "linear"),
    "tapt_finetune": ("tapt", "full"),
    "tapt_lora": ("tapt", "lora"),
    "tapt_contrastive": ("tapt", "contrastive"),
    "bag_of_embeddings": ("bag", "full"),
}
BASELINES = ("pixels_logreg", "tfidf_logreg", "raw_logreg", "nn1_euclidean")
TEACHERS = {"ssl_distill": "ssl_finetune", "scratch_distill": "supervised_scratch"}


@dataclasses.dataclass
class Start:
  """A starting point: a classifier (finetune/model.py) on an encoder, the encoder's variables
  ({collection: tree}; None: random weights), the inputs it reads and its frozen features."""

  model: Any
  init: Any
  train_inputs: Any
  test_inputs: Any
  features: Callable = None  # raw inputs -> (N, D) features of `init` (the frozen methods')


def budget_key(budget):
  """The `finetune.per_budget` key of a budget: '10' for 10 labels per class, 'all' for every
  label (study/loop.py:ALL_LABELS, -1)."""
  return "all" if budget == -1 else str(int(budget))


def settings_for(name, finetune, budget=None):
  """`finetune` (config.finetune) with `finetune.per_budget.<budget>`'s settings over it when a
  budget is given, then `finetune.per_method.<name>`'s over those (the method's own win)."""
  changes = {}
  if budget is not None:
    changes.update(_settings(finetune, "per_budget", budget_key(budget)))
  changes.update(_settings(finetune, "per_method", name))
  return config_lib.derive(finetune, changes) if changes else finetune


def _settings(finetune, where, entry):
  """{dotted finetune key: value} of `finetune.<where>.<entry>` ({} without it), each key
  checked against `finetune`."""
  settings = finetune[where].get(entry)
  if not settings:
    return {}
  changes = {}

  def walk(node, prefix):
    for key, value in node.items():
      if isinstance(value, (dict, ml_collections.ConfigDict)):
        walk(value, f"{prefix}{key}.")
      else:
        changes[f"{prefix}{key}"] = value

  walk(settings, "")
  for key in changes:
    top = key.split(".")[0]
    if top in ("per_method", "per_budget"):
      raise KeyError(f"config.finetune.{where}.{entry}.{key}: settings cannot hold {top}")
    try:
      config_lib.get(finetune, key)
    except KeyError:
      raise KeyError(
          f"config.finetune.{where}.{entry}.{key}: finetune has no key {key!r} "
          f"({config_lib.unknown_key(key, finetune).args[0]})"
      ) from None
  return changes


def check_per_budget(finetune):
  """Fails before any work on a `finetune.per_budget` key that names no budget, or a setting
  finetune does not have."""
  for key in finetune.per_budget:
    if key != "all" and not (str(key).isdigit() and int(key) >= 1):
      raise ValueError(
          f"config.finetune.per_budget has the key {key!r}; accepted: a count of labels per "
          "class as a string ('10'), or 'all' for every label"
      )
    _settings(finetune, "per_budget", key)


def check(names, accepted, modality, per_method=()):
  """Fails before any work on a name `accepted` lacks, or a distillation without its teacher."""
  unknown = sorted(set(names) - set(accepted))
  if unknown:
    raise ValueError(
        f"label_efficiency.methods has {unknown}; the {modality} study's methods: "
        f"{list(accepted)}"
    )
  stray = sorted(set(per_method) - set(accepted))  # a typo; a method not run now is fine
  if stray:
    raise ValueError(
        f"config.finetune.per_method has settings for {stray}, which the {modality} study "
        f"does not have; its methods: {list(accepted)}"
    )
  for name, teacher in TEACHERS.items():
    if name in names and teacher not in names:
      raise ValueError(
          f"label_efficiency.methods has {name}, which distils {teacher}'s fit of "
          f"each draw; add {teacher!r} to the methods"
      )


def build(names, starts, baselines, finetune_config, *, num_classes, mesh, pad_to):
  """{name: (method, train inputs, test inputs)} in the order of `names`.

  starts: {'ssl' | 'scratch' | 'generic' | 'tapt': Start}; baselines: {name: the built triple}."""
  built, computed = {}, {}

  def features(where, inputs):  # once per start and split: probe and propagation share them
    if (where, id(inputs)) not in computed:
      computed[where, id(inputs)] = starts[where].features(inputs)
    return computed[where, id(inputs)]

  for name in names:
    if name in BASELINES:
      built[name] = baselines[name]
      continue
    where, mode = ENCODER_METHODS[name]
    start, ft = starts[where], settings_for(name, finetune_config)
    size = layers.count(start.init["params"]) if start.init else 0
    if mode == "linear":
      method = fitting.LinearMethod(num_classes, mesh, ft, pad_to=pad_to, encoder_params=size)
      method.init = start.init  # the frozen encoder under the head (a kept classifier needs it)
      built[name] = (
          method,
          features(where, start.train_inputs),
          features(where, start.test_inputs),
      )
    elif mode in ("labelprop", "svm"):
      from ssl_jax.finetune import labelprop  # pylint: disable=g-import-not-at-top
      from ssl_jax.study import baselines as baselines_lib  # pylint: disable=g-import-not-at-top

      train_features = features(where, start.train_inputs)
      method = (
          labelprop.LabelPropMethod(train_features, encoder_params=size)
          if mode == "labelprop"
          else baselines_lib.SvmProtocol(num_classes, encoder_params=size)
      )
      built[name] = (method, train_features, features(where, start.test_inputs))
    elif mode == "distill":
      student = fitting.EncoderMethod(start.model, "full", ft, init=start.init)
      built[name] = (
          fitting.DistillMethod(student, TEACHERS[name], start.train_inputs),
          start.train_inputs,
          start.test_inputs,
      )
    elif mode == "contrastive":
      from ssl_jax.finetune import contrastive  # pylint: disable=g-import-not-at-top

      built[name] = (
          contrastive.ContrastiveMethod(start.model, ft, init=start.init, pad_to=pad_to),
          start.train_inputs,
          start.test_inputs,
      )
    elif mode == "fixmatch":
      built[name] = (
          fitting.FixMatchMethod(start.model, ft, start.train_inputs, init=start.init),
          start.train_inputs,
          start.test_inputs,
      )
    else:
      built[name] = (
          fitting.EncoderMethod(start.model, mode, ft, init=start.init),
          start.train_inputs,
          start.test_inputs,
      )
  return built
