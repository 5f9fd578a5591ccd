"""The PyTorch reference for experiments/bench_mlm_step.py: transformers' BertForMaskedLM, same
shapes.

Runs in a separate environment with torch and transformers (never the project's venv):
  /tmp/peer_venv/bin/python experiments/bench_mlm_step_torch.py [--steps=10] [--rounds=3]

Hidden 256, 4 layers, 4 heads, intermediate 1024, vocabulary 30,522, 512 positions, dropout 0.1,
batch 32 x 128 tokens, torch.optim.AdamW(lr=1e-4, weight_decay=0.01) on every parameter. Masking
inside the step, as transformers' DataCollatorForLanguageModeling does it: each non-special token
selected with probability 0.15; of those 80 % -> [MASK], 10 % -> a random token, 10 % kept; the
loss is BertForMaskedLM's (logits at all 128 positions, unselected ones ignored). Token ids are
random with [CLS] first and [SEP] last. Counted: batch * length tokens per second of the whole
step (masking, forward, backward, optimizer), the median of the rounds. Last line:
`tokens_per_s=<number>`.
"""

import argparse
import os
import statistics
import time

import torch
import transformers

VOCAB, PAD, UNK, CLS, SEP, MASK = 30522, 0, 100, 101, 102, 103  # bert-base-uncased's ids


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  args = parser.parse_args()
  torch.manual_seed(0)
  torch.set_num_threads(args.threads)
  config = transformers.BertConfig(
      vocab_size=VOCAB,
      hidden_size=256,
      num_hidden_layers=4,
      num_attention_heads=4,
      intermediate_size=1024,
      max_position_embeddings=512,
      hidden_dropout_prob=0.1,
      attention_probs_dropout_prob=0.1,
  )
  model = transformers.BertForMaskedLM(config).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
  ids = torch.randint(1000, VOCAB, (args.batch, args.length))
  ids[:, 0], ids[:, -1] = CLS, SEP
  special = (ids == CLS) | (ids == SEP) | (ids == PAD) | (ids == UNK) | (ids == MASK)
  attention = torch.ones_like(ids)

  def step():
    selected = torch.bernoulli(torch.full(ids.shape, 0.15)).bool() & ~special
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    masked = torch.bernoulli(torch.full(ids.shape, 0.8)).bool() & selected
    random = torch.bernoulli(torch.full(ids.shape, 0.5)).bool() & selected & ~masked
    inputs = torch.where(masked, torch.full_like(ids, MASK), ids)
    inputs = torch.where(random, torch.randint(VOCAB, ids.shape), inputs)
    loss = model(input_ids=inputs, attention_mask=attention, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss)

  for _ in range(2):
    step()
  times = []
  for _ in range(args.rounds):
    start = time.perf_counter()
    for _ in range(args.steps):
      loss = step()
    times.append((time.perf_counter() - start) / args.steps)
  seconds = statistics.median(times)
  print(
      f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} "
      f"threads; load average {os.getloadavg()[0]:.2f}"
  )
  print(
      f"BertForMaskedLM L4/H256/A4, batch {args.batch} x {args.length}: step "
      f"{1000 * seconds:.1f} ms (rounds: {', '.join(f'{1000 * t:.1f}' for t in times)} ms); "
      f"loss {loss:.3f}"
  )
  print(f"tokens_per_s={args.batch * args.length / seconds:.1f}")


if __name__ == "__main__":
  main()
