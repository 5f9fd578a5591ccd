"""Where the SimCLR step's time goes on XLA:CPU: thunk time by kind of operation.

  XLA_FLAGS=--xla_cpu_enable_xprof_traceme python experiments/profile_simclr_step.py \
      [--batch=256] [--micro_batch=0] [--conv_impl=auto] [--cpu_conv_library=eigen] [--top=12]
      [bench_simclr_step.py's options]

Builds the step exactly as experiments/bench_simclr_step.py does, runs one step under
`jax.profiler.trace`, and sums the durations of the executed thunks (the trace's events named
after HLO instructions), grouping them by what the instruction computes:
  conv fwd / conv dgrad / conv wgrad   convolutions (forward, input gradient, kernel gradient:
                                       an output with the kernel's shape rather than the batch's)
  dot                                  matrix multiplications (the heads, im2col kernel gradients)
  copy/transpose                       layout changes
  other                                BatchNorm, ReLU, augmentation, optimiser (elementwise,
                                       reductions)
Prints each group's seconds and share, then the `--top` instructions. Results:
experiments/conv_speed.md.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

import bench_simclr_step as bench  # noqa: E402

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+)\s+([\w\-]+)\(")
_COMPUTATION = re.compile(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")


def hlo_index(text):
  """{instruction name: (output shape, opcode, line)} and {computation name: [lines]}."""
  instructions, computations, current = {}, collections.defaultdict(list), None
  for line in text.splitlines():
    match = _COMPUTATION.match(line)
    if match and "=" not in line.split("{")[0]:
      current = match.group(1)
      continue
    match = _INSTRUCTION.match(line)
    if match:
      instructions[match.group(1)] = (match.group(2), match.group(3), line)
      computations[current].append(line)
  return instructions, computations


def _conv_kind(line, batch_rows):
  """A kernel gradient's window is the feature map and its output is not batch-major."""
  window = re.search(r"window=\{size=([\dx]+)", line)
  shape = re.search(r"=\s*\w+\[([\d,]*)\]", line)
  dims = [int(d) for d in shape.group(1).split(",") if d] if shape else []
  if (window and window.group(1) not in ("1x1", "3x3", "7x7")) or (dims and dims[0] != batch_rows):
    return "conv wgrad"
  return "conv dgrad" if "transpose(" in line else "conv fwd"


def categorise(name, instructions, computations, batch_rows):
  if name not in instructions:
    return "other"
  shape, opcode, line = instructions[name]
  lines = [line]
  called = re.findall(r"calls=%?([\w.\-]+)", line)
  for computation in called:
    lines += computations.get(computation, [])
  convs = [entry for entry in lines if " convolution(" in entry]
  if convs:
    return _conv_kind(convs[0], batch_rows)
  if any(" dot(" in entry for entry in lines):
    return "dot"
  if opcode in ("copy", "transpose") or all(
      re.search(r" (copy|transpose|bitcast|parameter|reshape)\(", entry)
      for entry in lines[1:] or [line]
  ):
    return "copy/transpose"
  return "other"


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--top", type=int, default=12)
  for flag, default in (
      ("--batch", "256"),
      ("--micro_batch", "0"),
      ("--norm", "batch"),
      ("--head_norm", "batch"),
      ("--loop", "auto"),
      ("--dtype", "float32"),
      ("--conv_impl", "auto"),
      ("--stem", "small"),
      ("--cpu_conv_library", "eigen"),
  ):
    parser.add_argument(flag, default=default)
  parser.add_argument("--depth", type=int, default=18)
  parser.add_argument("--width", type=float, default=1.0)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--no_augment", action="store_true")
  parser.add_argument("--no_recompute", action="store_true")
  args = parser.parse_args()
  if "xla_cpu_enable_xprof_traceme" not in os.environ.get("XLA_FLAGS", ""):
    sys.exit("set XLA_FLAGS=--xla_cpu_enable_xprof_traceme (thunk events are off without it)")
  batch, micro = int(args.batch), int(args.micro_batch)
  run = bench.prepare(args, batch, micro, args.cpu_conv_library)
  bench.time_steps(run, 1)  # warm-up
  instructions, computations = hlo_index(run["compiled"].as_text())
  rows = 2 * (micro or batch)  # both views of a chunk (or of the batch) go through the model
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      step_s = bench.time_steps(run, 1)
    path = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)[0]
    with gzip.open(path) as f:
      events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  per_name = collections.Counter()
  for event in events:
    name = event.get("name", "")
    if event.get("ph") == "X" and name in instructions:
      per_name[name] += event.get("dur", 0) / 1e6
  groups = collections.Counter()
  for name, seconds in per_name.items():
    groups[categorise(name, instructions, computations, rows)] += seconds
  total = sum(groups.values())
  print(
      f"batch={batch} micro_batch_size={micro} conv_impl={args.conv_impl} "
      f"cpu_conv_library={args.cpu_conv_library} step_s={step_s:.2f} "
      f"thunk_s={total:.2f} (summed over threads)"
  )
  for group, seconds in groups.most_common():
    print(f"  {group:15s} {seconds:7.2f} s  {seconds / total:6.1%}")
  print(f"top {args.top} instructions:")
  for name, seconds in per_name.most_common(args.top):
    shape, opcode, _ = instructions[name]
    print(
        f"  {seconds:6.2f} s  {categorise(name, instructions, computations, rows):15s} "
        f"{opcode} {name} {shape}"
    )


if __name__ == "__main__":
  main()
