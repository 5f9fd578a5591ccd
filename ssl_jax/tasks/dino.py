"""DINO (Caron et al. 2021): a student matches a momentum teacher's centred, sharpened outputs.

Crops are made on the device: 2 global crops at the data's image size (`config.augment`) and
`num_local_crops` local crops of `local_crop_size` pixels with scale `local_crop_scale`
(multi-crop). The teacher (encoder + head, an EMA of the student with momentum rising from
`base_momentum` to `final_momentum`) sees the global crops only. Its centre is an EMA (momentum
`center_momentum`) of the mean teacher output over the global batch. The teacher temperature
warms up linearly from `warmup_teacher_temperature` to `teacher_temperature` over the first
`teacher_warmup_fraction` of training. Crops of one size go through a network in one pass, so
BatchNorm statistics are per crop size over the global batch, as in the reference code.
Evaluators read the teacher's encoder, which the paper reports as the better one.
"""

import jax
import jax.numpy as jnp

from ssl_jax import tasks
from ssl_jax.losses import dino
from ssl_jax.models.heads import DINOHead, EncoderWithHeads

LOCAL_CROPS_KEY = 7  # local crops draw from fold_in(step key, 7); global crops use views 0 and 1


class Task(tasks.Task):

  def __init__(
      self,
      *,
      hidden_dims=(2048, 2048),
      bottleneck_dim=256,
      num_prototypes=4096,
      head_norm="none",
      student_temperature=0.1,
      teacher_temperature=0.07,
      warmup_teacher_temperature=0.04,
      teacher_warmup_fraction=0.05,
      center_momentum=0.9,
      base_momentum=0.996,
      final_momentum=1.0,
      num_local_crops=0,
      local_crop_size=16,
      local_crop_scale=(0.05, 0.4),
      **context,
  ):
    super().__init__(**context)
    if not 0 <= teacher_warmup_fraction <= 1:
      raise ValueError(
          f"task_kwargs.teacher_warmup_fraction={teacher_warmup_fraction} must be in [0, 1]"
      )
    if num_local_crops < 0:
      raise ValueError(f"task_kwargs.num_local_crops={num_local_crops} must be >= 0")
    self.head = dict(
        hidden_dims=tuple(hidden_dims),
        bottleneck_dim=bottleneck_dim,
        num_prototypes=num_prototypes,
        norm=head_norm,
    )
    self.student_temperature = student_temperature
    self.teacher_temperature, self.warmup_teacher_temperature = (
        teacher_temperature,
        warmup_teacher_temperature,
    )
    self.teacher_warmup_fraction, self.center_momentum = teacher_warmup_fraction, center_momentum
    self.base_momentum, self.final_momentum = base_momentum, final_momentum
    self.num_local_crops, self.local_crop_size = num_local_crops, local_crop_size
    self.local_crop_scale = tuple(local_crop_scale)

  def model(self, encoder):
    return EncoderWithHeads(encoder, DINOHead(**self.head))

  def init_state(self, variables, rng):
    return {
        "target": tasks.momentum_target(variables),
        "center": jnp.zeros((self.head["num_prototypes"],), jnp.float32),
    }

  def loss(self, model, variables, task_state, batch, rng, step):
    n = batch["inputs"].shape[0]
    global_views = tasks.merge_views(self.views(rng, batch["inputs"]))
    (student, aux), new_state = model.apply(
        variables, global_views, train=True, mutable=["batch_stats"]
    )
    student = [student.reshape((2, n, -1))]
    if self.num_local_crops:
      local_views = self.views(
          jax.random.fold_in(rng, LOCAL_CROPS_KEY),
          batch["inputs"],
          num_views=self.num_local_crops,
          crop_size=self.local_crop_size,
          crop_scale=self.local_crop_scale,
      )
      (local, _), local_state = model.apply(
          {**variables, **new_state},
          tasks.merge_views(local_views),
          train=True,
          mutable=["batch_stats"],
      )
      new_state = local_state  # running statistics: the last pass's update, as the reference's
      student.append(local.reshape((self.num_local_crops, n, -1)))
    (teacher, _), target_state = model.apply(
        task_state["target"],
        global_views,
        train=True,
        mutable=["batch_stats"],
        method=EncoderWithHeads.project,
    )
    teacher = teacher.reshape((2, n, -1))
    temperature = dino.teacher_temperature_schedule(
        step,
        warmup_steps=int(self.teacher_warmup_fraction * (self.total_steps or 0)),
        start=self.warmup_teacher_temperature,
        end=self.teacher_temperature,
    )
    loss, metrics = dino.dino(
        jnp.concatenate(student),
        teacher,
        task_state["center"],
        student_temperature=self.student_temperature,
        teacher_temperature=temperature,
    )
    metrics["teacher_temperature"] = temperature
    outputs = {"features": aux["features"], "target_state": target_state, "teacher": teacher}
    return loss, (metrics, new_state, outputs)

  def update_state(self, task_state, *, params, model_state, outputs, step):
    momentum = tasks.cosine_momentum(
        step, self.total_steps, base=self.base_momentum, final=self.final_momentum
    )
    return {
        "target": tasks.update_momentum_target(
            task_state["target"], params, outputs["target_state"], momentum
        ),
        "center": dino.update_center(
            task_state["center"], outputs["teacher"], momentum=self.center_momentum
        ),
    }

  def encoder_variables(self, params, model_state, task_state):
    return tasks.subtree(task_state["target"], "encoder")
