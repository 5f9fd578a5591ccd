"""TS2Vec training speed: our jitted step against the official PyTorch code, same settings.

  python experiments/bench_ts2vec.py                          # ours (the project's venv)
  /tmp/peer_venv/bin/python experiments/bench_ts2vec.py --impl=pytorch   # the reference

The reference is the authors' code as packaged on PyPI (`pip install torch==2.13.0 ts2vec==0.1`
in a separate venv; torch 2.13.0 is the CPU build here). Both train the reference configuration
(64 hidden channels, depth 10, 320 output channels, batch 8, AdamW lr 1e-3, timestamp masking,
random crops) on the same GunPoint-shaped data: ../shared/data/ucr/<data>.npz when present, else
random series of GunPoint's shape (50 x 150, univariate), for `--iters` iterations on 2 threads.
Ours: the first step (compilation) is timed apart, then `--iters` steps through the real input
pipeline (grain) and the sharded step of ssl_jax/train.py. Prints `iterations_per_s=<X>` last.
Measured figures: experiments/ts2vec_ucr.md.
"""

import argparse
import os
import time

import numpy as np

SHARED_UCR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "ucr"
)


def load(name):
  path = os.path.join(SHARED_UCR, f"{name}.npz")
  if os.path.isfile(path):
    with np.load(path) as f:
      return path, f["x_train"].astype(np.float32)[..., None]
  return None, np.random.default_rng(0).normal(size=(50, 150, 1)).astype(np.float32)


def bench_pytorch(x, iters, threads):
  import torch  # pylint: disable=g-import-not-at-top
  from ts2vec import TS2Vec  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(threads)
  torch.manual_seed(0)
  np.random.seed(0)
  model = TS2Vec(input_dims=x.shape[-1], device="cpu", batch_size=8, lr=0.001)
  start = time.perf_counter()
  model.fit(x, n_iters=iters)
  seconds = time.perf_counter() - start
  print(f"pytorch {torch.__version__}: {iters} iterations in {seconds:.2f} s", flush=True)
  return iters / seconds


def bench_ours(x, path, iters, length_buckets):
  import sys  # pylint: disable=g-import-not-at-top

  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
  import jax  # pylint: disable=g-import-not-at-top
  from ssl_jax import sharding as sharding_lib
  from ssl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from ssl_jax import train  # pylint: disable=g-import-not-at-top
  from ssl_jax.data import pipeline, timeseries  # pylint: disable=g-import-not-at-top

  spec = f"npz:{path}" if path else None
  config = config_lib.load(f"configs/ts2vec_ucr.py:{path}" if path else "configs/ts2vec_ucr.py")
  config.task_kwargs.length_buckets = length_buckets
  config.total_steps = iters + 1
  if spec is None:  # no shared data: random series of the same shape
    data = timeseries.from_arrays(
        x, np.arange(len(x)) % 2, x[:10], np.arange(10) % 2, name="random"
    )
    source = timeseries.SeriesSource(data, "train")
  else:
    source = timeseries.npz(path, "train")
  comps = train.build(
      config,
      input_shape=source[0]["inputs"].shape,
      steps_per_epoch=len(source) // 8,
      total_steps=config.total_steps,
  )
  state = comps.init_state(jax.random.PRNGKey(0))
  batches = pipeline.train_iterator(source, global_batch_size=config.global_batch_size, seed=0)
  step = lambda s: comps.train_step(
      s,
      sharding_lib.from_process_local(
          {k: v for k, v in next(batches).items() if k != "index"}, comps.batch_sharding
      ),
  )
  start = time.perf_counter()
  state, metrics = step(state)
  jax.block_until_ready(metrics)
  print(
      f"ours (jax {jax.__version__}, {length_buckets} length buckets): first step with "
      f"compilation {time.perf_counter() - start:.1f} s",
      flush=True,
  )
  start = time.perf_counter()
  for _ in range(iters):
    state, metrics = step(state)
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  print(
      f"ours: {iters} iterations in {seconds:.2f} s, final loss {float(metrics['loss']):.3f}",
      flush=True,
  )
  return iters / seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--impl", default="ours", choices=("ours", "pytorch"))
  parser.add_argument("--data", default="GunPoint", help="a set in ../shared/data/ucr")
  parser.add_argument("--iters", type=int, default=200)
  parser.add_argument("--threads", type=int, default=2, help="pytorch's intra-op threads")
  parser.add_argument("--length_buckets", type=int, default=4, help="ours: crop-width buckets")
  args = parser.parse_args()
  path, x = load(args.data)
  print(
      f"data: {path or 'random GunPoint-shaped series'} {x.shape}; load average "
      f"{os.getloadavg()[0]:.2f}",
      flush=True,
  )
  if args.impl == "pytorch":
    rate = bench_pytorch(x, args.iters, args.threads)
  else:
    rate = bench_ours(x, path, args.iters, args.length_buckets)
  print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)
  print(f"iterations_per_s={rate:.3f}")


if __name__ == "__main__":
  main()
