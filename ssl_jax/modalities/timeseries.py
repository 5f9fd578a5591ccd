"""Time series: pre-training (TS2Vec) on a UCR/UEA set, TS2Vec's SVM protocol, the study.

The protocol (Yue et al. 2022, Sec. 4.1; study/baselines.py:svm_protocol): the representation of
a series is the max over its timesteps of the encoder's output; an RBF SVM is fitted on every
training representation and scored on the test split. `pretrain` runs it after pre-training and
records test_accuracy and svm_C in results.json.

The study, at each labels-per-class budget (-1: every training label) that every class can meet:
  ssl_svm             the protocol's SVM on the frozen representations of the drawn series
  ssl_linear_probe, ssl_finetune, ...   the encoder methods of study/methods.py
  supervised_scratch  the same encoder and a head from random weights, on the drawn labels only
                      (finetune/'s `full` mode, as in every modality)
  nn1_euclidean       1-nearest neighbour in Euclidean distance on the raw series
  raw_logreg          scikit-learn's logistic regression (L2, C=1) on the raw series
Missing values (NaN) count as 0 for the two raw-series baselines.
"""

import time

import numpy as np

from ssl_jax import models
from ssl_jax import train
from ssl_jax.data import timeseries
from ssl_jax.finetune import inputs as inputs_lib
from ssl_jax.finetune import model as model_lib
from ssl_jax.models import conv as conv_lib
from ssl_jax.modalities import common
from ssl_jax.study import baselines
from ssl_jax.study import methods as methods_lib

NAME = "timeseries"
METHODS = (
    "ssl_svm",
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
    "nn1_euclidean",
    "raw_logreg",
)


def check(config):
  methods_lib.check(
      list(config.label_efficiency.methods), METHODS, NAME, config.finetune.per_method
  )


def pretrain(config, workdir):
  """Pre-trains, then TS2Vec's SVM protocol on every training label."""
  start = time.perf_counter()
  run = train.train(config, workdir)
  train_seconds = time.perf_counter() - start
  train_x, train_y = run.train_source.arrays()
  test_source = run.test_source or train.load_data(config)[1]
  test_x, test_y = test_source.arrays()
  start = time.perf_counter()
  train_features, test_features = run.features_of(train_x), run.features_of(test_x)
  svm, c = baselines.svm_protocol(train_features, train_y, seed=config.seed)
  accuracy = float(np.mean(svm.predict(test_features) == test_y))
  protocol_seconds = time.perf_counter() - start
  print(f"SVM protocol: test accuracy {accuracy:.4f} (C={c})", flush=True)
  data = run.train_source.data
  extra = {
      "dataset": data.name,
      "test_accuracy": accuracy,
      "svm_C": c,
      "train_seconds": train_seconds,
      "protocol_seconds": protocol_seconds,
      "iterations": int(run.state.step),
      "num_train": len(train_y),
      "num_test": len(test_y),
      "length": int(train_x.shape[1]),
      "features": int(train_x.shape[2]),
      "num_classes": int(train_y.max()) + 1,
      "normalised_here": data.normalised,
      "pretraining": run.history[-1] if run.history else {},
  }
  arrays = (train_x, train_y, test_x, test_y, train_features, test_features)
  return common.Pretrained(run, extra, more=arrays)


def study(config, pretrained):
  run = pretrained.run
  train_x, train_y, test_x, test_y, train_features, test_features = pretrained.more
  names, ft = list(config.label_efficiency.methods), config.finetune
  num_classes, mesh = int(train_y.max()) + 1, run.components.mesh
  computed = {id(train_x): train_features, id(test_x): test_features}
  model = model_lib.Model(
      models.build_encoder(config.model),
      num_classes=num_classes,
      mesh=mesh,
      inputs=inputs_lib.Series(),
      example=train_x,
      eval_batch_size=config.data.eval_batch_size,
      layer_regex=ft.layer_regex,
      compiler_options=conv_lib.compiler_options(config.model.cpu_conv_library),
  )
  encoder = run.components.encoder_variables(run.state)
  starts = {
      "ssl": methods_lib.Start(
          model,
          encoder,
          train_x,
          test_x,
          lambda x: computed[id(x)] if id(x) in computed else run.features_of(x),
      ),
      "scratch": methods_lib.Start(model, None, train_x, test_x),
  }
  found = {
      "nn1_euclidean": (baselines.NearestNeighbour(), train_x, test_x),
      "raw_logreg": (baselines.RawLogreg(), train_x, test_x),
  }
  built = methods_lib.build(
      names,
      starts,
      found,
      ft,
      num_classes=num_classes,
      mesh=mesh,
      pad_to=common.pad_to(config.label_efficiency, num_classes, len(train_y)),
  )
  return common.Study(
      built,
      train_y,
      test_y,
      f"UCR {run.train_source.data.name}: ts2vec pre-training",
      classes=list(run.train_source.classes),
  )


def trained_config(config, workdir):
  """The run's config as its encoder was built (series: as saved)."""
  del workdir
  return config


def read_inputs(config, workdir, spec, split):
  """The `split` of a series set (`npz:PATH`, `ucr:NAME`), normalised as for training; ids are
  `SET:split[row]`. The encoder takes any length."""
  del config, workdir
  source = timeseries.SeriesSource(timeseries.load(spec), split)
  series, labels = source.arrays()
  return common.Inputs(series, [f"{source.name}[{i}]" for i in range(len(source))], labels)
