"""Feng et al.'s eigenvalue tables in the paper's layout: a pure function of the cells' metrics.

Tables 2 and 4 of Feng et al. (2024) train a model (generation 1) on data a generator
(generation 0) synthesized under one selection rule each, and compare its accuracy at
tolerances τ = 2, 1 and 0.5% with the generator's. Every cell of the ``feng-eigen-table*``
sweeps is one row here: the rule is read from the cell's configuration (``verifier.*``), the
starting point of the trained model from ``task.init`` (``scratch`` for Table 2, the generator
or another model for Table 4), and the verifier statistics of the synthesized set (kept
fraction, the candidates' error ``p``, ``φ``, ``ψ``, ``p*``, the kept rows' error) from the
metrics the loop records at generation 1. The generator is the reference row (its generation-0
accuracy), and for Table 4 each other starting model too (its own generation-0 accuracy, read
from its run directory by :func:`load_references`). The paper's numbers, where
``spec/experiments.md`` gives them, stand beside ours.

``synthloop report DIR --table feng-eigen`` prints it; ``--html`` adds it to the report.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

#: Tolerances of the paper's tables (fractions), in column order.
TOLERANCES = (0.02, 0.01, 0.005)

#: Verifier statistics of each synthesized set: metric → column header.
VERIFIER_COLUMNS = {
    "verifier_kept_fraction": "kept",
    "verifier_p": "p",
    "verifier_phi": "φ",
    "verifier_psi": "ψ",
    "verifier_p_star": "p*",
    "verifier_kept_error": "kept error",
}

#: Feng et al. (2024), accuracy (%) at τ = 2/1/0.5% (None where the paper gives none): the generator
#: (Table 1, greedy) and fresh models trained on 1M synthesized examples (Table 2).
PAPER = {
    ("generator", None): (66.9, 20.2, 2.4),
    ("greedy", None): (60.5, 14.5, 1.7),
    ("data", 0.02): (72.1, 20.2, 2.3),
    ("label", 5): (69.1, None, None),
    ("label", 10): (73.9, None, None),
    ("label", 25): (79.9, None, None),
    ("label", 50): (84.0, None, None),
}

#: Starting points of the trained model, in table order (paths come after, by name).
STARTS = {"scratch": "from scratch", "previous": "fine-tuned generator"}


def accuracy_metric(tolerance: float) -> str:
    """The eigenvalues task's metric name of the greedy accuracy at ``tolerance``: ``accuracy_2pct`` for 2%."""
    return f"accuracy_{100 * tolerance:g}pct"


def _value(row: pd.Series, key: str):
    value = row.get(key)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def selection(row: pd.Series) -> tuple[str, object, str]:
    """The selection rule of a cell from its configuration columns: (kind, parameter, label).

    ``kind`` is ``greedy`` (no verifier, or one that keeps everything), ``data`` (oracle
    threshold: rejection of wrong labels; parameter τ), ``label`` (oracle best of ``k`` beam
    candidates; parameter k), ``self`` (the generator's own log-probability picks among ``k``
    candidates, or keeps its most confident rows), ``random`` (a random share) or ``other``.
    """
    name, rule = _value(row, "verifier.name"), _value(row, "verifier.selection") or "top"
    k, keep, tau = _value(row, "verifier.k"), _value(row, "verifier.keep"), _value(row, "task.tolerance")
    keeps_all = rule == "all" or (rule == "top" and (keep is None or float(keep) == 1.0))
    if name is None or (name == "random" and keeps_all):
        return "greedy", None, "greedy, no selection"
    if name == "oracle" and rule == "threshold":
        return "data", tau, f"data selection τ = {100 * float(tau):g}%" if tau is not None else "data selection"
    if name == "oracle" and rule == "best-of-k":
        return "label", int(k), f"label selection, beam {int(k)}"
    if name == "self" and rule == "best-of-k":
        return "self", int(k), f"self selection (log-prob), beam {int(k)}"
    if name == "self":
        return "self", keep, f"self selection, keep {float(keep):g}"
    if name == "random":
        return "random", keep, f"random selection, keep {float(keep):g}"
    return "other", None, f"{name}, {rule}"


def start(row: pd.Series) -> str:
    """Where the trained model starts: ``from scratch``, ``fine-tuned generator`` or ``fine-tuned <run>``."""
    init = _value(row, "task.init") or "scratch"
    return STARTS.get(init, f"fine-tuned {Path(str(init)).name}")


_ORDER = {"greedy": 0, "data": 1, "label": 2, "self": 3, "random": 4, "other": 5}


