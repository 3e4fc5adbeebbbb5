"""Feng et al.'s eigenvalue tables: a pure function of hand-made metrics frames (no training)."""

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from synthloop import eigen_tables
from synthloop.eigen_tables import eigen_table, ordering, selection

GENERATOR = {"accuracy_2pct": 0.60, "accuracy_1pct": 0.20, "accuracy_0.5pct": 0.02}


def cell(run, verifier, trained, init="scratch", verified=None, replicates=2, tolerance=0.02):
    """Long-format metrics of one cell: generation 0 = the generator, generation 1 = ``trained``."""
    rows = []
    for r in range(replicates):
        for metric, value in GENERATOR.items():
            rows.append((run, r, 0, "replace", metric, value))
        for metric, value in {**trained, **(verified or {})}.items():
            rows.append((run, r, 1, "replace", metric, value + 0.01 * (r - 0.5) * (metric.startswith("accuracy"))))
    frame = pd.DataFrame(rows, columns=["run", "replicate", "generation", "workflow", "metric", "value"])
    params = {f"verifier.{k}": v for k, v in verifier.items()}
    return frame.assign(**{"task.init": init, "task.tolerance": tolerance, "task.retrain_steps": 100, **params})


def accuracy(a2, a1, a05):
    return {"accuracy_2pct": a2, "accuracy_1pct": a1, "accuracy_0.5pct": a05}


STATS = {"verifier_kept_fraction": 1.0, "verifier_p": 0.4, "verifier_phi": 1.0, "verifier_psi": 1.0, "verifier_p_star": 0.5, "verifier_kept_error": 0.4}


def table2_metrics():
    cells = [
        cell("s/label-10", {"name": "oracle", "selection": "best-of-k", "k": 10}, accuracy(0.75, 0.30, 0.05), verified={**STATS, "verifier_kept_fraction": 0.1, "verifier_kept_error": 0.1}),
        cell("s/greedy", {"name": "random", "selection": "all"}, accuracy(0.50, 0.15, 0.01), verified=STATS),
        cell("s/label-5", {"name": "oracle", "selection": "best-of-k", "k": 5}, accuracy(0.70, 0.25, 0.03), verified={**STATS, "verifier_kept_fraction": 0.2}),
        cell("s/data", {"name": "oracle", "selection": "threshold", "threshold": 1.0}, accuracy(0.65, 0.22, 0.025),
             verified={**STATS, "verifier_kept_fraction": 0.6, "verifier_psi": 0.0, "verifier_p_star": 1.0, "verifier_kept_error": 0.0}),
        cell("s/self-5", {"name": "self", "selection": "best-of-k", "k": 5}, accuracy(0.55, 0.16, 0.012), verified=STATS),
    ]
    return pd.concat(cells, ignore_index=True)


def test_rows_follow_the_papers_layout_with_its_numbers_beside_ours():
    table = eigen_table(table2_metrics())
    assert list(table["row"]) == ["generator (generation 0)", "greedy, no selection", "data selection τ = 2%",
                                  "label selection, beam 5", "label selection, beam 10", "self selection (log-prob), beam 5"]
    np.testing.assert_allclose(table["acc_0.02"], [60, 50, 65, 70, 75, 55])  # replicate noise ±0.5 averages out
    np.testing.assert_allclose(table["acc_0.005"], [2, 1, 2.5, 3, 5, 1.2])
    np.testing.assert_allclose(table["paper_0.02"].to_numpy()[:5], [66.9, 60.5, 72.1, 69.1, 73.9])
    assert np.isnan(table["paper_0.01"].iloc[3]) and np.isnan(table["paper_0.02"].iloc[5])  # beam 5 at 1%, self selection: not in the spec
    data = table[table["kind"] == "data"].iloc[0]
    assert data["verifier_kept_fraction"] == 0.6 and data["verifier_psi"] == 0.0 and data["verifier_p_star"] == 1.0
    assert table["reference"].tolist() == [True] + [False] * 5 and np.isnan(table["verifier_p"].iloc[0])
    assert ordering(table) == {"greedy < generator": True, "generator < data selection": True,
                               "data selection < label selection": True, "label selection improves with k": True}


