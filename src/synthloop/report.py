"""Figures and tables: pure functions of the metrics (and theory) DataFrames.

Any figure can be redrawn from ``metrics.parquet``, ``theory.parquet`` and ``config.toml``
alone: nothing here reads the loop's state. Bands are 95% confidence intervals of the mean over
replicates (Student t); theory is dashed in the workflow's colour, bounds dotted.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from scipy import stats

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
THEORY_STYLE = {"exact": "--", "numerical": "--", "asymptotic": "-.", "bound": ":"}


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard error and 95% CI half-width per (workflow, generation, metric)."""
    grouped = metrics.groupby(["workflow", "generation", "metric"], sort=False)["value"]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    out["sem"] = out["std"].fillna(0.0) / np.sqrt(out["n"])
    t = stats.t.ppf(0.975, np.maximum(out["n"] - 1, 1))
    out["ci95"] = np.where(out["n"] > 1, t * out["sem"], np.nan)
    return out.drop(columns="std")


def figure(
    metrics: pd.DataFrame,
    theory: pd.DataFrame | None = None,
    *,
    metric: str,
    ylabel: str | None = None,
    scale: str = "both",
    title: str | None = None,
    caption: str | None = None,
):
    """Metric vs generation, one colour per workflow, measured mean with a 95% band, theory dashed.

    Parameters
    ----------
    metrics : DataFrame
        Long format with columns replicate, generation, workflow, metric, value.
    theory : DataFrame, optional
        Columns workflow, generation, metric, value, kind (``exact``, ``numerical``, ``bound``…).
    metric : str
        Which metric to draw.
    scale : {"both", "linear", "log"}
        y axis: two panels (linear and log) or one.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    data = summarize(metrics[metrics["metric"] == metric])
    scales = ["linear", "log"] if scale == "both" else [scale]
    fig, axes = plt.subplots(1, len(scales), figsize=(6.2 * len(scales), 4.6), squeeze=False)
    for ax, yscale in zip(axes[0], scales):
        _draw(ax, metrics, data, theory, metric)
        ax.set_xlabel("generation (rounds of retraining on synthetic data)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel or metric)
        ax.set_yscale(yscale)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, frameon=False)
    return _titled(fig, title, caption)


def _titled(fig, title: str | None, caption: str | None):
    """Title above and the config caption below the panels, then a tight layout."""
    if title:
        fig.suptitle(textwrap.fill(title, 110), fontsize=11)
    if caption:
        fig.text(0.01, 0.0, "\n".join(textwrap.fill(line, 150) for line in caption.splitlines()), fontsize=8, va="top")
    fig.tight_layout()
    return fig


def _draw(ax, metrics, data, theory, metric) -> None:
    for i, workflow in enumerate(pd.unique(metrics["workflow"])):
        color = COLORS[i % len(COLORS)]
        rows = data[data["workflow"] == workflow].sort_values("generation")
        ax.plot(rows["generation"], rows["mean"], color=color, lw=1.8, label=f"{workflow} (measured)")
        if rows["ci95"].notna().any():
            ax.fill_between(rows["generation"], rows["mean"] - rows["ci95"], rows["mean"] + rows["ci95"], color=color, alpha=0.2, lw=0)
        if theory is None:
            continue
        predicted = theory[(theory["workflow"] == workflow) & (theory["metric"] == metric)]
        for kind, curve in predicted.groupby("kind", sort=False):
            curve = curve.sort_values("generation").dropna(subset=["value"])
            if len(curve):
                ax.plot(curve["generation"], curve["value"], color=color, lw=1.4, ls=THEORY_STYLE.get(kind, "--"), label=f"{workflow} theory ({kind})")


def table_generations(last: int) -> list[int]:
    """Generations worth a table row: 0, 1, 2, 5, 10, 20, 50, 100, 200, 500, … and the last."""
    marks, decade = [0, 1, 2], 1
    while 5 * decade < last:
        marks += [5 * decade, 10 * decade, 20 * decade]
        decade *= 10
    return sorted({g for g in marks if g <= last} | {last})


def table(metrics: pd.DataFrame, theory: pd.DataFrame | None, *, metric: str, title: str = "", caption: str = ""):
    """A rich table: generation × workflow, measured mean ± 95% CI beside the theory value."""
    from rich import box
    from rich.table import Table

    data = summarize(metrics[metrics["metric"] == metric]).set_index(["workflow", "generation"])
    workflows = list(pd.unique(metrics["workflow"]))
    predicted = {}
    if theory is not None and len(theory):
        exact = theory[(theory["metric"] == metric) & (theory["kind"] != "bound")]
        exact = exact.sort_values("kind", key=lambda kind: kind != "asymptotic", kind="stable")  # exact wins a tie
        predicted = {(w, g): v for w, g, v in exact[["workflow", "generation", "value"]].itertuples(index=False)}
    out = Table(title=title or None, caption=caption or None, box=box.SIMPLE_HEAD)
    out.add_column("generation", justify="right")
    for workflow in workflows:
        out.add_column(f"{workflow}\n(± 95% CI)", justify="right")
        out.add_column("theory", justify="right", style="dim")
    last = int(metrics["generation"].max())
    for g in table_generations(last):
        row = [str(g)]
        for workflow in workflows:
            if (workflow, g) in data.index:
                m = data.loc[(workflow, g)]
                ci = "" if np.isnan(m["ci95"]) else f"±{m['ci95']:.2g}"
                row.append(f"{m['mean']:.4g}{ci}")
            else:
                row.append("")
            value = predicted.get((workflow, g))
            row.append("—" if value is None or np.isnan(value) else f"{value:.4g}")
        out.add_row(*row)
    return out


def curve_points(metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics named ``"<series>@<n>"`` — points of a curve over ``n`` measured inside one
    generation — split into columns series and n, at each workflow's last generation. Works on a
    theory frame too (same columns)."""
    named = metrics[metrics["metric"].str.contains("@", regex=False)]
    if named.empty:
        return named.assign(series=pd.Series(dtype=str), n=pd.Series(dtype=float))
    last = named.groupby("workflow")["generation"].transform("max")
    named = named[named["generation"] == last]
    parts = named["metric"].str.rsplit("@", n=1, expand=True)
    return named.assign(series=parts[0], n=pd.to_numeric(parts[1], errors="coerce")).dropna(subset=["n"])


