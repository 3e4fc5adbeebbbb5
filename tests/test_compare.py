"""Comparing runs: the long DataFrame across run directories and sweep cells, figures, CLI, MLflow."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

import synthloop
from synthloop import ConfigError, compare
from synthloop.cli import app
from synthloop.sweep import sweep

BASE = ["task.T=20", "generations=4"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-cell sweep over task.d and two plain runs that differ only in their seed."""
    root = tmp_path_factory.mktemp("runs")
    sweep("regression-workflows", ["task.d=3,5"], out=root / "sweep", overrides=BASE, replicates=6)
    for seed in (0, 1):
        synthloop.run("regression-workflows", overrides=[*BASE, "task.d=4", "workflows=[\"replace\"]"], replicates=5, seed=seed, out=root / f"seed{seed}")
    return root


def test_flatten_config_and_workflow_params():
    config = {"task": {"name": "regression", "d": 10}, "workflows": [{"name": "replace"}, {"name": "accumulate-subsample", "budget": 50, "label": "sub"}], "seed": 0, "x": [1, 2]}
    assert compare.flatten_config(config) == {"task.name": "regression", "task.d": 10, "seed": 0, "x": "[1,2]"}
    assert compare.workflow_params(config) == {
        "replace": {"workflow.name": "replace"},
        "sub": {"workflow.name": "accumulate-subsample", "workflow.budget": 50, "workflow.label": "sub"},
    }


def test_sweep_cells_become_one_long_frame_with_parameter_columns(runs):
    comparison = compare.load_runs([runs / "sweep"])
    metrics = comparison.metrics
    assert list(metrics.columns[:6]) == compare.METRIC_COLUMNS
    assert metrics["task.name"].dtype == "category" and metrics["task.d"].dtype == "int64"
    assert {"task.d", "task.T", "generations", "replicates", "seed"} <= set(metrics.columns)
    assert sorted(metrics["run"].unique()) == ["sweep/task.d=3", "sweep/task.d=5"]
    for d in (3, 5):
        cell = synthloop.load(runs / "sweep" / "cells" / f"task.d={d}")
        rows = metrics[metrics["task.d"] == d]
        same = rows[cell.metrics.columns].astype({"workflow": str, "metric": str})  # categories in the comparison
        pd.testing.assert_frame_equal(same.reset_index(drop=True), cell.metrics.reset_index(drop=True))
        assert (rows["run"] == f"sweep/task.d={d}").all() and (rows["task.T"] == 20).all()
    assert comparison.varying() == ["workflow", "task.d"]
    assert set(comparison.theory["run"]) == {"sweep/task.d=3", "sweep/task.d=5"}
    final = compare.final_table(comparison)
    assert len(final) == 6 and (final["status"] == "finished").all() and (final["final_generation"] == 4).all()
    replace = final[(final["run"] == "sweep/task.d=3") & (final["workflow"] == "replace")].iloc[0]
    summary = synthloop.load(runs / "sweep" / "cells" / "task.d=3").summary()["workflows"]["replace"]
    assert replace["final_mean"] == pytest.approx(summary["mean"]) and replace["final_ci95"] == pytest.approx(summary["ci95"])


def test_folder_of_runs_finds_every_run_and_labels_them_apart(runs):
    comparison = compare.load_runs([runs])
    assert set(comparison.runs["run"]) == {"sweep/task.d=3", "sweep/task.d=5", "seed0", "seed1"}
    assert {"workflow", "task.d", "replicates", "seed"} <= set(comparison.varying())


def test_replicates_of_runs_with_the_same_parameters_are_pooled(runs):
    comparison = compare.load_runs([runs / "seed0", runs / "seed1"])
    assert comparison.varying() == ["seed"]
    pooled = compare.summarize(comparison.metrics, ["workflow"])
    assert (pooled["n"] == 10).all()
    g2 = comparison.metrics.query("generation == 2")["value"].to_numpy()
    row = pooled[pooled["generation"] == 2].iloc[0]
    assert row["mean"] == pytest.approx(g2.mean())
    assert row["ci95"] == pytest.approx(stats.t.ppf(0.975, 9) * g2.std(ddof=1) / np.sqrt(10))
    by_seed = compare.summarize(comparison.metrics, ["seed"])
    assert (by_seed["n"] == 5).all() and len(by_seed) == 2 * 5


def test_default_layout_colours_workflows_and_facets_a_task_parameter():
    assert compare.default_layout(["workflow", "seed", "task.d", "task.T"]) == ("task.d", "workflow", ["seed", "task.T"])
    assert compare.default_layout(["seed", "task.d"]) == ("task.d", "seed", [])
    assert compare.default_layout(["workflow", "task.d"], facet="workflow") == ("workflow", "task.d", [])
    assert compare.default_layout([]) == (None, None, [])


