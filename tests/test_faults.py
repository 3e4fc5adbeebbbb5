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
from conftest import regression
from typer.testing import CliRunner

import synthloop
from synthloop import ConfigError
from synthloop.cli import app
from synthloop.experiment import list_presets, load_experiment
from synthloop.store import StoreError, read_pickle

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


@pytest.mark.parametrize("name", [*list_presets(), str(EXAMPLES / "coin.toml")])
def test_every_shipped_task_resumes_through_the_restricted_unpickler(tmp_path, name):
    overrides = ["generations=2", "replicates=3"]
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
    resumed = synthloop.run(small(generations=4), out=tmp_path / "run")
    pd.testing.assert_frame_equal(resumed.metrics, synthloop.run(small(generations=4)).metrics)
