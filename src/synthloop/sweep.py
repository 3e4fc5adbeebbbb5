"""Sweeps: one experiment over the cartesian product of parameter grids, one run directory per cell.

::

    DIR/sweep.toml               the base experiment and the grid (what makes this sweep this sweep)
    DIR/index.parquet            one row per cell: cell, each grid key, status, error, wall_s,
                                 final.<workflow> (final mean of the task's primary metric)
    DIR/cells/<cell-id>/         an ordinary run directory (see store.py)

A cell id is built from its grid values, e.g. ``task.d=10,task.T=100``, with characters outside
``[A-Za-z0-9._=,+-]`` replaced; a long one is shortened and suffixed with a hash. The values
themselves are recorded in the index and in each cell's ``config.toml``.

A *sweep file* ships a sweep as data, so that a paper's table runs with one command
(``synthloop sweep FILE``): its ``base`` (a preset name, a TOML file relative to the sweep
file, or the experiment itself as a ``[base]`` table), ``[set]`` overrides of the base, a
``[grid]`` of values, and *named* axes whose values are sets of overrides (``[named.selection.beam-5]`` with ``verifier.name = "oracle"``, …): a named
value stands for several keys at once, and the cell id and index show its name
(``selection=beam-5``). Shipped sweep files live in ``synthloop/presets/sweeps``.

Every cell's config is validated before any cell runs. Re-running the same sweep skips finished
cells and resumes interrupted ones (``synthloop.run`` resumes a run directory); a cell that
raises is recorded as failed and does not stop the others. The index is rewritten atomically
after every cell, so a killed sweep leaves an index that is at worst one cell behind.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import tomli_w

from .executors import Executor, SerialExecutor
from .experiment import (
    FORMAT_KEY,
    FORMAT_VERSION,
    Experiment,
    check_format,
    load_experiment,
    parse_key,
    parse_value,
)
from .store import atomic_write, read_failed, write_parquet
from .validation import ConfigError

STATUSES = ("finished", "stopped", "failed", "pending")


def split_values(text: str) -> list[str]:
    """Split ``v1,v2,…`` at top-level commas (not inside brackets, braces or quotes)."""
    parts, depth, quote, current = [], 0, None, []
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["task.d=10,20", "task.T=100"]`` → ``{"task.d": [10, 20], "task.T": [100]}``."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--grid expects key=v1,v2,…; got {item!r}")
        parse_key(key)  # one-line error for a malformed key
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values in one --grid")
        values = [parse_value(v) for v in split_values(text)]
        if any(v == "" for v in values):
            raise ConfigError(f"--grid {key} has an empty value in {text!r}")
        grid[key] = values
    return grid


def flatten_overrides(table: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted keys for every leaf of a TOML table: ``{"verifier": {"k": 5}}`` → ``{"verifier.k": 5}``.

    Applied as ``--set`` overrides, a named value merges into the base config key by key."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(flatten_overrides(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of the grids, first key slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return repr(value) if isinstance(value, float) else str(value)


def describe_params(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={format_value(v)}" for k, v in params.items())


_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


def cell_id(params: dict[str, Any], max_length: int = 80) -> str:
    """A short, stable, filesystem-safe name for a cell, e.g. ``task.d=10,task.T=100``."""
    text = describe_params(params) or "base"
    safe = _UNSAFE.sub("_", text)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    if len(safe) > max_length or safe != text:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        safe = f"{safe[: max_length - 9]}-{digest}" if len(safe) > max_length else f"{safe}-{digest}"
    return safe


@dataclass
class Cell:
    id: str
    params: dict[str, Any]
    experiment: Experiment


@dataclass
class Sweep:
    """A validated sweep: the base experiment, the grid, and every cell's experiment."""

    base: Experiment
    grid: dict[str, list[Any]]
    cells: list[Cell] = field(default_factory=list)
    #: named axes: axis → value name → the overrides (dotted keys) it stands for
    named: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.base.name

    def to_toml(self) -> str:
        data = {FORMAT_KEY: FORMAT_VERSION, "grid": self.grid, "base": self.base.to_dict()}
        if self.named:  # absent for plain grids, so sweep directories written before named axes still match
            data["named"] = self.named
        return tomli_w.dumps(data)


