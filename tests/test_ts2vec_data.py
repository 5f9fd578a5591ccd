"""Time-series sources: npz and ucr specs, label remapping, normalisation, and bad-input errors."""

import os

import numpy as np
import pytest

from ssl_jax.data import sources
from ssl_jax.data import timeseries
from ts2vec_helpers import write_series_set

SHARED_UCR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "ucr")


def _arrays(n=6, t=10, f=1, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, t, f)), np.arange(n) % 2


def test_npz_routes_to_series_with_remapped_labels(tmp_path):
  path = write_series_set(tmp_path / "s.npz")
  train, test = sources.build(f"npz:{path}", "train"), sources.build(f"npz:{path}", "test")
  assert isinstance(train, timeseries.SeriesSource) and train.modality == "timeseries"
  assert len(train) == 24 and len(test) == 30
  example = train[0]
  assert example["inputs"].shape == (16, 2) and example["inputs"].dtype == np.float32
  assert sorted(set(train.labels)) == [0, 1, 2] and train.classes == ["3", "7", "11"]
  x, y = test.arrays()
  assert x.shape == (30, 16, 2) and np.isnan(x).any()  # NaN padding kept for evaluation
  with pytest.raises(ValueError, match=r"split 'valid'.*\['train', 'test'\]"):
    sources.build(f"npz:{path}", "valid")


def test_normalises_only_sets_that_are_not_z_normalised():
  x, y = _arrays()
  raw = timeseries.from_arrays(x * 5 + 3, y, x[:2] * 5 + 3, y[:2])
  assert raw.normalised
  np.testing.assert_allclose(raw.x_train.mean(), 0, atol=1e-5)
  np.testing.assert_allclose(raw.x_train.std(), 1, atol=1e-4)
  z = (x - x.mean(1, keepdims=True)) / x.std(1, ddof=1, keepdims=True)  # UCR style (sample std)
  kept = timeseries.from_arrays(z, y, z[:2], y[:2])
  assert not kept.normalised and np.allclose(kept.x_train, z, atol=1e-6)


def test_variable_length_series_are_centred_for_training():
  x, y = _arrays(t=10)
  x[0, 6:] = np.nan
  source = timeseries.SeriesSource(timeseries.from_arrays(x, y, x, y, normalise=False), "train")
  centred = source[0]["inputs"][:, 0]
  assert np.isnan(centred[:2]).all() and np.isnan(centred[-2:]).all()
  np.testing.assert_allclose(centred[2:8], x[0, :6, 0], rtol=1e-6)
  np.testing.assert_allclose(source.arrays()[0][0, :6, 0], x[0, :6, 0], rtol=1e-6)  # as stored


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda a: a.update(
                x_train=np.concatenate([a["x_train"][:2], np.full((1, 10, 1), np.nan)])
            ),
            r"series x_train\[2\] is entirely NaN",
        ),
        (
            lambda a: a.update(x_test=[np.zeros((10, 1)), np.zeros((8, 1))]),
            r"'x_test' is ragged: series x_test\[1\] has shape \(8, 1\)",
        ),
        (
            lambda a: a.update(x_test=np.zeros((2, 12, 1))),
            r"'x_train' series have length 10 but 'x_test' series have 12",
        ),
        (
            lambda a: a.update(x_test=np.zeros((2, 10, 3))),
            r"'x_train' has 1 features per timestep but 'x_test' has 3",
        ),
        (
            lambda a: a.update(y_train=np.zeros(3)),
            r"'y_train' has 1 class \(\[0.0\]\); classification needs at least 2",
        ),
        (
            lambda a: a.update(y_test=np.array([0, 5])),
            r"y_test\[1\] = 5 is not a class of 'y_train'",
        ),
        (lambda a: a.update(y_train=np.arange(2)), r"'y_train' has 2 labels for 3 series"),
        (
            lambda a: a.update(x_train=np.zeros((3, 10, 1, 1))),
            r"'x_train' must be \(N, T\) or \(N, T, F\)",
        ),
    ],
)
def test_bad_input_names_the_array_and_index(change, message):
  x, _ = _arrays(n=3)
  arrays = dict(x_train=x, y_train=np.array([0, 1, 1]), x_test=x[:2], y_test=np.array([0, 1]))
  change(arrays)
  with pytest.raises(ValueError, match=message):
    timeseries.from_arrays(**arrays, name="bad.npz")


def test_ragged_npz_names_the_file_and_key(tmp_path):
  path = tmp_path / "ragged.npz"
  ragged = np.empty(2, object)
  ragged[0], ragged[1] = np.zeros(10), np.zeros(8)
  np.savez(path, x_train=ragged, y_train=[0, 1], x_test=np.zeros((2, 10)), y_test=[0, 1])
  with pytest.raises(ValueError, match=r"ragged.npz: array 'x_train' cannot be read as numbers"):
    sources.build(f"npz:{path}", "train")
  np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 10)), y_train=[0, 1])
  with pytest.raises(KeyError, match=r"missing \['x_test', 'y_test'\]"):
    sources.build(f"npz:{tmp_path / 'partial.npz'}", "train")


def test_ucr_bundled_with_aeon():
  pytest.importorskip("aeon", reason="aeon (requirements.txt) ships the embedded UCR sets")
  train = sources.build("ucr:GunPoint", "train")
  test = sources.build("ucr:GunPoint", "test")
  assert train.arrays()[0].shape == (50, 150, 1) and test.arrays()[0].shape == (150, 150, 1)
  assert sorted(set(train.labels)) == [0, 1] and not train.data.normalised
  multivariate = timeseries.load("ucr:BasicMotions")
  assert multivariate.x_train.shape == (40, 100, 6) and multivariate.normalised
  with pytest.raises(ValueError, match="ucr:NoSuchSet: aeon could not load"):
    timeseries.load_ucr("NoSuchSet")


def test_shared_npz_matches_aeon():
  if not os.path.isdir(SHARED_UCR):
    pytest.skip(f"{SHARED_UCR} is absent (the shared UCR sets live beside the checkout)")
  pytest.importorskip("aeon", reason="aeon (requirements.txt) ships the embedded UCR sets")
  shared = timeseries.load_npz(os.path.join(SHARED_UCR, "GunPoint.npz"))
  bundled = timeseries.load("ucr:GunPoint")
  np.testing.assert_allclose(shared.x_test, bundled.x_test, atol=1e-5)
  np.testing.assert_array_equal(shared.y_test, bundled.y_test)
