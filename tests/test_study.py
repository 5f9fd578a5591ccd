"""The study layer's shared pieces: the modality registry, method checks, the loop's draws on
"every label", the table with missing cells."""

import numpy as np
import pytest

from ssl_jax import config as config_lib
from ssl_jax import modalities
from ssl_jax.finetune import protocol
from ssl_jax.finetune import step as step_lib
from ssl_jax.study import loop
from ssl_jax.study import methods
from ssl_jax.study import report


def test_each_task_finds_its_modality():
  c = config_lib.base_config()
  for task, name in (
      ("simclr", "image"),
      ("mae", "image"),
      ("mlm", "text"),
      ("mlm_nsp", "text"),
      ("ts2vec", "timeseries"),
  ):
    c.task = task
    assert modalities.of(c).NAME == name
  with pytest.raises(ValueError, match="unknown modality 'audio'; accepted"):
    modalities.get("audio")
  for name in modalities.MODALITIES:  # every modality offers only names the study can build
    assert set(modalities.get(name).METHODS) <= set(methods.ENCODER_METHODS) | set(
        methods.BASELINES
    )


def test_check_names_the_modality_and_the_missing_teacher():
  with pytest.raises(ValueError, match=r"has \['tfidf_logreg'\]; the image study's methods"):
    methods.check(["tfidf_logreg"], modalities.get("image").METHODS, "image")
  with pytest.raises(ValueError, match="add 'supervised_scratch'"):
    methods.check(["scratch_distill"], modalities.get("image").METHODS, "image")


class _Counting:
  """A method that records its fits: deterministic or not."""

  mode = "counting"

  def __init__(self, deterministic):
    self.deterministic, self.fits = deterministic, []

  def fit(self, hp, x, y, *, seed, val=None, log_every=0):
    self.fits.append((len(y), seed))
    return step_lib.Fit(None, {}, 0, 0, float("nan"), [])

  def score(self, fitted, x, y):
    return len(self.fits) / 10

  def counts(self, hp):
    return 0, 0


def test_every_label_is_fitted_once_by_a_deterministic_method():
  c = config_lib.base_config()
  c.label_efficiency.labels_per_class = (1, 50, -1)  # 50: more than a class has, skipped
  c.label_efficiency.num_draws = 3
  labels = np.repeat(np.arange(3), [4, 5, 6])
  x = np.arange(len(labels))[:, None]
  fixed, drawn = _Counting(True), _Counting(False)
  notes = []
  rows = loop.run(c, {"fixed": (fixed, x, x), "drawn": (drawn, x, x)}, labels, labels, notes.append)
  assert any("skipping 50 labels per class: class 0 has 4" in n for n in notes)
  assert [f[0] for f in fixed.fits] == [3, 3, 3, 15] and [f[0] for f in drawn.fits] == [3] * 3 + [
      15
  ] * 3
  by = {(r["labels_per_class"], r["method"]): r for r in rows}
  assert by[6, "fixed"]["n_draws"] == 1 and by[6, "drawn"]["n_draws"] == 3
  assert by[6, "fixed"]["all_labels"] and "all_labels" not in by[1, "fixed"]
  assert by[1, "drawn"]["hyperparameters"] == {} and by[1, "drawn"]["mode"] == "counting"
  # the draws' seeds: one per budget and draw, the same for every method
  assert [s for _, s in fixed.fits[:3]] == [s for _, s in drawn.fits[:3]]
  assert len({s for _, s in drawn.fits}) == 6


def test_table_marks_missing_cells():
  rows = [
      {"labels_per_class": 1, "method": "a", "accuracy_mean": 0.5, "accuracy_std": 0.1},
      {"labels_per_class": 5, "method": "b", "accuracy_mean": 0.75, "accuracy_std": 0.0},
  ]
  lines = report.format_table(rows).splitlines()
  assert lines[1].split("|")[2].strip() == "-" and "75.00 +-  0.00 %" in lines[2]