def test_ordering_reports_violations_and_missing_rows():
    metrics = table2_metrics()
    worse = metrics["run"].eq("s/label-10") & metrics["metric"].eq("accuracy_2pct") & metrics["generation"].eq(1)
    metrics.loc[worse, "value"] = 0.40
    table = eigen_table(metrics)
    result = ordering(table)
    assert result["label selection improves with k"] is False and result["data selection < label selection"] is True
    only_greedy = eigen_table(metrics[metrics["run"] == "s/greedy"])
    assert ordering(only_greedy) == {"greedy < generator": True, "generator < data selection": None,
                                     "data selection < label selection": None, "label selection improves with k": None}


def test_table4_rows_group_by_starting_model_with_reference_rows():
    cells = [
        cell("t/prev-data", {"name": "oracle", "selection": "threshold", "threshold": 1.0}, accuracy(0.68, 0.25, 0.03), init="previous"),
        cell("t/weak-data", {"name": "oracle", "selection": "threshold", "threshold": 1.0}, accuracy(0.45, 0.1, 0.01), init="/runs/gen-weaker"),
        cell("t/prev-greedy", {"name": "random", "selection": "all"}, accuracy(0.58, 0.19, 0.02), init="previous"),
    ]
    weaker = pd.DataFrame({"generation": [0, 0, 0], "metric": list(GENERATOR), "value": [0.3, 0.05, 0.0]})
    table = eigen_table(pd.concat(cells, ignore_index=True), references={"/runs/gen-weaker": weaker})
    assert list(table["row"]) == ["generator (generation 0)", "gen-weaker (its own accuracy)",
                                  "fine-tuned generator: greedy, no selection", "fine-tuned generator: data selection τ = 2%",
                                  "fine-tuned gen-weaker: data selection τ = 2%"]
    np.testing.assert_allclose(table["acc_0.02"], [60, 30, 58, 68, 45])
    assert table["paper_0.02"].iloc[1:].isna().all()  # Table 4 has no published numbers in the spec


def test_pooled_seeds_and_printing():
    metrics = pd.concat([table2_metrics(), cell("s2/greedy", {"name": "random", "selection": "all"}, accuracy(0.54, 0.15, 0.01), verified=STATS)])
    table = eigen_table(metrics)
    greedy = table[table["kind"] == "greedy"].iloc[0]
    assert greedy["runs"] == 2 and greedy["acc_0.02"] == pytest.approx(52.0)
    console = Console(record=True, width=200)
    console.print(eigen_tables.rich_table(table, title="Table 2", caption=eigen_tables.CAPTION))
    text = console.export_text()
    assert "label selection, beam 10" in text and "75.0 (73.9)" in text and "60.0 (66.9)" in text and "τ = 0.5% (paper)" in text
    html = eigen_tables.html_table(table, caption="budget")
    assert "<table>" in html and "label selection, beam 5" in html and "69.1" in html
    assert eigen_tables.budget(metrics) == "retrain_steps=100, tolerance=0.02"


@pytest.mark.parametrize(("verifier", "expected"), [
    ({}, ("greedy", None)),
    ({"verifier.name": "random", "verifier.selection": "top", "verifier.keep": 1.0}, ("greedy", None)),
    ({"verifier.name": "random", "verifier.selection": "top", "verifier.keep": 0.5}, ("random", 0.5)),
    ({"verifier.name": "oracle", "verifier.selection": "threshold", "verifier.threshold": 1.0}, ("data", 0.01)),
    ({"verifier.name": "oracle", "verifier.selection": "best-of-k", "verifier.k": 25}, ("label", 25)),
    ({"verifier.name": "self", "verifier.selection": "top", "verifier.keep": 0.5}, ("self", 0.5)),
])
def test_selection_is_read_from_the_configuration(verifier, expected):
    kind, parameter, _ = selection(pd.Series({"task.tolerance": 0.01, **verifier}))
    assert (kind, parameter) == expected


def test_report_refuses_an_unknown_table(tmp_path):
    from typer.testing import CliRunner

    import synthloop
    from synthloop.cli import app

    synthloop.run("regression-workflows", overrides=["generations=1", "task.d=3", "task.T=20"], replicates=2, out=tmp_path / "run", figure=False)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "run"), "--table", "feng-mixture"])
    assert result.exit_code == 2 and "--table must be 'feng-eigen'; got 'feng-mixture'" in result.output
