"""The Python API — ``run``, ``load`` and the :class:`Run` they return — that the CLI wraps.

Kept out of ``__init__.py`` (which only re-exports it) so that importing a submodule does not
drag in the whole API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import report, seeding
from .experiment import Experiment, load_experiment
from .loop import GenerationRecord, run_loop
from .store import (
    RunStore,
    generations_frame,
    metrics_frame,
    preview_samples,
    read_failed,
    read_parquet,
)
from .validation import ConfigError

ProgressCallback = Callable[[str, GenerationRecord], None]


def theory_frame(experiment: Experiment) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every workflow's predictions as a long DataFrame, and a note per workflow without one."""
    task = experiment.build_task()
    parts, notes = [], {}
    for workflow in experiment.workflows:
        if experiment.verifier is not None:
            # Every theory curve here assumes all synthetic rows enter the pool.
            notes[workflow.key] = f"no theory under a verifier ({experiment.verifier.describe()})"
            continue
        predicted = task.theory(workflow, experiment.generations)
        if predicted.note:
            notes[workflow.key] = predicted.note
        for curve in predicted.curves:
            parts.append(pd.DataFrame({
                "workflow": workflow.key,
                "generation": np.arange(len(curve.values)),
                "metric": curve.metric,
                "value": np.asarray(curve.values, dtype=float),
                "kind": curve.kind,
                "source": curve.source,
            }))
    columns = ["workflow", "generation", "metric", "value", "kind", "source"]
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)), notes


