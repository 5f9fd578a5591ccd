"""Throughput of the BERT masked-language-model training step (ssl_jax's `mlm` task), in tokens/s.

  python experiments/bench_mlm_step.py [--steps=10] [--rounds=3] [--batch=32] [--length=128]
      [--dtype=float32]

The shapes of the reference HF PyTorch measurement (experiments/bench_mlm_step_torch.py, the same
model run by transformers' `BertForMaskedLM`): hidden 256, 4 layers, 4 heads, intermediate 1024,
vocabulary 30,522, 512 positions, dropout 0.1, sequences of 128 tokens, batch 32, AdamW at 1e-4
with weight decay 0.01 on every parameter, constant learning rate. The step is the loop's own
jitted train step (train.build): 15 % of the tokens selected and 80/10/10-corrupted inside the
step from the step key, forward, backward, AdamW update. Token ids are random (throughput does not
depend on them) with [CLS] first and [SEP] last; the tokenizer is a 30,522-entry vocabulary
written on the fly (5 special tokens, then words and '##' pieces), since masking reads its
special and continuation ids.

One difference in the work done, by design: the MLM head (transform + 30,522-way decoder) runs on
the 20 selected positions of each sequence (BERT's own TF code gathers them the same way,
`gather_indexes`), where transformers' BertForMaskedLM scores all 128 and ignores the unselected.
Counted: every input token of the step, per second of the full step (B * L / step time), the
median of the `--rounds` rounds of `--steps` steps. The last line is `tokens_per_s=<number>`.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ssl_jax import config as config_lib  # noqa: E402
from ssl_jax import train  # noqa: E402

VOCAB = 30522


def write_vocabulary(directory):
  """A BERT tokenizer directory with VOCAB entries: specials, words, '##' pieces."""
  import transformers  # pylint: disable=g-import-not-at-top

  words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  words += [f"##w{i}" if i % 5 == 0 else f"w{i}" for i in range(VOCAB - len(words))]
  path = os.path.join(directory, "vocab.txt")
  with open(path, "w") as f:
    f.write("\n".join(words) + "\n")
  transformers.BertTokenizerFast(vocab_file=path).save_pretrained(directory)
  return directory


def make_config(args, tokenizer_dir):
  c = config_lib.base_config()
  c.task = "mlm"
  c.task_kwargs = dict(
      mask_prob=0.15, mask_token_prob=0.8, random_token_prob=0.1, tokenizer=tokenizer_dir
  )
  c.model.name = "bert"
  c.model.dtype = args.dtype
  c.model.bert.update(dict(size="mini", vocab_size=VOCAB, max_positions=512, dropout=0.1))
  c.global_batch_size = args.batch
  c.optimizer.update(
      dict(
          name="adamw",
          base_learning_rate=1e-4,
          lr_scaling="none",
          weight_decay=0.01,
          no_decay_regex="(?!)",
          schedule="constant",
          warmup_epochs=0.0,
      )
  )
  c.mesh.data = 1
  return c


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--dtype", default="float32")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    c = make_config(args, write_vocabulary(tmp))
    comps = train.build(c, input_shape=(args.length,), steps_per_epoch=1000, total_steps=10**6)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, VOCAB, (args.batch, args.length)).astype(np.int32)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP], full length
    batch = jax.device_put(
        {
            "inputs": ids,
            "label": np.zeros(args.batch, np.int32),
            "index": np.arange(args.batch, dtype=np.int32),
        },
        comps.batch_sharding,
    )
    state = comps.init_state(jax.random.PRNGKey(0))
    compiled = comps.train_step.lower(state, batch).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float((cost or {}).get("flops", float("nan")))
    for _ in range(2):  # warm-up
      state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(args.rounds):
      start = time.perf_counter()
      for _ in range(args.steps):
        state, metrics = compiled(state, batch)
      jax.block_until_ready(metrics)
      times.append((time.perf_counter() - start) / args.steps)
  step = float(np.median(times))
  tokens = args.batch * args.length
  print(
      f"device: {jax.devices()[0].device_kind} x{len(jax.devices())}; {os.cpu_count()} CPUs; "
      f"load average {os.getloadavg()[0]:.2f}"
  )
  print(
      f"BERT L4/H256/A4, vocab {VOCAB}, batch {args.batch} x {args.length} tokens, {args.dtype}: "
      f"step {1000 * step:.1f} ms (rounds: {', '.join(f'{1000 * t:.1f}' for t in times)} ms), "
      f"{flops / 1e9:.1f} GFLOP/step (XLA), {flops / step / 1e9:.1f} GFLOP/s; "
      f"loss {float(metrics['loss']):.3f}"
  )
  print(f"tokens_per_s={tokens / step:.1f}")


if __name__ == "__main__":
  main()
