"""Determinism, replicate prefixes, run directories, resume after interruption, API vs CLI."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import regression, smoke_overrides
from typer.testing import CliRunner

import synthloop
from synthloop import ConfigError
from synthloop.cli import app

SMALL = {"task.d": 4, "task.T": 20, "generations": 6, "replicates": 8}


def small(**extra):
    return regression(**{**SMALL, **extra})


def test_same_seed_same_numbers_and_other_seed_differs():
    a = synthloop.run(small()).metrics
    b = synthloop.run(small()).metrics
    pd.testing.assert_frame_equal(a, b)
    c = synthloop.run(small(seed=1)).metrics
    assert not np.allclose(a["value"], c["value"])


@pytest.mark.parametrize("design", ["fixed", "random"])
def test_fewer_replicates_reproduce_the_first_replicates(design):
    many = synthloop.run(small(**{"task.design": design}, replicates=9)).metrics
    few = synthloop.run(small(**{"task.design": design}, replicates=4)).metrics
    head = many[many["replicate"] < 4].reset_index(drop=True)
    pd.testing.assert_frame_equal(head, few.reset_index(drop=True))


def test_workflows_share_generation_zero_and_are_independent_of_each_other():
    both = synthloop.run(small(workflows=["replace", "accumulate"])).metrics
    alone = synthloop.run(small(workflows=["accumulate"])).metrics
    pd.testing.assert_frame_equal(both[both["workflow"] == "accumulate"].reset_index(drop=True), alone)
    g0 = both[both["generation"] == 0].pivot(index="replicate", columns="workflow", values="value")
    np.testing.assert_array_equal(g0["replace"], g0["accumulate"])


def test_run_directory_contents(tmp_path):
    run = synthloop.run(small(), out=tmp_path / "run")
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.toml", "metrics.parquet", "generations.parquet", "theory.parquet", "summary.json", "figure.png", "figure.svg", "checkpoints"} <= files
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert list(metrics.columns) == ["replicate", "generation", "workflow", "metric", "value"]
    generations = pd.read_parquet(tmp_path / "run" / "generations.parquet")
    acc = generations[generations["workflow"] == "accumulate"].sort_values("generation")
    # Lineage: accumulate's generation g trains on the real data and g synthetic sets of 20 rows.
    assert [list(v) for v in acc["lineage"]][2] == [20.0, 20.0, 20.0]
    np.testing.assert_allclose(acc["real_fraction"], 1 / np.arange(1, 8))
    sub = generations[generations["workflow"] == "accumulate-subsample"].sort_values("generation")
    np.testing.assert_allclose(sub["train_rows"], 20.0)
    assert (generations["wall_time_s"] > 0).all()
    loaded = synthloop.load(tmp_path / "run")
    assert loaded.status == "finished"
    pd.testing.assert_frame_equal(loaded.metrics, run.metrics)
    assert loaded.summary()["workflows"]["replace"]["mean"] == pytest.approx(run.summary()["workflows"]["replace"]["mean"])


def test_interrupted_run_resumes_to_identical_numbers(tmp_path):
    experiment = small()
    reference = synthloop.run(experiment).metrics

    calls = {"n": 0}

    def stop_midway(workflow, record):
        calls["n"] += 1
        if workflow == "accumulate" and record.generation == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synthloop.run(experiment, out=tmp_path / "run", on_generation=stop_midway)
    partial = synthloop.load(tmp_path / "run")
    assert partial.status == "interrupted"
    assert set(partial.metrics["workflow"]) == {"replace", "accumulate"}
    assert partial.metrics.query("workflow == 'accumulate'")["generation"].max() == 3

    resumed = synthloop.run(experiment, out=tmp_path / "run")
    pd.testing.assert_frame_equal(resumed.metrics, reference)


def test_longer_run_continues_a_finished_one(tmp_path):
    synthloop.run(small(), out=tmp_path / "run")
    longer = synthloop.run(small(generations=9), out=tmp_path / "run")
    pd.testing.assert_frame_equal(longer.metrics, synthloop.run(small(generations=9)).metrics)


def test_different_experiment_in_run_directory_is_refused(tmp_path):
    synthloop.run(small(), out=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"config.toml holds a different experiment \(differs at: task\)"):
        synthloop.run(small(**{"task.sigma": 2.0}), out=tmp_path / "run")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"other exists and is not a run directory"):
        synthloop.run(small(), out=tmp_path / "other")
    synthloop.run(small(**{"task.sigma": 2.0}), out=tmp_path / "run", overwrite=True)


def test_killed_cli_run_resumes_to_identical_numbers(tmp_path):
    """SIGKILL the CLI at several moments; every restart ends with the uninterrupted numbers."""
    args = ["run", "regression-workflows", "--set", "generations=25", "--replicates", "300", "--quiet"]
    command = [sys.executable, "-m", "synthloop.cli", *args]
    reference_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    subprocess.run([*command, "--out", str(reference_dir)], check=True, capture_output=True)
    rng = np.random.default_rng(0)
    for delay in rng.uniform(0.6, 2.0, size=3):
        proc = subprocess.Popen([*command, "--out", str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run([*command, "--out", str(run_dir)], check=True, capture_output=True)
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "metrics.parquet"), pd.read_parquet(reference_dir / "metrics.parquet"))


def test_cli_and_api_give_the_same_numbers(tmp_path):
    result = CliRunner().invoke(app, ["run", "regression-workflows", "--set", "generations=5", "--set", "task.d=3", "--replicates", "6", "--seed", "7", "--out", str(tmp_path / "cli"), "--quiet"])
    assert result.exit_code == 0, result.output
    api = synthloop.run("regression-workflows", overrides=["generations=5", "task.d=3"], replicates=6, seed=7)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "cli" / "metrics.parquet"), api.metrics)


def test_cli_reports_config_errors_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["run", "regression-workflows", "--set", "task.sigma=-1", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "task.sigma must be a number ≥ 0; got -1" in result.output
    assert not (tmp_path / "x").exists()


def test_cli_list_theory_report_config(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0 and "regression-workflows" in listed.output
    theory = runner.invoke(app, ["theory", "regression", "--d", "10", "--T", "100", "--sigma", "1", "--workflow", "replace", "--generations", "20"])
    assert theory.exit_code == 0, theory.output
    assert "2.35955" in theory.output  # generation 20: 21 · 10/89
    several = runner.invoke(app, ["theory", "gaussian", "--d", "1", "--T", "100", "--workflow", "replace", "--generations", "2"])
    assert several.exit_code == 0 and "mean_sq_error" in several.output and "trace_ratio" in several.output
    assert "0.9801" in several.output  # trace ratio at generation 1: ((T−1)/T)²
    none = runner.invoke(app, ["theory", "regression", "--d", "10", "--T", "10", "--workflow", "replace"])
    assert none.exit_code == 1 and "T ≤ d + 1" in none.output
    synthloop.run(small(), out=tmp_path / "run")
    (tmp_path / "run" / "figure.png").unlink()
    report = runner.invoke(app, ["report", str(tmp_path / "run"), "--scale", "log"])
    assert report.exit_code == 0, report.output
    assert (tmp_path / "run" / "figure.png").stat().st_size > 10_000
    config = runner.invoke(app, ["config", "regression-workflows", "--set", "task.d=7"])
    assert "d = 7" in config.output


def test_custom_task_example_runs_every_workflow(tmp_path):
    """The example of docs/custom-task.md, run as the docs show it."""
    example = Path(__file__).parents[1] / "examples" / "coin.toml"
    result = CliRunner().invoke(app, ["run", str(example), "--out", str(tmp_path / "coin"), "--set", "generations=12"])
    assert result.exit_code == 0, result.output
    run = synthloop.load(tmp_path / "coin")
    assert set(run.metrics["workflow"]) == {"replace", "accumulate", "accumulate-subsample", "growing"}
    # Its replace theory (binomial drift) holds within the replicate-derived tolerance.
    from conftest import mean_and_sem, theory_values, z_for

    mean, sem, _ = mean_and_sem(run, "replace", metric="squared_error")
    predicted = theory_values(run, "replace")
    assert np.all(np.abs(mean - predicted) < z_for(len(mean)) * sem)
    acc, _, _ = mean_and_sem(run, "accumulate", metric="squared_error")
    assert acc[-1] < mean[-1]


# Self-improvement and text presets train for minutes even at 2 generations; tests/test_self_improve.py and tests/test_text.py run them shrunk.
@pytest.mark.parametrize("preset", sorted(p for p in synthloop.list_presets() if not p.startswith(("self-improve-", "text-", "feng-eigen-"))))
def test_every_preset_runs_a_short_version(preset):
    run = synthloop.run(preset, overrides=["generations=2", *smoke_overrides(preset)], replicates=2)
    assert set(run.metrics["workflow"]) == {w.key for w in run.experiment.workflows}
    assert run.metrics["generation"].max() == 2
    assert np.isfinite(run.metrics.query("metric == @run.metric")["value"]).all()
