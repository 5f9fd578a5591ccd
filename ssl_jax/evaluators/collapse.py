"""Collapse diagnostics on frozen features of the eval split.

  std_fraction     mean over dimensions of the std of the L2-normalised features, times sqrt(D):
                   about 1 when the features spread over the sphere, 0 when every image maps to one
                   point (complete collapse; SimSiam paper, Chen & He 2021, fig. 2).
  effective_rank   RankMe (Garrido et al. 2023): exp of the entropy of the normalised singular
                   values of the feature matrix; low when features span few dimensions
                   (dimensional collapse). `effective_rank_fraction` divides by min(N, D).
  alignment        E ||f(x) - f(x')||^2 over two augmented views of one image (Wang & Isola 2020,
                   alpha = 2) on normalised features: low is good.
  uniformity       log E exp(-2 ||f(x) - f(y)||^2) over pairs of distinct images (t = 2): more
                   negative is more uniform; 0 means collapsed.

A warning is printed when std_fraction < STD_FRACTION_WARNING or effective_rank_fraction <
RANK_FRACTION_WARNING (thresholds set well below what our healthy tiny runs show:
experiments/README.md).
"""
import numpy as np

STD_FRACTION_WARNING = 0.05
RANK_FRACTION_WARNING = 0.02

REMEDIES = ("Usual remedies: stronger augmentation (smaller crop_scale, colour jitter), a predictor "
            "head or a momentum target (BYOL/SimSiam-style methods collapse without them), a "
            "different temperature, or a lower learning rate.")


def _normalise(x):
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def std_fraction(features):
  z = _normalise(features)
  return float(np.mean(np.std(z, axis=0)) * np.sqrt(z.shape[1]))


def effective_rank(features, eps=1e-7):
  singular = np.linalg.svd(np.asarray(features, np.float64), compute_uv=False)
  p = singular / max(np.sum(singular), 1e-30) + eps
  return float(np.exp(-np.sum(p * np.log(p))))


def alignment(features_a, features_b):
  return float(np.mean(np.sum((_normalise(features_a) - _normalise(features_b)) ** 2, axis=1)))


def uniformity(features):
  z = _normalise(features)
  sq = np.maximum(2 - 2 * z @ z.T, 0)  # squared distances of unit vectors
  upper = sq[np.triu_indices(len(z), k=1)]
  return float(np.log(np.mean(np.exp(-2 * upper))))


def diagnose(results):
  """Warning lines for collapsed-looking results (empty when healthy)."""
  lines = []
  if results["std_fraction"] < STD_FRACTION_WARNING:
    lines.append(f"WARNING: representation collapse? collapse/std_fraction={results['std_fraction']:.3g} "
                 f"< {STD_FRACTION_WARNING} (the features of different images nearly coincide).")
  if results["effective_rank_fraction"] < RANK_FRACTION_WARNING:
    lines.append(f"WARNING: dimensional collapse? collapse/effective_rank={results['effective_rank']:.3g} "
                 f"is {results['effective_rank_fraction']:.3g} of the {results['max_rank']} possible "
                 f"(< {RANK_FRACTION_WARNING}).")
  if lines:
    lines.append(REMEDIES)
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
    results = {"std_fraction": std_fraction(test_x), "effective_rank": effective_rank(test_x),
               "max_rank": min(test_x.shape), "alignment": alignment(features_of(view_a), features_of(view_b)),
               "uniformity": uniformity(test_x[:n])}
    results["effective_rank_fraction"] = results["effective_rank"] / results["max_rank"]
    for line in diagnose(results):
      print(line, flush=True)
    return results
