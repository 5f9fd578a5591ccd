"""Writes lightly's losses and autograd gradients on fixed inputs for tests/test_loss_goldens.py.

Runs in the reference venv (torch + lightly, no jax), from the repo root:

  /tmp/parity_venv/bin/python experiments/parity/make_loss_goldens.py \
      --out=tests/data/lightly_losses.npz

Inputs are drawn in float64 from a fixed numpy seed and cast to float32; lightly then runs in
float32 on CPU. Every case is a key prefix ("ntxent_tau0.2/z1", ".../loss", ".../grad_z1", and its
hyperparameters as 0-d arrays), so the test reads all it needs from the file. Only numbers leave
this script. The conventions the test converts are listed in that test's docstring.
"""

import argparse
import os

import lightly
import numpy as np
import torch
import torch.nn.functional as F
from lightly.loss import (
    BarlowTwinsLoss,
    DINOLoss,
    NegativeCosineSimilarity,
    NTXentLoss,
    SwaVLoss,
    VICRegLoss,
)
from lightly.loss.swav_loss import sinkhorn
from lightly.models import utils as lightly_utils

BATCH, DIM = 8, 16


def _draw(rng, *shape, scale=1.0):
  """float64 draw cast to float32, so both frameworks see the same bits."""
  return (scale * rng.standard_normal(shape)).astype(np.float32)


def _unit_rows(x):
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _leaf(x):
  return torch.from_numpy(np.array(x)).requires_grad_(True)


def _np(t):
  return t.detach().cpu().numpy().astype(np.float32)


def _with_prefix(prefix, arrays):
  return {f"{prefix}/{name}": np.asarray(value) for name, value in arrays.items()}


def ntxent_cases(rng):
  z1, z2 = _draw(rng, BATCH, DIM), _draw(rng, BATCH, DIM)
  out = {}
  for temperature in (0.2, 0.5):
    t1, t2 = _leaf(z1), _leaf(z2)
    loss = NTXentLoss(temperature=temperature, memory_bank_size=0)(t1, t2)
    loss.backward()
    out.update(
        _with_prefix(
            f"ntxent_tau{temperature}",
            dict(
                z1=z1,
                z2=z2,
                temperature=np.float32(temperature),
                loss=_np(loss),
                grad_z1=_np(t1.grad),
                grad_z2=_np(t2.grad),
            ),
        )
    )
  return out


def moco_v2_case(rng, temperature=0.2, queue_size=32, pointer=24):
  """Memory-bank NT-Xent with a known bank; the call also enqueues the keys, which we record."""
  q, k = _draw(rng, BATCH, DIM), _draw(rng, BATCH, DIM)
  queue = _unit_rows(rng.standard_normal((queue_size, DIM)))
  loss_fn = NTXentLoss(temperature=temperature, memory_bank_size=(queue_size, DIM))
  with torch.no_grad():
    loss_fn.memory_bank.bank.copy_(torch.from_numpy(queue))
    loss_fn.memory_bank.bank_ptr.fill_(pointer)
  tq = _leaf(q)
  loss = loss_fn(tq, torch.from_numpy(k))  # keys come from the momentum encoder: no gradient
  loss.backward()
  return _with_prefix(
      "moco_v2",
      dict(
          q=q,
          k=k,
          queue=queue,
          pointer=np.int32(pointer),
          temperature=np.float32(temperature),
          loss=_np(loss),
          grad_q=_np(tq.grad),
          queue_after=_np(loss_fn.memory_bank.bank),
          pointer_after=np.int32(loss_fn.memory_bank.bank_ptr.item()),
      ),
  )


def _in_batch_infonce(q, k, temperature):
  """Mean over i of CE([q_i.k_i, q_i.k_j (j != i)] / tau, 0), each row one lightly NTXentLoss call.

  lightly 1.6.0 has no MoCo v3 loss and its in-batch NTXentLoss adds q-q negatives; its memory-bank
  path with a per-query bank holding the other n - 1 keys is exactly MoCo v3's ctr(q, k) / (2 tau).
  """
  n = q.shape[0]
  total = 0.0
  for i in range(n):
    loss_fn = NTXentLoss(temperature=temperature, memory_bank_size=(n - 1, q.shape[1]))
    with torch.no_grad():
      others = F.normalize(torch.cat([k[:i], k[i + 1 :]]), dim=1)
      loss_fn.memory_bank.bank.copy_(others)
    total = total + loss_fn(q[i : i + 1], k[i : i + 1].detach())
  return total / n