@dataclass
class Run:
    """A finished or interrupted run: its experiment, metrics and theory.

    Attributes
    ----------
    experiment : Experiment
    metrics : DataFrame
        Long format: replicate, generation, workflow, metric, value.
    generations : DataFrame
        Per workflow and generation: wall time, rows synthesized/kept, lineage.
    theory : DataFrame
        Predictions: workflow, generation, metric, value, kind, source.
    theory_notes : dict
        Why a workflow has no theory curve, where it has none.
    status : str
        ``"finished"``, ``"stopped"`` (a workflow diverged or tripped a guard) or ``"interrupted"``.
    path : Path or None
        The run directory (None for a run kept in memory).
    stopped : dict
        Per workflow that stopped early: ``{"generation": g, "reason": …}``, g its last kept
        generation.
    samples : dict
        Tasks with previews (images): workflow -> generation -> a few samples; else empty.
    """

    experiment: Experiment
    metrics: pd.DataFrame
    generations: pd.DataFrame
    theory: pd.DataFrame
    theory_notes: dict[str, str] = field(default_factory=dict)
    status: str = "finished"
    path: Path | None = None
    stopped: dict[str, dict] = field(default_factory=dict)
    samples: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return self.experiment.report.metric or self.experiment.build_task().primary_metric

    def caption(self) -> str:
        e = self.experiment
        by_note: dict[str, list[str]] = {}
        for workflow, note in self.theory_notes.items():
            by_note.setdefault(note, []).append(workflow)
        notes = "; ".join(f"{', '.join(workflows)}: {note}" for note, workflows in by_note.items())
        verifier = "" if e.verifier is None else f"; verifier {e.verifier.describe()}"
        return (
            f"{e.build_task().describe()}{verifier} — {e.replicates} replicates, seed {e.seed}; "
            "band: 95% CI of the mean over replicates; dashed: theory, dotted: bound"
            + (f"\nno theory — {notes}" if notes else "")
        )

    def summary_frame(self) -> pd.DataFrame:
        """Mean, standard error and 95% CI per workflow, generation and metric."""
        return report.summarize(self.metrics)

    def figure(self, metric: str | None = None, scale: str | None = None):
        """The metric vs generation figure (matplotlib Figure); ``scale`` is both, linear or log."""
        metric = metric or self.metric
        task = self.experiment.build_task()
        labels = task.metric_labels
        if metric == self.metric and len(report.curve_points(self.metrics)):
            # Curves measured inside a generation (metrics named "<series>@<n>") are what the run is for.
            return report.curve_figure(self.metrics, self.theory, xlabel=task.curve_labels[0], ylabel=task.curve_labels[1], marks=task.curve_marks(),
                                       title=self.experiment.description or self.experiment.name, caption=self.caption())
        return report.figure(
            self.metrics,
            self.theory,
            metric=metric,
            ylabel=labels.get(metric, metric),
            scale=scale or self.experiment.report.scale,
            title=self.experiment.description or self.experiment.name,
            caption=self.caption(),
        )

    def sample_figure(self):
        """The grid of samples per workflow and generation (matplotlib Figure); None without samples."""
        if not self.samples:
            return None
        e = self.experiment
        caption = f"{e.build_task().describe()} — replicate 0 of {e.replicates}, seed {e.seed}"
        return report.sample_grid(self.samples, title=f"{e.name}: samples by workflow and generation", caption=caption)

    def write_sample_figure(self) -> None:
        """Write ``samples.npz`` and ``samples.png`` into the run directory (when there are samples)."""
        fig = self.sample_figure()
        if fig is None or self.path is None:
            return
        import matplotlib.pyplot as plt

        store = RunStore(self.path)
        store.write_samples(self.samples)
        store.write_figure(fig, "samples", ("png",))
        plt.close(fig)

    def write_extra_figures(self) -> list[str]:
        """Write the task's extra figures (:meth:`Task.extra_figures`, e.g. ``heatmap.png``) into
        the run directory; their names."""
        if self.path is None or not len(self.metrics):
            return []
        import matplotlib.pyplot as plt

        figures = self.experiment.build_task().extra_figures(self.metrics, title=self.experiment.description or self.experiment.name)
        store = RunStore(self.path)
        for name, fig in figures.items():
            store.write_figure(fig, name, ("png",))
            plt.close(fig)
        return list(figures)

    def table(self, metric: str | None = None):
        """A rich table of measured means ± 95% CI beside the theory (print :meth:`caption` with it)."""
        metric = metric or self.metric
        task = self.experiment.build_task()
        labels = task.metric_labels
        if metric == self.metric and len(report.curve_points(self.metrics)):
            return report.curve_table(self.metrics, self.theory, xlabel=task.curve_labels[0].split(":")[0], title=f"{self.experiment.name}: {task.curve_labels[1]}")
        return report.table(self.metrics, self.theory, metric=metric, title=f"{self.experiment.name}: {labels.get(metric, metric)}")

    def summary(self) -> dict:
        """Final values per workflow, with theory, as written to ``summary.json``."""
        summary = self.summary_frame()
        metric, last = self.metric, int(self.metrics["generation"].max()) if len(self.metrics) else 0
        workflows = {}
        for workflow in self.experiment.workflows:
            key = workflow.key
            rows = summary[(summary["workflow"] == key) & (summary["metric"] == metric)]
            entry: dict[str, Any] = {}
            if len(rows):
                final = rows[rows["generation"] == rows["generation"].max()].iloc[0]
                entry.update(generation=int(final["generation"]), mean=float(final["mean"]), ci95=float(final["ci95"]))
            predicted = self.theory[(self.theory["workflow"] == key) & (self.theory["metric"] == metric) & (self.theory["generation"] == entry.get("generation", last))]
            entry["theory"] = {kind: float(v) for kind, v in predicted[["kind", "value"]].itertuples(index=False)}
            if key in self.theory_notes:
                entry["theory_note"] = self.theory_notes[key]
            if key in self.stopped:
                entry["stopped"] = self.stopped[key]
            cost = self.generations[self.generations["workflow"] == key]
            entry["wall_time_s"] = float(cost["wall_time_s"].sum()) if len(cost) else 0.0
            workflows[key] = entry
        try:
            package_version = version("synthloop")
        except PackageNotFoundError:
            package_version = "unknown"
        return {
            "name": self.experiment.name,
            "status": self.status,
            "metric": metric,
            "generations": self.experiment.generations,
            "replicates": self.experiment.replicates,
            "seed": self.experiment.seed,
            "workflows": workflows,
            "synthloop_version": package_version,
        }


def _resolve(experiment: Experiment | str | Path, overrides, replicates, seed) -> Experiment:
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment, overrides or ())
    elif overrides:
        experiment = experiment.with_overrides(overrides)
    extra = {k: v for k, v in {"replicates": replicates, "seed": seed}.items() if v is not None}
    return experiment.with_overrides(extra) if extra else experiment


