"""The run directory: resolved config, metrics, per-generation cost and lineage, checkpoints.

::

    DIR/config.toml            the fully resolved experiment (written before any work)
    DIR/metrics.parquet        long format: replicate, generation, workflow, metric, value
    DIR/generations.parquet    per workflow and generation: wall time, rows synthesized and
                               kept, training-set size and lineage (rows per source of origin)
    DIR/theory.parquet         predictions: workflow, generation, metric, value, kind, source
    DIR/summary.json           status, final values with 95% CIs, theory at the last generation
    DIR/figure.png, .svg       redrawn from metrics.parquet + theory.parquet + config.toml alone
    DIR/checkpoints/<workflow>/source-0000.pkl …   one file per source, written once
    DIR/checkpoints/<workflow>/state.pkl           model, generator states, records
    DIR/checkpoints/<workflow>/stopped.json        why and where a guard stopped the workflow

Every file is written atomically (temporary file, fsync, rename). A generation's new source is
written before the state that counts it, so a kill at any instant leaves either the previous or
the new finished generation — never a half-written one. A write that fails (disk full, no
permission) raises :class:`StoreError` naming the file, and leaves the finished generations.

Checkpoints are pickles read by :class:`CheckpointUnpickler`, which builds only numpy arrays,
dtypes and generators, builtin containers, and classes defined in ``synthloop`` or in the run's
own task file; anything else (``os.system``, ``eval``, …) is refused, naming the file. A
truncated or garbled file is one error line saying which checkpoint to delete.

The store sits beside the Python API rather than under the loop (as DESIGN.md draws it): the
loop sees only its ``Checkpoint`` protocol, which :class:`WorkflowCheckpoint` implements, and
the store reads ``config.toml`` back into an :class:`~synthloop.experiment.Experiment`.
"""

from __future__ import annotations

import errno
import importlib
import io
import json
import os
import pickle
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from .experiment import Experiment
from .loop import GenerationRecord, LoopState
from .pool import Pool
from .tasks import resolve_task
from .validation import ConfigError


class StoreError(ConfigError):
    """A run directory that cannot be read or written; the message names the file and what to do."""


def write_failed(path: Path, error: OSError) -> StoreError:
    """The one-line error for a failed write of ``path`` (disk full, no permission, …)."""
    reason = error.strerror or str(error)
    hint = "free some space" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "choose another --out or fix its permissions"
    return StoreError(f"cannot write {path}: {reason}; finished generations are kept — {hint}, then run the same command to resume")


def read_failed(path: Path, error: Exception, remedy: str) -> StoreError:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else f"{type(error).__name__}: {error}"
    return StoreError(f"{path} is unreadable ({reason.splitlines()[0] if reason else 'corrupted'}); {remedy}")


def _replace_atomically(path: Path, write) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it and rename it into place."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make results unreadable to collaborators
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError):
            raise write_failed(path, error) from error
        raise


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    _replace_atomically(path, lambda f: f.write(data.encode() if isinstance(data, str) else data))


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    _replace_atomically(path, lambda f: frame.to_parquet(f, index=False))


def read_parquet(path: Path, remedy: str, **kwargs) -> pd.DataFrame:
    """``pd.read_parquet`` with a truncated or garbled file reported as one :class:`StoreError` line."""
    try:
        return pd.read_parquet(path, **kwargs)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise read_failed(path, error, remedy) from None


# --- checkpoints ----------------------------------------------------------------------------

