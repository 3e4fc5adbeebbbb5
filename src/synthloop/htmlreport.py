"""A single self-contained HTML report of one or more runs: figures, theory vs measured, configs.

The page holds everything it shows: figures are PNG images inlined as base64 ``data:`` URLs,
the style sheet is inline, and there is no script and no link to anything outside the file,
so it opens offline and can be mailed or archived as one file. Everything on it is drawn from a
:class:`~synthloop.compare.Comparison`, i.e. from the run directories' files alone.
"""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import pandas as pd

from . import compare, report

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta, figcaption, .note { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.theory { color: #777; } .finished { color: #1a7f37; } .failed, .stopped { color: #c62828; } .interrupted { color: #b26a00; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
.scroll { overflow-x: auto; }
"""


def _e(value: Any) -> str:
    return html.escape(_text(value))


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), caption: str = "") -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    cap = f"<caption class='note'>{caption}</caption>" if caption else ""
    return f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def figure_png(fig, dpi: int = 100) -> str:
    """A matplotlib figure as a base64 PNG ``data:`` URL."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _measured(mean: float, ci: float) -> str:
    if mean is None or not np.isfinite(mean):
        return _e(mean)
    return f"{mean:.4g}" + ("" if ci is None or not np.isfinite(ci) else f" ± {ci:.2g}")


def runs_table(comparison: compare.Comparison, varying: list[str]) -> str:
    """One row per run and workflow: status, the varying parameters, final measured value and theory."""
    columns = [k for k in varying if k != "workflow"]
    header = ["run", "workflow", *map(_e, columns), "status", "metric", "generation", "final (mean ± 95% CI)", "theory"]
    rows = []
    for _, row in comparison.runs.iterrows():
        status = f'<span class="{_e(row["status"])}">{_e(row["status"])}</span>'
        if row["stop_reason"]:
            status += f' <span class="stopped">— {_e(row["stop_reason"])}</span>'
        rows.append([
            _e(row["run"]), _e(row["workflow"]), *(_e(row[k]) for k in columns), status, _e(row["metric"]),
            _e(row["final_generation"]), _measured(row["final_mean"], row["final_ci95"]), _e(row["final_theory"]) or "—",
        ])
    n = 2 + len(columns)
    return _table(header, rows, numeric={n + 2, n + 3, n + 4})


def theory_table(comparison: compare.Comparison, metric: str, max_columns: int = 7) -> str:
    """Measured mean ± 95% CI beside the theory at a few generations, per run and workflow.

    Only (run, workflow) pairs with a theory curve for ``metric`` are listed; empty string when none.
    """
    theory = comparison.theory[(comparison.theory["metric"] == metric) & (comparison.theory["kind"] != "bound")]
    if not len(theory):
        return ""
    measured = comparison.metrics[comparison.metrics["metric"] == metric]
    summary = compare.summarize(measured, ["run", "workflow"]).set_index(["run", "workflow", "generation"])
    marks = report.table_generations(int(measured["generation"].max()))
    if len(marks) > max_columns:  # keep the first, the last, and evenly spread marks between
        picks = np.unique(np.linspace(0, len(marks) - 1, max_columns).round().astype(int))
        marks = [marks[i] for i in picks]
    predicted = {(r, w, g): v for r, w, g, v in theory[["run", "workflow", "generation", "value"]].itertuples(index=False)}
    header = ["run", "workflow", *(f"g = {g}" for g in marks)]
    rows = []
    for run, workflow in theory[["run", "workflow"]].drop_duplicates().itertuples(index=False):
        cells = []
        for g in marks:
            if (run, workflow, g) not in summary.index:
                cells.append("")
                continue
            m = summary.loc[(run, workflow, g)]
            value = predicted.get((run, workflow, g))
            cells.append(_measured(m["mean"], m["ci95"]) + f'<br><span class="theory">{_e(value) or "—"}</span>')
        rows.append([_e(run), _e(workflow), *cells])
    caption = "each cell: measured mean ± 95% CI over replicates; below it, in grey, the theory (exact or numerical)"
    return _table(header, rows, numeric=set(range(2, 2 + len(marks))), caption=caption)


def config_tables(comparison: compare.Comparison, varying: list[str]) -> str:
    """The parameters every run shares (one table) and those that differ (one row per run)."""
    runs = comparison.runs
    params = [p for p in comparison.params if not p.startswith("workflow.")]
    shared_rows, differ = [], []
    for name in params:
        values = runs.drop_duplicates("run")[name].map(compare._hashable)
        non_null = values.dropna()
        if name in varying or non_null.nunique() > 1:
            differ.append(name)
        elif len(non_null):
            shared_rows.append([f"<code>{_e(name)}</code>", _e(non_null.iloc[0]) + ("" if len(non_null) == len(values) else " (where set)")])
    out = "<h3>Shared by every run</h3>" + _table(["key", "value"], shared_rows)
    if differ:
        per_run = runs.drop_duplicates("run")
        rows = [[_e(r["run"]), *(_e(r[k]) for k in differ)] for _, r in per_run.iterrows()]
        out += "<h3>Differing between runs</h3>" + _table(["run", *(f"<code>{_e(k)}</code>" for k in differ)], rows)
    workflows = runs.drop_duplicates("workflow")
    wf_keys = [p for p in comparison.params if p.startswith("workflow.") and p != "workflow.name"]
    if wf_keys:
        rows = [[_e(r["workflow"]), *(_e(r[k]) for k in wf_keys)] for _, r in workflows.iterrows()]
        out += "<h3>Workflow settings</h3>" + _table(["workflow", *(f"<code>{_e(k)}</code>" for k in wf_keys)], rows)
    return out


def render(
    comparison: compare.Comparison,
    *,
    metrics: list[str] | None = None,
    facet: str | None = None,
    hue: str | None = None,
    scale: str = "auto",
    title: str | None = None,
    sections: list[tuple[str, str]] = (),
) -> str:
    """The whole report as one HTML string (see the module docstring).

    Parameters
    ----------
    comparison : Comparison
        From :func:`synthloop.compare.load_runs`.
    metrics : list of str, optional
        One figure (and theory table) per metric; default: the runs' reported metrics, then
        every other metric they measured.
    facet, hue : str, optional
        As in :func:`synthloop.compare.figure`; default :func:`~synthloop.compare.default_layout`.
    sections : list of (title, html)
        Further tables shown after the runs table, e.g. a paper's table (:mod:`synthloop.eigen_tables`).
    """
    import matplotlib.pyplot as plt

    varying = comparison.varying()
    facet, hue, style = compare.default_layout(varying, facet, hue)
    known = list(pd.unique(comparison.metrics["metric"]))
    if metrics is None:
        primary = comparison.primary_metrics
        metrics = primary + [m for m in known if m not in primary]
    names = list(pd.unique(comparison.runs["name"]))
    title = title or f"synthloop report: {', '.join(names)}"
    try:
        package_version = version("synthloop")
    except PackageNotFoundError:
        package_version = "unknown"
    n_runs = comparison.runs["run"].nunique()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{n_runs} run{"s" if n_runs != 1 else ""}, generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by synthloop {_e(package_version)}. '
        f"Varying: {_e(', '.join(varying) or 'nothing')}. Bands: 95% confidence interval of the mean over replicates (runs with the same parameters pooled); dashed: theory, dotted: bound.</p>",
    ]
    descriptions = [d for d in pd.unique(comparison.runs["description"].dropna()) if d] if "description" in comparison.runs else []
    for description in descriptions:
        parts.append(f'<p class="note">{_e(description)}</p>')
    parts += ["<h2>Runs</h2>", runs_table(comparison, varying)]
    for heading, fragment in sections:
        parts += [f"<h2>{_e(heading)}</h2>", fragment]
    parts.append("<h2>Figures</h2>")
    layout = ", ".join(f"{k}: {v}" for k, v in [("panels", facet), ("colour", hue), ("markers", ", ".join(style))] if v)
    for metric in metrics:
        label = comparison.labels.get(metric, metric)
        fig = compare.figure(comparison.metrics, comparison.theory, metric=metric, facet=facet, hue=hue, style=style, ylabel=label, scale=scale)
        try:
            src = figure_png(fig)
        finally:
            plt.close(fig)
        parts.append(
            f'<figure><img src="{src}" alt="{_e(metric)} vs generation">'
            f"<figcaption><b>{_e(label)}</b> vs generation ({_e(layout or 'one panel')}).</figcaption></figure>"
        )
    tables = [(metric, theory_table(comparison, metric)) for metric in metrics]
    tables = [(m, t) for m, t in tables if t]
    if tables:
        parts.append("<h2>Theory vs measured</h2>")
        for metric, table in tables:
            parts.append(f"<h3>{_e(comparison.labels.get(metric, metric))}</h3>{table}")
    if comparison.notes:
        rows = [[_e(run), _e(workflow), _e(note)] for (run, workflow), note in comparison.notes.items()]
        parts.append("<h3>No theory</h3>" + _table(["run", "workflow", "why"], rows))
    parts += ["<h2>Configuration</h2>", config_tables(comparison, varying), "</body></html>"]
    return "\n".join(parts)
