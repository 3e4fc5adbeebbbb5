"""Sweeps: grid expansion, validation before work, executors agree, resume, failed cells, `synthloop runs`."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import synthloop
from synthloop import ConfigError
from synthloop.cli import app
from synthloop.executors import LocalExecutor, SerialExecutor
from synthloop.sweep import cell_id, expand_grid, parse_grid, plan_sweep, run_sweep

BASE = ["generations=3", "task.d=3", "task.T=20"]
GRID = ["task.d=3,5", "task.sigma=0.5,1.0"]


def small_sweep():
    return plan_sweep("regression-workflows", GRID, BASE[:1] + BASE[2:], replicates=5, seed=3)


def cell_metrics(out, cell):
    return pd.read_parquet(out / "cells" / cell / "metrics.parquet")


def test_grid_expansion_and_cell_ids():
    grid = parse_grid(["task.d=10,20", "task.design=fixed,random", 'workflows=["replace","accumulate"],replace'])
    assert grid == {"task.d": [10, 20], "task.design": ["fixed", "random"], "workflows": [["replace", "accumulate"], "replace"]}
    cells = expand_grid(grid)
    assert len(cells) == 8 and cells[0] == {"task.d": 10, "task.design": "fixed", "workflows": ["replace", "accumulate"]}
    assert cell_id({"task.d": 10, "task.T": 100}) == "task.d=10,task.T=100"
    assert cell_id({"task.sigma": 0.5}) == "task.sigma=0.5"
    odd = cell_id({"workflows": ["replace", "accumulate"]})
    assert odd == cell_id({"workflows": ["replace", "accumulate"]})  # stable
    assert "/" not in odd and '"' not in odd and "[" not in odd
    assert odd != cell_id({"workflows": ["replace", "accumulate-subsample"]})
    assert len(cell_id({f"task.k{i}": "x" * 40 for i in range(5)})) <= 80
    with pytest.raises(ConfigError, match=r"--grid expects key=v1,v2"):
        parse_grid(["task.d"])


def test_config_error_in_one_cell_names_it_and_runs_nothing(tmp_path):
    with pytest.raises(ConfigError, match=r"^sweep cell task.d=3,task.sigma=-1: task.sigma must be a number ≥ 0; got -1$"):
        plan_sweep("regression-workflows", ["task.d=3", "task.sigma=1,-1"])
    result = CliRunner().invoke(app, ["sweep", "regression-workflows", "--grid", "task.design=fixed,sideways", "--grid", "workflows=replace", "--out", str(tmp_path / "s"), "--workers", "1"])
    assert result.exit_code == 2, result.output
    assert "sweep cell task.design=sideways,workflows=replace: task.design must be one of 'fixed' or 'random'; got 'sideways'" in result.output
    assert not (tmp_path / "s").exists()


def test_serial_and_local_pool_give_identical_numbers(tmp_path):
    sweep = small_sweep()
    serial = run_sweep(sweep, tmp_path / "serial", SerialExecutor())
    pooled = run_sweep(sweep, tmp_path / "pool", LocalExecutor(2))
    assert (serial["status"] == "finished").all() and (pooled["status"] == "finished").all()
    for cell in sweep.cells:
        pd.testing.assert_frame_equal(cell_metrics(tmp_path / "serial", cell.id), cell_metrics(tmp_path / "pool", cell.id))
    columns = ["cell", "task.d", "task.sigma", "status", "final.replace", "final.accumulate", "final.accumulate-subsample"]
    pd.testing.assert_frame_equal(serial[columns], pooled[columns])
    assert not any((tmp_path / "serial" / "cells").rglob("figure.png"))  # drawn only on request
    # A cell is an ordinary run: the same numbers as running its experiment directly.
    direct = synthloop.run(sweep.cells[1].experiment).metrics
    pd.testing.assert_frame_equal(cell_metrics(tmp_path / "serial", sweep.cells[1].id), direct)


def test_rerun_skips_finished_cells_and_completes_an_interrupted_sweep(tmp_path):
    sweep = small_sweep()
    reference = run_sweep(sweep, tmp_path / "reference")
    out = tmp_path / "sweep"

    def stop_after_first(kind, cell, result):
        if kind == "done":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, out, on_event=stop_after_first)
    first = sweep.cells[0].id
    index = pd.read_parquet(out / "index.parquet")
    assert list(index["status"]) == ["finished", "pending", "pending", "pending"]
    # The second cell is interrupted mid-run, as a kill would leave it.
    def stop_midway(workflow, record):
        if workflow == "accumulate" and record.generation == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synthloop.run(sweep.cells[1].experiment, out=out / "cells" / sweep.cells[1].id, on_generation=stop_midway)
    assert synthloop.load(out / "cells" / sweep.cells[1].id).status == "interrupted"

    finished_mtime = (out / "cells" / first / "metrics.parquet").stat().st_mtime_ns
    events = []
    final = run_sweep(sweep, out, on_event=lambda kind, cell, result: events.append((kind, cell.id)))
    assert ("skipped", first) in events and ("started", first) not in events
    assert (out / "cells" / first / "metrics.parquet").stat().st_mtime_ns == finished_mtime
    for cell in sweep.cells:
        pd.testing.assert_frame_equal(cell_metrics(out, cell.id), cell_metrics(tmp_path / "reference", cell.id))
    pd.testing.assert_frame_equal(final.drop(columns="wall_s"), reference.drop(columns="wall_s"))

    again = []
    run_sweep(sweep, out, on_event=lambda kind, cell, result: again.append(kind))
    assert again == ["skipped"] * 4


FLAKY = '''
from synthloop.tasks.regression import RegressionConfig, RegressionTask


class FlakyConfig(RegressionConfig):
    name: str = "flaky.py:Flaky"


class Flaky(RegressionTask):
    Config = FlakyConfig

    def fit(self, training, rngs):
        if self.config.sigma == 2.0:
            raise RuntimeError("the fit diverged at sigma=2")
        return super().fit(training, rngs)
'''


def test_failed_cell_is_reported_and_the_others_finish(tmp_path):
    (tmp_path / "flaky.py").write_text(textwrap.dedent(FLAKY))
    (tmp_path / "flaky.toml").write_text('name = "flaky"\ngenerations = 3\nreplicates = 5\nworkflows = ["replace", "accumulate"]\n[task]\nname = "flaky.py:Flaky"\nd = 3\nT = 20\n')
    args = ["sweep", str(tmp_path / "flaky.toml"), "--grid", "task.sigma=1,2,0.5", "--out", str(tmp_path / "s"), "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "failed: task.sigma=2: RuntimeError: the fit diverged at sigma=2" in result.output
    assert "1 of 3 cells failed" in result.output
    index = pd.read_parquet(tmp_path / "s" / "index.parquet")
    assert list(index["status"]) == ["finished", "failed", "finished"]
    assert index.loc[1, "error"] == "RuntimeError: the fit diverged at sigma=2"
    assert index.loc[[0, 2], "final.replace"].notna().all() and pd.isna(index.loc[1, "final.replace"])
    assert (tmp_path / "s" / "cells" / "task.sigma=2" / "error.txt").is_file()
    # Re-running retries only the failed cell (it fails again).
    again = CliRunner().invoke(app, [*args, "--quiet"])
    assert again.exit_code == 1 and "failed: task.sigma=2" in again.output


def test_cli_sweep_table_and_runs_listing(tmp_path):
    runner = CliRunner()
    sweep_dir = tmp_path / "runs" / "grid"
    result = runner.invoke(app, ["sweep", "regression-workflows", "--grid", "task.T=20,40", *(arg for s in BASE for arg in ("--set", s)), "--replicates", "5", "--out", str(sweep_dir), "--workers", "1", "--cell-figures"])
    assert result.exit_code == 0, result.output
    assert len(list((sweep_dir / "cells").rglob("figure.png"))) == 2
    assert "task.T=40" in result.output and "finished" in result.output and "accumulate" in result.output
    synthloop.run("regression-workflows", overrides=BASE, replicates=4, out=tmp_path / "runs" / "single")
    listed = runner.invoke(app, ["runs", str(tmp_path / "runs")])
    assert listed.exit_code == 0, listed.output
    assert "grid/ (sweep)" in listed.output and "(2/2 cells)" in listed.output
    assert "single" in listed.output and "d=3" in listed.output and "excess_risk" in listed.output
    assert "task.T=20" not in listed.output.split("single")[0] or "grid task.T=20,40" in listed.output
    empty = runner.invoke(app, ["runs", str(tmp_path / "nothing")])
    assert empty.exit_code == 0 and "no run directories" in empty.output


@pytest.mark.parametrize("workers", ["1", "2"])
def test_killed_sweep_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path, workers):
    """SIGKILL the sweep command at random moments; the restarted sweep loses and duplicates nothing."""
    command = [sys.executable, "-m", "synthloop.cli", "sweep", "regression-workflows", "--grid", "task.d=3,5", "--grid", "task.sigma=0.5,1.0",
               "--set", "generations=15", "--replicates", "200", "--workers", workers, "--quiet"]
    subprocess.run([*command, "--out", str(tmp_path / "reference")], check=True, capture_output=True)
    for delay in np.random.default_rng(int(workers)).uniform(1.0, 4.0, size=2):
        proc = subprocess.Popen([*command, "--out", str(tmp_path / "killed")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker processes, as a crash would
        proc.wait()
    subprocess.run([*command, "--out", str(tmp_path / "killed")], check=True, capture_output=True)
    reference = pd.read_parquet(tmp_path / "reference" / "index.parquet").sort_values("cell").reset_index(drop=True)
    killed = pd.read_parquet(tmp_path / "killed" / "index.parquet").sort_values("cell").reset_index(drop=True)
    assert list(killed["status"]) == ["finished"] * 4
    assert list(killed["cell"]) == list(reference["cell"])
    for cell in reference["cell"]:
        pd.testing.assert_frame_equal(cell_metrics(tmp_path / "killed", cell), cell_metrics(tmp_path / "reference", cell))


def test_ray_executor_gives_the_serial_numbers(tmp_path, monkeypatch):
    """Same seed, same numbers on a local Ray instance as in this process."""
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    serial = synthloop.sweep.sweep("regression-workflows", GRID, out=tmp_path / "serial", overrides=BASE, replicates=5, seed=3, workers=1)
    ray_index = synthloop.sweep.sweep("regression-workflows", GRID, out=tmp_path / "ray", overrides=BASE, replicates=5, seed=3, workers=2, executor="ray")
    assert set(ray_index["status"]) == {"finished"}
    for cell in serial["cell"]:
        pd.testing.assert_frame_equal(cell_metrics(tmp_path / "ray", cell), cell_metrics(tmp_path / "serial", cell))


def test_unknown_executor_is_one_line():
    result = CliRunner().invoke(app, ["sweep", "regression-workflows", "--grid", "task.d=3", "--executor", "dask"])
    assert result.exit_code == 2 and "--executor must be one of ['local', 'ray']; got 'dask'" in result.output


def test_sweep_file_with_named_axis_runs_with_one_command(tmp_path):
    """A sweep file: base preset, [set], a [grid] and a named axis whose values are sets of overrides."""
    path = tmp_path / "verified.toml"
    path.write_text(textwrap.dedent('''
        description = "regression with and without a verifier"
        base = "regression-workflows"
        [set]
        generations = 2
        replicates = 3
        workflows = ["replace"]
        task.d = 3
        task.T = 20
        task.design = "random"
        [grid]
        "task.sigma" = [0.5, 1.0]
        [named.selection.all]
        verifier.name = "random"
        verifier.selection = "all"
        [named.selection.half]
        verifier = { name = "random", keep = 0.5 }
    '''))
    planned = plan_sweep(path, [])
    assert [cell.id for cell in planned.cells] == ["selection=all,task.sigma=0.5", "selection=all,task.sigma=1.0", "selection=half,task.sigma=0.5", "selection=half,task.sigma=1.0"]
    assert planned.name == "verified" and planned.base.generations == 2 and planned.base.verifier is None
    assert planned.base.description == "regression with and without a verifier"
    assert planned.cells[2].experiment.verifier.keep == 0.5 and planned.cells[0].experiment.verifier.selection == "all"
    result = CliRunner().invoke(app, ["sweep", str(path), "--set", "replicates=2", "--out", str(tmp_path / "out"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    assert list(index["selection"]) == ["all", "all", "half", "half"] and set(index["status"]) == {"finished"}
    kept = pd.read_parquet(tmp_path / "out" / "cells" / "selection=half,task.sigma=0.5" / "metrics.parquet")
    assert kept[kept["metric"] == "verifier_kept_fraction"]["value"].eq(0.5).all() and kept["replicate"].max() == 1
    # The same command skips every finished cell; a changed named value is another sweep.
    again = CliRunner().invoke(app, ["sweep", str(path), "--set", "replicates=2", "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"])
    assert again.exit_code == 0, again.output
    path.write_text(path.read_text().replace("keep = 0.5", "keep = 0.25"))
    with pytest.raises(ConfigError, match=r"holds a different sweep \(differs at: named\)"):
        synthloop.sweep.sweep(path, [], out=tmp_path / "out", overrides=["replicates=2"])


@pytest.mark.parametrize(("text", "message"), [
    ('base = "regression-workflows"\n', r"needs a \[grid\] or a \[named.AXIS.VALUE\] table"),
    ('base = "regression-workflows"\nextra = 1\n[grid]\ngenerations = [1]\n', r"unknown key 'extra'"),
    ('base = "regression-workflows"\n[grid]\ngenerations = []\n', r"\[grid\] must map keys to non-empty arrays"),
    ('base = "regression-workflows"\n[named.selection]\nx = 1\n', r"\[named.selection\] must hold one table of overrides per value"),
    ('base = "regression-workflows"\n[named.selection.bad]\nverifier.name = \"random\"\nverifier.keep = 2\n', r"^sweep cell selection=bad: verifier.keep must be a number in \(0, 1\]; got 2"),
    ('base = "regression-workflows"\n[named.s.a]\ngenerations = 2\n', None),
])
def test_sweep_file_errors_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "s.toml"
    path.write_text(text)
    if message is None:
        assert plan_sweep(path, []).cells[0].experiment.generations == 2
        with pytest.raises(ConfigError, match=r"--grid s is already an axis of the sweep file"):
            plan_sweep(path, ["s=1"])
        return
    with pytest.raises(ConfigError, match=message):
        plan_sweep(path, [])


def test_sweep_file_with_an_inline_base_experiment(tmp_path):
    path = tmp_path / "inline.toml"
    path.write_text('[base]\ngenerations = 2\nreplicates = 3\nworkflows = ["replace"]\ntask = { name = "regression", d = 3, T = 20 }\n'
                    '[grid]\n"task.sigma" = [0.5, 1.0]\n')
    planned = plan_sweep(path, [], ["replicates=2"])
    assert planned.name == "inline" and [c.experiment.task.sigma for c in planned.cells] == [0.5, 1.0]
    assert planned.base.replicates == 2 and planned.base.task.d == 3
    path.write_text('base = 3\n[grid]\ngenerations = [1]\n')
    with pytest.raises(ConfigError, match=r"inline.toml: base must be a preset name, a TOML file or a \[base\] table; got 3"):
        plan_sweep(path, [])
