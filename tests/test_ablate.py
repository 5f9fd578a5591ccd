"""The pretext ablation: its plan (recipes, equal budget, sweeps), its outputs, and resume."""

import json
import os

import pytest

from ssl_jax import ablate
from ssl_jax import config as config_lib
from ssl_jax import main as main_lib
from ssl_jax.ablation import planning
from ssl_jax.ablation import running


def _config(*overrides, arg=""):
  c = config_lib.load("configs/ablate.py" + (f":{arg}" if arg else ""))
  return config_lib.finalize(
      config_lib.override(c, list(overrides), planning.SCHEMA), schema=planning.SCHEMA
  )


def test_plan_covers_every_image_task_with_one_budget_and_the_sweeps():
  runs = planning.plan(_config())
  names = [planning.run_name(t, s) for t, s, _ in runs]
  image = planning.image_tasks()
  assert "ts2vec" not in image and {"simclr", "mae", "jigsaw", "dino"} <= set(image)
  assert [t for t, s, _ in runs if not s] == image  # every task's recipe run, in order
  assert len(names) == len(set(names))
  budgets = {
      (c.total_steps, c.global_batch_size, c.seed, c.data.source, c.data.image_size)
      for _, _, c in runs
  }
  assert budgets == {(120, 256, 0, "mnist", 28)}
  encoders = {
      t: (c.model.name, c.model.depth, c.model.width_multiplier) for t, s, c in runs if not s
  }
  assert encoders.pop("mae")[0] == "vit"  # the documented exception
  assert set(encoders.values()) == {("resnet", 10, 0.25)}
  # 0.75 is MAE's recipe value: its run is the recipe's row
  assert [s for t, s, _ in runs if t == "mae" and s] == [
      {"task_kwargs.mask_ratio": 0.5},
      {"task_kwargs.mask_ratio": 0.9},
  ]
  swept = {t for t, s, _ in runs if "task_kwargs.num_prototypes" in s}
  assert swept == {"swav", "dino", "deepcluster_v2"}
  assert {t for t, s, _ in runs if "augment.crop_scale" in s} == {"simclr", "byol"}
  # each run carries its task's recipe (loss settings, optimiser) and its sweep value
  by_name = {planning.run_name(t, s): c for t, s, c in runs}
  recipe = config_lib.load("configs/byol_cifar10.py:tiny")
  byol = by_name["byol"]
  # the recipe's loss settings with the ablation's short-budget override laid over them, in the
  # recipe's run and in its sweeps alike
  assert byol.task_kwargs.to_dict() == {**recipe.task_kwargs.to_dict(), "base_momentum": 0.9}
  assert {c.task_kwargs.base_momentum for t, _, c in runs if t == "byol"} == {0.9}
  assert (
      by_name["mae-mask_ratio=0.9"].model.pool == "gap"
      and by_name["swav"].task_kwargs.epsilon == 0.01
  )
  assert (byol.optimizer.name, byol.optimizer.base_learning_rate) == ("lars", 1.0)
  assert byol.augment.flip_prob == 0.0  # the ablation's views, not CIFAR's
  assert by_name["mae-mask_ratio=0.9"].task_kwargs.mask_ratio == 0.9
  assert tuple(by_name["deepcluster_v2-num_prototypes=10,10"].task_kwargs.num_prototypes) == (
      10,
      10,
  )
  strong = by_name["simclr-crop_scale=0.08,1.0_jitter_strength=1.0"]
  assert tuple(strong.augment.crop_scale) == (0.08, 1.0) and strong.augment.jitter_strength == 1.0
  affine = [c for t, s, c in runs if t == "byol" and "augment.affine_prob" in s]
  assert len(affine) == 1 and affine[0].augment.rotate_degrees == 15.0
  # the main job's elastic views everywhere, and once without them for SimCLR and BYOL
  assert (
      by_name["mae"].augment.elastic_prob == 0.8 and by_name["simclr"].augment.elastic_alpha == 34
  )
  plain = [
      t for t, s, c in runs if s == {"augment.elastic_prob": 0.0} and c.augment.elastic_prob == 0
  ]
  assert plain == ["simclr", "byol"] or sorted(plain) == ["byol", "simclr"]
  assert all(not c.evals and c.label_efficiency.enabled for _, _, c in runs)


def test_quick_variant_has_no_sweeps_and_a_smaller_budget():
  runs = planning.plan(_config(arg="quick"))
  assert [t for t, _, _ in runs] == planning.image_tasks() and all(not s for _, s, _ in runs)
  assert {c.total_steps for _, _, c in runs} == {30}


