"""A metric of the fresh model vs the selection rate, one line per verifier (Feng et al. 2024, Figure 4).

The cells of a sweep over ``verifier.name`` × ``verifier.keep`` each train a fresh model on the
synthetic data one verifier kept at one rate; their generation 0 is the generator, and an
all-real run (``task.labels = 'reference'``) trains on every real pair. Loaded together with
:func:`synthloop.compare.load_runs`, they are one long metrics frame, and everything here is a
pure function of it:

* :func:`selection_summary` — mean and 95% interval (Student t over replicates) per verifier and
  rate at the last generation, plus the ``generator`` (generation 0, each (seed, replicate)
  counted once, since every cell refits the same generator) and ``all real`` lines;
* :func:`selection_table` — the same as a verifier × rate table;
* :func:`selection_figure` — the figure: the metric vs the rate, the generator and all-real lines
  horizontal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .compare import COLORS, MARKERS, summarize

GENERATOR, ALL_REAL = "generator", "all real"


def selection_summary(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per line (a verifier, ``generator``, ``all real``) and rate, the mean of ``metric``.

    Parameters
    ----------
    metrics : DataFrame
        :attr:`synthloop.compare.Comparison.metrics`: columns run, replicate, generation, metric,
        value and the runs' flattened configs (``verifier.name``, ``verifier.keep``,
        ``task.labels``, ``seed``).
    metric : str

    Returns
    -------
    DataFrame
        Columns line, keep (NaN for the generator and all-real lines), mean, sem, ci95, n.
    """
    rows = metrics[metrics["metric"] == metric].copy()
    if rows.empty:
        raise ValueError(f"no values of metric {metric!r} in these runs")
    labels = rows["task.labels"] if "task.labels" in rows else pd.Series("generator", index=rows.index)
    last = rows.groupby("run")["generation"].transform("max")
    verifier = rows["verifier.name"] if "verifier.name" in rows else pd.Series(np.nan, index=rows.index)
    parts = []
    selected = rows[(labels == "generator") & verifier.notna() & (rows["generation"] == last) & (rows["generation"] > 0)]
    if len(selected):
        selected = selected.assign(line=selected["verifier.name"], keep=selected["verifier.keep"].astype(float))
        parts.append(summarize(selected, ["line", "keep"]))
    generator = rows[(labels == "generator") & (rows["generation"] == 0)]
    if len(generator):
        identity = [c for c in ("seed", "replicate") if c in generator]
        generator = generator.drop_duplicates(identity).assign(line=GENERATOR, keep=np.nan)
        parts.append(summarize(generator, ["line", "keep"]))
    real = rows[(labels == "reference") & (rows["generation"] == last) & (rows["generation"] > 0)]
    if len(real):
        parts.append(summarize(real.assign(line=ALL_REAL, keep=np.nan), ["line", "keep"]))
    if not parts:
        raise ValueError("these runs hold neither a selection at generation ≥ 1 nor a generator at generation 0")
    out = pd.concat(parts, ignore_index=True).drop(columns="generation")
    return out[["line", "keep", "mean", "sem", "ci95", "n"]]


def selection_table(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`selection_summary` as a table: a row per verifier, a column per rate, and the
    generator and all-real values as columns of their own (the same on every row)."""
    lines = summary[summary["keep"].notna()]
    table = lines.pivot_table(index="line", columns="keep", values="mean", sort=False)
    table.columns = [f"keep={k:g}" for k in table.columns]
    for name in (GENERATOR, ALL_REAL):
        value = summary.loc[summary["line"] == name, "mean"]
        if len(value):
            table[name] = float(value.iloc[0])
    table.index.name = "verifier"
    return table


def selection_figure(summary: pd.DataFrame, *, ylabel: str, title: str | None = None, caption: str | None = None):
    """The metric vs the selection rate (percent of the labelled inputs kept), one line per
    verifier with 95% error bars; the generator dashed and the all-real model dotted across."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .report import _titled

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    lines = summary[summary["keep"].notna()]
    for i, (name, rows) in enumerate(lines.groupby("line", sort=False)):
        rows = rows.sort_values("keep")
        ax.errorbar(100 * rows["keep"], rows["mean"], yerr=rows["ci95"].fillna(0), color=COLORS[i % len(COLORS)],
                    marker=MARKERS[i % len(MARKERS)], lw=1.8, capsize=3, label=f"{name} selection")
    for name, style, color in ((GENERATOR, "--", "#444444"), (ALL_REAL, ":", "#000000")):
        row = summary[summary["line"] == name]
        if len(row):
            mean, ci = float(row["mean"].iloc[0]), float(row["ci95"].fillna(0).iloc[0])
            ax.axhline(mean, color=color, ls=style, lw=1.4, label=f"{name} ({mean:.3f})")
            if ci > 0:
                ax.axhspan(mean - ci, mean + ci, color=color, alpha=0.08, lw=0)
    if len(lines):
        rates = sorted(lines["keep"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks([100 * r for r in rates], [f"{100 * r:g}%" for r in rates])
        ax.minorticks_off()
    ax.set_xlabel("selection rate (share of the generator's labels kept)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return _titled(fig, title, caption)
