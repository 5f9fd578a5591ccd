"""DINO against an independent numpy reference, sharded == single-device, centre and schedule."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ssl_jax.losses.dino import (batch_center, dino, teacher_temperature_schedule, update_center)


def softmax(x):
  e = np.exp(x - np.max(x))
  return e / np.sum(e)


def numpy_dino(student, teacher, center, student_temperature, teacher_temperature):
  """The paper's eq. 3 and Algorithm 1, one (teacher view, student view, example) at a time.

  Returns (loss, teacher_entropy, kl) with kl = KL(teacher || student) averaged over the pairs.
  """
  student, teacher, center = (np.asarray(a, np.float64) for a in (student, teacher, center))
  num_views, n, _ = student.shape
  losses, kls, entropies = [], [], []
  for t in range(2):
    for i in range(n):
      p = softmax((teacher[t, i] - center) / teacher_temperature)
      entropies.append(-np.sum(p * np.log(p)))
  for t in range(2):
    for v in range(num_views):
      if v == t:
        continue  # the student never matches the teacher on the same crop
      for i in range(n):
        p = softmax((teacher[t, i] - center) / teacher_temperature)
        s = softmax(student[v, i] / student_temperature)
        losses.append(-np.sum(p * np.log(s)))
        kls.append(np.sum(p * (np.log(p) - np.log(s))))
  return np.mean(losses), np.mean(entropies), np.mean(kls)


def finite_difference(fn, x, eps=1e-6):
  x = np.array(x, np.float64)
  grad = np.zeros_like(x)
  for idx in np.ndindex(x.shape):
    old = x[idx]
    x[idx] = old + eps
    up = fn(x)
    x[idx] = old - eps
    down = fn(x)
    x[idx] = old
    grad[idx] = (up - down) / (2 * eps)
  return grad


def random_inputs(rng, num_views, n, k):
  student = rng.normal(size=(num_views, n, k)).astype(np.float32)
  teacher = rng.normal(size=(2, n, k)).astype(np.float32)
  center = rng.normal(scale=0.1, size=(k,)).astype(np.float32)
  return student, teacher, center


@pytest.mark.parametrize(
    "num_views,n,k,student_temperature,teacher_temperature",
    [(2, 2, 4, 0.1, 0.04), (3, 2, 3, 0.5, 0.07), (4, 5, 8, 0.1, 0.04), (6, 8, 16, 0.2, 0.06)],
)
def test_value_and_grad_match_numpy(num_views, n, k, student_temperature, teacher_temperature):
  rng = np.random.default_rng(num_views * 100 + n)
  student, teacher, center = random_inputs(rng, num_views, n, k)
  temperatures = dict(
      student_temperature=student_temperature, teacher_temperature=teacher_temperature
  )
  fn = lambda s: dino(s, teacher, center, **temperatures)
  (loss, metrics), grad = jax.jit(jax.value_and_grad(fn, has_aux=True))(student)
  want_loss, want_entropy, want_kl = numpy_dino(
      student, teacher, center, student_temperature, teacher_temperature
  )
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(metrics["teacher_entropy"], want_entropy, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(metrics["kl"], want_kl, rtol=1e-4, atol=1e-5)
  assert set(metrics) == {"teacher_entropy", "kl"}
  assert all(np.ndim(m) == 0 for m in metrics.values())
  if num_views * n * k <= 24:
    want_grad = finite_difference(
        lambda s: numpy_dino(s, teacher, center, student_temperature, teacher_temperature)[0],
        student,
    )
    np.testing.assert_allclose(grad, want_grad, rtol=1e-3, atol=1e-5)


def test_traced_teacher_temperature_matches_static():
  student, teacher, center = random_inputs(np.random.default_rng(7), 3, 4, 5)
  traced = jax.jit(lambda tt: dino(student, teacher, center, teacher_temperature=tt)[0])
  static = jax.jit(lambda: dino(student, teacher, center, teacher_temperature=0.05)[0])
  np.testing.assert_allclose(traced(0.05), static(), rtol=1e-6)


def test_collapse_signals():
  k = 8
  teacher = np.zeros((2, 4, k), np.float32)  # uniform teacher
  _, metrics = jax.jit(dino)(teacher, teacher, np.zeros(k, np.float32))
  np.testing.assert_allclose(metrics["teacher_entropy"], np.log(k), rtol=1e-6)
  np.testing.assert_allclose(metrics["kl"], 0.0, atol=1e-6)
  teacher[..., 0] = 10.0  # one dimension dominates
  _, metrics = jax.jit(dino)(teacher, teacher, np.zeros(k, np.float32))
  assert metrics["teacher_entropy"] < 1e-3


def test_teacher_and_center_get_no_gradient():
  student, teacher, center = random_inputs(np.random.default_rng(3), 4, 3, 5)
  grads = jax.jit(jax.grad(lambda *a: dino(*a)[0], argnums=(1, 2)))(student, teacher, center)
  for g in grads:
    np.testing.assert_array_equal(g, 0.0)


def test_batch_center_and_update():
  teacher = np.random.default_rng(5).normal(size=(2, 6, 4)).astype(np.float32)
  want = np.mean(teacher.reshape(12, 4).astype(np.float64), axis=0)
  np.testing.assert_allclose(batch_center(teacher), want, rtol=1e-6, atol=1e-7)
  center = np.ones(4, np.float32)
  np.testing.assert_allclose(
      update_center(center, teacher, momentum=0.9), 0.9 + 0.1 * want, rtol=1e-6
  )


def _mesh():
  if jax.device_count() < 8:
    pytest.skip(
        "needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 "
        "(tests/conftest.py sets it)"
    )
  return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def test_shard_map_and_sharded_jit_match_single_device():
  mesh = _mesh()
  student, teacher, center = random_inputs(np.random.default_rng(0), 4, 16, 10)
  global_fn = jax.jit(jax.value_and_grad(lambda *a: dino(*a), has_aux=True))

  batch = P(None, "data")  # (views, n, K) split along the examples

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(batch, batch, P()), out_specs=(P(), P()))
  def sharded(*a):
    return dino(*a, axis_name="data")

  want = global_fn(student, teacher, center)
  sharding = jax.NamedSharding(mesh, batch)
  for got in (
      jax.jit(jax.value_and_grad(sharded, has_aux=True))(student, teacher, center),
      global_fn(
          jax.device_put(student, sharding),
          jax.device_put(teacher, sharding),
          jax.device_put(center, jax.NamedSharding(mesh, P())),
      ),
  ):
    (got_loss, got_metrics), got_grad = got
    (want_loss, want_metrics), want_grad = want
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    for name in want_metrics:
      np.testing.assert_allclose(got_metrics[name], want_metrics[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-7)


def test_batch_center_under_shard_map_matches_single_device():
  mesh = _mesh()
  teacher = np.random.default_rng(1).normal(size=(2, 16, 6)).astype(np.float32)
  center = np.full(6, 0.5, np.float32)

  @functools.partial(
      jax.shard_map, mesh=mesh, in_specs=(P(), P(None, "data")), out_specs=(P(), P())
  )
  def sharded(center_, teacher_):
    return (
        batch_center(teacher_, axis_name="data"),
        update_center(center_, teacher_, momentum=0.99, axis_name="data"),
    )

  got_mean, got_center = jax.jit(sharded)(center, teacher)
  np.testing.assert_allclose(got_mean, batch_center(teacher), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(
      got_center, update_center(center, teacher, momentum=0.99), rtol=1e-5, atol=1e-7
  )


def test_teacher_temperature_schedule():
  schedule = functools.partial(teacher_temperature_schedule, warmup_steps=100, start=0.04, end=0.07)
  for step, want in ((0, 0.04), (50, 0.055), (25, 0.0475), (100, 0.07), (101, 0.07), (10**6, 0.07)):
    np.testing.assert_allclose(schedule(step), want, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(schedule)(jnp.int32(step)), want, rtol=1e-6)
  np.testing.assert_allclose(teacher_temperature_schedule(0, warmup_steps=0), 0.07, rtol=1e-6)
  with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
    teacher_temperature_schedule(0, warmup_steps=-1)


def test_rejects_bad_shapes_and_temperatures():
  ones = np.ones
  with pytest.raises(ValueError, match=r"\(3, 4, 5\)"):
    dino(ones((3, 4, 5)), ones((3, 4, 5)), ones(5))  # teacher must have exactly 2 views
  with pytest.raises(ValueError, match=r"\(2, 4, 5\); got \(1, 4, 5\)"):
    dino(ones((1, 4, 5)), ones((2, 4, 5)), ones(5))  # fewer than 2 student views
  with pytest.raises(ValueError, match=r"\(2, 4, 5\); got \(3, 3, 5\)"):
    dino(ones((3, 3, 5)), ones((2, 4, 5)), ones(5))
  with pytest.raises(ValueError, match=r"\(2, 4, 5\); got \(4, 5\)"):
    dino(ones((4, 5)), ones((2, 4, 5)), ones(5))
  with pytest.raises(ValueError, match=r"\(5,\) as in teacher_logits; got \(4,\)"):
    dino(ones((3, 4, 5)), ones((2, 4, 5)), ones(4))
  with pytest.raises(ValueError, match=r"got \(4, 5\)"):
    batch_center(ones((4, 5)))
  with pytest.raises(ValueError, match=r"\(5,\).*got \(3,\)"):
    update_center(ones(3), ones((2, 4, 5)), momentum=0.9)
  for name in ("student_temperature", "teacher_temperature"):
    with pytest.raises(ValueError, match=f"{name} must be > 0"):
      dino(ones((3, 4, 5)), ones((2, 4, 5)), ones(5), **{name: 0.0})
