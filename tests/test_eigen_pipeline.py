"""Feng et al.'s Table 2 pipeline end to end at a tiny scale: a generator run, then the shipped
sweep file's cells load it, label fresh matrices under their selection rules and train fresh
models on what they kept; the table reads the cells. Tiny models, seconds."""

import importlib.util

import numpy as np
import pytest

import synthloop
from synthloop import compare
from synthloop.eigen_tables import eigen_table, ordering
from synthloop.executors import SerialExecutor
from synthloop.sweep import list_sweep_files, plan_sweep, run_sweep

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the synthloop[nn] extra (torch)")

# A 2 × 2 generator trained for a few seconds is right at τ = 30% often enough that selection matters.
TINY = {"task.size": 2, "task.layers": 1, "task.width": 32, "task.heads": 2, "task.mlp_ratio": 2.0, "task.steps": 200,
        "task.batch": 32, "task.lr": 3e-3, "task.warmup": 5, "task.test_size": 64, "task.device": "cpu", "task.threads": 1}
CELLS = {"greedy": [], "data": [], "label": []}


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    out = tmp_path_factory.mktemp("eigen") / "generator"
    synthloop.run("feng-eigen-generator-cpu", overrides={**TINY, "replicates": 1, "seed": 0}, out=out, figure=False)
    return out


def tiny_sweep(name: str, generator, cells: list[str], **extra):
    overrides = {**TINY, "task.generator": str(generator), "task.synthetic_size": 48, "task.retrain_steps": 30, "task.tolerance": 0.3, **extra}
    planned = plan_sweep(name, [], overrides)
    planned.cells = [cell for cell in planned.cells if cell.params["selection"] in cells]
    assert len(planned.cells) == len(cells)
    return planned


def test_table2_cells_run_end_to_end_and_label_selection_keeps_better_labels(generator, tmp_path):
    planned = tiny_sweep("feng-eigen-table2-cpu", generator, ["greedy", "data-2pct", "beam-05"])
    index = run_sweep(planned, tmp_path / "t2", SerialExecutor())
    assert set(index["status"]) == {"finished"}, index["error"].tolist()
    comparison = compare.load_runs([tmp_path / "t2"])
    table = eigen_table(comparison.metrics)
    assert list(table["kind"]) == ["generator", "greedy", "data", "label"]
    stats = table.set_index("kind")
    # The same seed draws the same fresh matrices in every cell: greedy keeps the generator's own
    # labels (error p), the oracle's best of 5 beam candidates is closer to the truth.
    assert stats.loc["greedy", "verifier_kept_fraction"] == 1.0
    assert 0 < stats.loc["greedy", "verifier_kept_error"] < 1
    assert stats.loc["label", "verifier_kept_error"] < stats.loc["greedy", "verifier_kept_error"]
    assert stats.loc["label", "verifier_kept_fraction"] == pytest.approx(1 / 5)
    assert stats.loc["data", "verifier_kept_error"] == 0 and stats.loc["data", "verifier_psi"] == 0
    assert stats.loc["data", "verifier_kept_fraction"] == pytest.approx(1 - stats.loc["greedy", "verifier_kept_error"])
    assert np.isfinite(table["acc_0.02"]).all() and set(ordering(table)) >= {"greedy < generator"}
    # The command line prints the same table and puts it in the HTML report.
    from typer.testing import CliRunner

    from synthloop.cli import app

    result = CliRunner().invoke(app, ["report", str(tmp_path / "t2"), "--table", "feng-eigen", "--html", str(tmp_path / "t2.html"),
                                      "--figure", str(tmp_path / "t2.png")], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Feng et al. eigenvalue table" in result.output and "label selection, beam 5" in result.output and "(69.1)" in result.output
    html = (tmp_path / "t2.html").read_text()
    assert "Feng et al. eigenvalue table" in html and "data selection τ = 30%" in html


def paper_generator(directory, task: dict):
    """A run directory holding a model of the paper-scale shape (weights not needed to validate a config)."""
    import pickle

    from synthloop.tasks.eigenvalues import SHAPE_KEYS, EigenModel, EigenvaluesConfig

    config = EigenvaluesConfig(**{k: v for k, v in task.items() if k in EigenvaluesConfig.model_fields and k not in ("generator", "init")})
    model = EigenModel([{}], {key: getattr(config, key) for key in SHAPE_KEYS}, np.zeros(1), 0)
    (directory / "checkpoints" / "replace").mkdir(parents=True)
    (directory / "checkpoints" / "replace" / "state.pkl").write_bytes(pickle.dumps({"model": model, "generation": 0}))


def test_shipped_sweep_files_validate(generator, tmp_path, monkeypatch):
    """Every shipped sweep file plans: the CPU ones with the tiny generator standing in for the four
    models they load, the paper-scale ones with models of the paper's shape."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for suffix in ("", "-equal", "-stronger", "-weaker"):
        (tmp_path / "runs" / f"feng-eigen-generator-cpu{suffix}").symlink_to(generator)
    paper = synthloop.load_experiment("feng-eigen-generator-paper").task.model_dump()
    for suffix in ("", "-equal", "-stronger", "-weaker"):
        paper_generator(tmp_path / "runs" / f"feng-eigen-generator-paper{suffix}", paper)
    shipped = list_sweep_files()
    assert set(shipped) == {"feng-eigen-table2-cpu", "feng-eigen-table4-cpu", "feng-eigen-table2-paper", "feng-eigen-table4-paper"}
    cells = {}
    for name in shipped:
        planned = plan_sweep(name, [], TINY if name.endswith("-cpu") else {})
        cells[name] = [cell.id for cell in planned.cells]
        assert all(cell.experiment.generations == 1 and cell.experiment.task.name == "eigenvalues" for cell in planned.cells)
    assert len(cells["feng-eigen-table2-cpu"]) == len(cells["feng-eigen-table2-paper"]) == 7
    assert len(cells["feng-eigen-table4-cpu"]) == len(cells["feng-eigen-table4-paper"]) == 12
    table4 = {cell.id: cell.experiment for cell in plan_sweep("feng-eigen-table4-paper", []).cells}
    assert table4["start=generator,selection=beam-10"].task.init == "previous"
    assert table4["start=weaker,selection=greedy"].task.init == str(tmp_path / "runs" / "feng-eigen-generator-paper-weaker")
    table2 = plan_sweep("feng-eigen-table2-paper", []).base.task
    assert (table2.size, table2.width, table2.lr, table2.warmup, table2.synthetic_size, table2.init) == (5, 512, 5e-5, 10000, 1_000_000, "scratch")