@dataclass
class SweepFile:
    """A sweep as data (see the module docstring): the base experiment's source, its overrides,
    the plain grid and the named axes."""

    path: str
    base: str | Path | Experiment
    overrides: list[str] | dict[str, Any]
    grid: dict[str, list[Any]]
    named: dict[str, dict[str, dict[str, Any]]]
    description: str = ""


def sweep_file_path(name_or_path: str | Path):
    """The sweep file a name or path refers to (a shipped one by name), or None when it names no sweep file."""
    from importlib import resources

    path = Path(name_or_path).expanduser()
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None  # not a sweep file; loading it as a preset gives the one-line error
        return path if isinstance(data, dict) and "base" in data else None
    if path.suffix or "/" in str(name_or_path):
        return None
    resource = resources.files("synthloop.presets") / "sweeps" / f"{name_or_path}.toml"
    return resource if resource.is_file() else None


def list_sweep_files() -> dict[str, str]:
    """Shipped sweep files: name -> one-line description."""
    from importlib import resources

    folder = resources.files("synthloop.presets") / "sweeps"
    out = {}
    for item in sorted(folder.iterdir(), key=lambda p: p.name) if folder.is_dir() else []:
        if item.name.endswith(".toml"):
            out[item.name[: -len(".toml")]] = tomllib.loads(item.read_text()).get("description", "")
    return out


def _is_shipped(source) -> bool:
    from importlib import resources

    folder = resources.files("synthloop.presets") / "sweeps"
    return str(source).startswith(str(folder))


