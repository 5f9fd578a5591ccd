"""Shared pieces of the time-series tests: a small labelled npz set and a tiny TS2Vec config."""

import os

import numpy as np

from ssl_jax import config as config_lib

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "ts2vec_ucr.py")


def write_series_set(path, *, length=16, features=2, per_class=8, test_per_class=10, seed=0):
  """Three shapes (sine, square wave, ramp) with noise, labels 3/7/11, some series NaN-padded."""
  rng = np.random.default_rng(seed)
  t = np.linspace(0, 1, length)
  shapes = [np.sin(2 * np.pi * 2 * t), np.sign(np.sin(2 * np.pi * 3 * t)), 2 * t - 1]

  def split(n):
    y = np.repeat([3, 7, 11], n)
    x = np.stack([shapes[[3, 7, 11].index(c)] for c in y])[..., None].repeat(features, -1)
    x = x * rng.uniform(0.8, 1.2, (len(y), 1, features)) + rng.normal(0, 0.3, x.shape)
    x[::5, -3:] = np.nan  # variable length: a few series end early
    return x.astype(np.float32), y

  x_train, y_train = split(per_class)
  x_test, y_test = split(test_per_class)
  np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
  return path


def tiny_config(path, **overrides):
  """configs/ts2vec_ucr.py on `path` with a tiny encoder, 6 steps and a small study."""
  c = config_lib.load(f"{CONFIG}:{path}")
  c.model.depth = 2
  c.model.hidden_dims = 8
  c.model.repr_dims = 8
  c.task_kwargs.length_buckets = 1  # one branch compiles fastest; buckets: test_ts2vec_task.py
  c.total_steps = 6
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.data.eval_batch_size = 16
  c.label_efficiency.labels_per_class = (1, -1)
  c.label_efficiency.num_draws = 2
  c.finetune.steps = 5
  for key, value in overrides.items():
    config_lib.override(c, [f"{key}={value}"])
  config_lib.check_known_keys(c)
  return c
