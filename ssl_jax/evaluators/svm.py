"""TS2Vec's SVM protocol as a periodic evaluator: an RBF SVM with C chosen by 5-fold CV on the
frozen features of the labelled train split (study/baselines.py:svm_protocol), its test accuracy.
The time-series study's `ssl_svm` method is the same fit on a label draw."""

import numpy as np

from ssl_jax.study import baselines


class SVM:
  """`config.evals.NAME = dict(type='svm', every_steps=...)`; any modality's features."""

  def __init__(self, *, data, every_steps, seed=0):
    self.data, self.every_steps, self.seed = data, every_steps, seed

  def run(self, features_of):
    train_x, train_y, test_x, test_y = self.data.features(features_of)
    svm, c = baselines.svm_protocol(train_x, train_y, seed=self.seed)
    return {"accuracy": float(np.mean(svm.predict(test_x) == test_y)), "C": float(c)}
