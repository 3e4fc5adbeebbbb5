"""Faults and bad input: crafted and damaged checkpoints, damaged run files, newer configs,
unwritable directories, divergence and guards, Ctrl-C, and a sweep killed at random moments."""

import errno
import json
import os
import pickle
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
from synthloop.experiment import list_presets, load_experiment
from synthloop.store import StoreError, read_pickle
from synthloop.sweep import sweep

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SMALL = {"task.d": 4, "task.T": 20, "generations": 4, "replicates": 5}


def small(**extra):
    return regression(**{**SMALL, **extra})


class _System:
    """Pickles as a call of ``os.system``, as a malicious checkpoint would."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


# --- checkpoints are never loaded with unrestricted pickle ----------------------------------


def test_crafted_checkpoint_calling_os_system_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    synthloop.run(small(generations=2), out=tmp_path / "run")
    state = tmp_path / "run" / "checkpoints" / "replace" / "state.pkl"
    state.write_bytes(pickle.dumps({"generation": 2, "model": _System()}))
    with pytest.raises(StoreError, match=r"state.pkl: refusing to load posix.system .*delete .*checkpoints/replace to restart"):
        synthloop.run(small(generations=3), out=tmp_path / "run")
    with pytest.raises(StoreError, match=r"refusing to load posix.system"):
        synthloop.load(tmp_path / "run")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("global_name", [
    ("builtins", "eval"), ("synthloop.store", "os.system"), ("synthloop.store", "shutil"),
    ("synthloop.store", "atomic_write"), ("synthloop.experiment", "Experiment"), ("subprocess", "Popen"),
])
def test_unpickler_allows_only_listed_globals(tmp_path, global_name):
    module, name = global_name
    path = tmp_path / "state.pkl"
    path.write_bytes(b"\x80\x04c" + f"{module}\n{name}\n".encode() + b".")  # GLOBAL opcode, then STOP
    with pytest.raises(StoreError, match=f"refusing to load {module}.{name}"):
        read_pickle(path)
    # numpy arrays, generators and builtin containers still load
    rng = np.random.default_rng(3)
    path.write_bytes(pickle.dumps({"a": np.arange(3.0), "o": np.array([1, "x"], dtype=object), "g": rng, "s": {1}, "t": (np.float64(2),)}))
    loaded = read_pickle(path)
    np.testing.assert_array_equal(loaded["a"], np.arange(3.0))
    assert loaded["g"].random() == np.random.default_rng(3).random()


# Neural presets train for minutes; tests/test_self_improve.py and tests/test_text.py resume shrunk ones through the store.
@pytest.mark.parametrize("name", [*(p for p in list_presets() if not p.startswith(("self-improve-", "text-", "feng-eigen-"))), str(EXAMPLES / "coin.toml")])
def test_every_shipped_task_resumes_through_the_restricted_unpickler(tmp_path, name):
    overrides = ["generations=2", "replicates=3", *(smoke_overrides(name) if not name.endswith(".toml") else [])]
    experiment = load_experiment(name, overrides)
    synthloop.run(experiment, out=tmp_path / "run")
    longer = experiment.with_overrides({"generations": 3})
    resumed = synthloop.run(longer, out=tmp_path / "run")  # loads every checkpoint, then continues
    pd.testing.assert_frame_equal(resumed.metrics, synthloop.run(longer).metrics)


# --- damaged files ---------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoint_is_one_line_naming_the_file(tmp_path, damage):
    synthloop.run(small(generations=2), out=tmp_path / "run")
    for path in [tmp_path / "run" / "checkpoints" / "accumulate" / "state.pkl", tmp_path / "run" / "checkpoints" / "accumulate" / "source-0001.pkl"]:
        good = path.read_bytes()
        path.write_bytes({"truncate": good[: len(good) // 2], "garbage": b"\x00garbage\xff" * 10, "empty": b""}[damage])
        with pytest.raises(StoreError, match=rf"{path.name} is unreadable \(.*\); delete .*checkpoints/accumulate to restart that workflow") as info:
            synthloop.run(small(generations=3), out=tmp_path / "run")
        assert "\n" not in str(info.value)
        path.write_bytes(good)
    synthloop.run(small(generations=3), out=tmp_path / "run")


def test_damaged_metrics_summary_and_config_are_one_line(tmp_path):
    synthloop.run(small(), out=tmp_path / "run")
    run_dir = tmp_path / "run"
    metrics = run_dir / "metrics.parquet"
    good = metrics.read_bytes()
    metrics.write_bytes(good[:100])
    with pytest.raises(StoreError, match=r"metrics.parquet is unreadable .*; delete it and run the same command"):
        synthloop.load(run_dir)
    metrics.unlink()
    synthloop.run(small(), out=run_dir)  # rewritten from the checkpoints
    pd.testing.assert_frame_equal(synthloop.load(run_dir).metrics, pd.read_parquet(metrics))
    (run_dir / "summary.json").write_text("{not json")
    with pytest.raises(StoreError, match=r"summary.json is unreadable"):
        synthloop.load(run_dir)
    (run_dir / "config.toml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(StoreError, match=r"config.toml is unreadable"):
        synthloop.load(run_dir)
    (run_dir / "config.toml").write_text("generations = [")
    with pytest.raises(ConfigError, match=r"config.toml: "):
        synthloop.load(run_dir)


def test_config_written_by_a_newer_version_is_refused(tmp_path):
    synthloop.run(small(), out=tmp_path / "run")
    config = tmp_path / "run" / "config.toml"
    assert config.read_text().startswith("synthloop_format = 1\n")
    config.write_text(config.read_text().replace("synthloop_format = 1", "synthloop_format = 7"))
    with pytest.raises(ConfigError, match=r"config.toml: .*written by a newer synthloop \(synthloop_format = 7; this version reads up to 1\); upgrade"):
        synthloop.load(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"written by a newer synthloop"):
        synthloop.run(config)
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path / "other")])
    assert result.exit_code == 2 and "written by a newer synthloop" in result.output and "Traceback" not in result.output
    # the resolved config of a run is itself a valid preset
    config.write_text(config.read_text().replace("synthloop_format = 7", "synthloop_format = 1"))
    assert synthloop.load(tmp_path / "run").experiment == load_experiment(config)


def test_unwritable_output_directory_is_one_line(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root ignores permissions: refuse the way the kernel would
        real_mkdir = Path.mkdir

        def mkdir(self, *args, **kwargs):
            if locked in self.parents:
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    try:
        with pytest.raises(StoreError, match=r"cannot write .*locked/run: Permission denied; .*choose another --out"):
            synthloop.run(small(), out=locked / "run")
        result = CliRunner().invoke(app, ["run", "regression-workflows", "--out", str(locked / "run"), "--quiet"])
        assert result.exit_code == 2 and "cannot write" in result.output and "Traceback" not in result.output
    finally:
        locked.chmod(0o700)


def test_disk_full_keeps_finished_generations_and_names_the_file(tmp_path, monkeypatch):
    import synthloop.store as store

    synthloop.run(small(generations=2), out=tmp_path / "run")
    real_replace = os.replace

    def full(src, dst):
        if str(dst).endswith("state.pkl"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(store.os, "replace", full)
    with pytest.raises(StoreError, match=r"cannot write .*checkpoints/replace/state.pkl: No space left on device; finished generations are kept — free some space"):
        synthloop.run(small(generations=4), out=tmp_path / "run")
    monkeypatch.undo()
    leftovers = [p.name for p in (tmp_path / "run").rglob("*.tmp")]
    assert leftovers == []
    assert synthloop.load(tmp_path / "run").metrics["generation"].max() == 2
    stray = tmp_path / "run" / "checkpoints" / "replace" / ".state.pkl.x1y2.tmp"
    stray.write_bytes(b"half")  # as a process killed mid-write leaves it
    resumed = synthloop.run(small(generations=4), out=tmp_path / "run")
    assert not stray.exists()
    pd.testing.assert_frame_equal(resumed.metrics, synthloop.run(small(generations=4)).metrics)


# --- divergence and guards -------------------------------------------------------------------

EXPLODING = '''
from dataclasses import dataclass

import numpy as np

from synthloop import Task, TaskConfig, Theory


class ExplodingConfig(TaskConfig):
    name: str = "exploding.py:Exploding"
    factor: float = 1e150


@dataclass
class Values:
    values: np.ndarray  # (R, n)


@dataclass
class Mean:
    m_: np.ndarray  # (R,)


class Exploding(Task):
    """Each generation's estimate is the last one times ``factor``: it overflows to inf."""

    Config = ExplodingConfig
    primary_metric = "size"
    metric_labels = {"size": "the estimate", "gap": "estimate minus itself (NaN once it overflows)"}

    @property
    def real_size(self):
        return 4

    def sample_real(self, rngs):
        return Values(np.stack([1.0 + rng.random(4) for rng in rngs]))

    def synthesize(self, model, inputs, n, rngs):
        with np.errstate(over="ignore"):
            return Values(np.repeat((model.m_ * self.config.factor)[:, None], n, axis=1))

    def fit(self, training, rngs):
        return Mean(training.rows("values").mean(axis=1))

    def evaluate(self, model, real):
        with np.errstate(invalid="ignore"):
            return {"size": np.minimum(model.m_, 1e308), "gap": model.m_ - model.m_}

    def theory(self, workflow, generations):
        return Theory(note="none")
