"""Images: pre-training with any image task (train.py), the study on the image splits.

Methods: the encoder methods of study/methods.py from the pre-trained encoder (ssl_*) and from
random weights (supervised_scratch, scratch_*), and `pixels_logreg`, the linear probe's head on
raw pixels. Training images take the modality's light augmentation (finetune/inputs.py: crops,
the config's flips and elastic distortion). The generic_* methods need a vision checkpoint that
ssl_jax can load, which it has none of since transformers 5 (ssl_jax/generic_models.py).
Splits larger than IN_MEMORY_BYTES decoded stay on disk (sources.LazyImages): features, test
scores and the labelled subsets are read batch by batch, so memory does not grow with the split
(pixels_logreg alone needs the pixels in memory).
"""

import numpy as np

from ssl_jax import models
from ssl_jax import train
from ssl_jax.data import sources
from ssl_jax.finetune import fitting
from ssl_jax.finetune import inputs as inputs_lib
from ssl_jax.finetune import model as model_lib
from ssl_jax.models import conv as conv_lib
from ssl_jax.modalities import common
from ssl_jax.study import methods as methods_lib

NAME = "image"
METHODS = (
    "ssl_linear_probe",
    "ssl_finetune",
    "ssl_finetune_last",
    "ssl_lora",
    "ssl_distill",
    "ssl_fixmatch",
    "ssl_labelprop",
    "ssl_contrastive",
    "supervised_scratch",
    "scratch_distill",
    "scratch_fixmatch",
    "pixels_logreg",
    "generic_probe",
    "generic_finetune",
    "generic_contrastive",
)
IN_MEMORY_BYTES = 2**30  # decoded splits above this stream from their source


def check(config):
  names = list(config.label_efficiency.methods)
  methods_lib.check(names, METHODS, NAME, config.finetune.per_method)
  generic = [m for m in names if m.startswith("generic_")]
  if generic and not config.generic_model:
    raise ValueError(
        f"label_efficiency.methods has {generic}, which need config.generic_model "
        "(a vision checkpoint directory or Hugging Face Hub name)"
    )
  if generic:
    raise ValueError(
        f"label_efficiency.methods has {generic}: the image study's generic "
        "baseline needs a vision checkpoint, and ssl_jax loads none since "
        "transformers 5 removed the Flax models it used (ssl_jax/generic_models.py); "
        "the text study's generic_* methods take BERT-family checkpoints"
    )


def pretrain(config, workdir):
  run = train.train(config, workdir)
  return common.Pretrained(run, {"pretraining": run.history[-1] if run.history else {}})


def study(config, pretrained):
  run = pretrained.run
  built, train_labels, test_labels = study_methods(
      config,
      run.features_of,
      run.train_source,
      run.test_source,
      run.components.mesh,
      run.components.encoder_variables(run.state),
  )
  classes = getattr(run.train_source, "classes", None)
  return common.Study(built, train_labels, test_labels, title_of(config), classes=classes)


def study_methods(config, features_of, train_source, test_source, mesh, pretrained_encoder=None):
  """(built methods, train labels, test labels) on the splits' sources; `features_of`: the
  pre-trained encoder's features of uint8 images; `pretrained_encoder`: its variables
  ({collection: encoder subtree})."""
  check(config)
  names, ft = list(config.label_efficiency.methods), config.finetune
  needs = [m for m in names if methods_lib.ENCODER_METHODS.get(m, ("",))[0] == "ssl"]
  if needs and pretrained_encoder is None:
    raise ValueError(f"label_efficiency methods {needs} need the pre-trained encoder's variables")
  train_images, train_labels = sources.eval_arrays(train_source, IN_MEMORY_BYTES)
  test_images, test_labels = sources.eval_arrays(test_source, IN_MEMORY_BYTES)
  num_classes = config.data.num_classes
  inputs = inputs_lib.for_arrays(
      train_images,
      image_size=config.data.image_size,
      crop_scale=ft.crop_scale,
      flip_prob=config.augment.flip_prob,
      elastic=inputs_lib.elastic_of(config),
      strong=ft.strong,
  )
  model = None
  if any(
      methods_lib.ENCODER_METHODS.get(m, ("", "linear"))[1] not in ("linear", "labelprop")
      for m in names
  ):
    model = model_lib.Model(
        models.build_encoder(config.model, image_size=config.data.image_size),
        num_classes=num_classes,
        mesh=mesh,
        inputs=inputs,
        example=train_images,
        eval_batch_size=config.data.eval_batch_size,
        layer_regex=ft.layer_regex,
        compiler_options=conv_lib.compiler_options(config.model.cpu_conv_library),
    )
  starts = {
      "ssl": methods_lib.Start(model, pretrained_encoder, train_images, test_images, features_of),
      "scratch": methods_lib.Start(model, None, train_images, test_images),
  }
  pad_to = common.pad_to(config.label_efficiency, num_classes, len(train_labels))
  baselines = {}
  if "pixels_logreg" in names:
    flat = lambda x: np.asarray(x).reshape(len(x), -1).astype(np.float32) / 255.0
    baselines["pixels_logreg"] = (
        fitting.LinearMethod(num_classes, mesh, ft, pad_to=pad_to),
        flat(train_images),
        flat(test_images),
    )
  built = methods_lib.build(
      names, starts, baselines, ft, num_classes=num_classes, mesh=mesh, pad_to=pad_to
  )
  return built, train_labels, test_labels


def study_rows(config, features_of, train_source, test_source, mesh, pretrained_encoder=None):
  """The study's rows on these splits (study_methods, then study/loop.py)."""
  from ssl_jax.study import loop  # pylint: disable=g-import-not-at-top

  return loop.run(
      config,
      *study_methods(config, features_of, train_source, test_source, mesh, pretrained_encoder),
  )


def title_of(config):
  """'<data>: <task> pre-training (<encoder>)' for the plot."""
  encoder = config.model.name + (
      f"-{config.model.depth}"
      if config.model.name == "resnet"
      else f"-{config.model.variant}"
      if config.model.name == "vit"
      else ""
  )
  return f"{config.data.source}: {config.task} pre-training ({encoder})"


def trained_config(config, workdir):
  """The run's config as its encoder was built (images: as saved)."""
  del workdir
  return config


def read_inputs(config, workdir, spec, split):
  """Images of any source (`folder:`, `npz:`, `tfds:`, `mnist`) at the run's size and channels,
  decoded batch by batch; ids are file paths where the source has them, else row numbers."""
  del workdir
  d = config.data
  source = sources.build(
      spec,
      split,
      # a folder of new images is read whole; the held-out digits stay the 'test' split of mnist
      holdout_per_class=0 if spec.startswith("folder:") else d.holdout_per_class,
      seed=d.holdout_seed,
      data_dir=d.data_dir or None,
      image_size=d.image_size,
      channels=d.channels,
      skip_corrupt=d.skip_corrupt,
  )
  rows, labels = sources.eval_arrays(source, max_bytes=0)  # decoded sources stay lazy
  try:
    ids = source.file_names()
  except KeyError:  # a TFDS set without file names
    ids = [f"{source.name}[{i}]" for i in range(len(source))]
  return common.Inputs(
      rows, ids, np.asarray(labels, np.int32), skipped=list(getattr(source, "skipped", []))
  )
