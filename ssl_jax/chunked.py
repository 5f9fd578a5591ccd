"""Exact chunked backward for batch-global losses (GradCache, Gao et al. 2021).

NT-Xent, Barlow Twins and VICReg couple every example of the batch, so accumulating gradients
over micro-batches would train a different loss. GradCache gets the full-batch gradient with
activation memory that scales with the chunk, not the batch:
  1. embed the whole batch chunk by chunk, keeping only the embeddings (no activations);
  2. take the loss over the whole batch and its gradient g = dL/dz with respect to the embeddings;
  3. re-run each chunk's forward under `jax.vjp` and pull that chunk's rows of g back to the
     parameters, summing over chunks: sum_c (dz_c/dtheta)^T g_c = dL/dtheta by the chain rule.
The cost is one more forward pass of the model (about 4/3 of a plain step's compute).

Which tasks: those with `chunkable = True` (`tasks.EmbeddingTask`: SimCLR, Barlow Twins, VICReg),
whose loss is a function of the views' embeddings alone. Tasks with EMA targets, queues or
multi-crop state refuse `config.micro_batch_size > 0` (`check`).

Chunks: `micro_batch_size` examples each, with all their views; chunk c holds examples
c, c + C, c + 2C, ... of the C = B / micro_batch_size chunks, so that on a mesh every device
holds an equal share of every chunk (the batch axis is sharded contiguously).

BatchNorm: each chunk is normalised with its own statistics ("ghost" BatchNorm over
micro_batch_size examples x V views); no first pass computes the global ones (it would need one
pass per BatchNorm layer). A BatchNorm model so trains a slightly different function from the
unchunked step; the running averages are the mean of the chunks' updates. Models without
BatchNorm (a GroupNorm encoder, `head_norm='none'`) get exactly the full-batch gradient.

Loops over chunks (`config.micro_batch_loop`):
  unroll  a Python loop in the trace; data dependences chain the chunks (`_after`) so that XLA
          neither merges the recomputed forward with the first one (which would keep every
          activation) nor runs several chunks at once.
  scan    `lax.scan`: one compiled chunk body, compile time independent of the chunk count.
  auto    unroll on CPU, where convolutions inside loop bodies leave XLA:CPU's fast path
          (experiments/conv_speed.md, experiments/chunked.md); scan elsewhere
          (not measured here: no accelerator was available).
"""

import jax
import jax.numpy as jnp

LOOPS = ("auto", "unroll", "scan")


def check(
    task,
    *,
    task_name,
    micro_batch_size,
    global_batch_size,
    num_devices,
    loop="auto",
    recompute=True,
):
  """Raises a ValueError naming the config key when chunking cannot run as configured."""
  if micro_batch_size == 0:
    return
  if not getattr(task, "chunkable", False):
    raise ValueError(
        f"config.micro_batch_size={micro_batch_size}: task {task_name!r} cannot be chunked (its "
        "loss needs more than the views' embeddings: momentum targets, queues, multi-crop or "
        "other task state). Set config.micro_batch_size=0, or use a chunkable task "
        "(simclr, barlow_twins, vicreg)."
    )
  if micro_batch_size < 0 or global_batch_size % micro_batch_size:
    raise ValueError(
        f"config.micro_batch_size={micro_batch_size} must divide "
        f"config.global_batch_size={global_batch_size} (or be 0: no chunking)"
    )
  if micro_batch_size % num_devices:
    raise ValueError(
        f"config.micro_batch_size={micro_batch_size} must be a multiple of the "
        f"{num_devices} devices the batch is sharded over, so that every device "
        "holds an equal share of every chunk"
    )
  if loop not in LOOPS:
    raise ValueError(f"config.micro_batch_loop={loop!r}; accepted: {LOOPS}")
  if not recompute and resolve_loop(loop) != "unroll":
    raise ValueError(
        f"config.micro_batch_recompute=False needs micro_batch_loop='unroll' "
        f"(got {loop!r}, which is {resolve_loop(loop)!r} on this backend)"
    )


def resolve_loop(loop):
  if loop not in LOOPS:
    raise ValueError(f"micro_batch_loop={loop!r}; accepted: {LOOPS}")
  if loop == "auto":
    return "unroll" if jax.default_backend() == "cpu" else "scan"
  return loop


