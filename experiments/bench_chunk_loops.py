"""Loop forms of the chunked backward (ssl_jax/chunked.py) on this backend: which runs fastest?

  python experiments/bench_chunk_loops.py [--batch=256] [--micro_batch=64]
      [--loops=unroll,scan,calls] [--depth=18] [--width=1.0] [--image_size=32] [--rounds=2]

Times the gradient of SimCLR's loss (views, chunked forward, loss, chunked backward; no optimiser)
for a ResNet with the small-image stem and BatchNorm, three ways:
  unroll  chunked.value_and_grad with loop='unroll' (one jitted program, chunks unrolled)
  scan    chunked.value_and_grad with loop='scan' (one jitted program, lax.scan over chunks)
  calls   the same three phases with one jitted call per chunk from Python (embed each chunk,
          loss, backward each chunk), i.e. the loop outside XLA
Every form is compiled and checked against the others (same loss and gradients), then timed in
interleaved rounds, keeping each form's best round, so the ratios hold on a shared machine.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ssl_jax import chunked  # noqa: E402
from ssl_jax import config as config_lib  # noqa: E402
from ssl_jax import tasks  # noqa: E402
from ssl_jax.models.resnet import ResNet  # noqa: E402


def calls_form(task, model, rest, num_chunks):
  """value_and_grad with the loop over chunks in Python: one jitted call per chunk and phase."""

  @jax.jit
  def split(batch, rng):
    chunks = chunked._split(task.inputs(batch, rng), num_chunks)  # pylint: disable=protected-access
    return [chunks[:, :, c] for c in range(num_chunks)]

  @jax.jit
  def embed(params, x):
    return task.embed(model, {"params": params, **rest}, x)

  @jax.jit
  def loss_and_dz(zs):
    views = 2
    z = chunked._merge_chunks(jnp.stack(zs), views)  # pylint: disable=protected-access
    (loss, metrics), dz = jax.value_and_grad(task.embedding_loss, has_aux=True)(z)
    dz = chunked._rows_to_chunks(dz, views, num_chunks)  # pylint: disable=protected-access
    return loss, metrics, [dz[:, :, c].reshape(-1, dz.shape[-1]) for c in range(num_chunks)]

  @jax.jit
  def backward(params, x, dz, acc):
    _, pullback = jax.vjp(lambda p: embed(p, x)[0], params)
    return jax.tree.map(jnp.add, acc, pullback(dz)[0])

  def value_and_grad(params, batch, rng):
    xs = split(batch, rng)
    zs = [embed(params, x)[0] for x in xs]
    loss, metrics, dzs = loss_and_dz(zs)
    grads = jax.tree.map(jnp.zeros_like, params)
    for x, dz in zip(xs, dzs):
      grads = backward(params, x, dz, grads)
    return loss, grads

  return value_and_grad


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--micro_batch", type=int, default=64)
  parser.add_argument("--loops", default="unroll,scan,calls")
  parser.add_argument("--depth", type=int, default=18)
  parser.add_argument("--width", type=float, default=1.0)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--rounds", type=int, default=2)
  args = parser.parse_args()

  augment = config_lib.base_config().augment.to_dict()
  task = tasks.build(
      "simclr",
      task_kwargs=dict(projection_dims=(512, 512, 128)),
      augment=augment,
      image_size=args.image_size,
  )
  model = task.model(ResNet(depth=args.depth, width_multiplier=args.width))
  size = args.image_size
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, size, size, 3)), train=False)
  params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  batch = {
      "inputs": np.random.default_rng(0).integers(0, 256, (args.batch, size, size, 3), np.uint8)
  }
  rng = jax.random.PRNGKey(1)
  num_chunks = args.batch // args.micro_batch
  print(
      f"backend={jax.default_backend()} depth={args.depth} width={args.width} image={size} "
      f"batch={args.batch} micro_batch={args.micro_batch} chunks={num_chunks}",
      flush=True,
  )

  forms = {}
  for loop in args.loops.split(","):
    start = time.perf_counter()
    if loop == "calls":
      fn = calls_form(task, model, rest, num_chunks)
    else:
      step = jax.jit(
          lambda p, b, r, loop=loop: chunked.value_and_grad(
              task, model, {"params": p, **rest}, b, r, micro_batch_size=args.micro_batch, loop=loop
          )
      )
      fn = lambda p, b, r, step=step: (lambda out: (out[0][0], out[1]))(step(p, b, r))
    loss, grads = jax.block_until_ready(fn(params, batch, rng))  # compile + first run
    forms[loop] = dict(fn=fn, first_s=time.perf_counter() - start, loss=float(loss), grads=grads)
    print(
        f"{loop}: compile + first run {forms[loop]['first_s']:.1f} s, loss {float(loss):.6f}",
        flush=True,
    )
  reference = next(iter(forms.values()))
  for loop, form in forms.items():
    diff = max(
        float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-12))
        for a, b in zip(jax.tree.leaves(form["grads"]), jax.tree.leaves(reference["grads"]))
    )
    print(f"{loop}: max relative gradient difference to the first form {diff:.2e}")

  best = {loop: float("inf") for loop in forms}
  for _ in range(args.rounds):
    for loop, form in forms.items():
      start = time.perf_counter()
      jax.block_until_ready(form["fn"](params, batch, rng))
      best[loop] = min(best[loop], time.perf_counter() - start)
  for loop in forms:
    print(
        f"loop={loop} gradient_s={best[loop]:.3f} images_per_s={args.batch / best[loop]:.2f} "
        f"relative_to_{next(iter(forms))}={best[next(iter(forms))] / best[loop]:.3f}"
    )


if __name__ == "__main__":
  main()