def test_figure_is_a_pure_function_of_a_metrics_frame():
    """A hand-built frame, no files: one panel per facet value, one curve per hue value, theory dashed."""
    rows = [
        {"run": f"r{d}", "replicate": r, "generation": g, "workflow": w, "metric": "err", "value": d * (g + 1) * (1 + 0.1 * r), "task.d": d}
        for d in (1, 2, 4) for w in ("replace", "accumulate") for g in range(4) for r in range(3)
    ]
    metrics = pd.DataFrame(rows)
    theory = pd.DataFrame([{"run": f"r{d}", "workflow": "replace", "generation": g, "metric": "err", "value": d * (g + 1.1), "kind": "exact", "task.d": d} for d in (1, 2, 4) for g in range(4)])
    fig = compare.figure(metrics, theory, metric="err", facet="task.d", hue="workflow", scale="linear")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["task.d = 1", "task.d = 2", "task.d = 4"]
    for ax, d in zip(axes, (1, 2, 4)):
        solid = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert len(solid) == 2 and len(dashed) == 1
        np.testing.assert_allclose(solid[0].get_ydata(), d * np.arange(1, 5) * 1.1)  # mean over replicates 1, 1.1, 1.2
        np.testing.assert_allclose(dashed[0].get_ydata(), d * (np.arange(4) + 1.1))
        assert len(ax.collections) == 2  # one 95% band per curve
    with pytest.raises(ConfigError, match=r"no parameter 'task.x' in these runs"):
        compare.figure(metrics, metric="err", facet="task.x")
    with pytest.raises(ConfigError, match=r"no metric 'loss' in these runs; known: err"):
        compare.figure(metrics, metric="loss")
    with pytest.raises(ConfigError, match=r"scale must be one of 'auto', 'linear', 'log'; got 'both'"):
        compare.figure(metrics, metric="err", scale="both")


def test_bad_paths_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"missing is not a directory \(expected a run directory"):
        compare.load_runs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty holds no run directory \(no config.toml or sweep.toml under it\)"):
        compare.load_runs([tmp_path / "empty"])


def test_cli_report_across_runs_writes_a_faceted_figure(runs, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(runs / "sweep")])
    assert result.exit_code == 0, result.output
    assert (runs / "sweep" / "report.png").stat().st_size > 10_000
    assert "sweep/task.d=5" in result.output and "theory" in result.output
    out = tmp_path / "cmp.png"
    result = runner.invoke(app, ["report", str(runs / "sweep"), str(runs / "seed0"), "--facet", "workflow", "--hue", "task.d", "--scale", "log", "--figure", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000
    bad = runner.invoke(app, ["report", str(runs / "sweep"), "--facet", "task.x"])
    assert bad.exit_code == 2 and "--facet must be a config key of these runs or 'workflow'; got 'task.x'" in bad.output
    bad = runner.invoke(app, ["report", str(runs / "sweep"), "--scale", "both"])
    assert bad.exit_code == 2 and "--scale must be one of 'auto', 'linear', 'log' across runs; got 'both'" in bad.output
    bad = runner.invoke(app, ["report", str(runs / "sweep"), "--metric", "loss"])
    assert bad.exit_code == 2 and "--metric must be one of ['excess_risk']; got 'loss'" in bad.output


def test_runs_listing_shows_a_sweeps_final_range(runs):
    index = pd.read_parquet(runs / "sweep" / "index.parquet")
    low, high = index["final.replace"].min(), index["final.replace"].max()
    from synthloop.cli import _sweep_finals

    assert _sweep_finals(runs / "sweep").startswith(f"range over cells: replace={low:.4g}…{high:.4g}, accumulate=")
    listed = CliRunner().invoke(app, ["runs", str(runs)])
    assert listed.exit_code == 0 and "range over cells" in listed.output


def test_mlflow_missing_is_a_clear_error(runs, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    result = CliRunner().invoke(app, ["report", str(runs / "seed0"), "--mlflow", f"sqlite:///{tmp_path}/m.db"])
    assert result.exit_code == 2
    assert "--mlflow needs the mlflow package: pip install mlflow (or the synthloop extra 'mlflow')" in result.output
    result = CliRunner().invoke(app, ["run", "regression-workflows", "--out", str(tmp_path / "never"), "--mlflow", "sqlite:///x.db"])
    assert result.exit_code == 2 and not (tmp_path / "never").exists()  # refused before any work


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy deprecations inside mlflow's store
def test_mlflow_export_one_run_per_directory_and_workflow(runs, tmp_path, monkeypatch, request):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'synthloop[mlflow]')")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    # SQLite commits once per schema migration: in memory-backed /dev/shm that takes 2-3 s, on disk 6-15 s.
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    uri = f"sqlite:///{folder}/mlflow.db"
    result = CliRunner().invoke(app, ["report", str(runs / "sweep"), "--mlflow", uri, "--figure", str(tmp_path / "f.png")])
    assert result.exit_code == 0, result.output
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("regression-workflows")
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 6  # 2 cells × 3 workflows
    run = next(r for r in found if r.data.tags["synthloop.workflow"] == "accumulate" and r.data.params["task.d"] == "5")
    assert run.data.params["task.T"] == "20" and run.data.params["workflow.name"] == "accumulate"
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "excess_risk"))
    cell = synthloop.load(runs / "sweep" / "cells" / "task.d=5").metrics.query("workflow == 'accumulate'")
    expected = cell.groupby("generation")["value"].mean()
    assert [s for s, _ in history] == list(range(5))
    np.testing.assert_allclose([v for _, v in history], expected.to_numpy())
    # Exporting again replaces the runs instead of duplicating them.
    from synthloop.mlflow_export import export

    export([runs / "sweep"], uri)
    assert len(client.search_runs([experiment.experiment_id])) == 6