def read_sweep_file(source) -> SweepFile:
    """Parse and check a sweep file (a path or a shipped resource); ConfigError naming the file and key.

    Relative paths in a user's sweep file (its base file, files its ``[base]`` names) are read from
    the sweep file's directory; in a shipped one, from the working directory, as in shipped presets."""
    own_dir = None if _is_shipped(source) else Path(str(source)).resolve().parent
    origin = str(source)
    try:
        data = check_format(tomllib.loads(source.read_text()), origin)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{origin}: invalid TOML: {error}") from None
    known = {"base", "description", "set", "grid", "named"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{origin}: unknown key {unknown[0]!r}; a sweep file holds {', '.join(sorted(known))}")
    base = data["base"]
    if isinstance(base, dict):  # the whole base experiment inline, as in a sweep directory's sweep.toml
        base = Experiment.from_dict(base, own_dir)
    elif not isinstance(base, str) or not base:
        raise ConfigError(f"{origin}: base must be a preset name, a TOML file or a [base] table; got {base!r}")
    elif own_dir is not None and (base.endswith(".toml") or "/" in base):  # a file path is relative to the sweep file
        base = own_dir / base
    grid = data.get("grid", {})
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise ConfigError(f"{origin}: [grid] must map keys to non-empty arrays of values")
    for key in grid:
        parse_key(key)
    named = data.get("named", {})
    flat: dict[str, dict[str, dict[str, Any]]] = {}
    for axis, values in named.items() if isinstance(named, dict) else [(None, None)]:
        if not isinstance(values, dict) or not values or any(not isinstance(v, dict) for v in values.values()):
            raise ConfigError(f"{origin}: [named.{axis}] must hold one table of overrides per value, e.g. [named.{axis}.NAME]")
        if axis in grid:
            raise ConfigError(f"{origin}: {axis!r} is both a [grid] key and a named axis")
        flat[axis] = {name: flatten_overrides(table) for name, table in values.items()}
    if not grid and not flat:
        raise ConfigError(f"{origin}: a sweep file needs a [grid] or a [named.AXIS.VALUE] table")
    overrides = flatten_overrides(data.get("set", {}))
    stem = Path(str(source)).name.removesuffix(".toml")
    overrides = {"name": stem, **({"description": data["description"]} if data.get("description") else {}), **overrides}
    return SweepFile(origin, base, overrides, grid, flat, str(data.get("description", "")))


def plan_sweep(
    preset: str | Path | Experiment,
    grid: dict[str, list[Any]] | list[str],
    overrides: list[str] | dict[str, Any] = (),
    replicates: int | None = None,
    seed: int | None = None,
    named: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> Sweep:
    """Expand and validate every cell; raise one ConfigError naming the first bad cell.

    ``preset`` may name a sweep file: its base, overrides, grid and named axes come first, and
    ``grid`` and ``overrides`` given here add to them."""
    if not isinstance(grid, dict):
        grid = parse_grid(list(grid))
    named = dict(named or {})
    source = None if isinstance(preset, Experiment) else sweep_file_path(preset)
    if source is not None:
        spec = read_sweep_file(source)
        clash = sorted(set(grid) & (set(spec.grid) | set(spec.named)))
        if clash:
            raise ConfigError(f"--grid {clash[0]} is already an axis of the sweep file {spec.path}")
        preset, grid, named = spec.base, {**spec.grid, **grid}, {**spec.named, **named}
        overrides = {**spec.overrides, **(overrides if isinstance(overrides, dict) else dict(_split_override(o) for o in overrides))}
    if not grid and not named:
        raise ConfigError("a sweep needs at least one --grid key=v1,v2,…")
    grid = {**{axis: list(values) for axis, values in named.items()}, **grid}
    base = preset if isinstance(preset, Experiment) else load_experiment(preset, overrides or [])
    if isinstance(preset, Experiment) and overrides:
        base = base.with_overrides(overrides)
    extra = {k: v for k, v in {"replicates": replicates, "seed": seed}.items() if v is not None}
    if extra:
        base = base.with_overrides(extra)
    sweep = Sweep(base, grid, named=named)
    seen: dict[str, str] = {}
    for params in expand_grid(grid):
        resolved: dict[str, Any] = {}
        for key, value in params.items():
            resolved.update(named[key][value] if key in named else {key: value})
        try:
            experiment = base.with_overrides(resolved)
        except ConfigError as error:
            raise ConfigError(f"sweep cell {describe_params(params)}: {error}") from None
        cid = cell_id(params)
        if cid in seen:
            raise ConfigError(f"sweep cells {seen[cid]} and {describe_params(params)} repeat the same grid values")
        seen[cid] = describe_params(params)
        sweep.cells.append(Cell(cid, params, experiment))
    return sweep


def _split_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value; got {item!r}")
    return key.strip(), parse_value(text.strip())


def run_cell(config: dict, cell_dir: str, figure: bool = False) -> dict:
    """Run one cell in this process (a pool worker or the parent); never raises for a cell's own failure.

    Takes the config as plain data (not an Experiment) so it pickles even for user task files.
    """
    from . import api

    started = time.perf_counter()
    try:
        experiment = Experiment.from_dict(config)
        result = api.run(experiment, out=cell_dir, figure=figure)
        summary = result.summary()
        (Path(cell_dir) / "error.txt").unlink(missing_ok=True)  # from an earlier failed attempt
        finals = {key: entry.get("mean") for key, entry in summary["workflows"].items()}
        stops = "; ".join(f"{key} {entry['stopped']['reason']}" for key, entry in summary["workflows"].items() if "stopped" in entry)
        return {"status": result.status, "error": stops, "wall_s": time.perf_counter() - started, "finals": finals, "metric": summary["metric"]}
    except Exception as error:  # noqa: BLE001 — a failing cell is data, not a crash of the sweep
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        try:
            atomic_write(Path(cell_dir) / "error.txt", traceback.format_exc())
        except OSError:
            pass
        return {"status": "failed", "error": message, "wall_s": time.perf_counter() - started, "finals": {}, "metric": None}


def finished_result(cell: Cell, cell_dir: Path) -> dict | None:
    """The recorded result of a cell whose run directory is complete (same experiment), else None."""
    summary_path, config_path = cell_dir / "summary.json", cell_dir / "config.toml"
    if not (summary_path.is_file() and config_path.is_file() and (cell_dir / "metrics.parquet").is_file()):
        return None
    try:
        summary = json.loads(summary_path.read_text())
        config = tomllib.loads(config_path.read_text())
        config.pop(FORMAT_KEY, None)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(summary, dict) or summary.get("status") not in ("finished", "stopped") or config != cell.experiment.to_dict():
        return None
    finals = {key: entry.get("mean") for key, entry in summary.get("workflows", {}).items()}
    wall = sum(entry.get("wall_time_s", 0.0) for entry in summary.get("workflows", {}).values())
    return {"status": summary["status"], "error": "", "wall_s": wall, "finals": finals, "metric": summary.get("metric"), "skipped": True}


def index_frame(sweep: Sweep, results: dict[str, dict]) -> pd.DataFrame:
    """One row per cell: cell, grid keys, status, error, wall_s, final.<workflow>."""
    workflows = [w.key for w in sweep.base.workflows]
    for cell in sweep.cells:
        for key in (w.key for w in cell.experiment.workflows):
            if key not in workflows:
                workflows.append(key)
    rows = []
    for cell in sweep.cells:
        result = results.get(cell.id, {"status": "pending", "error": "", "wall_s": float("nan"), "finals": {}})
        row: dict[str, Any] = {"cell": cell.id}
        row.update({key: format_value(value) if isinstance(value, (list, dict)) else value for key, value in cell.params.items()})
        row.update(status=result["status"], error=result["error"], wall_s=float(result["wall_s"]))
        row.update({f"final.{w}": float("nan") if result["finals"].get(w) is None else float(result["finals"][w]) for w in workflows})
        rows.append(row)
    frame = pd.DataFrame(rows)
    for key in sweep.grid:  # mixed-type grid columns are stored as text, so Parquet accepts them
        if frame[key].map(type).nunique() > 1:
            frame[key] = frame[key].map(format_value)
    return frame


def prepare_sweep_dir(sweep: Sweep, out: Path) -> None:
    """Create DIR with sweep.toml, or check that DIR holds this same sweep."""
    out = Path(out)
    path = out / "sweep.toml"
    if path.is_file():
        try:
            old = check_format(tomllib.loads(path.read_text()), str(path))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise read_failed(path, error, "restore it, or choose another --out") from None
        old.pop(FORMAT_KEY, None)
        new = tomllib.loads(sweep.to_toml())
        new.pop(FORMAT_KEY)
        if old != new:
            differs = sorted(k for k in ("grid", "base", "named") if old.get(k) != new.get(k))
            raise ConfigError(f"{path} holds a different sweep (differs at: {', '.join(differs)}); choose another --out")
        return
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not a sweep directory (no sweep.toml); choose another --out")
    (out / "cells").mkdir(parents=True, exist_ok=True)
    atomic_write(path, sweep.to_toml())


EventCallback = Callable[[str, Cell, dict | None], None]


def run_sweep(
    sweep: Sweep, out: str | Path, executor: Executor | None = None, on_event: EventCallback | None = None, cell_figures: bool = False
) -> pd.DataFrame:
    """Run every unfinished cell of ``sweep`` into ``out``; return (and write) the index.

    ``on_event(kind, cell, result)`` is called with kind ``"skipped"`` (already finished),
    ``"started"`` or ``"done"`` (result holds status, error, wall_s, finals).
    """
    out = Path(out)
    executor = executor or SerialExecutor()
    prepare_sweep_dir(sweep, out)
    results: dict[str, dict] = {}
    todo: list[Cell] = []
    previous_wall: dict[str, float] = {}
    if (out / "index.parquet").is_file():
        try:
            old = pd.read_parquet(out / "index.parquet", columns=["cell", "wall_s"])
            previous_wall = dict(zip(old["cell"], old["wall_s"]))
        except (OSError, ValueError, KeyError):  # an unreadable index is rebuilt from the cells
            previous_wall = {}
    for cell in sweep.cells:
        done = finished_result(cell, out / "cells" / cell.id)
        if done is not None:
            if cell.id in previous_wall and previous_wall[cell.id] == previous_wall[cell.id]:  # recorded, not NaN
                done["wall_s"] = float(previous_wall[cell.id])
            results[cell.id] = done
            if on_event:
                on_event("skipped", cell, done)
        else:
            todo.append(cell)
    write_parquet(index_frame(sweep, results), out / "index.parquet")
    # Per-cell figures cost more than a small cell's compute; `synthloop report SWEEP` draws across cells.
    jobs = [(cell.experiment.to_dict(), str(out / "cells" / cell.id), cell_figures) for cell in todo]

    def started(i: int) -> None:
        if on_event:
            on_event("started", todo[i], None)

    for i, result in executor.imap_unordered(run_cell, jobs, on_start=started):
        results[todo[i].id] = result
        write_parquet(index_frame(sweep, results), out / "index.parquet")
        if on_event:
            on_event("done", todo[i], result)
    return index_frame(sweep, results)


def sweep(
    preset: str | Path | Experiment,
    grid: dict[str, list[Any]] | list[str],
    *,
    out: str | Path | None = None,
    overrides: list[str] | dict[str, Any] = (),
    replicates: int | None = None,
    seed: int | None = None,
    workers: int | None = 1,
    executor: str = "local",
) -> pd.DataFrame:
    """Python entry point: plan, validate and run a sweep; returns its index (see module docstring).
    ``executor`` is ``"local"`` (a process pool, or this process for one worker) or ``"ray"``."""
    from .executors import make_executor

    planned = plan_sweep(preset, grid, overrides, replicates, seed)
    out = Path(out) if out is not None else Path("runs") / f"{planned.name}-sweep"
    return run_sweep(planned, out, make_executor(workers, executor))


# --- listing run directories (``synthloop runs``) -------------------------------------------


@dataclass
class RunInfo:
    path: Path
    kind: str  # "run" or "sweep"
    name: str
    task: str
    params: str
    workflows: list[str]
    status: str
    metric: str | None
    finals: dict[str, float | None]
    cells: int = 0
    cells_finished: int = 0
    cells_failed: int = 0


def _task_and_workflows(config: dict) -> tuple[dict, str, list[str]]:
    """Task parameters, a short task name (a user file by its file name) and workflow keys of a config table."""
    task = dict(config.get("task", {}))
    task_name = str(task.pop("name", "?"))
    if ":" in task_name:
        file, cls = task_name.rsplit(":", 1)
        task_name = f"{Path(file).name}:{cls}"
    workflows = [w.get("label") or w.get("name", "?") if isinstance(w, dict) else str(w) for w in config.get("workflows", [])]
    return task, task_name, workflows


def _read_run(path: Path) -> RunInfo:
    try:
        config = tomllib.loads((path / "config.toml").read_text())
    except (OSError, ValueError):
        config = {}
    task, task_name, workflows = _task_and_workflows(config)
    params = ", ".join(f"{k}={v}" for k, v in task.items() if not isinstance(v, (dict, list)))
    status, metric, finals = "empty", None, {}
    summary_path = path / "summary.json"
    summary = None
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            summary = None
    if isinstance(summary, dict) and summary.get("status") in ("finished", "stopped") and summary.get("generations") == config.get("generations"):
        status, metric = summary["status"], summary.get("metric")
        finals = {k: v.get("mean") for k, v in summary.get("workflows", {}).items()}
    elif (path / "error.txt").is_file():
        status = "failed"
    elif (path / "checkpoints").is_dir() and any((path / "checkpoints").rglob("state.pkl")):
        status = "interrupted"
    return RunInfo(path, "run", str(config.get("name", path.name)), task_name, params, workflows, status, metric, finals)


def _read_sweep(path: Path) -> RunInfo:
    try:
        data = tomllib.loads((path / "sweep.toml").read_text())
    except (OSError, ValueError):
        data = {}
    base, grid = data.get("base", {}), data.get("grid", {})
    _, task_name, workflows = _task_and_workflows(base)
    params = "grid " + "; ".join(f"{k}={','.join(format_value(v) for v in vs)}" for k, vs in grid.items())
    cells = 1
    for values in grid.values():
        cells *= len(values)
    finished = failed = 0
    if (path / "index.parquet").is_file():
        try:
            index = pd.read_parquet(path / "index.parquet", columns=["status"])
            finished = int(index["status"].isin(["finished", "stopped"]).sum())  # stopped by a guard: done too
            failed = int((index["status"] == "failed").sum())
        except (OSError, ValueError, KeyError):  # an unreadable index: show the sweep without counts
            finished = failed = 0
    status = "finished" if finished == cells else ("failed" if failed and finished + failed == cells else "interrupted")
    return RunInfo(path, "sweep", str(base.get("name", path.name)), task_name, params, workflows, status, None, {}, cells, finished, failed)


def walk_runs(directory: Path) -> Iterator[tuple[str, Path]]:
    """``("sweep", path)`` and ``("run", path)`` for every sweep directory (sweep.toml) and run
    directory (config.toml) at or under ``directory``, in path order; a sweep's cells are not
    descended into, nor are hidden or unreadable folders."""
    if (directory / "sweep.toml").is_file():
        yield "sweep", directory
        return
    if (directory / "config.toml").is_file():
        yield "run", directory
        return
    try:
        children = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return
    for child in children:
        yield from walk_runs(child)


def find_runs(root: str | Path) -> list[RunInfo]:
    """Run directories (folders with config.toml) and sweeps (with sweep.toml) under ``root``.

    A sweep is listed once, with its cell count; its cells are not listed separately.
    """
    root = Path(root)
    found = [_read_sweep(path) if kind == "sweep" else _read_run(path) for kind, path in walk_runs(root)] if root.is_dir() else []
    return found