def moco_v3_case(rng, temperature=0.2):
  q1, q2, k1, k2 = (_draw(rng, BATCH, DIM) for _ in range(4))
  tq1, tq2 = _leaf(q1), _leaf(q2)
  tk1, tk2 = torch.from_numpy(k1), torch.from_numpy(k2)
  ctr_12 = _in_batch_infonce(tq1, tk2, temperature)
  ctr_21 = _in_batch_infonce(tq2, tk1, temperature)
  ctr_12.backward()
  ctr_21.backward()
  return _with_prefix(
      "moco_v3",
      dict(
          q1=q1,
          q2=q2,
          k1=k1,
          k2=k2,
          temperature=np.float32(temperature),
          ce_12=_np(ctr_12),
          ce_21=_np(ctr_21),
          grad_q1=_np(tq1.grad),
          grad_q2=_np(tq2.grad),
      ),
  )


def negative_cosine_case(rng):
  """lightly's BYOL/SimSiam recipe: ncs(p1, z2) + ncs(p2, z1), targets detached."""
  p1, p2, z1, z2 = (_draw(rng, BATCH, DIM) for _ in range(4))
  tp1, tp2 = _leaf(p1), _leaf(p2)
  criterion = NegativeCosineSimilarity()
  ncs_12 = criterion(tp1, torch.from_numpy(z2))
  ncs_21 = criterion(tp2, torch.from_numpy(z1))
  (ncs_12 + ncs_21).backward()
  return _with_prefix(
      "negative_cosine",
      dict(
          p1=p1,
          p2=p2,
          z1=z1,
          z2=z2,
          ncs_12=_np(ncs_12),
          ncs_21=_np(ncs_21),
          grad_p1=_np(tp1.grad),
          grad_p2=_np(tp2.grad),
      ),
  )


def _two_view_case(prefix, loss_fn, rng, extra):
  # Correlated views (shared signal + noise), so the terms are not all at their random-data values.
  shared = _draw(rng, BATCH, DIM)
  z1 = (shared + 0.5 * _draw(rng, BATCH, DIM)).astype(np.float32)
  z2 = (shared + 0.5 * _draw(rng, BATCH, DIM)).astype(np.float32)
  t1, t2 = _leaf(z1), _leaf(z2)
  loss = loss_fn(t1, t2)
  loss.backward()
  return _with_prefix(
      prefix,
      dict(z1=z1, z2=z2, loss=_np(loss), grad_z1=_np(t1.grad), grad_z2=_np(t2.grad), **extra),
  )


def barlow_twins_case(rng, lambd=0.0051):
  return _two_view_case(
      "barlow_twins", BarlowTwinsLoss(lambda_param=lambd), rng, dict(lambd=np.float32(lambd))
  )


def vicreg_case(rng, sim=25.0, var=25.0, cov=1.0):
  return _two_view_case(
      "vicreg",
      VICRegLoss(lambda_param=sim, mu_param=var, nu_param=cov),
      rng,
      dict(sim_weight=np.float32(sim), var_weight=np.float32(var), cov_weight=np.float32(cov)),
  )


def dino_cases(rng, num_prototypes=32, warmup_epochs=10, epoch=3):
  """Teacher temperature from lightly's warm-up at `epoch`; a known centre set before the call."""
  out = {}
  for num_views in (2, 4):  # 2 global crops, then 2 global + 2 local
    teacher = _draw(rng, 2, BATCH, num_prototypes, scale=2.0)
    student = _draw(rng, num_views, BATCH, num_prototypes, scale=2.0)
    center = _draw(rng, num_prototypes, scale=0.5)
    loss_fn = DINOLoss(
        output_dim=num_prototypes,
        warmup_teacher_temp=0.04,
        teacher_temp=0.07,
        warmup_teacher_temp_epochs=warmup_epochs,
        student_temp=0.1,
        center_momentum=0.9,
    )
    with torch.no_grad():
      loss_fn.center.copy_(torch.from_numpy(center).reshape(1, 1, -1))
    tstudent = _leaf(student)
    loss = loss_fn(list(torch.from_numpy(teacher)), list(tstudent), epoch=epoch)
    loss.backward()
    out.update(
        _with_prefix(
            f"dino_views{num_views}",
            dict(
                student=student,
                teacher=teacher,
                center=center,
                epoch=np.int32(epoch),
                warmup_epochs=np.int32(warmup_epochs),
                warmup_teacher_temperature=np.float32(0.04),
                teacher_temperature=np.float32(0.07),
                student_temperature=np.float32(0.1),
                center_momentum=np.float32(0.9),
                temperature_schedule=_np(loss_fn.teacher_temp_schedule),
                loss=_np(loss),
                grad_student=_np(tstudent.grad),
                center_after=_np(loss_fn.center.reshape(-1)),
            ),
        )
    )
  return out