def run(
    experiment: Experiment | str | Path,
    *,
    replicates: int | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    overwrite: bool = False,
    on_generation: ProgressCallback | None = None,
    figure: bool = True,
) -> Run:
    """Run an experiment (an :class:`Experiment`, a preset name or a TOML file).

    With ``out``, results go to that run directory, which is resumed if it holds an
    interrupted run of the same experiment. Without it, nothing is written. ``figure=False``
    skips drawing ``figure.png``/``.svg`` (most of a small run's wall time; sweeps draw figures
    across cells instead, and ``synthloop report DIR`` redraws one from the files at any time).
    """
    experiment = _resolve(experiment, overrides, replicates, seed)
    store = RunStore(out) if out is not None else None
    if store is not None:
        store.prepare(experiment, overwrite=overwrite)
    task = experiment.build_task()
    records: dict[str, list[GenerationRecord]] = {}
    stopped: dict[str, dict] = {}
    shared_real: list = []

    def sample_real():
        # Drawn once, on first need: every workflow starts from the same real data.
        if not shared_real:
            rngs = seeding.replicate_generators(experiment.seed, experiment.replicates, seeding.REAL_STREAM)
            shared_real.append(task.sample_real(rngs))
        return shared_real[0]

    for workflow in experiment.workflows:
        callback = None if on_generation is None else (lambda rec, key=workflow.key: on_generation(key, rec))
        records[workflow.key] = run_loop(
            task,
            workflow,
            generations=experiment.generations,
            replicates=experiment.replicates,
            seed=experiment.seed,
            checkpoint=store.checkpoint(workflow.key, experiment) if store is not None else None,
            on_generation=callback,
            sample_real=sample_real,
            verifier=experiment.verifier,
            guards=experiment.guard or (),
            on_stop=lambda info, key=workflow.key: stopped.__setitem__(key, info),
        )
    theory, notes = theory_frame(experiment)
    status = "stopped" if stopped else "finished"
    result = Run(experiment, metrics_frame(records), generations_frame(records), theory, notes, status, store.path if store else None, stopped, preview_samples(records))
    if store is not None:
        store.write_frames({"metrics": result.metrics, "generations": result.generations, "theory": result.theory})
        store.write_summary(result.summary())
    if store is not None and figure:
        import matplotlib.pyplot as plt

        fig = result.figure()
        store.write_figure(fig)
        plt.close(fig)
        result.write_sample_figure()
        result.write_extra_figures()
    return result


def load(path: str | Path) -> Run:
    """Open a run directory, finished or interrupted (then from its checkpoints)."""
    store = RunStore(path)
    experiment = store.read_experiment()
    metrics_path = store.path / "metrics.parquet"
    summary_path = store.path / "summary.json"
    # Results are rewritten from the checkpoints by running the same experiment into the directory.
    remedy = f"delete it and run the same command (or synthloop.run) with --out {store.path} to rewrite it from the checkpoints"
    if metrics_path.exists() and summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
            workflows = summary["workflows"]
            notes = {k: v["theory_note"] for k, v in workflows.items() if "theory_note" in v}
            stopped = {k: v["stopped"] for k, v in workflows.items() if "stopped" in v}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise read_failed(summary_path, error, remedy) from None
        if summary.get("generations") == experiment.generations:
            return Run(
                experiment,
                read_parquet(metrics_path, remedy),
                read_parquet(store.path / "generations.parquet", remedy),
                read_parquet(store.path / "theory.parquet", remedy),
                notes,
                "stopped" if stopped else "finished",
                store.path,
                stopped,
                store.read_samples(),
            )
    checkpoints = {w.key: store.checkpoint(w.key, experiment) for w in experiment.workflows}
    records = {key: checkpoint.records() for key, checkpoint in checkpoints.items()}
    stopped = {key: info for key, checkpoint in checkpoints.items() if (info := checkpoint.stopped()) is not None}
    if not any(records.values()):
        raise ConfigError(f"{store.path} holds no finished generation yet")
    theory, notes = theory_frame(experiment)
    return Run(experiment, metrics_frame(records), generations_frame(records), theory, notes, "interrupted", store.path, stopped, preview_samples(records))
