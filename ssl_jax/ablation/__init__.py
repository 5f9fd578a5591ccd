"""Pretext ablation: every image task under one budget and one evaluation protocol.

  python -m ssl_jax.ablate --config=configs/ablate.py[:quick] --workdir=DIR [--config.KEY=VALUE ...]

  planning.py  the `ablation` config section and its schema, each task's run config, the sweeps
  running.py   each run trained and evaluated the same way, resumable row by row
  report.py    DIR/ablation.json, the table (ablation.md) and the plot (ablation.png)

For each task in `ablation.tasks` (empty: every registered image task) the run's config is the
ablation config (data, encoder, batch, steps, augmentation, seed: the same for every task) with the
task's own recipe laid over it: `task_kwargs` and the optimiser's name, learning rate, weight decay
and no-decay rule from `ablation.recipe` (default `configs/<task>_cifar10.py:tiny`), and its encoder
only when the recipe names another encoder family (MAE's ViT, the documented exception).
`ablation.overrides.<task>` adds `KEY=VALUE` strings for that task; `ablation.sweeps.<name>` is
`dict(settings=({KEY: VALUE, ...}, ...), tasks=(...))`, each setting one more run of every task it
applies to (a `task_kwargs.X` key applies to tasks that take X; `tasks` narrows it; a setting equal
to the recipe is the recipe's run). Settings are one-at-a-time around the recipe, not a grid.

Every run is evaluated the same way: kNN and the collapse diagnostics on the final encoder, a
linear probe at `ablation.labels_per_class` over `ablation.num_draws` label draws, and full
fine-tuning at `ablation.finetune_labels_per_class` (ssl_jax/study/ and ssl_jax/finetune/, with
their CV-on-the-labels rules).

Writes DIR/ablation.json (`{"rows": [...]}`, one row per task and setting), DIR/ablation.md (a
table sorted by the probe at 10 labels per class, or the closest budget), DIR/ablation.png (one
panel per metric) and each run in DIR/runs/<task>[-<setting>]/. Killing the command and running
it again resumes: finished rows are kept (their run config must be unchanged, else it stops and
says so) and an unfinished run resumes from its last checkpoint.
"""
