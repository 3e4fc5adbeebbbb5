"""The run directory: resolved config, metrics, per-generation cost and lineage, checkpoints.

::

    DIR/config.toml            the fully resolved experiment (written before any work)
    DIR/metrics.parquet        long format: replicate, generation, workflow, metric, value
    DIR/generations.parquet    per workflow and generation: wall time, rows synthesized and
                               kept, training-set size and lineage (rows per source of origin)
    DIR/theory.parquet         predictions: workflow, generation, metric, value, kind, source
    DIR/summary.json           status, final values with 95% CIs, theory at the last generation
    DIR/figure.png, .svg       redrawn from metrics.parquet + theory.parquet + config.toml alone
    DIR/samples.npz, .png      tasks with previews (images): a few samples per workflow and
                               generation, and their grid redrawn from samples.npz alone
    DIR/checkpoints/<workflow>/source-0000.pkl …   one file per source, written once
    DIR/checkpoints/<workflow>/state.pkl           model, generator states, records

Every file is written atomically (temporary file, fsync, rename). A generation's new source is
written before the state that counts it, so a kill at any instant leaves either the previous or
the new finished generation — never a half-written one. Checkpoints are pickles: open only run
directories you trust, as with any pickle.

The store sits beside the Python API rather than under the loop (as DESIGN.md draws it): the
loop sees only its ``Checkpoint`` protocol, which :class:`WorkflowCheckpoint` implements, and
the store reads ``config.toml`` back into an :class:`~synthloop.experiment.Experiment`.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from .experiment import Experiment
from .loop import GenerationRecord, LoopState
from .pool import Pool
from .validation import ConfigError


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make results unreadable to collaborators
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


class WorkflowCheckpoint:
    """Checkpoints of one workflow's loop, in ``DIR/checkpoints/<workflow>/``."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._saved_sources = 0

    def _source_path(self, index: int) -> Path:
        return self.directory / f"source-{index:04d}.pkl"

    def save(self, state: LoopState) -> None:
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
        payload = pickle.loads(path.read_bytes())
        sources = [pickle.loads(self._source_path(i).read_bytes()) for i in range(payload["sources"])]
        self._saved_sources = len(sources)
        pool = Pool(sources, total=payload["total"])
        return LoopState(payload["generation"], payload["model"], pool, payload["rng_states"], payload["records"])

    def records(self) -> list[GenerationRecord]:
        """The finished generations, without loading the pool."""
        path = self.directory / "state.pkl"
        return pickle.loads(path.read_bytes())["records"] if path.exists() else []


class RunStore:
    """A run directory; see the module docstring for its layout."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    def checkpoint(self, workflow_key: str) -> WorkflowCheckpoint:
        return WorkflowCheckpoint(self.path / "checkpoints" / workflow_key)

    def read_experiment(self) -> Experiment:
        if not self.config_path.is_file():
            raise ConfigError(f"{self.path} is not a run directory: {self.config_path.name} is missing")
        try:
            return Experiment.from_dict(tomllib.loads(self.config_path.read_text()))
        except (ConfigError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"{self.config_path}: {error}") from None

    def prepare(self, experiment: Experiment, overwrite: bool = False) -> bool:
        """Make the directory ready for ``experiment``; True when it resumes earlier work."""
        if self.config_path.exists():
            if overwrite:
                shutil.rmtree(self.path)
            else:
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
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.config_path, experiment.to_toml())
        return False

    def write_frames(self, frames: dict[str, pd.DataFrame]) -> None:
        for name, frame in frames.items():
            write_parquet(frame, self.path / f"{name}.parquet")

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.path / "summary.json", json.dumps(summary, indent=2, default=_json_default) + "\n")

    def write_figure(self, figure, name: str = "figure", formats: tuple[str, ...] = ("png", "svg")) -> None:
        for suffix in formats:
            tmp = self.path / f".{name}.{suffix}.tmp"
            figure.savefig(tmp, format=suffix, dpi=150, bbox_inches="tight")
            os.replace(tmp, self.path / f"{name}.{suffix}")

    def write_samples(self, samples: dict[str, dict[int, np.ndarray]]) -> None:
        """``samples.npz``: one array per workflow and generation, named ``workflow/generation``."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{f"{w}/{g}": a for w, by_gen in samples.items() for g, a in by_gen.items()})
        atomic_write(self.path / "samples.npz", buffer.getvalue())

    def read_samples(self) -> dict[str, dict[int, np.ndarray]]:
        """What :meth:`write_samples` wrote (empty when the run has none)."""
        path = self.path / "samples.npz"
        if not path.exists():
            return {}
        out: dict[str, dict[int, np.ndarray]] = {}
        with np.load(path, allow_pickle=False) as arrays:
            for key in arrays.files:
                workflow, generation = key.rsplit("/", 1)
                out.setdefault(workflow, {})[int(generation)] = arrays[key]
        return out


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


def preview_samples(records: dict[str, list[GenerationRecord]]) -> dict[str, dict[int, np.ndarray]]:
    """Each workflow's previews (:meth:`Task.preview`) by generation; empty for tasks without."""
    return {
        workflow: {rec.generation: rec.preview for rec in recs if rec.preview is not None}
        for workflow, recs in records.items()
        if any(rec.preview is not None for rec in recs)
    }


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