'''


def exploding(tmp_path, **overrides):
    (tmp_path / "exploding.py").write_text(EXPLODING)
    data = {"task": {"name": "exploding.py:Exploding"}, "workflows": ["replace"], "generations": 6, "replicates": 3}
    return synthloop.Experiment.from_dict(data, base_dir=tmp_path).with_overrides(overrides) if overrides else synthloop.Experiment.from_dict(data, base_dir=tmp_path)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the log-scale figure of values near 1e300
def test_a_diverging_model_stops_its_workflow_and_keeps_the_last_good_generation(tmp_path):
    experiment = exploding(tmp_path)
    run = synthloop.run(experiment, out=tmp_path / "run")
    # generation 0: ~1.5, 1: ~1e150, 2: ~1e300, 3: inf -> NaN gap; generation 3 is dropped
    assert run.status == "stopped"
    assert run.stopped == {"replace": {"generation": 2, "reason": "diverged at generation 3: gap is NaN in 3 of 3 replicates"}}
    assert sorted(set(run.metrics["generation"])) == [0, 1, 2]
    assert np.isfinite(run.metrics["value"]).all()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["workflows"]["replace"]["stopped"]["generation"] == 2
    loaded = synthloop.load(tmp_path / "run")
    assert loaded.status == "stopped" and loaded.stopped == run.stopped
    # resuming, even with more generations, does not continue a stopped workflow
    again = synthloop.run(experiment.with_overrides({"generations": 9}), out=tmp_path / "run")
    assert again.stopped == run.stopped and sorted(set(again.metrics["generation"])) == [0, 1, 2]


def test_guard_stops_a_workflow_when_its_metric_exceeds_k_times_generation_0(tmp_path):
    experiment = small(generations=30, replicates=20, workflows=["replace", "accumulate"], guard=[{"metric": "excess_risk", "max_ratio": 4}])
    run = synthloop.run(experiment, out=tmp_path / "run")
    means = run.metrics[run.metrics["metric"] == "excess_risk"].groupby(["workflow", "generation"])["value"].mean()
    replace = means["replace"]
    g = run.stopped["replace"]["generation"]
    # replace's risk grows ~linearly in g: it trips the guard at the first generation above 4 × g0, which is kept
    assert replace[g] > 4 * replace[0] and (replace[:g - 1] <= 4 * replace[0]).all() and replace.index.max() == g
    assert run.stopped["replace"]["reason"].startswith(f"guard at generation {g}: mean excess_risk ")
    assert "accumulate" not in run.stopped and means["accumulate"].index.max() == 30  # bounded risk: never trips
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["workflows"]["replace"]["stopped"] == run.stopped["replace"]
    # a kill between the checkpoint and the stop record: the resumed run re-checks the guard
    (tmp_path / "run" / "checkpoints" / "replace" / "stopped.json").unlink()
    (tmp_path / "run" / "summary.json").unlink()
    assert synthloop.run(experiment, out=tmp_path / "run").stopped == run.stopped


def test_guard_config_is_validated():
    with pytest.raises(ConfigError, match=r"guard\[0\].metric must be one of \['excess_risk'\]; got 'risk'"):
        small(guard=[{"metric": "risk", "max_ratio": 2}])
    with pytest.raises(ConfigError, match=r"guard\[0\] needs at least one of max_ratio, max, min"):
        small(guard=[{"metric": "excess_risk"}])
    with pytest.raises(ConfigError, match=r"guard\[0\].max_ratio must be a number > 0; got -1"):
        small(guard=[{"metric": "excess_risk", "max_ratio": -1}])
    with pytest.raises(ConfigError, match=r"guard\[1\].ratio is not a known key"):
        small(guard=[{"metric": "excess_risk", "max": 1}, {"metric": "excess_risk", "ratio": 1}])
    assert small(guard=[{"metric": "excess_risk", "max": 1.5}]).guard[0].max == 1.5


def test_cli_reports_a_stopped_workflow(tmp_path):
    args = ["run", "regression-workflows", "--set", "generations=12", "--set", "task.d=4", "--set", "task.T=20", "--replicates", "10",
            "--set", 'guard=[{metric="excess_risk", max_ratio=3}]', "--out", str(tmp_path / "run"), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "replace stopped after generation" in result.output and "guard at generation" in result.output


# --- Ctrl-C and kills ------------------------------------------------------------------------

CLI = [sys.executable, "-m", "synthloop.cli"]


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until ``path`` exists: the command is past start-up and has saved some work."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_ctrl_c_during_run_exits_130_and_keeps_every_finished_generation(tmp_path):
    overrides = ["generations=30", "task.d=5"]
    args = ["run", "regression-workflows", *(a for o in overrides for a in ("--set", o)), "--replicates", "2000", "--quiet", "--out", str(tmp_path / "run")]
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / "run" / "checkpoints" / "replace" / "source-0002.pkl", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "interrupted after generation " in err and "run the same command to resume" in err
    assert not list((tmp_path / "run").rglob("*.tmp"))  # a write cut short leaves no temporary file
    saved = synthloop.load(tmp_path / "run")
    assert saved.status == "interrupted"
    generation, workflow = err.split("interrupted after generation ")[1].split()[0:3:2]
    assert workflow == "replace;" and saved.metrics["generation"].max() == int(generation)  # the last saved generation
    reference = synthloop.run("regression-workflows", overrides=[*overrides, f"generations={generation}", "workflows=['replace']"], replicates=2000)
    pd.testing.assert_frame_equal(saved.metrics, reference.metrics)


SWEEP = ["sweep", "regression-workflows", "--grid", "task.d=3,5", "--grid", "task.sigma=0.5,1.0", "--set", "generations=10", "--replicates", "50", "--quiet"]


def cell_metrics(sweep_dir: Path, cell: str) -> pd.DataFrame:
    return pd.read_parquet(sweep_dir / "cells" / cell / "metrics.parquet")


def test_ctrl_c_during_a_pooled_sweep_exits_130_without_tracebacks(tmp_path):
    out = tmp_path / "sweep"
    proc = subprocess.Popen([*CLI, *SWEEP, "--workers", "2", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(out / "cells" / "task.d=3,task.sigma=0.5" / "checkpoints" / "replace" / "state.pkl", proc)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the sweep and its workers
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert time.monotonic() - started < 10  # running cells are stopped, not waited for
    assert "cells finished; the others keep their finished generations — run the same command to resume" in err


def test_sweep_killed_at_random_moments_ends_with_the_numbers_of_an_uninterrupted_one(tmp_path):
    """SIGKILL the sweep and its workers at seeded random moments, restart until it finishes."""
    reference = sweep("regression-workflows", ["task.d=3,5", "task.sigma=0.5,1.0"], out=tmp_path / "reference",
                                      overrides=["generations=10"], replicates=50, workers=1)
    out, kills = tmp_path / "killed", 0
    rng = np.random.default_rng(5)
    while True:
        proc = subprocess.Popen([*CLI, *SWEEP, "--workers", "1", "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            proc.wait(timeout=rng.uniform(1.5, 4.0) if kills < 3 else 120)
            break
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker processes, as a crash would
            proc.wait()
            kills += 1
    assert proc.returncode == 0, proc.stderr.read()
    index = pd.read_parquet(out / "index.parquet")
    assert sorted(index["cell"]) == sorted(reference["cell"]) and index["cell"].is_unique
    assert set(index["status"]) == {"finished"}
    for cell in reference["cell"]:
        pd.testing.assert_frame_equal(cell_metrics(out, cell), cell_metrics(tmp_path / "reference", cell))


def test_damaged_or_newer_sweep_toml_is_one_line(tmp_path):
    args = ["sweep", "regression-workflows", "--grid", "task.d=3", "--set", "generations=2", "--replicates", "3", "--workers", "1", "--quiet", "--out", str(tmp_path / "sweep")]
    assert CliRunner().invoke(app, args).exit_code == 0
    path = tmp_path / "sweep" / "sweep.toml"
    assert path.read_text().startswith("synthloop_format = 1\n")
    assert CliRunner().invoke(app, args).exit_code == 0  # the same sweep again: nothing differs
    path.write_text(path.read_text().replace("synthloop_format = 1", "synthloop_format = 3"))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "sweep.toml was written by a newer synthloop (synthloop_format = 3" in result.output
    path.write_bytes(b"grid = {\xff")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "sweep.toml is unreadable" in result.output and "Traceback" not in result.output


def test_cli_user_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    (tmp_path / "file").write_text("x")
    runner = CliRunner()
    for args in (["run", "regression-workflows", "--set", "task.d=0"], ["run", "regression-workflows", "--out", str(tmp_path / "file" / "run")],
                 ["run", str(tmp_path / "missing.toml")], ["report", str(tmp_path)]):
        result = runner.invoke(app, args)
        lines = result.output.strip().splitlines()  # (a stopped progress bar may leave a blank line)
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, result.output)
        debug = runner.invoke(app, ["--debug", *args])
        assert isinstance(debug.exception, ConfigError), (args, debug.output)


def test_an_undefined_curve_point_is_not_a_divergence():
    from synthloop.loop import divergence

    nan = np.array([np.nan, 1.0])
    assert divergence({"accuracy": np.ones(2), "oracle@2500": nan}, 1, "accuracy") is None
    assert "accuracy is NaN" in divergence({"accuracy": nan}, 1, "accuracy")
