"""Comparing runs: many run directories and sweep cells as one long DataFrame, and its figures.

:func:`load_runs` opens run directories, sweep directories (every cell) or folders holding
them, and returns a :class:`Comparison`: the metrics and theory of every run in long format,
with each run's configuration flattened into columns (``task.d``, ``generations``,
``verifier.keep``…). Everything after loading is a pure function of those frames:
:func:`varying_keys` finds the parameters that differ between runs, :func:`summarize` reduces
replicates to a mean and a 95% band, and :func:`figure` draws a metric vs generation, one panel
per value of a ``facet`` key and one colour per value of a ``hue`` key.

Replicates of runs that share every varying parameter are pooled: two directories holding the
same experiment with different seeds give one curve over all their replicates, not two.
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .sweep import walk_runs
from .validation import ConfigError

#: Columns of :attr:`Comparison.metrics` before the parameter columns.
METRIC_COLUMNS = ["run", "replicate", "generation", "workflow", "metric", "value"]
#: Columns of :attr:`Comparison.theory` before the parameter columns.
THEORY_COLUMNS = ["run", "workflow", "generation", "metric", "value", "kind", "source"]
#: Keys that describe a run but never separate curves.
BOOKKEEPING = {"name", "description", "report.metric", "report.scale"}

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def flatten_config(config: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted keys for every scalar of a config table; lists become JSON text.

    ``workflows`` is left out: each run's workflows are rows (the ``workflow`` column), and a
    workflow's own settings are :func:`workflow_params`.

    >>> flatten_config({"task": {"name": "regression", "d": 10}, "seed": 0, "workflows": [{"name": "replace"}]})
    {'task.name': 'regression', 'task.d': 10, 'seed': 0}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if not prefix and key == "workflows":
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value, separators=(",", ":"), default=str)
        else:
            flat[name] = value
    return flat


def workflow_params(config: dict) -> dict[str, dict[str, Any]]:
    """Each workflow's settings, keyed by the workflow's key (its label, else its name)."""
    out = {}
    for entry in config.get("workflows", []):
        entry = entry if isinstance(entry, dict) else {"name": str(entry)}
        key = entry.get("label") or entry.get("name", "?")
        out[key] = flatten_config(entry, "workflow.")
    return out


@dataclass
class RunEntry:
    """One run directory found by :func:`find_run_dirs`: its path and a short, unique label."""

    path: Path
    label: str
    sweep: Path | None = None


def find_run_dirs(paths: list[str | Path]) -> list[RunEntry]:
    """Run directories named by ``paths``: a run directory itself, every cell of a sweep
    directory, or every run and sweep found under a folder. Raises ConfigError naming a path
    that holds none."""
    entries: list[RunEntry] = []

    def walk(directory: Path) -> None:
        for kind, path in walk_runs(directory):
            if kind == "run":
                entries.append(RunEntry(path, "", None))
                continue
            cells = path / "cells"
            for cell in sorted(p for p in cells.iterdir() if p.is_dir()) if cells.is_dir() else []:
                if (cell / "config.toml").is_file():
                    entries.append(RunEntry(cell, "", path))

    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise ConfigError(f"{path} is not a directory (expected a run directory, a sweep directory or a folder of runs)")
        before = len(entries)
        walk(path)
        if len(entries) == before:
            raise ConfigError(f"{path} holds no run directory (no config.toml or sweep.toml under it)")
    unique: dict[Path, RunEntry] = {}
    for entry in entries:
        unique.setdefault(entry.path.resolve(), entry)
    entries = list(unique.values())
    _label(entries)
    return entries


def _label(entries: list[RunEntry]) -> None:
    """The shortest path tails that tell the runs apart (a sweep cell keeps its sweep's name)."""
    parts = [e.path.resolve().parts for e in entries]
    depth = 1
    while True:
        labels = []
        for entry, p in zip(entries, parts):
            tail = [x for x in p[-depth:] if x != "cells"] if entry.sweep is not None else list(p[-depth:])
            if entry.sweep is not None and depth == 1:
                tail = [entry.sweep.resolve().name, *tail]
            labels.append("/".join(tail))
        if len(set(labels)) == len(labels) or depth > max(len(p) for p in parts):
            break
        depth += 1
    for entry, label in zip(entries, labels):
        entry.label = label


@dataclass
class Comparison:
    """Several runs in long format.

    Attributes
    ----------
    metrics : DataFrame
        run, replicate, generation, workflow, metric, value, then one column per parameter.
    theory : DataFrame
        run, workflow, generation, metric, value, kind, source, then the parameter columns.
    runs : DataFrame
        One row per (run, workflow): run, path, status, name, stop_reason, metric (the run's
        reported metric), final_generation, final_mean, final_ci95, theory at that generation,
        then the parameter columns.
    params : list of str
        The parameter columns, in config order (``task.d``, ``generations``, ``workflow.budget``…).
    labels : dict
        Metric name → axis label, from each run's task.
    notes : dict
        (run, workflow) → why that workflow has no theory curve.
    """

    metrics: pd.DataFrame
    theory: pd.DataFrame
    runs: pd.DataFrame
    params: list[str]
    labels: dict[str, str]
    notes: dict[tuple[str, str], str]

    def varying(self) -> list[str]:
        """Parameters whose value differs between runs (``workflow`` first when several)."""
        return varying_keys(self.runs, self.params)

    @property
    def primary_metrics(self) -> list[str]:
        """The metrics the runs report, most common first."""
        return list(self.runs.groupby("metric", sort=False)["run"].count().sort_values(ascending=False, kind="stable").index)


def load_runs(paths: list[str | Path]) -> Comparison:
    """Open run directories, sweeps or folders of them (see :func:`find_run_dirs`) as one :class:`Comparison`.

    Interrupted runs are included with their finished generations; their status says so.
    """
    from . import api

    entries = find_run_dirs(paths)
    metric_parts, theory_parts, rows = [], [], []
    labels: dict[str, str] = {}
    notes: dict[tuple[str, str], str] = {}
    params: list[str] = []
    for entry in entries:
        try:
            run = api.load(entry.path)
        except ConfigError as error:
            if "no finished generation" in str(error):
                continue  # a cell that has not started yet has nothing to compare
            raise
        config = run.experiment.to_dict()
        shared = flatten_config(config)
        per_workflow = workflow_params(config)
        summary = _read_summary(entry.path)
        labels.update({k: v for k, v in run.experiment.build_task().metric_labels.items() if k not in labels})
        for key in [w.key for w in run.experiment.workflows]:
            values = {**shared, **per_workflow.get(key, {})}
            for name in values:
                if name not in params:
                    params.append(name)
            measured = run.metrics[run.metrics["workflow"] == key]
            metric_parts.append(measured.assign(run=entry.label, **values))
            predicted = run.theory[run.theory["workflow"] == key]
            if len(predicted):
                theory_parts.append(predicted.assign(run=entry.label, **values))
            if key in run.theory_notes:
                notes[(entry.label, key)] = run.theory_notes[key]
            rows.append({
                "run": entry.label,
                "workflow": key,
                "path": str(entry.path),
                "status": "failed" if run.status != "finished" and (entry.path / "error.txt").is_file() else run.status,
                "stop_reason": _stop_reason(summary, key),
                "metric": run.metric,
                **values,
            })
    if not rows:
        raise ConfigError(f"no finished generation in {', '.join(str(p) for p in paths)}")
    metrics = _with_columns(pd.concat(metric_parts, ignore_index=True), METRIC_COLUMNS, params)
    theory = _with_columns(pd.concat(theory_parts, ignore_index=True) if theory_parts else pd.DataFrame(columns=THEORY_COLUMNS), THEORY_COLUMNS, params)
    runs = pd.DataFrame(rows)
    for name in params:
        if name not in runs:
            runs[name] = None
    # Each run's final values of its own reported metric.
    per_metric = [finals(metrics[metrics["run"].isin(group["run"])], theory, metric) for metric, group in runs.groupby("metric", sort=False)]
    final = pd.concat(per_metric, ignore_index=True) if per_metric else pd.DataFrame(columns=["run", "workflow"])
    runs = runs.merge(final, on=["run", "workflow"], how="left")
    runs = runs[["run", "workflow", "path", "status", "stop_reason", "metric", *final.columns[2:], *params]]
    return Comparison(metrics, theory, runs, params, labels, notes)


def _with_columns(frame: pd.DataFrame, first: list[str], params: list[str]) -> pd.DataFrame:
    for name in params:
        if name not in frame:
            frame[name] = None
    frame = frame[first + params].reset_index(drop=True)
    for name in ["run", "workflow", "metric", "kind", "source", *params]:
        # A text column repeats a few values over every row: categories keep a large sweep small.
        if name in frame and (frame[name].dtype == object or pd.api.types.is_string_dtype(frame[name])):
            frame[name] = frame[name].astype("category")
    return frame


def _read_summary(path: Path) -> dict:
    try:
        return json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def _stop_reason(summary: dict, workflow: str) -> str:
    """Why a run stopped early, where its summary records one (a guard, a diverged fit)."""
    entry = summary.get("workflows", {}).get(workflow, {})
    for source in (entry, summary):
        for key in ("stop_reason", "stopped", "reason"):
            value = source.get(key) if isinstance(source, dict) else None
            if isinstance(value, dict):  # {"generation": g, "reason": …}, as api.Run.stopped
                return str(value.get("reason") or f"stopped after generation {value.get('generation')}")
            if value:
                return str(value)
    return ""


def finals(metrics: pd.DataFrame, theory: pd.DataFrame | None, metric: str) -> pd.DataFrame:
    """Per (run, workflow): the last generation measured, its mean ± 95% CI and the theory there.

    Returns columns run, workflow, final_generation, final_mean, final_ci95, final_theory
    (NaN where no theory curve other than a bound exists).
    """
    summary = summarize(metrics[metrics["metric"] == metric], ["run", "workflow"])
    last = summary.loc[summary.groupby(["run", "workflow"], sort=False, observed=True)["generation"].idxmax()]
    out = pd.DataFrame({
        "run": last["run"].to_numpy(),
        "workflow": last["workflow"].to_numpy(),
        "final_generation": last["generation"].astype(int).to_numpy(),
        "final_mean": last["mean"].to_numpy(dtype=float),
        "final_ci95": last["ci95"].to_numpy(dtype=float),
    })
    if theory is not None and len(theory):
        exact = theory[(theory["metric"] == metric) & (theory["kind"] != "bound")]
        exact = exact.drop_duplicates(["run", "workflow", "generation"])[["run", "workflow", "generation", "value"]]
        exact = exact.rename(columns={"generation": "final_generation", "value": "final_theory"})
        out = out.merge(exact, on=["run", "workflow", "final_generation"], how="left")
    else:
        out["final_theory"] = np.nan
    return out


def varying_keys(runs: pd.DataFrame, params: list[str]) -> list[str]:
    """The parameters (and ``workflow``) that take more than one value across ``runs``.

    Bookkeeping keys (name, description, report settings) never count; ``workflow.*``
    settings count only when they differ within one workflow (between workflows they are the
    workflow itself).
    """
    out = ["workflow"] if runs["workflow"].nunique() > 1 else []
    for name in params:
        if name in BOOKKEEPING or name == "workflow.name" or name == "workflow.label":
            continue
        column = runs[name].map(_hashable)
        if name.startswith("workflow."):
            if (column.groupby(runs["workflow"]).nunique() > 1).any():
                out.append(name)
        elif column.nunique() > 1:
            out.append(name)
    return out


def _hashable(value: Any) -> Any:
    return json.dumps(value, default=str) if isinstance(value, (list, dict)) else value


def default_layout(varying: list[str], facet: str | None = None, hue: str | None = None) -> tuple[str | None, str | None, list[str]]:
    """Which varying key colours the curves, which splits panels, which mark the rest.

    By default the workflow colours the curves (or the first varying key when there is one
    workflow) and the next varying key, preferring a task parameter, splits panels.
    Returns ``(facet, hue, style)``: ``style`` holds the varying keys left over, told apart by markers.
    """
    rest = [k for k in varying if k not in (facet, hue)]
    if hue is None and rest:
        hue = "workflow" if "workflow" in rest else rest[0]
        rest.remove(hue)
    if facet is None and rest:
        task_keys = [k for k in rest if k.startswith("task.")]
        facet = (task_keys or rest)[0]
        rest.remove(facet)
    return facet, hue, rest


def summarize(metrics: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean, standard error and 95% CI half-width of ``value`` per ``keys`` + generation.

    The band is Student's t interval of the mean over the replicates in each group (all the
    pooled runs' replicates); with one replicate it is NaN.
    """
    keys = [k for k in keys if k != "generation"]
    frame = metrics.copy()
    for key in keys:
        frame[key] = frame[key].map(_hashable)
    finite = frame[np.isfinite(frame["value"].astype(float))]
    grouped = finite.groupby([*keys, "generation"], sort=False, dropna=False, observed=True)["value"]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    out["sem"] = out["std"].fillna(0.0) / np.sqrt(out["n"])
    t = stats.t.ppf(0.975, np.maximum(out["n"] - 1, 1))
    out["ci95"] = np.where(out["n"] > 1, t * out["sem"], np.nan)
    return out.drop(columns="std")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _sorted_values(frame: pd.DataFrame, key: str) -> list[Any]:
    """Numbers in increasing order; anything else (workflows…) in order of appearance."""
    values = list(pd.unique(frame[key].map(_hashable)))
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
        return sorted(values)
    return values


def figure(
    metrics: pd.DataFrame,
    theory: pd.DataFrame | None = None,
    *,
    metric: str,
    facet: str | None = None,
    hue: str | None = "workflow",
    style: list[str] | None = None,
    ylabel: str | None = None,
    scale: str = "auto",
    title: str | None = None,
    caption: str | None = None,
    columns: int = 3,
):
    """Metric vs generation across runs: a panel per ``facet`` value, a colour per ``hue`` value.

    Parameters
    ----------
    metrics : DataFrame
        Long format with columns generation, metric, value and the keys named here
        (:attr:`Comparison.metrics`).
    theory : DataFrame, optional
        Same keys plus kind; drawn dashed (bounds dotted) in the curve's colour.
    metric : str
        Which metric to draw.
    facet, hue : str or None
        Column whose values split panels / colour curves.
    style : list of str, optional
        Further columns that separate curves, told apart by markers.
    scale : {"auto", "linear", "log"}
        ``auto`` is log when every mean is positive and they span more than two decades.
    columns : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    if scale not in ("auto", "linear", "log"):
        raise ConfigError(f"scale must be one of 'auto', 'linear', 'log'; got {scale!r}")
    style = [k for k in (style or []) if k not in (facet, hue)]
    keys = [k for k in (facet, hue, *style) if k is not None]
    for key in keys:
        if key not in metrics:
            raise ConfigError(f"no parameter {key!r} in these runs; known: {', '.join(sorted(c for c in metrics.columns if c not in METRIC_COLUMNS or c == 'workflow'))}")
    measured = metrics[metrics["metric"] == metric]
    if not len(measured):
        raise ConfigError(f"no metric {metric!r} in these runs; known: {', '.join(sorted(set(metrics['metric'])))}")
    data = summarize(measured, keys)
    predicted = None
    if theory is not None and len(theory):
        predicted = theory[theory["metric"] == metric].copy()
        for key in keys:
            predicted[key] = predicted[key].map(_hashable)
    panels = _sorted_values(measured, facet) if facet else [None]
    hues = _sorted_values(measured, hue) if hue else [None]
    styles = list(data[style].drop_duplicates().itertuples(index=False, name=None)) if style else [()]
    colour = {h: COLORS[i % len(COLORS)] for i, h in enumerate(hues)}
    marker = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(styles)}

    ncols = min(columns, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols + 0.6, 3.5 * nrows + 0.9), squeeze=False, sharex=True)
    means = data["mean"].to_numpy(dtype=float)
    if scale == "auto":
        positive = means[np.isfinite(means)]
        scale = "log" if len(positive) and positive.min() > 0 and positive.max() / positive.min() > 100 else "linear"
    last = int(measured["generation"].max())
    for ax, panel in zip(axes.flat, panels):
        in_panel = data if facet is None else data[data[facet] == panel]
        for h in hues:
            for s in styles:
                rows = in_panel
                if hue is not None:
                    rows = rows[rows[hue] == h]
                for key, value in zip(style, s):
                    rows = rows[rows[key] == value]
                if not len(rows):
                    continue
                rows = rows.sort_values("generation")
                c = colour[h]
                ax.plot(rows["generation"], rows["mean"], color=c, lw=1.6, marker=marker[s] if style else None, markevery=max(1, last // 8), ms=4)
                if rows["ci95"].notna().any():
                    ax.fill_between(rows["generation"], rows["mean"] - rows["ci95"], rows["mean"] + rows["ci95"], color=c, alpha=0.18, lw=0)
                if predicted is not None:
                    curve = predicted
                    for key, value in [(facet, panel), (hue, h), *zip(style, s)]:
                        if key is not None:
                            curve = curve[curve[key] == value]
                    for kind, part in curve.groupby("kind", sort=False, observed=True):
                        # Pooled runs share the prediction: one curve per kind.
                        part = part.drop_duplicates("generation").sort_values("generation").dropna(subset=["value"])
                        ax.plot(part["generation"], part["value"], color=c, lw=1.2, ls=":" if kind == "bound" else "--")
        if facet is not None:
            ax.set_title(f"{facet} = {_format(panel)}", fontsize=10)
        ax.set_yscale(scale)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("generation")
    for ax in axes[:, 0]:
        ax.set_ylabel(textwrap.fill(ylabel or metric, 40), fontsize=9)
    handles = [Line2D([], [], color=colour[h], lw=2, label=f"{hue} = {_format(h)}" if hue != "workflow" else _format(h)) for h in hues if h is not None]
    if style:
        handles += [Line2D([], [], color="0.3", marker=marker[s], lw=0, label=", ".join(f"{k} = {_format(v)}" for k, v in zip(style, s))) for s in styles]
    handles.append(Line2D([], [], color="0.3", lw=1.6, label="measured mean ± 95% CI"))
    if predicted is not None and len(predicted):
        handles.append(Line2D([], [], color="0.3", lw=1.2, ls="--", label="theory"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(handles)), fontsize=8, frameon=False)
    if title:
        fig.suptitle(textwrap.fill(title, 120), fontsize=11)
    if caption:
        fig.text(0.01, -0.02 - 0.03 * math.ceil(len(handles) / 4), textwrap.fill(caption, 160), fontsize=8, va="top")
    fig.tight_layout()
    return fig


def final_table(comparison: Comparison, columns: list[str] | None = None) -> pd.DataFrame:
    """Per (run, workflow): status, the varying parameters, final measured mean ± 95% CI and theory."""
    columns = columns if columns is not None else [k for k in comparison.varying() if k != "workflow"]
    keep = ["run", "workflow", *columns, "status", "stop_reason", "metric", "final_generation", "final_mean", "final_ci95", "final_theory"]
    return comparison.runs[keep].reset_index(drop=True)
