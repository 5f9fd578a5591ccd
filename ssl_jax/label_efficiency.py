"""Label-efficiency study: accuracy against labels per class, SSL encoder versus baselines.

For each labels-per-class budget and each of `num_draws` seeded label draws, every method in
`label_efficiency.methods` is fitted on the drawn labels by ssl_jax/finetune in its mode and
scored on the test split:
  ssl_linear_probe   linear  a head on the frozen pre-trained encoder's features
  ssl_finetune       full    the pre-trained encoder and a head, all trained
  ssl_finetune_last  last_n  its last `finetune.last_n` layer units and the head; the rest frozen
  ssl_lora           lora    low-rank adapters on the frozen pre-trained encoder, and the head
  supervised_scratch full    the same architecture from random weights, on the labels only
  pixels_logreg      linear  a head on raw pixels
  generic_probe      linear  a head on a generic pretrained model's features (config.generic_model)
  generic_finetune   full    that generic model fine-tuned
  ssl_distill        distill SimCLRv2's third step: ssl_finetune's fit of the draw is the teacher
                             of a student (from the pre-trained encoder) trained on every training
                             image against the teacher's probabilities (finetune/protocol.py)
  scratch_distill    distill the same from supervised_scratch's fit, the student from random
                             weights: self-training without pre-training, the control that says
                             how much of ssl_distill's gain needs the pre-training
  ssl_fixmatch       fixmatch FixMatch (finetune/fixmatch.py) from the pre-trained encoder: the
                             labels and pseudo-labels on every training image, trained together
  scratch_fixmatch   fixmatch the same from random weights, its control
Hyperparameters: for each method and budget, k-fold CV on draw 0's labels picks a point of the
method's grid (`finetune.grid.<mode>`), and every draw of the budget uses it; a one-point grid
(unless `finetune.cv_single_point`) or a budget with fewer than `finetune.kfold` labels per class
uses the grid's first point without CV (finetune/protocol.py); a distilling method takes its
teacher's. Test labels only score.
Writes DIR/results.json (a row per method and budget) and DIR/label_efficiency.png; prints the table.
"""
import json
import os
import time

import numpy as np

from ssl_jax import models
from ssl_jax.data import sources
from ssl_jax.finetune import inputs as inputs_lib
from ssl_jax.finetune import layers
from ssl_jax.finetune import model as model_lib
from ssl_jax.finetune import protocol
from ssl_jax.models import conv as conv_lib

METHODS = ("ssl_linear_probe", "supervised_scratch", "ssl_finetune", "pixels_logreg")  # the default
MODES = {"ssl_linear_probe": "linear", "ssl_finetune": "full", "ssl_finetune_last": "last_n",
         "ssl_lora": "lora", "supervised_scratch": "full", "pixels_logreg": "linear",
         "generic_probe": "linear", "generic_finetune": "full", "ssl_distill": "distill",
         "scratch_distill": "distill", "ssl_fixmatch": "fixmatch", "scratch_fixmatch": "fixmatch"}
TEACHERS = {"ssl_distill": "ssl_finetune", "scratch_distill": "supervised_scratch"}
NEEDS_PRETRAINED = ("ssl_linear_probe", "ssl_finetune", "ssl_finetune_last", "ssl_lora",
                    "ssl_distill", "ssl_fixmatch")
IN_MEMORY_BYTES = 2**30  # decoded splits above this stream from their source


def draw_subset(labels, per_class, seed):
  """`per_class` indices of each class, drawn without replacement, deterministic in `seed`."""
  rng = np.random.default_rng(seed)
  picked = []
  for c in np.unique(labels[labels >= 0]):
    members = np.flatnonzero(labels == c)
    if len(members) < per_class:
      raise ValueError(f"class {c} has {len(members)} labelled examples; cannot draw {per_class}")
    picked.append(rng.choice(members, per_class, replace=False))
  return np.sort(np.concatenate(picked))


def check_methods(config):
  study = config.label_efficiency
  unknown = sorted(set(study.methods) - set(MODES))
  if unknown:
    raise ValueError(f"label_efficiency.methods has {unknown}; accepted: {list(MODES)}")
  for name, teacher in TEACHERS.items():
    if name in study.methods and teacher not in study.methods:
      raise ValueError(f"label_efficiency.methods has {name}, which distils {teacher}'s fit of "
                       f"each draw; add {teacher!r} to the methods")
  generic = [m for m in study.methods if m.startswith("generic_")]
  if generic and not config.generic_model:
    raise ValueError(f"label_efficiency.methods has {generic}, which need config.generic_model "
                     "(a vision checkpoint directory or Hugging Face Hub name)")
  if generic:
    raise ValueError(f"label_efficiency.methods has {generic}: the image study's generic "
                     "baseline needs a vision checkpoint, and ssl_jax loads none since "
                     "transformers 5 removed the Flax models it used (ssl_jax/generic_models.py); "
                     "the text study's generic_* methods take BERT-family checkpoints")