def test_per_method_settings_change_that_method_alone_and_name_bad_keys():
  c = config_lib.base_config()
  c.finetune.per_method = {
      "supervised_scratch": {
          "learning_rate": 1e-3,
          "grid": {"full": {"learning_rate": (1e-3, 3e-3)}},
      }
  }
  scratch = methods.settings_for("supervised_scratch", c.finetune)
  assert scratch.learning_rate == 1e-3 and tuple(scratch.grid.full.learning_rate) == (1e-3, 3e-3)
  assert methods.settings_for("ssl_finetune", c.finetune) is c.finetune
  assert c.finetune.learning_rate == 3e-3 and c.finetune.grid.full.learning_rate == ()
  c.finetune.per_method = {"supervised_scratch": {"learning_rat": 1e-3}}
  with pytest.raises(
      KeyError, match=r"per_method.supervised_scratch.learning_rat: .*'learning_rate'"
  ):
    methods.settings_for("supervised_scratch", c.finetune)
  with pytest.raises(ValueError, match=r"settings for \['ssl_lorra'\], which the image study"):
    methods.check(["ssl_finetune"], modalities.get("image").METHODS, "image", {"ssl_lorra": {}})
  methods.check(["ssl_finetune"], modalities.get("image").METHODS, "image", {"ssl_lora": {}})


def test_per_budget_settings_go_under_the_methods_and_name_bad_keys():
  c = config_lib.base_config()
  c.finetune.per_budget = {"10": {"fixmatch_steps": 4000, "learning_rate": 1e-3}, "all": {}}
  c.finetune.per_method = {"scratch_fixmatch": {"learning_rate": 1e-2}}
  methods.check_per_budget(c.finetune)
  at_10 = methods.settings_for("ssl_fixmatch", c.finetune, 10)
  assert at_10.fixmatch_steps == 4000 and at_10.learning_rate == 1e-3
  scratch = methods.settings_for("scratch_fixmatch", c.finetune, 10)
  assert scratch.fixmatch_steps == 4000 and scratch.learning_rate == 1e-2  # the method's win
  assert methods.settings_for("ssl_fixmatch", c.finetune, 5) is c.finetune
  assert methods.settings_for("ssl_fixmatch", c.finetune, -1) is c.finetune  # 'all', empty
  assert methods.budget_key(-1) == "all" and methods.budget_key(10) == "10"
  c.finetune.per_budget = {"ten": {"fixmatch_steps": 4000}}
  with pytest.raises(ValueError, match=r"per_budget has the key 'ten'; accepted: a count"):
    methods.check_per_budget(c.finetune)
  c.finetune.per_budget = {"10": {"fixmatch_step": 4000}}
  with pytest.raises(KeyError, match=r"per_budget.10.fixmatch_step: .*'fixmatch_steps'"):
    methods.check_per_budget(c.finetune)
  c.finetune.per_budget = {"10": {"per_method": {"ssl_fixmatch": {"learning_rate": 1.0}}}}
  with pytest.raises(KeyError, match=r"per_budget.10.per_method.ssl_fixmatch.learning_rate: "):
    methods.check_per_budget(c.finetune)


def test_the_schedule_grows_with_the_labelled_set_and_never_shrinks():
  hp = {"steps": 100, "batch_size": 16, "epochs": 10.0}
  assert protocol.scheduled(hp, 50)["steps"] == 100  # 10 passes over 50 labels: 32 steps
  assert protocol.scheduled(hp, 250)["steps"] == 157  # ceil(2500 / 16)
  assert protocol.scheduled(protocol.scheduled(hp, 250), 250) == protocol.scheduled(hp, 250)
  assert protocol.scheduled({**hp, "epochs": 0.0}, 10_000)["steps"] == 100
  assert protocol.scheduled({"probe_steps": 300}, 10) == {"probe_steps": 300}


def test_a_larger_budget_trains_longer_through_the_loop():
  c = config_lib.base_config()
  c.label_efficiency.labels_per_class = (2, 8)
  c.label_efficiency.num_draws = 1
  c.finetune.epochs = 4.0
  c.finetune.steps, c.finetune.batch_size = 5, 4

  class Steps(_Counting):
    mode = "full"  # a CV mode, but with too few labels for 3 folds at 2 and one grid point at 8

    def fit(self, hp, x, y, *, seed, val=None, log_every=0):
      self.fits.append(protocol.scheduled(hp, len(y))["steps"])
      return step_lib.Fit(None, {}, 0, 0, float("nan"), [])

  method = Steps(False)
  labels = np.repeat(np.arange(2), 10)
  rows = loop.run(c, {"m": (method, np.zeros((20, 1)), np.zeros((4, 1)))}, labels, np.zeros(4, int))
  assert method.fits == [5, 16]  # 4 labels: 5 steps; 16 labels: ceil(4 * 16 / 4)
  assert [r["hyperparameters"]["steps"] for r in rows] == [5, 16]