_NUMPY_GLOBALS = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    *((module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray") for name in ("_reconstruct", "scalar")),
    *((module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")),
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
    ("numpy.random.bit_generator", "SeedSequence"),
    *(("numpy.random._" + name.lower(), name) for name in ("PCG64", "MT19937", "Philox", "SFC64")),
    ("numpy.random._pcg64", "PCG64DXSM"),
}
_BUILTIN_GLOBALS = {
    *(("builtins", name) for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int", "float", "complex", "bool", "slice", "range")),
    ("collections", "OrderedDict"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
}


class CheckpointUnpickler(pickle.Unpickler):
    """An unpickler that builds only allow-listed globals; see the module docstring.

    ``modules`` names the extra modules whose classes may be built (the run's task file).
    Classes must be defined in their module (not imported into it) and must not be config
    models, which could import files; functions are refused except numpy's reconstructors.
    """

    def __init__(self, file, path: Path, modules: frozenset[str] = frozenset()):
        super().__init__(file)
        self.path = path
        self.modules = modules

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS or (module, name) in _BUILTIN_GLOBALS:
            return super().find_class(module, name)
        if module == "synthloop" or module.startswith("synthloop.") or module in self.modules:
            found = sys.modules.get(module)
            if found is None and module.startswith("synthloop."):
                try:
                    found = importlib.import_module(module)  # our own package, e.g. a lazily imported task
                except ImportError:
                    found = None
            for part in name.split(".") if found is not None else ():
                found = getattr(found, part, None)
            if isinstance(found, type) and found.__module__ == module and not issubclass(found, BaseModel):
                return found
        raise StoreError(
            f"{self.path}: refusing to load {module}.{name} — a checkpoint may only hold numpy arrays, "
            "builtin containers and synthloop or task classes; this file was not written by synthloop, "
            f"delete {self.path.parent} to restart that workflow"
        )


def read_pickle(path: Path, modules: frozenset[str] = frozenset()):
    """Load a checkpoint file with :class:`CheckpointUnpickler`; damage is one :class:`StoreError` line."""
    remedy = f"delete {path.parent} to restart that workflow from generation 0"
    try:
        data = path.read_bytes()
    except OSError as error:
        raise read_failed(path, error, remedy) from None
    try:
        return CheckpointUnpickler(io.BytesIO(data), path, modules).load()
    except StoreError:
        raise
    except Exception as error:  # noqa: BLE001 — truncated or garbled bytes raise almost anything
        raise read_failed(path, error, remedy) from None


class WorkflowCheckpoint:
    """Checkpoints of one workflow's loop, in ``DIR/checkpoints/<workflow>/``.

    ``modules`` are the extra modules whose classes a checkpoint may hold (the task file's).
    """

    def __init__(self, directory: Path, modules: frozenset[str] = frozenset()):
        self.directory = Path(directory)
        self.modules = frozenset(modules)
        self._saved_sources = 0

    def _mkdir(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise write_failed(self.directory, error) from error

    def _source_path(self, index: int) -> Path:
        return self.directory / f"source-{index:04d}.pkl"

    def save(self, state: LoopState) -> None:
        self._mkdir()
        for index in range(self._saved_sources, len(state.pool.sources)):
            atomic_write(self._source_path(index), pickle.dumps(state.pool.sources[index], protocol=5))
        self._saved_sources = len(state.pool.sources)
        payload = {
            "generation": state.generation,
            "model": state.model,
            "rng_states": state.rng_states,
            "records": state.records,
            "sources": len(state.pool.sources),
            "total": state.pool.total,  # what remains of sources whose statistics were released
        }
        atomic_write(self.directory / "state.pkl", pickle.dumps(payload, protocol=5))

    def load(self) -> LoopState | None:
        path = self.directory / "state.pkl"
        if not path.exists():
            return None
        payload = self._payload()
        sources = [read_pickle(self._source_path(i), self.modules) for i in range(payload["sources"])]
        self._saved_sources = len(sources)
        pool = Pool(sources, total=payload["total"])
        return LoopState(payload["generation"], payload["model"], pool, payload["rng_states"], payload["records"], self.stopped())

    def _payload(self) -> dict:
        path = self.directory / "state.pkl"
        payload = read_pickle(path, self.modules)
        keys = {"generation", "model", "rng_states", "records", "sources", "total"}
        if not isinstance(payload, dict) or not keys <= set(payload):
            raise StoreError(f"{path} is not a synthloop checkpoint; delete {self.directory} to restart that workflow from generation 0")
        return payload

    def records(self) -> list[GenerationRecord]:
        """The finished generations, without loading the pool."""
        return self._payload()["records"] if (self.directory / "state.pkl").exists() else []

    def stop(self, stopped: dict) -> None:
        self._mkdir()
        atomic_write(self.directory / "stopped.json", json.dumps(stopped) + "\n")

    def stopped(self) -> dict | None:
        """Why the workflow stopped early, ``{"generation": g, "reason": …}``, or None."""
        path = self.directory / "stopped.json"
        if not path.exists():
            return None
        try:
            stopped = json.loads(path.read_text())
            return {"generation": int(stopped["generation"]), "reason": str(stopped["reason"])}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise read_failed(path, error, f"delete {self.directory} to restart that workflow from generation 0") from None


class RunStore:
    """A run directory; see the module docstring for its layout."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    def checkpoint(self, workflow_key: str, experiment: Experiment | None = None) -> WorkflowCheckpoint:
        """The checkpoints of one workflow; ``experiment`` lets them hold its user task's classes."""
        modules = frozenset()
        if experiment is not None:
            modules = frozenset({resolve_task(experiment.task.name).__module__})
        return WorkflowCheckpoint(self.path / "checkpoints" / workflow_key, modules)

    def read_experiment(self) -> Experiment:
        if not self.config_path.is_file():
            raise ConfigError(f"{self.path} is not a run directory: {self.config_path.name} is missing")
        try:
            text = self.config_path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise read_failed(self.config_path, error, "restore it, or delete the run directory to start again") from None
        try:
            return Experiment.from_dict(tomllib.loads(text))
        except (ConfigError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"{self.config_path}: {error}") from None

    def prepare(self, experiment: Experiment, overwrite: bool = False) -> bool:
        """Make the directory ready for ``experiment``; True when it resumes earlier work."""
        if self.config_path.exists():
            if overwrite:
                shutil.rmtree(self.path)
            else:
                for tmp in self.path.rglob(".*.tmp"):  # left by a process killed mid-write
                    tmp.unlink(missing_ok=True)
                old = self.read_experiment().to_dict()
                new = experiment.to_dict()
                differs = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                if differs == ["generations"] and new["generations"] >= old["generations"]:
                    atomic_write(self.config_path, experiment.to_toml())  # a longer run continues this one
                    return True
                if differs:
                    raise ConfigError(
                        f"{self.config_path} holds a different experiment (differs at: {', '.join(differs)}); "
                        "choose another --out, or pass --overwrite to discard it"
                    )
                return True
        elif self.path.exists() and any(self.path.iterdir()):
            raise ConfigError(f"{self.path} exists and is not a run directory (no config.toml); choose another --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise write_failed(self.path, error) from error
        atomic_write(self.config_path, experiment.to_toml())
        return False

    def write_frames(self, frames: dict[str, pd.DataFrame]) -> None:
        for name, frame in frames.items():
            write_parquet(frame, self.path / f"{name}.parquet")

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.path / "summary.json", json.dumps(summary, indent=2, default=_json_default) + "\n")

    def write_figure(self, figure) -> None:
        for suffix in ("png", "svg"):
            _replace_atomically(self.path / f"figure.{suffix}", lambda f: figure.savefig(f, format=suffix, dpi=150, bbox_inches="tight"))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def metrics_frame(records: dict[str, list[GenerationRecord]]) -> pd.DataFrame:
    """Long-format metrics: one row per (workflow, generation, replicate, metric)."""
    blocks = [
        (workflow, rec.generation, metric, np.asarray(values, dtype=float))
        for workflow, recs in records.items()
        for rec in recs
        for metric, values in rec.metrics.items()
    ]
    lengths = np.array([len(b[3]) for b in blocks], dtype=np.int64)
    return pd.DataFrame({
        "replicate": np.concatenate([np.arange(n) for n in lengths]) if blocks else np.array([], dtype=np.int64),
        "generation": np.repeat([b[1] for b in blocks], lengths).astype(np.int64),
        "workflow": np.repeat(np.array([b[0] for b in blocks], dtype=object), lengths),
        "metric": np.repeat(np.array([b[2] for b in blocks], dtype=object), lengths),
        "value": np.concatenate([b[3] for b in blocks]) if blocks else np.array([]),
    })


def generations_frame(records: dict[str, list[GenerationRecord]]) -> pd.DataFrame:
    """Per-generation cost and lineage of every workflow."""
    rows = [
        {
            "workflow": workflow,
            "generation": rec.generation,
            "wall_time_s": rec.wall_time_s,
            "synthesized": rec.synthesized,
            "kept": rec.kept,
            "train_rows": float(np.sum(rec.composition)),
            "real_fraction": float(rec.composition[0] / max(np.sum(rec.composition), 1e-300)),
            "lineage": [float(v) for v in rec.composition],
        }
        for workflow, recs in records.items()
        for rec in recs
    ]
    return pd.DataFrame(rows, columns=["workflow", "generation", "wall_time_s", "synthesized", "kept", "train_rows", "real_fraction", "lineage"])