def _mean(frame: pd.DataFrame, metric: str) -> float:
    values = frame.loc[frame["metric"] == metric, "value"].astype(float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def eigen_table(metrics: pd.DataFrame, references: dict[str, pd.DataFrame] | None = None, tolerances=TOLERANCES) -> pd.DataFrame:
    """Feng et al.'s table from the cells' long-format metrics.

    Parameters
    ----------
    metrics : DataFrame
        :attr:`synthloop.compare.Comparison.metrics` of the cells: run, replicate, generation,
        metric, value and the configuration columns (``verifier.*``, ``task.init``,
        ``task.tolerance``). Generation 0 of every cell is the generator; generation 1 the
        model trained on the synthesized set.
    references : dict of str to DataFrame, optional
        Long-format metrics (generation, metric, value) of the other starting models of Table 4,
        by their ``task.init`` path; their generation 0 becomes a reference row.
    tolerances : sequence of float
        Accuracy columns, as fractions.

    Returns
    -------
    DataFrame
        One row per reference model and per (start, selection), in table order, with columns
        ``row`` (label), ``start``, ``selection``, ``kind``, ``reference`` (bool), ``acc_<τ>``
        (accuracy in %, mean over replicates), the verifier statistics (``verifier_*``, NaN for
        reference rows), ``paper_<τ>`` (the paper's accuracy in %, NaN where it gives none)
        and ``runs`` (cells pooled into the row).

    Notes
    -----
    Cells with the same start and selection (e.g. two seeds) are pooled. Accuracy metrics are
    fractions in [0, 1] (``accuracy_<100τ>pct``) and shown as percentages.
    """
    acc = {tau: accuracy_metric(tau) for tau in tolerances}
    rows = []
    generator = metrics[metrics["generation"] == 0]
    if len(generator):
        rows.append({"row": "generator (generation 0)", "start": "", "selection": "", "kind": "generator", "parameter": None, "reference": True,
                     **{f"acc_{tau:g}": 100 * _mean(generator, acc[tau]) for tau in tolerances},
                     "runs": generator["run"].nunique() if "run" in generator else 1})
    for init, frame in (references or {}).items():
        first = frame[frame["generation"] == 0]
        rows.append({"row": f"{Path(str(init)).name} (its own accuracy)", "start": "", "selection": "",
                     "kind": "reference", "parameter": None, "reference": True,
                     **{f"acc_{tau:g}": 100 * _mean(first, acc[tau]) for tau in tolerances}, "runs": 1})
    trained = metrics[metrics["generation"] == metrics.groupby("run", observed=True)["generation"].transform("max")] if "run" in metrics else metrics
    trained = trained[trained["generation"] > 0]
    cells = {}
    for run, frame in trained.groupby("run", observed=True, sort=False) if "run" in trained else [("run", trained)]:
        first = frame.iloc[0]
        kind, parameter, label = selection(first)
        key = (start(first), kind, str(parameter), label)
        cells.setdefault(key, []).append(frame)
    grouped = []
    for (where, kind, _, label), frames in cells.items():
        frame = pd.concat(frames)
        parameter = selection(frame.iloc[0])[1]
        row = {"row": label if where == STARTS["scratch"] else f"{where}: {label}", "start": where, "selection": label, "kind": kind,
               "parameter": parameter, "reference": False,
               **{f"acc_{tau:g}": 100 * _mean(frame, acc[tau]) for tau in tolerances},
               **{metric: _mean(frame, metric) for metric in VERIFIER_COLUMNS}, "runs": len(frames)}
        grouped.append(row)
    start_order = {label: i for i, label in enumerate(STARTS.values())}
    grouped.sort(key=lambda r: (start_order.get(r["start"], len(start_order)), r["start"], _ORDER.get(r["kind"], 9),
                                float(r["parameter"]) if isinstance(r["parameter"], (int, float)) else 0.0))
    table = pd.DataFrame(rows + grouped)
    for metric in VERIFIER_COLUMNS:
        if metric not in table:
            table[metric] = np.nan
    for i, tau in enumerate(tolerances):
        table[f"paper_{tau:g}"] = [_paper(r, i, tau) for r in table.itertuples()]
    return table.reset_index(drop=True)


def _paper(row, i: int, tau: float) -> float:
    """The paper's number for a row at the i-th tolerance (only Table 2's cells and the generator)."""
    if tau not in TOLERANCES or row.kind not in ("generator", "greedy", "data", "label") or (row.kind != "generator" and row.start != STARTS["scratch"]):
        return float("nan")
    parameter = row.parameter if row.kind in ("data", "label") else None
    if row.kind == "data" and parameter is not None:
        parameter = round(float(parameter), 6)
    values = PAPER.get((row.kind, parameter))
    value = values[TOLERANCES.index(tau)] if values else None
    return float("nan") if value is None else float(value)


def ordering(table: pd.DataFrame, tolerance: float = 0.02) -> dict[str, bool | None]:
    """Whether the paper's ordering holds at ``tolerance`` among the from-scratch rows.

    Returns ``greedy < generator``, ``generator < data selection``, ``data < label selection``
    (the best beam) and ``label selection improves with k`` (non-decreasing in k); None where a
    row is missing.
    """
    column = f"acc_{tolerance:g}"
    scratch = table[(table["start"] == STARTS["scratch"]) & ~table["reference"]]

    def best(kind):
        values = scratch.loc[scratch["kind"] == kind, column]
        return float(values.max()) if len(values) else None

    generator = table.loc[table["kind"] == "generator", column]
    generator = float(generator.iloc[0]) if len(generator) else None
    greedy, data, label = best("greedy"), best("data"), best("label")
    labels = scratch[scratch["kind"] == "label"].sort_values("parameter")[column].to_numpy(dtype=float)

    def less(a, b):
        return None if a is None or b is None else bool(a < b)

    return {
        "greedy < generator": less(greedy, generator),
        "generator < data selection": less(generator, data),
        "data selection < label selection": less(data, label),
        "label selection improves with k": bool(np.all(np.diff(labels) >= 0)) if len(labels) > 1 else None,
    }


def _number(value, digits: str = ".1f") -> str:
    return "—" if value is None or not np.isfinite(value) else format(value, digits)


def table_rows(table: pd.DataFrame, tolerances=TOLERANCES) -> tuple[list[str], list[list[str]]]:
    """Header and text rows: accuracy (ours, then the paper's in brackets) and verifier statistics."""
    header = ["model / selection", *(f"τ = {100 * tau:g}% (paper)" for tau in tolerances), *VERIFIER_COLUMNS.values()]
    rows = []
    for _, row in table.iterrows():
        accuracy = []
        for tau in tolerances:
            ours, paper = row[f"acc_{tau:g}"], row.get(f"paper_{tau:g}", float("nan"))
            accuracy.append(_number(ours) + ("" if not np.isfinite(paper) else f" ({paper:.1f})"))
        stats = ["" if row["reference"] else _number(row[m], ".3g") for m in VERIFIER_COLUMNS]
        rows.append([str(row["row"]), *accuracy, *stats])
    return header, rows


def rich_table(table: pd.DataFrame, title: str = "", caption: str = "", tolerances=TOLERANCES):
    """The table for the terminal (rich)."""
    from rich import box
    from rich.table import Table

    header, rows = table_rows(table, tolerances)
    out = Table(title=title or None, caption=caption or None, box=box.SIMPLE_HEAD, caption_justify="left")
    for i, name in enumerate(header):
        out.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for values, reference in zip(rows, table["reference"]):
        out.add_row(*values, style="dim" if reference else None)
    return out


def html_table(table: pd.DataFrame, caption: str = "", tolerances=TOLERANCES) -> str:
    """The table as an HTML fragment for :func:`synthloop.htmlreport.render`."""
    import html

    from .htmlreport import _table

    header, rows = table_rows(table, tolerances)
    escaped = [[html.escape(c) for c in row] for row in rows]
    return _table([html.escape(h) for h in header], escaped, numeric=set(range(1, len(header))), caption=html.escape(caption))


CAPTION = (
    "accuracy (%) of the model trained on each synthesized set (generation 1), mean over replicates; in brackets the "
    "paper's (Feng et al. 2024, Tables 1–2) where given. Verifier statistics of the synthesized set: kept = share of "
    "synthesized rows kept (of inputs × beam candidates), p = error of a candidate, φ = P(keep | correct), "
    "ψ = P(keep | wrong), p* = φ/(φ+ψ), kept error = error of the kept labels (correct at task.tolerance)."
)


def budget(metrics: pd.DataFrame) -> str:
    """One line with the training budget of the cells, from their configuration columns."""
    keys = ["task.size", "task.layers", "task.width", "task.retrain_steps", "task.batch", "task.retrain_lr", "task.synthetic_size", "task.tolerance", "replicates"]
    parts = []
    for key in keys:
        if key in metrics:
            values = sorted({str(v) for v in metrics[key].dropna().unique()})
            if values:
                parts.append(f"{key.removeprefix('task.')}={'/'.join(values)}")
    return ", ".join(parts)


def load_references(comparison) -> dict[str, pd.DataFrame]:
    """Generation-0 metrics of each run directory a cell starts from (``task.init`` = a path)."""
    from . import api

    if "task.init" not in comparison.runs:
        return {}
    out = {}
    for init in pd.unique(comparison.runs["task.init"].dropna()):
        if str(init) in STARTS:
            continue
        path = Path(str(init))
        if (path / "metrics.parquet").is_file():
            out[str(init)] = api.load(path).metrics
    return out


def report(comparison, tolerances=TOLERANCES) -> tuple[pd.DataFrame, str]:
    """The table of a :class:`~synthloop.compare.Comparison` and its caption (with the budget)."""
    table = eigen_table(comparison.metrics, load_references(comparison), tolerances)
    return table, f"{CAPTION} Budget: {budget(comparison.metrics)}."
