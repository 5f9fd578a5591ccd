"""Our losses against lightly's on the same float32 inputs: values and gradients, no torch needed.

The fixture tests/data/lightly_losses.npz was written by lightly 1.6.0 on torch 2.14.1+cu130 (CPU,
float32, autograd gradients) from the repo root with

  /tmp/parity_venv/bin/python experiments/parity/make_loss_goldens.py \
      --out=tests/data/lightly_losses.npz

where /tmp/parity_venv is any venv holding torch and lightly (no jax needed). Each case is a key
prefix (`ntxent_tau0.2/z1`, `.../loss`, `.../grad_z1`, hyperparameters as 0-d arrays).

Conventions that differ, converted at each comparison with a one-line reason:
- BYOL and SimSiam: the fixture holds lightly's NegativeCosineSimilarity (-mean cos) for each
  direction, ncs_12 = ncs(p1, z2) and ncs_21 = ncs(p2, z1), and the gradients of their sum. Our BYOL
  sums mean(2 - 2 cos) over the directions, so ours = 4 + 2 * (ncs_12 + ncs_21); our SimSiam
  averages them, so ours = (ncs_12 + ncs_21) / 2.
- MoCo v3: lightly 1.6.0 has no MoCo v3 loss, and its in-batch NTXentLoss(q, k) is not MoCo v3's
  ctr: it also uses q-q negatives and k as anchors, so no constant converts it. The generator builds
  ctr(q, k) / (2 tau) exactly from NTXentLoss's memory-bank path (query i, positive k_i, a bank of
  the other n - 1 keys), averaged over queries; ours scales each ctr by 2 tau as the paper does.
- DINO: lightly's warm-up is linspace(start, end, W) indexed by epoch, reaching `end` at W - 1;
  ours reaches it at `warmup_steps`, so ours(warmup_steps=W - 1) is lightly(W). lightly updates its
  centre after the loss, so the loss used the centre set before the call, as ours does.
- SwAV's queue: lightly appends the queue's scores after the batch, ours prepends them; Sinkhorn
  treats batch columns alike, so only the summation order differs. lightly's Sinkhorn omits the
  row step's division by K, which the column step that follows cancels exactly.
- MoCo v2's enqueue: lightly drops keys that would wrap past the bank's end, ours wraps them; the
  fixture's pointer + n lands exactly on K, where the two agree.
- MAE: lightly has no MAE loss class; its recipe is MSELoss on the masked target patches (gathered
  with get_at_index, normalised with normalize_mean_var for norm_pix), the same mean as ours when
  every patch has P values. lightly's patchify takes NCHW images, ours NHWC.
Barlow Twins (our task's `scale_loss` sits outside the loss), VICReg and NT-Xent need no conversion.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import barlow_twins, byol, dino, mae, moco, ntxent, simsiam, swav, vicreg

FIXTURE = pathlib.Path(__file__).parent / "data" / "lightly_losses.npz"
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def golden():
  with np.load(FIXTURE) as data:
    return {name: data[name] for name in data.files}


def _case(golden, prefix):
  return {
      key.split("/", 1)[1]: value for key, value in golden.items() if key.startswith(prefix + "/")
  }


def _close(actual, expected, rtol=RTOL, atol=ATOL):
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)


def _value_and_grads(loss_fn, *args):
  """The loss (first output) and its gradients with respect to every argument."""
  # One small compile per call is faster here than eager op-by-op dispatch.
  argnums = tuple(range(len(args)))
  return jax.jit(jax.value_and_grad(lambda *a: loss_fn(*a)[0], argnums=argnums))(*args)


def test_fixture_versions_match_docstring(golden):
  assert str(golden["lightly_version"]) == "1.6.0"
  assert str(golden["torch_version"]) == "2.14.1+cu130"


@pytest.mark.parametrize("prefix", ["ntxent_tau0.2", "ntxent_tau0.5"])
def test_ntxent(golden, prefix):
  c = _case(golden, prefix)
  loss, (grad_z1, grad_z2) = _value_and_grads(
      lambda z1, z2: ntxent.ntxent(z1, z2, temperature=float(c["temperature"])), c["z1"], c["z2"]
  )
  _close(loss, c["loss"])
  _close(grad_z1, c["grad_z1"])
  _close(grad_z2, c["grad_z2"])


def test_moco_v2(golden):
  c = _case(golden, "moco_v2")
  loss, (grad_q, grad_k) = _value_and_grads(
      lambda q, k: moco.moco_v2(q, k, c["queue"], temperature=float(c["temperature"])),
      c["q"],
      c["k"],
  )
  _close(loss, c["loss"])
  _close(grad_q, c["grad_q"])
  assert not np.any(grad_k)  # keys are the momentum encoder's; lightly's were detached
  queue, pointer = moco.enqueue(c["queue"], int(c["pointer"]), moco.normalize(c["k"]))
  _close(queue, c["queue_after"])
  assert int(pointer) == int(c["pointer_after"])


def test_moco_v3(golden):
  c = _case(golden, "moco_v3")
  tau = float(c["temperature"])
  loss, (grad_q1, grad_q2, grad_k1, grad_k2) = _value_and_grads(
      lambda *qk: moco.moco_v3(*qk, temperature=tau), c["q1"], c["q2"], c["k1"], c["k2"]
  )
  # lightly's ce_12, ce_21 are ctr / (2 tau) (see the module docstring), so ours = 2 tau * sum.
  _close(loss, 2 * tau * (c["ce_12"] + c["ce_21"]))
  _close(grad_q1, 2 * tau * c["grad_q1"])
  _close(grad_q2, 2 * tau * c["grad_q2"])
  assert not np.any(grad_k1) and not np.any(grad_k2)


def test_byol(golden):
  c = _case(golden, "negative_cosine")
  loss, grads = _value_and_grads(byol.byol, c["p1"], c["p2"], c["z1"], c["z2"])
  # lightly's ncs = -mean cos per direction; ours sums mean(2 - 2 cos): ours = 4 + 2 * (sum of ncs).
  _close(loss, 4 + 2 * (c["ncs_12"] + c["ncs_21"]))
  _close(grads[0], 2 * c["grad_p1"])
  _close(grads[1], 2 * c["grad_p2"])
  assert not np.any(grads[2]) and not np.any(grads[3])


def test_simsiam(golden):
  c = _case(golden, "negative_cosine")
  loss, grads = _value_and_grads(simsiam.simsiam, c["p1"], c["p2"], c["z1"], c["z2"])
  # lightly's recipe sums the two directions' -mean cos; ours averages them: ours = sum / 2.
  _close(loss, (c["ncs_12"] + c["ncs_21"]) / 2)
  _close(grads[0], c["grad_p1"] / 2)
  _close(grads[1], c["grad_p2"] / 2)
  assert not np.any(grads[2]) and not np.any(grads[3])


def test_barlow_twins(golden):
  c = _case(golden, "barlow_twins")
  loss, (grad_z1, grad_z2) = _value_and_grads(
      lambda z1, z2: barlow_twins.barlow_twins(z1, z2, lambd=float(c["lambd"])), c["z1"], c["z2"]
  )
  _close(loss, c["loss"])
  _close(grad_z1, c["grad_z1"])
  _close(grad_z2, c["grad_z2"])


def test_vicreg(golden):
  c = _case(golden, "vicreg")
  weights = {name: float(c[name]) for name in ("sim_weight", "var_weight", "cov_weight")}
  loss, (grad_z1, grad_z2) = _value_and_grads(
      lambda z1, z2: vicreg.vicreg(z1, z2, **weights), c["z1"], c["z2"]
  )
  _close(loss, c["loss"])
  _close(grad_z1, c["grad_z1"])
  _close(grad_z2, c["grad_z2"])


@pytest.mark.parametrize("prefix", ["dino_views2", "dino_views4"])
def test_dino(golden, prefix):
  c = _case(golden, prefix)
  warmup_epochs, epoch = int(c["warmup_epochs"]), int(c["epoch"])
  schedule = {
      "warmup_steps": warmup_epochs - 1,  # lightly's linspace reaches `end` at W - 1
      "start": float(c["warmup_teacher_temperature"]),
      "end": float(c["teacher_temperature"]),
  }
  ours_schedule = [dino.teacher_temperature_schedule(s, **schedule) for s in range(warmup_epochs)]
  _close(jnp.stack(ours_schedule), c["temperature_schedule"])
  # A Python float: dino's `> 0` check cannot run on a concrete array closed over under jit.
  teacher_temperature = float(dino.teacher_temperature_schedule(epoch, **schedule))
  loss, (grad_student,) = _value_and_grads(
      lambda s: dino.dino(
          s,
          c["teacher"],
          c["center"],
          teacher_temperature=teacher_temperature,
          student_temperature=float(c["student_temperature"]),
      ),
      c["student"],
  )
  _close(loss, c["loss"])
  _close(grad_student, c["grad_student"])
  center = dino.update_center(c["center"], c["teacher"], momentum=float(c["center_momentum"]))
  _close(center, c["center_after"])


@pytest.mark.parametrize("prefix", ["swav", "swav_queue"])
def test_swav(golden, prefix):
  c = _case(golden, prefix)
  kwargs = {
      "temperature": float(c["temperature"]),
      "epsilon": float(c["epsilon"]),
      "sinkhorn_iterations": int(c["iterations"]),
      "queue_scores": c.get("queue_scores"),
  }
  loss, (grad_scores,) = _value_and_grads(lambda s: swav.swav(s, **kwargs), c["scores"])
  _close(loss, c["loss"])
  _close(grad_scores, c["grad_scores"])


def test_sinkhorn(golden):
  c = _case(golden, "swav")
  codes = swav.sinkhorn(
      c["scores"][0], epsilon=float(c["epsilon"]), iterations=int(c["iterations"])
  )
  _close(codes, c["codes_view0"])


@pytest.mark.parametrize("norm_pix", [False, True])
def test_mae(golden, norm_pix):
  c = _case(golden, f"mae_normpix{int(norm_pix)}")
  patches = mae.patchify(c["images_nchw"].transpose(0, 2, 3, 1), int(c["patch_size"]))  # NHWC
  np.testing.assert_array_equal(patches, c["patches"])
  loss, (grad_predictions,) = _value_and_grads(
      lambda p: mae.mae_loss(p, patches, c["mask"], norm_pix=norm_pix), c["predictions"]
  )
  _close(loss, c["loss"])
  _close(grad_predictions, c["grad_predictions"])
