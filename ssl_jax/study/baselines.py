"""The classical baselines and the SVM protocol, as study methods (study/loop.py's contract).

Each fits on the drawn labels with scikit-learn or numpy; all are deterministic, so a study fits
them once on "every label". `counts` gives the parameters fitted on the labels in the last fit
(a logistic regression's weights, an SVM's dual coefficients and intercepts; 1-NN stores the
labelled set and fits none).
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.svm import SVC

from ssl_jax.finetune import step as step_lib

SVM_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, np.inf)
MAX_SEARCH_SAMPLES = 10_000


def _fit(model, val):
  accuracy = float(np.mean(model.predict(val[0]) == val[1])) if val is not None else float("nan")
  return step_lib.Fit(model, {}, 0, 0, accuracy, [])


class _Sklearn:
  """fit/score/counts around a scikit-learn classifier made by `_model(hp, x, y, seed)`."""

  deterministic = True
  encoder_params = 0

  def __init__(self):
    self._fitted = 0

  def fit(self, hp, x, y, *, seed, val=None, log_every=0):
    del log_every
    model = self._model(hp, self.inputs(x), np.asarray(y), seed)
    self._fitted = self._size(model)
    return _fit(model, None if val is None else (self.inputs(val[0]), val[1]))

  def score(self, fitted, x, y):
    return float(np.mean(fitted.variables.predict(self.inputs(x)) == np.asarray(y)))

  def counts(self, hp):
    del hp
    return self._fitted, self._fitted + self.encoder_params

  def inputs(self, x):
    return x

  @staticmethod
  def _size(model):
    return int(model.coef_.size + model.intercept_.size)


def svm_protocol(features, labels, seed=0):
  """TS2Vec's SVM protocol (Yue et al. 2022, Sec. 4.1, and the reference code's `fit_svm`): an RBF
  SVM (gamma 'scale') whose C is picked by 5-fold grid search over SVM_GRID by accuracy, except
  C = inf without search when there are under 50 examples or a class has under 5 (the reference
  tests N // K < 5, the mean class size; we test the smallest class, which also keeps the 5
  folds stratifiable). Searches on more than 10,000 examples use a stratified sample of 10,000,
  as the reference does. -> (fitted SVC, C)."""
  counts = np.unique(labels, return_counts=True)[1]
  if len(labels) < 50 or counts.min() < 5:
    return SVC(C=np.inf, gamma="scale").fit(features, labels), np.inf
  x, y = features, labels
  if len(y) > MAX_SEARCH_SAMPLES:
    x, _, y, _ = train_test_split(
        x, y, train_size=MAX_SEARCH_SAMPLES, random_state=seed, stratify=y
    )
  search = GridSearchCV(
      SVC(kernel="rbf", gamma="scale"), {"C": list(SVM_GRID)}, cv=StratifiedKFold(5), n_jobs=None
  )
  search.fit(x, y)
  return search.best_estimator_, float(search.best_params_["C"])


class SvmProtocol(_Sklearn):
  """`ssl_svm`: the SVM protocol on frozen features."""

  mode = "svm"

  def __init__(self, num_classes, *, encoder_params=0):
    super().__init__()
    self.num_classes, self.encoder_params = num_classes, encoder_params

  def _model(self, hp, x, y, seed):
    return svm_protocol(x, y, seed)[0]

  @staticmethod
  def _size(model):
    return int(model.dual_coef_.size + model.intercept_.size)


def raw(x):
  """(N, ...) inputs -> (N, prod(...)) with NaN as 0: the raw-series baselines' view."""
  x = np.asarray(x)
  return np.nan_to_num(x.reshape(len(x), -1), nan=0.0)


class RawLogreg(_Sklearn):
  """`raw_logreg`: scikit-learn's logistic regression (L2, C=1) on the raw series."""

  mode = "logreg"

  def _model(self, hp, x, y, seed):
    return LogisticRegression(C=1.0, max_iter=1000).fit(x, y)

  def inputs(self, x):
    return raw(x)


class NearestNeighbour(_Sklearn):
  """`nn1_euclidean`: 1-nearest neighbour in Euclidean distance on the raw series."""

  mode = "nn1"

  def _model(self, hp, x, y, seed):
    return _OneNN(x, y)

  def inputs(self, x):
    return raw(x).astype(np.float64)

  @staticmethod
  def _size(model):
    return 0


class _OneNN:

  def __init__(self, x, y):
    self.x, self.y = x, y

  def predict(self, query):
    a, b = self.x, query
    distances = (b**2).sum(1)[:, None] - 2 * b @ a.T + (a**2).sum(1)[None, :]
    return self.y[np.argmin(distances, axis=1)]


class TfidfLogreg(_Sklearn):
  """`tfidf_logreg`: TF-IDF (unigrams and bigrams, sublinear tf, vocabulary and idf fitted on the
  unlabelled texts only) and scikit-learn's L2 logistic regression on the labelled texts. It
  takes the linear probe's penalty grid and CV: C = 1 / (2 n weight_decay) gives sklearn's
  objective the probes' form, mean cross-entropy + weight_decay |W|^2 (the probe's learning rate,
  steps and label smoothing do not apply)."""

  mode = "linear"

  def __init__(self, num_classes, unlabeled_texts, max_features=50_000):
    from sklearn.feature_extraction.text import (  # pylint: disable=g-import-not-at-top
        TfidfVectorizer,
    )

    super().__init__()
    self.num_classes = num_classes
    self.vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=max_features
    ).fit(unlabeled_texts)

  def features(self, texts):
    return self.vectorizer.transform(texts).tocsr()

  def _model(self, hp, x, y, seed):
    c = 1.0 / (2 * len(y) * hp["probe_weight_decay"])
    return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y)

  def counts(self, hp):
    del hp
    n = (len(self.vectorizer.vocabulary_) + 1) * self.num_classes
    return n, n