def test_bad_ablation_settings_fail_naming_the_key():
  with pytest.raises(ValueError, match=r"ablation.tasks has \['sim_clr'\]"):
    planning.plan(_config("ablation.tasks=('sim_clr',)"))
  with pytest.raises(ValueError, match="ablation.sweeps.mask_ratio must be"):
    planning.plan(_config("ablation.sweeps.mask_ratio={'values': (0.5,)}"))
  with pytest.raises(FileNotFoundError, match="no recipe"):
    planning.plan(_config("ablation.recipe=configs/{task}_imagenet.py"))
  with pytest.raises(KeyError, match="does not take"):  # checked when the run's task is built
    from ssl_jax import train  # pylint: disable=g-import-not-at-top

    runs = planning.plan(
        _config(
            "ablation.tasks=('simclr',)",
            "ablation.overrides.simclr=('task_kwargs.mask_ratio=0.5',)",
        )
    )
    train.build_task(runs[0][2])


TINY = [
    "--config=configs/ablate.py:quick",
    "--config.ablation.tasks=('rotation','simclr')",
    "--config.total_steps=4",
    "--config.global_batch_size=64",
    "--config.mesh.data=1",
    "--config.checkpoint_every_steps=2",
    "--config.log_every_steps=2",
    "--config.ablation.labels_per_class=(1,5)",
    "--config.ablation.finetune_labels_per_class=2",
    "--config.finetune.steps=4",
    "--config.finetune.eval_every=2",
    "--config.finetune.kfold=0",
]


def _ablate(args):
  """What `python -m ssl_jax.ablate ARGS` runs (main() would initialise jax.distributed again)."""
  return running.run(*ablate.parse(args))


@pytest.mark.slow
def test_ablation_writes_its_outputs_and_resumes_after_a_kill(tmp_path, monkeypatch):
  workdir = str(tmp_path / "ablate")
  evaluate = running.evaluate

  def killed_on_simclr(run_config, result, ablation):
    if run_config.task == "simclr":  # after its pre-training finished: a kill during evaluation
      raise KeyboardInterrupt
    return evaluate(run_config, result, ablation)

  monkeypatch.setattr(running, "evaluate", killed_on_simclr)
  with pytest.raises(KeyboardInterrupt):
    _ablate(TINY + [f"--workdir={workdir}"])
  first = json.load(open(os.path.join(workdir, "ablation.json")))["rows"]
  assert [r["task"] for r in first] == ["rotation"]
  assert os.listdir(os.path.join(workdir, "runs", "simclr", "checkpoints"))

  monkeypatch.setattr(running, "evaluate", evaluate)
  rows = _ablate(TINY + [f"--workdir={workdir}"])
  assert rows[0] == first[0]  # the finished row is kept as it was
  simclr = rows[1]
  assert simclr["task"] == "simclr" and simclr["resumed"] and simclr["setting"] == {}
  for r in rows:
    assert 0 <= r["knn_accuracy"] <= 1 and 0 <= r["finetune_accuracy"] <= 1
    assert set(r["linear_probe"]) == {"1", "5"} and r["images_seen"] == 4 * 64
    assert {"effective_rank", "std_fraction"} <= set(r["collapse"])
  table = open(os.path.join(workdir, "ablation.md")).read()
  assert "`rotation`" in table and "`simclr`" in table and "probe @5" in table
  assert os.path.getsize(os.path.join(workdir, "ablation.png")) > 1000

  # a changed run config must not silently reuse the finished rows
  with pytest.raises(ValueError, match="used another config"):
    _ablate(TINY + [f"--workdir={workdir}", "--config.seed=1"])


def test_parse_accepts_ablation_sweep_overrides(tmp_path):
  config, _ = ablate.parse(
      [
          "--config=configs/ablate.py",
          f"--workdir={tmp_path}",
          "--config.ablation.sweeps.temperature="
          "{'settings': ({'task_kwargs.temperature': 0.3},), 'tasks': ()}",
      ]
  )
  runs = planning.plan(config)
  assert {t for t, s, _ in runs if "task_kwargs.temperature" in s} >= {"simclr", "moco_v2"}


def test_the_ablation_section_is_the_ablations_own(tmp_path):
  """`ablation` is not a library key: the ablation adds it with its defaults and schema, its
  unknown keys are refused before any work, and its runs' configs hold the library's keys only."""
  assert "ablation" not in config_lib.base_config()
  config = _config("ablation.tasks=('simclr',)")
  assert config.ablation.knn_k == planning.defaults().knn_k == 20
  assert all("ablation" not in c for _, _, c in planning.plan(config))
  with pytest.raises(KeyError, match="'ablation.knn_kk'; closest valid key: 'ablation.knn_k'"):
    ablate.parse(
        ["--config=configs/ablate.py", f"--workdir={tmp_path}", "--config.ablation.knn_kk=3"]
    )
  config = config_lib.load("configs/ablate.py")
  config.ablation.sweepz = ()  # a typo in a config file
  with pytest.raises(KeyError, match="'ablation.sweepz'; closest valid key: 'ablation.sweeps'"):
    config_lib.check_known_keys(config, planning.SCHEMA)
  with pytest.raises(KeyError, match="unknown config key 'ablation'"):  # the library's command
    main_lib.parse(["--config=configs/ablate.py", f"--workdir={tmp_path}"])
  with pytest.raises(KeyError, match="no 'ablation' section"):
    planning.plan(config_lib.load("configs/default.py"))