def _split(x, num_chunks):
  """(V, B, ...) -> (V, B/C, C, ...): [:, :, c] is chunk c (examples c, c + C, ...)."""
  return x.reshape(x.shape[0], x.shape[1] // num_chunks, num_chunks, *x.shape[2:])


def _rows_to_chunks(x, views, num_chunks):
  """(V*B, ...) view-major rows -> (V, B/C, C, ...), the layout of `_split`."""
  return _split(x.reshape(views, -1, *x.shape[1:]), num_chunks)


def _merge_chunks(chunks, views):
  """Per-chunk (V*b, ...) rows, stacked on axis 0 as (C, V*b, ...) -> the batch's (V*B, ...)."""
  c = chunks.shape[0]
  x = chunks.reshape(c, views, -1, *chunks.shape[2:])  # (C, V, b, ...)
  x = jnp.moveaxis(x, 0, 2)  # (V, b, C, ...): example j * C + c
  return x.reshape(-1, *x.shape[3:])


def _after(x, dep):
  """`x`, made to depend on `dep` through data: x + 0 * (one element of dep's first leaf).

  Orders the chunks. XLA:CPU expands optimisation barriers into control edges that its
  simplifier then drops, and schedules every chunk's recomputed forward before any backward
  (all activations alive, measured: experiments/chunked.md); a data dependence holds on every
  backend. (0 * x is not folded for floats: it is NaN for x = inf or NaN.)
  """
  leaf = jax.tree.leaves(dep)[0]
  return x + (jnp.ravel(leaf)[0] * 0).astype(x.dtype)


def value_and_grad(
    task,
    model,
    variables,
    batch,
    rng,
    *,
    micro_batch_size,
    loop="auto",
    recompute=True,
    constrain=None,
):
  """Chunked twin of `jax.value_and_grad(task.loss ... w.r.t. variables['params'], has_aux=True)`.

  Returns ((loss, (metrics, new_model_state, outputs)), grads), the same structure, with the
  exact full-batch loss and gradient when the model has no BatchNorm. `recompute=False` (unroll
  only) keeps every chunk's activations from the first forward instead of recomputing them: no
  memory saving, one forward pass less; a speed option where small chunks run faster than the
  whole batch (XLA:CPU). `constrain`, if given, is applied to every chunk's (V, b, ...) inputs
  (a sharding constraint on a mesh).
  """
  params = variables["params"]
  rest = {k: v for k, v in variables.items() if k != "params"}
  inputs = task.inputs(batch, rng)  # (V, B, ...)
  views, num_examples = inputs.shape[:2]
  if num_examples % micro_batch_size:
    raise ValueError(
        f"micro_batch_size={micro_batch_size} does not divide the batch of "
        f"{num_examples} examples"
    )
  num_chunks = num_examples // micro_batch_size
  chunks = _split(inputs, num_chunks)
  constrain = constrain or (lambda x: x)

  def embed(p, x):
    z, outputs, new_state = task.embed(model, {"params": p, **rest}, constrain(x))
    return z, (outputs, new_state)

  if resolve_loop(loop) == "scan":
    if not recompute:
      raise ValueError("recompute=False needs loop='unroll'")
    xs = jnp.moveaxis(chunks, 2, 0)  # (C, V, b, ...)
    _, (zs, (outs, states)) = jax.lax.scan(lambda _, x: (None, embed(params, x)), None, xs)
    z = _merge_chunks(zs, views)
    outputs = jax.tree.map(lambda o: _merge_chunks(o, views), outs)
    new_state = jax.tree.map(lambda s: jnp.mean(s, axis=0), states)
    (loss, metrics), dz = jax.value_and_grad(task.embedding_loss, has_aux=True)(z)
    dzs = jnp.moveaxis(_rows_to_chunks(dz, views, num_chunks), 2, 0)
    dzs = dzs.reshape(num_chunks, -1, *dzs.shape[3:])  # (C, V*b, D), as each chunk's z

    def backward(acc, x_and_dz):
      x, dz_c = x_and_dz
      _, pullback, _ = jax.vjp(lambda p: embed(p, x), params, has_aux=True)
      return jax.tree.map(jnp.add, acc, pullback(dz_c)[0]), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    grads, _ = jax.lax.scan(backward, zeros, (xs, dzs))
  else:
    zs, outs, states, pullbacks = [], [], [], []
    for c in range(num_chunks):
      # chunk c waits for chunk c - 1, so that chunks never run (and hold memory) at once
      x = chunks[:, :, c] if c == 0 else _after(chunks[:, :, c], zs[-1])
      if recompute:
        z_c, (out_c, state_c) = embed(params, x)
      else:  # keep the chunk's activations for its backward pass: no second forward
        z_c, pullback, (out_c, state_c) = jax.vjp(lambda p, x=x: embed(p, x), params, has_aux=True)
        pullbacks.append(pullback)
      zs.append(z_c)
      outs.append(out_c)
      states.append(state_c)
    z = _merge_chunks(jnp.stack(zs), views)
    outputs = jax.tree.map(lambda *o: _merge_chunks(jnp.stack(o), views), *outs)
    new_state = jax.tree.map(lambda *s: sum(s) / len(s), *states)
    (loss, metrics), dz = jax.value_and_grad(task.embedding_loss, has_aux=True)(z)
    dz_chunks = _rows_to_chunks(dz, views, num_chunks)
    grads = jax.tree.map(jnp.zeros_like, params)
    for c in range(num_chunks):
      dz_c = dz_chunks[:, :, c].reshape(-1, *dz.shape[1:])  # (V*b, D), as the chunk's z
      if recompute:
        # waiting for the loss (and the previous chunk's backward), the recomputed forward is
        # neither merged with the first one (which would keep its activations) nor run early
        x = _after(chunks[:, :, c], grads if c else dz_c)
        _, pullback, _ = jax.vjp(lambda p, x=x: embed(p, x), params, has_aux=True)
      else:
        dz_c = _after(dz_c, grads) if c else dz_c
        pullback = pullbacks[c]
      grads = jax.tree.map(jnp.add, grads, pullback(dz_c)[0])
  return (loss, (metrics, new_state, outputs)), grads