def _prototype_scores(rng, *lead, num_prototypes=24):
  """Cosine scores against unit prototypes, in [-1, 1] as SwAV's are."""
  embeddings = _unit_rows(rng.standard_normal((*lead, DIM)))
  prototypes = _unit_rows(rng.standard_normal((num_prototypes, DIM)))
  return (embeddings.astype(np.float64) @ prototypes.T.astype(np.float64)).astype(np.float32)


def swav_cases(rng, temperature=0.1, epsilon=0.05, iterations=3, queue_length=16):
  out = {}
  for queue in (False, True):
    scores = _prototype_scores(rng, 4, BATCH)  # 2 global + 2 local crops
    queue_scores = _prototype_scores(rng, 2, queue_length) if queue else None
    loss_fn = SwaVLoss(
        temperature=temperature, sinkhorn_iterations=iterations, sinkhorn_epsilon=epsilon
    )
    tscores = _leaf(scores)
    views = list(tscores)
    loss = loss_fn(
        views[:2], views[2:], list(torch.from_numpy(queue_scores)) if queue else None
    ).squeeze()
    loss.backward()
    arrays = dict(
        scores=scores,
        temperature=np.float32(temperature),
        epsilon=np.float32(epsilon),
        iterations=np.int32(iterations),
        loss=_np(loss),
        grad_scores=_np(tscores.grad),
    )
    if queue:
      arrays["queue_scores"] = queue_scores
    else:
      arrays["codes_view0"] = _np(
          sinkhorn(torch.from_numpy(scores[0]), iterations=iterations, epsilon=epsilon)
      )
    out.update(_with_prefix("swav_queue" if queue else "swav", arrays))
  return out


def mae_cases(rng, batch=4, channels=3, size=8, patch_size=2, mask_ratio=0.75):
  """lightly's MAE recipe: MSE between predictions and (normalised) target patches, masked only."""
  images = _draw(rng, batch, channels, size, size)  # NCHW, as lightly's patchify takes
  num_patches = (size // patch_size) ** 2
  num_masked = int(mask_ratio * num_patches)
  idx_mask = np.sort(np.stack([rng.permutation(num_patches)[:num_masked] for _ in range(batch)]))
  mask = np.zeros((batch, num_patches), np.float32)
  np.put_along_axis(mask, idx_mask, 1.0, axis=1)
  predictions = _draw(rng, batch, num_patches, patch_size**2 * channels)
  patches = lightly_utils.patchify(torch.from_numpy(images), patch_size)
  out = {}
  for norm_pix in (False, True):
    tpred = _leaf(predictions)
    index = torch.from_numpy(idx_mask)
    target = lightly_utils.get_at_index(patches, index)
    if norm_pix:
      target = lightly_utils.normalize_mean_var(target)
    loss = F.mse_loss(lightly_utils.get_at_index(tpred, index), target)
    loss.backward()
    out.update(
        _with_prefix(
            f"mae_normpix{int(norm_pix)}",
            dict(
                images_nchw=images,
                patch_size=np.int32(patch_size),
                mask=mask,
                predictions=predictions,
                patches=_np(patches),
                loss=_np(loss),
                grad_predictions=_np(tpred.grad),
            ),
        )
    )
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="the .npz to write")
  parser.add_argument("--seed", type=int, default=21)
  args = parser.parse_args()
  torch.set_num_threads(1)  # deterministic reductions, and a light load
  rng = np.random.default_rng(args.seed)
  arrays = {
      "lightly_version": np.array(lightly.__version__),
      "torch_version": np.array(torch.__version__),
      "seed": np.int32(args.seed),
  }
  for make in (
      ntxent_cases,
      moco_v2_case,
      moco_v3_case,
      negative_cosine_case,
      barlow_twins_case,
      vicreg_case,
      dino_cases,
      swav_cases,
      mae_cases,
  ):
    arrays.update(make(rng))
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  np.savez_compressed(args.out, **arrays)
  print(
      f"wrote {len(arrays)} arrays to {args.out} ({os.path.getsize(args.out)} bytes) with "
      f"lightly {lightly.__version__}, torch {torch.__version__}"
  )


if __name__ == "__main__":
  main()
