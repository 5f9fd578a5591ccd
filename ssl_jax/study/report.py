"""The study's outputs: DIR/results.json (a row per method and budget, and the run's facts), the
printed table and DIR/label_efficiency.png. The ablation's report (ablation/report.py) shares the
writer and the figure setup; its rows are the study's rows of each run, one table row a run."""

import json
import os

from ssl_jax import checkpoint


def write(workdir, rows, extra, title=None):
  """DIR/results.json and, with rows, DIR/label_efficiency.png (titled `title`); prints the
  table."""
  write_json(os.path.join(workdir, "results.json"), {"label_efficiency": rows, **extra})
  if rows:
    print(format_table(rows), flush=True)
    plot(rows, os.path.join(workdir, "label_efficiency.png"), title=title)


def format_table(rows):
  methods = list(dict.fromkeys(r["method"] for r in rows))
  budgets = sorted({r["labels_per_class"] for r in rows})
  cell = {(r["labels_per_class"], r["method"]): r for r in rows}
  lines = ["labels/class | " + " | ".join(f"{m:>22s}" for m in methods)]
  for b in budgets:
    parts = [
        f"{100 * cell[b, m]['accuracy_mean']:6.2f} +- {100 * cell[b, m]['accuracy_std']:5.2f} %"
        if (b, m) in cell
        else "-"
        for m in methods
    ]
    lines.append(f"{b:12d} | " + " | ".join(f"{p:>22s}" for p in parts))
  last = [cell.get((budgets[-1], m), {}) for m in methods]
  if all("trainable_params" in c for c in last):
    lines.append("   trainable | " + " | ".join(f"{c['trainable_params']:>22,d}" for c in last))
  return "\n".join(lines)


def pyplot():
  """matplotlib.pyplot on the file-only backend (no display on a training host)."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def write_json(path, payload):
  checkpoint.write_atomically(path, json.dumps(payload, indent=2))


def plot(rows, path, title=None):
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  for method in dict.fromkeys(r["method"] for r in rows):
    mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["labels_per_class"])
    ax.errorbar(
        [r["labels_per_class"] for r in mine],
        [100 * r["accuracy_mean"] for r in mine],
        yerr=[100 * r["accuracy_std"] for r in mine],
        marker="o",
        capsize=3,
        label=method,
    )
  budgets = sorted({r["labels_per_class"] for r in rows})
  ax.set_xscale("log")
  ax.set_xticks(budgets, [str(b) for b in budgets])  # the budgets, not powers of ten
  ax.minorticks_off()
  ax.set_xlabel("labels per class")
  if title:
    ax.set_title(title, fontsize=9)
  ax.set_ylabel("test accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