def build_methods(config, features_of, train_images, test_images, mesh, pretrained_encoder):
  """{name: (method, train inputs, test inputs)}: features for `linear` methods, raw inputs else."""
  study, ft = config.label_efficiency, config.finetune
  names = list(study.methods)
  missing = [m for m in names if m in NEEDS_PRETRAINED and pretrained_encoder is None]
  if missing:
    raise ValueError(f"label_efficiency methods {missing} need the pre-trained encoder's variables")
  num_classes = config.data.num_classes
  pad_to = max(study.labels_per_class) * num_classes
  linear = lambda encoder_params: protocol.LinearMethod(num_classes, mesh, ft, pad_to=pad_to,
                                                        encoder_params=encoder_params)
  inputs = inputs_lib.for_arrays(train_images, image_size=config.data.image_size,
                                 crop_scale=ft.crop_scale, flip_prob=config.augment.flip_prob,
                                 elastic=inputs_lib.elastic_of(config))
  classifier = lambda encoder: model_lib.Model(
      encoder, num_classes=num_classes, mesh=mesh, inputs=inputs, example=train_images,
      eval_batch_size=config.data.eval_batch_size, layer_regex=ft.layer_regex,
      compiler_options=conv_lib.compiler_options(config.model.cpu_conv_library))
  ssl_model = generic = generic_model = None
  if any(MODES[m] != "linear" and not m.startswith("generic_") for m in names):
    ssl_model = classifier(models.build_encoder(config.model, image_size=config.data.image_size))
  if any(m.startswith("generic_") for m in names):
    from ssl_jax import generic_models  # pylint: disable=g-import-not-at-top
    generic = generic_models.load(config.generic_model)
    generic_model = classifier(generic.encoder)
  encoder_size = layers.count(pretrained_encoder["params"]) if pretrained_encoder else 0
  built = {}
  for name in names:
    if name == "ssl_linear_probe":
      built[name] = (linear(encoder_size), features_of(train_images), features_of(test_images))
    elif name == "pixels_logreg":
      flat = lambda x: np.asarray(x).reshape(len(x), -1).astype(np.float32) / 255.0
      built[name] = (linear(0), flat(train_images), flat(test_images))
    elif name == "generic_probe":
      built[name] = (linear(layers.count(generic.variables["params"])),
                     generic_model.features(generic.variables, train_images),
                     generic_model.features(generic.variables, test_images))
    elif name == "generic_finetune":
      built[name] = (protocol.EncoderMethod(generic_model, "full", ft, init=generic.variables),
                     train_images, test_images)
    elif MODES[name] == "fixmatch":
      init = None if name == "scratch_fixmatch" else pretrained_encoder
      built[name] = (protocol.FixMatchMethod(ssl_model, ft, train_images, init=init), train_images,
                     test_images)
    elif name in TEACHERS:
      init = None if name == "scratch_distill" else pretrained_encoder
      student = protocol.EncoderMethod(ssl_model, "full", ft, init=init)
      built[name] = (protocol.DistillMethod(student, TEACHERS[name], train_images), train_images,
                     test_images)
    else:
      init = None if name == "supervised_scratch" else pretrained_encoder
      built[name] = (protocol.EncoderMethod(ssl_model, MODES[name], ft, init=init), train_images,
                     test_images)
  return built


def run(config, features_of, train_source, test_source, batch_sharding, pretrained_encoder=None):
  """`pretrained_encoder`: {collection: the encoder's subtree} of the pre-trained model.

  Splits larger than IN_MEMORY_BYTES decoded stay on disk (sources.LazyImages): features, test
  scores and the labelled subsets are read batch by batch, so memory does not grow with the split
  (pixels_logreg alone needs the pixels in memory)."""
  check_methods(config)
  train_images, train_labels = sources.eval_arrays(train_source, IN_MEMORY_BYTES)
  test_images, test_labels = sources.eval_arrays(test_source, IN_MEMORY_BYTES)
  built = build_methods(config, features_of, train_images, test_images, batch_sharding.mesh,
                        pretrained_encoder)
  return run_methods(config, built, train_labels, test_labels)


