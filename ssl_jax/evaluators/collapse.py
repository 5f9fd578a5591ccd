"""Collapse diagnostics on frozen features of the eval split.

  std_fraction     mean over dimensions of the std of the L2-normalised features, times sqrt(D):
                   about 1 when the features spread over the sphere, 0 when every image maps to one
                   point (complete collapse; SimSiam paper, Chen & He 2021, fig. 2).
  effective_rank   RankMe (Garrido et al. 2023): exp of the entropy of the normalised singular
                   values of the feature matrix as it is (uncentred); `effective_rank_fraction`
                   divides by min(N, D). A large common mean (anisotropic features, as MAE's are)
                   makes it small without any collapse: one singular value carries the mean.
  effective_rank_centered
                   the same on mean-centred features, i.e. of the covariance spectrum that Jing et
                   al. 2022 use to define dimensional collapse; low only when the features vary
                   along few dimensions. The dimensional-collapse warning reads this one.
  alignment        E ||f(x) - f(x')||^2 over two augmented views of one image (Wang & Isola 2020,
                   alpha = 2) on normalised features: low is good.
  uniformity       log E exp(-2 ||f(x) - f(y)||^2) over pairs of distinct images (t = 2): more
                   negative is more uniform; 0 means collapsed.

  relative_spread  RMS distance of the features from their mean over the mean's norm: about 0 when
                   every image maps to one point, small but non-zero for anisotropic features.

Warnings (thresholds set well below what our healthy tiny runs show: experiments/README.md):
representation collapse when std_fraction < STD_FRACTION_WARNING and the variation around the mean
is negligible or spans few dimensions; dimensional collapse when effective_rank_centered is under
RANK_FRACTION_WARNING of the possible rank. Features whose normalised directions nearly coincide,
or whose raw rank is low, while their centred variation is real and spread get a note instead: a
common offset (anisotropy) is not collapse, and fine-tuning or a probe on standardised features
do not mind it.
"""

import numpy as np

STD_FRACTION_WARNING = 0.05
RANK_FRACTION_WARNING = 0.02
SPREAD_WARNING = 1e-3  # relative_spread below this: the variation is float noise on one point

REMEDIES = (
    "Usual remedies: stronger augmentation (smaller crop_scale, colour jitter), a predictor "
    "head or a momentum target (BYOL/SimSiam-style methods collapse without them), a "
    "different temperature, or a lower learning rate."
)


def _normalise(x):
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def std_fraction(features):
  z = _normalise(features)
  return float(np.mean(np.std(z, axis=0)) * np.sqrt(z.shape[1]))


def effective_rank(features, eps=1e-7, *, centered=False):
  x = np.asarray(features, np.float64)
  singular = np.linalg.svd(x - x.mean(0) if centered else x, compute_uv=False)
  p = singular / max(np.sum(singular), 1e-30) + eps
  return float(np.exp(-np.sum(p * np.log(p))))


def relative_spread(features):
  x = np.asarray(features, np.float64)
  mean = x.mean(0)
  return float(np.sqrt(np.mean(np.sum((x - mean) ** 2, axis=1))) / max(np.linalg.norm(mean), 1e-30))


def alignment(features_a, features_b):
  return float(np.mean(np.sum((_normalise(features_a) - _normalise(features_b)) ** 2, axis=1)))


def uniformity(features):
  z = _normalise(features)
  sq = np.maximum(2 - 2 * z @ z.T, 0)  # squared distances of unit vectors
  upper = sq[np.triu_indices(len(z), k=1)]
  return float(np.log(np.mean(np.exp(-2 * upper))))


def diagnose(results):
  """Warning (or note) lines for collapsed- or anisotropic-looking results (empty when healthy)."""
  lines = []
  centered = results["effective_rank_centered"] / results["max_rank"]
  real_variation = (
      centered >= RANK_FRACTION_WARNING and results["relative_spread"] >= SPREAD_WARNING
  )
  low_std = results["std_fraction"] < STD_FRACTION_WARNING
  if low_std and not real_variation:
    lines.append(
        f"WARNING: representation collapse? collapse/std_fraction={results['std_fraction']:.3g} "
        f"< {STD_FRACTION_WARNING} (the features of different images nearly coincide)."
    )
  if centered < RANK_FRACTION_WARNING:
    lines.append(
        f"WARNING: dimensional collapse? collapse/effective_rank_centered="
        f"{results['effective_rank_centered']:.3g} is {centered:.3g} of the "
        f"{results['max_rank']} possible (< {RANK_FRACTION_WARNING}): the features vary "
        "along very few directions."
    )
  if lines:
    return lines + [REMEDIES]
  if low_std or results["effective_rank_fraction"] < RANK_FRACTION_WARNING:
    lines.append(
        f"NOTE: anisotropic features, not collapse: a common offset dominates them "
        f"(collapse/std_fraction={results['std_fraction']:.3g}, raw effective_rank="
        f"{results['effective_rank']:.3g}), but around their mean they vary along "
        f"{results['effective_rank_centered']:.3g} of {results['max_rank']} dimensions "
        f"(relative_spread={results['relative_spread']:.3g}). Cosine kNN suffers from the "
        "offset; fine-tuning and a probe on standardised features do not (MAE's features "
        "are known to be like this)."
    )
  return lines


class Collapse:
  """`config.evals.NAME = dict(type='collapse', every_steps=..., num_images=1024)`."""

  def __init__(self, *, data, every_steps, num_images=1024, seed=0):
    if num_images < 2:
      raise ValueError(f"collapse evaluator needs num_images >= 2, got {num_images}")
    self.data, self.every_steps, self.num_images, self.seed = data, every_steps, num_images, seed

  def run(self, features_of):
    _, _, test_x, _ = self.data.features(features_of)
    n = min(self.num_images, len(test_x))
    view_a, view_b = self.data.augmented_pairs(n, self.seed)
    results = {
        "std_fraction": std_fraction(test_x),
        "effective_rank": effective_rank(test_x),
        "effective_rank_centered": effective_rank(test_x, centered=True),
        "relative_spread": relative_spread(test_x),
        "max_rank": min(test_x.shape),
        "alignment": alignment(features_of(view_a), features_of(view_b)),
        "uniformity": uniformity(test_x[:n]),
    }
    results["effective_rank_fraction"] = results["effective_rank"] / results["max_rank"]
    for line in diagnose(results):
      print(line, flush=True)
    return results
