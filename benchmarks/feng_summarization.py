"""Feng et al. (2024) Figure 4 on aclsum: the verifier × selection-rate sweep, the all-real run, the figure.

    python benchmarks/feng_summarization.py --out runs/feng-summarization          # CPU scale
    python benchmarks/feng_summarization.py --scale paper --out runs/feng-paper     # GPU

Runs, in this process (so the cells share the generator through the task's memo):

1. ``synthloop sweep feng-summarization-<scale> --grid verifier.name=oracle,self,model,random
   --grid verifier.keep=0.125,0.25,0.5 --workers 1`` into ``OUT/sweep``;
2. the all-real run (``task.labels = 'reference'``, ``workflows = ['accumulate']``, no verifier)
   into ``OUT/all-real``;

then draws ``OUT/figure4.png`` (ROUGE-1 of the fresh model vs the selection rate, per verifier,
with the generator and all-real lines) and prints the table, wall time and load as Markdown.
Re-running skips finished cells and runs. ``--figure-only`` redraws from the directories.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import synthloop
from synthloop.compare import load_runs
from synthloop.selection_report import selection_figure, selection_summary, selection_table
from synthloop.sweep import sweep

GRID = ["verifier.name=oracle,self,model,random", "verifier.keep=0.125,0.25,0.5"]


def all_real(preset: str) -> synthloop.Experiment:
    data = synthloop.load_experiment(preset).to_dict()
    data.pop("verifier", None)
    data["workflows"] = ["accumulate"]
    data["task"]["labels"] = "reference"
    data["name"] = f"{preset}-all-real"
    return synthloop.Experiment.from_dict(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["cpu", "paper"], default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/feng-summarization"))
    parser.add_argument("--metric", default="rouge1")
    parser.add_argument("--figure-only", action="store_true")
    args = parser.parse_args()
    preset = f"feng-summarization-{args.scale}"
    start = time.perf_counter()
    if not args.figure_only:
        sweep(preset, GRID, out=args.out / "sweep", workers=1)
        synthloop.run(all_real(preset), out=args.out / "all-real", figure=False)
    wall = time.perf_counter() - start
    comparison = load_runs([args.out / "sweep", args.out / "all-real"])
    summary = selection_summary(comparison.metrics, args.metric)
    label = comparison.labels.get(args.metric, args.metric)
    task = synthloop.load_experiment(preset).build_task()
    fig = selection_figure(summary, ylabel=label, title=f"Feng et al. 2024 Fig. 4 on aclsum: {label} of a fresh model trained on the selection",
                           caption=task.describe())
    fig.savefig(args.out / "figure4.png", dpi=120, bbox_inches="tight")
    table = selection_table(summary)
    print(f"{args.metric} (mean over replicates) by verifier and selection rate; figure: {args.out / 'figure4.png'}\n")
    print("| verifier | " + " | ".join(table.columns) + " |")
    print("|---" * (len(table.columns) + 1) + "|")
    for name, row in table.iterrows():
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    cells = comparison.runs.drop_duplicates("run")
    print(f"\nwall time {wall:.0f} s this invocation ({len(cells)} runs), load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