def run_methods(config, built, train_labels, test_labels):
  """The rows of `built` = {name: (method, train inputs, test inputs)} (any inputs that index by
  row: arrays, sparse matrices) over the budgets and draws of `config.label_efficiency`."""
  study = config.label_efficiency
  # teachers before the methods that distil them; rows stay in `built`'s order
  order = sorted(built, key=lambda name: hasattr(built[name][0], "teacher"))
  rows = []
  for per_class in study.labels_per_class:
    scores = {m: [] for m in built}
    seconds = {m: [] for m in built}
    chosen = {}
    for draw in range(study.num_draws):
      seed = config.seed * 1_000_003 + per_class * 1009 + draw
      subset = draw_subset(train_labels, per_class, seed)
      labels = train_labels[subset]
      decoded = {}  # methods that share lazily read images decode the drawn ones once per draw
      fits = {}  # this draw's fits, for the methods that distil them
      for name in order:
        method, train_x, test_x = built[name]
        drawn = train_x[subset]
        if isinstance(drawn, sources.LazyImages):
          if id(train_x) not in decoded:
            decoded[id(train_x)] = np.asarray(drawn)
          drawn = decoded[id(train_x)]
        teacher = getattr(method, "teacher", None)
        if draw == 0 and teacher:  # the teacher's hyperparameters, no CV of its own
          chosen[name] = (method.hyperparameters(chosen[teacher][0]), None, 0.0)
        elif draw == 0:  # hyperparameters for this budget, from draw 0's labels only
          started = time.time()
          log = lambda line, n=name: print(f"{n}: {line}", flush=True)
          hp, best, _ = protocol.select(method, drawn, labels, finetune_config=config.finetune,
                                        seed=seed, log=log)
          chosen[name] = (hp, best, time.time() - started)
        started = time.time()
        extra = dict(teacher_fit=fits[teacher], subset=subset) if teacher else {}
        fits[name] = method.fit(chosen[name][0], drawn, labels, seed=seed, **extra)
        scores[name].append(method.score(fits[name], test_x, test_labels))
        seconds[name].append(time.time() - started)
    for name, (method, _, _) in built.items():
      rows.append(_row(name, method, per_class, scores[name], seconds[name], *chosen[name]))
      r = rows[-1]
      print(f"labels/class {per_class:4d}  {name:20s} {r['accuracy_mean']:.4f} +- "
            f"{r['accuracy_std']:.4f}  trains {r['trainable_params']:,} of {r['total_params']:,} "
            f"params  {r['seconds_per_draw']:.1f} s/draw", flush=True)
  return rows


def _row(name, method, per_class, scores, seconds, hp, best, cv_seconds):
  acc = np.asarray(scores)
  trainable, total = method.counts(hp)
  row = {"labels_per_class": int(per_class), "method": name, "accuracy_mean": float(acc.mean()),
         "accuracy_std": float(acc.std()), "n_draws": len(acc), "accuracies": acc.tolist(),
         "mode": method.mode, "trainable_params": int(trainable), "total_params": int(total),
         "hyperparameters": protocol.reported(method.mode, hp),
         "seconds_per_draw": float(np.mean(seconds))}
  if best is not None:
    row.update(cv_accuracy_mean=best["mean"], cv_accuracy_std=best["std"],
               cv_folds=len(best["fold_accuracies"]), cv_seconds=float(cv_seconds))
  return row


def write(workdir, rows, extra, title=None):
  """DIR/results.json and DIR/label_efficiency.png (titled `title`); prints the table."""
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump({"label_efficiency": rows, **extra}, f, indent=2)
  print(format_table(rows), flush=True)
  plot(rows, os.path.join(workdir, "label_efficiency.png"), title=title)


def title_of(config):
  """'<data> (<n> classes): <task> pre-training, <encoder>' for the plot."""
  encoder = config.model.name + (f"-{config.model.depth}" if config.model.name == "resnet" else
                                 f"-{config.model.variant}" if config.model.name == "vit" else "")
  return f"{config.data.source}: {config.task} pre-training ({encoder})"


def format_table(rows):
  methods = list(dict.fromkeys(r["method"] for r in rows))
  budgets = sorted({r["labels_per_class"] for r in rows})
  cell = {(r["labels_per_class"], r["method"]): r for r in rows}
  lines = ["labels/class | " + " | ".join(f"{m:>22s}" for m in methods)]
  for b in budgets:
    parts = [f"{100 * cell[b, m]['accuracy_mean']:6.2f} +- {100 * cell[b, m]['accuracy_std']:5.2f} %"
             for m in methods]
    lines.append(f"{b:12d} | " + " | ".join(f"{p:>22s}" for p in parts))
  if all("trainable_params" in cell[budgets[-1], m] for m in methods):
    lines.append("   trainable | " + " | ".join(
        f"{cell[budgets[-1], m]['trainable_params']:>22,d}" for m in methods))
  return "\n".join(lines)


def plot(rows, path, title=None):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  for method in dict.fromkeys(r["method"] for r in rows):
    mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["labels_per_class"])
    ax.errorbar([r["labels_per_class"] for r in mine], [100 * r["accuracy_mean"] for r in mine],
                yerr=[100 * r["accuracy_std"] for r in mine], marker="o", capsize=3, label=method)
  budgets = sorted({r["labels_per_class"] for r in rows})
  ax.set_xscale("log")
  ax.set_xticks(budgets, [str(b) for b in budgets])  # the budgets, not powers of ten
  ax.minorticks_off()
  ax.set_xlabel("labels per class")
  if title:
    ax.set_title(title, fontsize=9)
  ax.set_ylabel("test accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
