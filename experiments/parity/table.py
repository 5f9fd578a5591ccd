"""The parity table from the runs' JSON lines (compare.sh appends them to EXPORT/results.jsonl).

  python experiments/parity/table.py [--results=/tmp/parity/results.jsonl]
  python experiments/parity/table.py --results=/tmp/val/results.jsonl --ours_only

One row per method and budget: each metric as ours mean +- std / the peer's mean +- std over
seeds, and Welch's two-sided p-value (scipy); the pre-training seconds per run of each side; a
flag where ours is below the peer by more than two standard errors of the difference. Runs of
one method at different `steps` or with overrides are kept apart. Prints Markdown.
`--ours_only`: our side alone (tune_on_validation.sh's runs), each metric's mean +- std over seeds
and the final pre-training loss.
"""

import argparse
import collections
import json

import numpy as np
from scipy import stats

METRICS = ("knn20", "knn200", "probe1", "probe10")


def rows(results):
  groups = collections.defaultdict(lambda: {"ours": [], "peer": []})
  for r in results:
    if r.get("variant"):  # a peer run with one of our choices swapped in (PEER_VARIANT): not parity
      continue
    key = (r["method"], r["steps"], " ".join(r.get("overrides", [])))
    groups[key][r["side"]].append(r)
  for (method, steps, overrides), sides in sorted(groups.items()):
    ours, peer = sides["ours"], sides["peer"]
    if not ours or not peer:
      continue
    cells, deficit = [], False
    for m in METRICS:
      a, b = np.array([r[m] for r in ours]), np.array([r[m] for r in peer])
      p = (
          stats.ttest_ind(a, b, equal_var=False).pvalue
          if len(a) > 1 and len(b) > 1
          else float("nan")
      )
      se = (
          np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
          if len(a) > 1 and len(b) > 1
          else 0
      )
      deficit |= bool(b.mean() - a.mean() > 2 * se) and len(a) > 1
      sd = lambda x: x.std(ddof=1) if len(x) > 1 else 0.0
      cells.append(f"{a.mean():.1f} +- {sd(a):.1f} / {b.mean():.1f} +- {sd(b):.1f} (p {p:.2f})")
    seconds = (
        f"{np.mean([r['pretrain_s'] for r in ours]):.0f} / "
        f"{np.mean([r['pretrain_s'] for r in peer]):.0f}"
    )
    name = f"`{method}`" + (f" {overrides}" if overrides else "")
    yield [
        name,
        str(steps),
        f"{len(ours)} / {len(peer)}",
        *cells,
        seconds,
        "**below**" if deficit else "level",
    ]


def ours_rows(results):
  groups = collections.defaultdict(list)
  for r in results:
    if r["side"] == "ours":
      groups[(r["method"], r["steps"], " ".join(r.get("overrides", [])))].append(r)
  for (method, steps, overrides), runs in sorted(groups.items()):
    sd = lambda x: np.std(x, ddof=1) if len(x) > 1 else 0.0
    cells = [
        f"{np.mean([r[m] for r in runs]):.1f} +- {sd([r[m] for r in runs]):.1f}" for m in METRICS
    ]
    losses = [r["final_loss"] for r in runs if r.get("final_loss") is not None]
    shown = " ".join(o for o in overrides.split() if not o.startswith("--config.data.source="))
    yield [
        f"`{method}`" + (f" {shown}" if shown else ""),
        str(steps),
        str(len(runs)),
        *cells,
        f"{np.mean(losses):.3f}" if losses else "-",
    ]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--results", default="/tmp/parity/results.jsonl")
  parser.add_argument("--ours_only", action="store_true", help="our side alone, no peer columns")
  args = parser.parse_args()
  with open(args.results) as f:
    results = [json.loads(line) for line in f if line.startswith("{")]
  if args.ours_only:
    head = [
        "method",
        "steps",
        "seeds",
        "kNN k=20",
        "kNN k=200",
        "probe @1",
        "probe @10",
        "final loss",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in ours_rows(results):
      print("| " + " | ".join(row) + " |")
    return
  head = [
      "method",
      "steps",
      "seeds (ours / peer)",
      "kNN k=20",
      "kNN k=200",
      "probe @1",
      "probe @10",
      "pre-train s (ours / peer)",
      "ours vs peer",
  ]
  print("| " + " | ".join(head) + " |")
  print("|" + "---|" * len(head))
  for row in rows(results):
    print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
  main()
