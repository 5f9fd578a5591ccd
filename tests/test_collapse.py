"""Collapse diagnostics: each metric on cases with known answers, and the warning in the log."""

import numpy as np
import pytest

from ssl_jax import evaluators
from ssl_jax.evaluators import collapse


def test_metrics_on_known_cases():
  rng = np.random.default_rng(0)
  spread = rng.normal(size=(4000, 16))
  assert collapse.std_fraction(spread) == pytest.approx(1.0, abs=0.03)  # isotropic: std 1/sqrt(D)
  assert collapse.std_fraction(np.ones((50, 16))) == pytest.approx(0.0, abs=1e-6)
  assert collapse.effective_rank(np.eye(8)) == pytest.approx(8.0, rel=1e-4)  # equal singular values
  rank_two = rng.normal(size=(100, 2)) @ rng.normal(size=(2, 16))
  assert collapse.effective_rank(rank_two) < 2.01
  # singular values (3, 1): p = (0.75, 0.25), exp(entropy)
  want = np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)))
  assert collapse.effective_rank(np.diag([3.0, 1.0])) == pytest.approx(want, rel=1e-5)
  # a large common offset: one raw singular value carries it (RankMe ~1), centred the spread is full
  offset = rng.normal(size=(500, 16)) + 100.0
  assert collapse.effective_rank(offset) < 1.5
  assert collapse.effective_rank(offset, centered=True) > 14
  assert collapse.relative_spread(offset) == pytest.approx(
      0.01, rel=0.1
  )  # sqrt(16) / (100 sqrt(16))
  assert collapse.relative_spread(np.ones((50, 16))) == 0.0
  a = rng.normal(size=(20, 4))
  assert collapse.alignment(a, 2 * a) == pytest.approx(0.0, abs=1e-12)  # same directions
  assert collapse.alignment(a, -a) == pytest.approx(4.0)  # opposite unit vectors: |2u|^2
  assert collapse.uniformity(np.ones((10, 3))) == pytest.approx(0.0)  # all pairs at distance 0
  pair = np.array([[1.0, 0.0], [-1.0, 0.0]])
  assert collapse.uniformity(pair) == pytest.approx(-8.0)  # log exp(-2 * 4)


def test_warning_names_the_cause_and_remedies(capsys):
  rng = np.random.default_rng(1)
  test_images = rng.integers(0, 255, (100, 8, 8, 1), dtype=np.uint8)
  data = evaluators.EvalData(
      test_images,
      np.zeros(100, np.int64),
      test_images,
      np.zeros(100, np.int64),
      num_classes=2,
      augment=dict(flip_prob=0.0, jitter_prob=0.0),
  )
  evaluator = evaluators.build(
      "collapse", dict(type="collapse", every_steps=1, num_images=16), data
  )
  collapsed = lambda images: np.ones((len(images), 128), np.float32)
  results = evaluator.run(collapsed)
  assert results["std_fraction"] < collapse.STD_FRACTION_WARNING
  out = capsys.readouterr().out
  assert "WARNING: representation collapse?" in out and "dimensional collapse?" in out
  assert "predictor" in out and "augmentation" in out
  healthy = lambda images: images.reshape(len(images), -1).astype(np.float32) - 127.5
  evaluator.run(healthy)
  assert "WARNING" not in capsys.readouterr().out
  anisotropic = lambda images: images.reshape(len(images), -1).astype(np.float32) + 2000.0
  results = evaluator.run(anisotropic)
  out = capsys.readouterr().out
  assert results["std_fraction"] < collapse.STD_FRACTION_WARNING  # directions nearly coincide
  assert results["effective_rank_centered"] / results["max_rank"] > 0.5  # yet they vary, spread
  assert "WARNING" not in out and "NOTE: anisotropic features, not collapse" in out


def test_evaluator_settings_are_checked():
  with pytest.raises(KeyError, match="unknown keys \\['num_imgs'\\]"):
    evaluators.build("collapse", dict(type="collapse", every_steps=1, num_imgs=3), None)
