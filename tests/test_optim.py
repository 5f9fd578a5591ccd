"""Optimiser groups: frozen parameters stay put, multipliers scale, decay skips biases and norms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import config as config_lib
from ssl_jax import optim


def _params():
  return {
      "encoder": {
          "conv": {"kernel": jnp.ones((3, 3))},
          "bn": {"scale": jnp.ones(3), "bias": jnp.ones(3)},
      },
      "head": {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}},
  }


def _update(**overrides):
  c = config_lib.base_config()
  c.optimizer.warmup_epochs = 0.0
  c.optimizer.schedule = "constant"
  for key, value in overrides.items():
    c.optimizer[key] = value
  params = _params()
  tx, schedule = optim.build(c, params, global_batch_size=256, total_steps=10, steps_per_epoch=5)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates, schedule


def test_frozen_group_gets_no_update():
  updates, _ = _update(name="sgd", frozen_regex=r"^encoder/")
  assert all(np.all(u == 0) for u in jax.tree.leaves(updates["encoder"]))
  assert all(np.all(u != 0) for u in jax.tree.leaves(updates["head"]))
  with pytest.raises(ValueError, match="matches no parameter"):
    _update(frozen_regex=r"^nothing/")


def test_lr_multiplier_scales_its_group():
  plain, _ = _update(name="sgd", momentum=0.0)
  scaled, _ = _update(name="sgd", momentum=0.0, lr_multipliers=((r"^head/", 0.1),))
  np.testing.assert_allclose(
      scaled["head"]["dense"]["kernel"], 0.1 * plain["head"]["dense"]["kernel"], rtol=1e-6
  )
  np.testing.assert_allclose(
      scaled["encoder"]["conv"]["kernel"], plain["encoder"]["conv"]["kernel"]
  )


def test_weight_decay_skips_biases_and_norm_parameters():
  with_decay, _ = _update(name="sgd", momentum=0.0, weight_decay=0.5)
  without, _ = _update(name="sgd", momentum=0.0, weight_decay=0.0)
  assert not np.allclose(
      with_decay["encoder"]["conv"]["kernel"], without["encoder"]["conv"]["kernel"]
  )
  for path in (("encoder", "bn", "scale"), ("encoder", "bn", "bias"), ("head", "dense", "bias")):
    a, b = with_decay, without
    for key in path:
      a, b = a[key], b[key]
    np.testing.assert_allclose(a, b)


def test_lars_learning_rate_follows_simclr_scaling():
  c = config_lib.base_config()
  schedule = optim.learning_rate(c, 4096, total_steps=1000, steps_per_epoch=10)
  assert float(schedule(100)) == pytest.approx(0.3 * 4096 / 256, rel=1e-5)  # peak after 10 epochs
  assert float(schedule(0)) == 0.0 and float(schedule(1000)) == pytest.approx(0.0, abs=1e-6)


def test_unknown_optimizer_is_refused():
  with pytest.raises(ValueError, match="accepted: 'lars', 'sgd', 'adamw'"):
    _update(name="adam")
