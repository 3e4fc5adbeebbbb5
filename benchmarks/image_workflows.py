"""Summarize image-task run directories: CPU wall time per generation and the workflow curves.

    synthloop run vae-digits-workflows --out runs/vae-digits
    synthloop run diffusion-digits-workflows --out runs/diffusion-digits
    python benchmarks/image_workflows.py runs/vae-digits runs/diffusion-digits

Prints, per run, a Markdown table of mean wall time per generation by workflow (generation 0,
which also trains the sample-quality classifier, apart) and the mean ± 95% CI of each metric at
generations 0, 1 and the last, by workflow — the tables of docs/benchmarks.md.
"""

from __future__ import annotations

import sys

import synthloop


def summarize(path: str) -> str:
    run = synthloop.load(path)
    lines = [f"### {run.experiment.name} ({run.experiment.build_task().describe()}; {run.experiment.replicates} replicates)", ""]
    cost = run.generations
    lines += ["| workflow | generation 0 (s) | later generations, mean (s) | last generation (s) | total (s) |", "|---|---|---|---|---|"]
    for workflow, rows in cost.groupby("workflow", sort=False):
        later = rows[rows.generation > 0]["wall_time_s"]
        lines.append(f"| {workflow} | {rows.wall_time_s.iloc[0]:.1f} | {later.mean():.1f} | {later.iloc[-1]:.1f} | {rows.wall_time_s.sum():.0f} |")
    summary = run.summary_frame()
    last = int(summary.generation.max())
    lines += ["", "| metric | workflow | " + " | ".join(f"generation {g}" for g in (0, 1, last)) + " |", "|---|---|" + "---|" * 3]
    for metric in run.experiment.build_task().metric_labels:
        for workflow in dict.fromkeys(summary.workflow):
            cells = []
            for g in (0, 1, last):
                row = summary[(summary.metric == metric) & (summary.workflow == workflow) & (summary.generation == g)].iloc[0]
                ci = "" if row["ci95"] != row["ci95"] else f" ± {row['ci95']:.2g}"
                cells.append(f"{row['mean']:.3g}{ci}")
            lines.append(f"| {metric} | {workflow} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n\n".join(summarize(p) for p in sys.argv[1:]))
