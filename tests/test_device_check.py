"""experiments/device_check.sh --dry_run: every stage of the one-call GPU check (DEVICE.md) runs on
the CPU with tiny models and lands in one JSON, with figures or an explicit error.

The dry run compiles six train steps in nine fresh processes, as the device does: 1.5-3 minutes
on 2 CPU cores, hence `slow` (CI runs it). The static checks beside it are fast."""

import json
import numbers
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "experiments"))

import device_check  # noqa: E402


@pytest.mark.slow
def test_dry_run_writes_every_stage_with_figures_or_an_error(tmp_path):
  out = tmp_path / "out"
  # the stages run as on the device, on one device: not the 8 simulated ones of conftest.py
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "OUT")}
  env["PYTHON"] = sys.executable
  proc = subprocess.run(
      ["bash", "experiments/device_check.sh", "--dry_run", "--out", str(out)],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=480,
  )
  log = proc.stdout[-4000:] + proc.stderr[-2000:]
  assert proc.returncode == 0, log
  path = out / "device_check.json"
  assert proc.stdout.strip().splitlines()[-1] == str(path), log  # the JSON's path comes last
  assert (out / "device_check.log").is_file()
  report = json.loads(path.read_text())
  assert report["dry_run"] is True
  assert list(report["stages"]) == list(device_check.STAGES)
  for name, stage in report["stages"].items():
    assert stage["settings"]["timeout_s"] > 0, name
    if stage["status"] == "ok":
      headline = stage["figures"][device_check.HEADLINE[name]]
      assert isinstance(headline, numbers.Number) and headline > 0, (name, stage["figures"])
    else:
      assert stage["status"] in ("error", "timeout", "skipped") and stage["error"], (name, stage)
  stages = report["stages"]
  # the stages built on the loop's SimCLR step alone (no other engineer's module) must run here
  for name in (
      "environment",
      "simclr_r50",
      "memory_full_batch",
      "memory_micro_batch",
      "cifar10_knn",
      "tests",
  ):
    assert stages[name]["status"] == "ok", (name, stages[name].get("error"), log)
  simclr = stages["simclr_r50"]["figures"]
  for key in ("synthetic_images_per_s", "host_pipeline_images_per_s", "pipeline_images_per_s"):
    assert simclr[key] > 0, simclr
  assert stages["memory_micro_batch"]["figures"]["probes"][0]["fits"]
  knn = stages["cifar10_knn"]["figures"]
  assert 0 <= knn["knn_accuracy_random_init"] <= 1 and 0 <= knn["knn_accuracy_trained"] <= 1
  assert isinstance(knn["learns"], bool) and knn["steps"] >= 1
  assert stages["tests"]["figures"]["failed"] == 0 and "tests/test_config.py" in (
      stages["tests"]["figures"]["command"]
  )


def test_dry_run_stays_off_shared_data_and_names_what_the_device_needs():
  """The dry run reads no ../shared file; the device's CIFAR-10 comes from the carried subset."""
  for name, settings in device_check.DRY.items():
    assert "shared" not in json.dumps(settings), name
  assert device_check.GPU["cifar10_knn"]["source"] == f"npz:{device_check.CIFAR_SUBSET}"
  before_tests = sum(s["timeout_s"] for n, s in device_check.GPU.items() if n != "tests")
  assert before_tests <= device_check.BUDGET_S - 15  # the tests stage always gets a chance
