"""TAPT as a curve: few-label accuracy of all-MiniLM-L6-v2 after 0 / N1 / N2 ... steps of continued
MLM on the task's own texts (Gururangan et al. 2020), with the CPU minutes each point costs.

  python experiments/tapt_curve.py --steps=200,1000,3000 --workdir=/tmp/tapt_curve
  python experiments/tapt_curve.py --steps=200,1000 --workdir=/tmp/tapt_imdb \\
      --set data.source=jsonl:../shared/data/imdb --set data.num_classes=2 \\
      --set text.test_per_class=500

Each point is one run of the text main job (configs/text_default.py) with `text.tapt.steps` = N,
the study reduced to the generic and TAPT methods (`--methods`), and BERT-tiny's own pre-training
cut to one step (the curve does not read it). Step 0 is the generic model's rows of the first run.
Warm-up: 6 % of the steps (at least 6). Writes WORKDIR/steps_N/ per point, WORKDIR/curve.json, and
prints the markdown table last.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def run_point(steps, args):
  workdir = os.path.join(args.workdir, f"steps_{steps}")
  overrides = [
      "total_steps=1",
      f"text.tapt.steps={steps}",
      f"text.tapt.warmup_steps={max(6, round(0.06 * steps))}",
      f"label_efficiency.methods={args.methods}",
      f"label_efficiency.labels_per_class={args.budgets}",
  ] + args.set
  command = [
      sys.executable,
      "-m",
      "ssl_jax.main",
      f"--config={args.config}",
      f"--workdir={workdir}",
  ]
  command += [f"--config.{o}" for o in overrides]
  print(" ".join(command), flush=True)
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  started = time.time()
  subprocess.run(command, check=True)
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  results = json.load(open(os.path.join(workdir, "results.json")))
  return {
      "steps": steps,
      "wall_seconds": time.time() - started,
      "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
      "tapt_seconds": results.get("tapt_seconds"),
      "tapt_loss": results.get("tapt", {}).get("loss"),
      "rows": results["label_efficiency"],
  }


def table(points):
  """Rows: (TAPT steps, method); columns: labels per class. Step 0: the generic model."""
  budgets = sorted({r["labels_per_class"] for r in points[0]["rows"]})
  lines = [
      "| TAPT steps | method | "
      + " | ".join(f"{b} / class" for b in budgets)
      + " | TAPT wall min | MLM loss |",
      "|---:|---|" + "---:|" * (len(budgets) + 2),
  ]

  def cells(rows, name):
    by = {r["labels_per_class"]: r for r in rows if r["method"] == name}
    return " | ".join(
        f"{100 * by[b]['accuracy_mean']:.1f} +- {100 * by[b]['accuracy_std']:.1f}" for b in budgets
    )

  first = points[0]["rows"]
  for name in sorted({r["method"] for r in first if r["method"].startswith("generic_")}):
    lines.append(f"| 0 | {name.replace('generic_', '')} | {cells(first, name)} | 0 | - |")
  for p in points:
    for name in sorted({r["method"] for r in p["rows"] if r["method"].startswith("tapt_")}):
      minutes = (p["tapt_seconds"] or 0) / 60
      loss = f"{p['tapt_loss']:.2f}" if p["tapt_loss"] is not None else "-"
      lines.append(
          f"| {p['steps']} | {name.replace('tapt_', '')} | {cells(p['rows'], name)} "
          f"| {minutes:.1f} | {loss} |"
      )
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", default="200,1000,3000")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--config", default="configs/text_default.py")
  parser.add_argument(
      "--methods", default="generic_probe,generic_finetune,tapt_probe,tapt_finetune"
  )
  parser.add_argument("--budgets", default="1,10,50")
  parser.add_argument("--set", action="append", default=[], help="KEY=VALUE config override")
  args = parser.parse_args(argv)
  os.makedirs(args.workdir, exist_ok=True)
  points = [run_point(int(s), args) for s in args.steps.split(",")]
  with open(os.path.join(args.workdir, "curve.json"), "w") as f:
    json.dump(points, f, indent=1)
  print(table(points))


if __name__ == "__main__":
  main()