def curve_figure(metrics: pd.DataFrame, theory: pd.DataFrame | None = None, *, xlabel: str, ylabel: str,
                 marks: dict[str, float] | None = None, title: str | None = None, caption: str | None = None):
    """Curves over ``n`` from metrics named ``"<series>@<n>"`` (see :func:`curve_points`): one
    colour per series, mean over replicates with a 95% band; a series named ``clean`` (the
    baseline) is drawn black and dashed. Theory for the same names is drawn in the series'
    colour in its kind's line style; ``marks`` (series → x, e.g. a breakdown point) are vertical
    dotted lines. ``n`` is log-scaled when it is at least 1 and spans more than a factor of 20 (sizes,
not probabilities). Replicates where a
    point is undefined (NaN) are left out of that point; a point with no replicate is not drawn."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    points = curve_points(metrics).dropna(subset=["value"])
    workflows = list(pd.unique(points["workflow"]))
    fig, axes = plt.subplots(1, max(1, len(workflows)), figsize=(6.4 * max(1, len(workflows)), 4.6), squeeze=False)
    for ax, workflow in zip(axes[0], workflows):
        rows = points[points["workflow"] == workflow]
        data = rows.groupby(["series", "n"], sort=False)["value"].agg(mean="mean", std="std", count="count").reset_index()
        t = stats.t.ppf(0.975, np.maximum(data["count"] - 1, 1))
        data["ci95"] = np.where(data["count"] > 1, t * data["std"].fillna(0.0) / np.sqrt(data["count"]), np.nan)
        predicted = curve_points(theory[theory["workflow"] == workflow]) if theory is not None and len(theory) else None
        colors = iter(COLORS)
        for series in pd.unique(rows["series"]):
            curve = data[data["series"] == series].sort_values("n")
            color, style = ("black", "--") if series == "clean" else (next(colors, "0.5"), "-")
            ax.plot(curve["n"], curve["mean"], color=color, ls=style, marker="o", ms=3, lw=1.6, label=f"{series} (measured)")
            if curve["ci95"].notna().any():
                ax.fill_between(curve["n"], curve["mean"] - curve["ci95"], curve["mean"] + curve["ci95"], color=color, alpha=0.15, lw=0)
            if predicted is not None:
                for kind, line in predicted[predicted["series"] == series].groupby("kind", sort=False):
                    line = line.sort_values("n")
                    ax.plot(line["n"], line["value"], color=color, lw=1.2, ls=THEORY_STYLE.get(kind, "--"), label=f"{series} theory ({kind})")
            if marks and series in marks and np.isfinite(marks[series]):
                ax.axvline(marks[series], color=color, lw=1, ls=":", label=f"{series}: p* = {marks[series]:.3g}")
        counts = rows["n"]
        log = bool(len(counts)) and counts.min() >= 1 and counts.max() / counts.min() > 20
        ax.set(xscale="log" if log else "linear", xlabel=xlabel, ylabel=ylabel)
        if len(workflows) > 1:
            ax.set_title(workflow, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _titled(fig, title, caption)


def curve_table(metrics: pd.DataFrame, theory: pd.DataFrame | None = None, *, xlabel: str = "n", title: str = ""):
    """A rich table of the curves of :func:`curve_figure`: one row per ``n``, per series the mean
    ± 95% CI over replicates (and the theory value where there is one)."""
    from rich import box
    from rich.table import Table

    points = curve_points(metrics).dropna(subset=["value"])
    predicted = curve_points(theory) if theory is not None and len(theory) else None
    out = Table(title=title or None, box=box.SIMPLE_HEAD)
    out.add_column(xlabel, justify="right")
    series = list(pd.unique(points["series"]))
    grouped = points.groupby(["series", "n"])["value"]
    stats_ = grouped.agg(mean="mean", std="std", count="count")
    for name in series:
        out.add_column(f"{name}\n(± 95% CI)", justify="right")
        if predicted is not None and (predicted["series"] == name).any():
            out.add_column("theory", justify="right", style="dim")
    for n in sorted(pd.unique(points["n"])):
        row = [f"{n:g}"]
        for name in series:
            if (name, n) in stats_.index:
                m = stats_.loc[(name, n)]
                half = stats.t.ppf(0.975, max(m["count"] - 1, 1)) * m["std"] / np.sqrt(m["count"]) if m["count"] > 1 else np.nan
                row.append(f"{m['mean']:.4g}" + ("" if np.isnan(half) else f"±{half:.2g}"))
            else:
                row.append("")
            if predicted is not None and (predicted["series"] == name).any():
                value = predicted[(predicted["series"] == name) & (predicted["n"] == n)]["value"]
                row.append("—" if value.empty or np.isnan(value.iloc[0]) else f"{value.iloc[0]:.4g}")
        out.add_row(*row)
    return out


def sample_grid(samples: dict[str, dict[int, np.ndarray]], *, generations: list[int] | None = None, title: str | None = None, caption: str | None = None):
    """Samples per workflow (rows) and generation (columns), each panel a mosaic of images.

    Parameters
    ----------
    samples : dict of str to dict of int to ndarray of shape (k, height, width)
        Images in [0, 1] per workflow and generation, as ``samples.npz`` holds them.
    generations : list of int, optional
        Columns to draw; default: those of :func:`table_generations` (0, 1, 2, 5, 10, …, last).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    workflows = list(samples)
    last = max(g for by_gen in samples.values() for g in by_gen)
    columns = generations if generations is not None else table_generations(last)
    fig, axes = plt.subplots(len(workflows), len(columns), figsize=(1.7 * len(columns) + 0.6, 1.8 * len(workflows) + 0.6), squeeze=False)
    for i, workflow in enumerate(workflows):
        for j, g in enumerate(columns):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if g in samples[workflow]:
                ax.imshow(_mosaic(samples[workflow][g]), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            if i == 0:
                ax.set_title(f"generation {g}", fontsize=9)
            if j == 0:
                ax.set_ylabel(workflow, fontsize=9)
    return _titled(fig, title, caption)


def _mosaic(images: np.ndarray) -> np.ndarray:
    """Tile ``k`` images (k, h, w) into a near-square grid with 1-pixel gaps, shape (rows·(h+1)−1, cols·(w+1)−1)."""
    k, h, w = images.shape
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    out = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1))
    for n, image in enumerate(images):
        r, c = divmod(n, cols)
        out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image
    return out
