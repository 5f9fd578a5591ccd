"""The ablation's outputs: DIR/ablation.json (a row per task and setting), DIR/ablation.md (the
table, sorted by the probe at 10 labels per class) and DIR/ablation.png (a panel per metric)."""

import math
import os

from ssl_jax import checkpoint
from ssl_jax.ablation import planning
from ssl_jax.study import report as study_report

ROW_FILE = "ablation.json"


def sort_budget(rows):
  budgets = sorted({int(b) for r in rows for b in r["linear_probe"]})
  return str(min(budgets, key=lambda b: (abs(b - 10), b))) if budgets else None


def format_markdown(rows):
  budget = sort_budget(rows)
  budgets = sorted({int(b) for r in rows for b in r["linear_probe"]})
  ordered = sorted(rows, key=lambda r: -r["linear_probe"].get(budget, -1))
  head = (
      ["task", "setting", "kNN"]
      + [f"probe @{b}" for b in budgets]
      + ["fine-tune", "effective rank", "centred rank", "std fraction", "pre-train s", "images/s"]
  )
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in ordered:
    setting = ", ".join(f"{k}={v}" for k, v in sorted(r["setting"].items())) or "recipe"
    col = r["collapse"]
    rate = f"{r['images_per_s']:.0f}" if r.get("images_per_s") else "-"
    cells = (
        [f"`{r['task']}`", setting, f"{100 * r['knn_accuracy']:.2f}"]
        + [f"{100 * r['linear_probe'][str(b)]:.2f}" for b in budgets]
        + [
            f"{100 * r['finetune_accuracy']:.2f}",
            f"{col.get('effective_rank', float('nan')):.1f} / {col.get('max_rank', 0):.0f}",
            f"{col.get('effective_rank_centered', float('nan')):.1f}",
            f"{col.get('std_fraction', float('nan')):.2f}",
            f"{r['pretrain_seconds']:.0f}",
            rate,
        ]
    )
    lines.append("| " + " | ".join(cells) + " |")
  return (
      "Accuracies in % on the test split; sorted by the linear probe at "
      f"{budget} labels per class.\n\n" + "\n".join(lines) + "\n"
  )


def plot(rows, path):
  plt = study_report.pyplot()
  budgets = sorted({int(b) for r in rows for b in r["linear_probe"]})
  metrics = (
      [("kNN accuracy (%)", lambda r: 100 * r["knn_accuracy"])]
      + [
          (f"linear probe @{b}/class (%)", lambda r, b=b: 100 * r["linear_probe"][str(b)])
          for b in budgets
      ]
      + [
          ("fine-tune (%)", lambda r: 100 * r["finetune_accuracy"]),
          (
              "effective rank, centred",
              lambda r: r["collapse"].get("effective_rank_centered", float("nan")),
          ),
          ("pre-training seconds", lambda r: r["pretrain_seconds"]),
      ]
  )
  labels = [planning.run_name(r["task"], r["setting"]) for r in rows]
  cols = 3
  # one shared y axis: the run names are written once, left of each row of panels
  fig, axes = plt.subplots(
      math.ceil(len(metrics) / cols),
      cols,
      sharey=True,
      figsize=(4 * cols + 3, 0.22 * len(rows) * math.ceil(len(metrics) / cols) + 2),
      squeeze=False,
  )
  axes[0, 0].set_yticks(range(len(rows)), labels)
  axes[0, 0].invert_yaxis()
  for ax, (title, value) in zip(axes.flat, metrics):
    ax.barh(range(len(rows)), [value(r) for r in rows], color="tab:blue")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
  for ax in list(axes.flat)[len(metrics) :]:
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=110, bbox_inches="tight")  # the long run names in full
  plt.close(fig)


def write_outputs(workdir, rows):
  study_report.write_json(os.path.join(workdir, ROW_FILE), {"rows": rows})
  checkpoint.write_atomically(os.path.join(workdir, "ablation.md"), format_markdown(rows))
  plot(rows, os.path.join(workdir, "ablation.png"))
