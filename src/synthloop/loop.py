"""The generation loop: one loop for every task, workflow and verifier.

::

    pool  = Pool([real])                                  # generation 0: real data only
    model = task.fit(pool through workflow.compose(...))
    for g in 1..G:
        inputs = task.sample_inputs(real, n_g)             # fresh x, the fixed design, or None
        data   = task.synthesize(model, inputs, n_g)       # n_g = workflow.synthetic_size(g, n)
        data   = task.take_rows(data, verifier.select(...))  # optional: data or label selection
        pool.add(data, generation=g)
        model  = task.fit(pool through workflow.compose(pool.sizes, g), init=model if task.fine_tunes)
        record(g, task.evaluate(model), verification, cost, lineage, task.preview(model))

After every finished generation the loop hands its whole state (pool, model, generator
states, records) to a checkpoint, so a run killed at any point resumes after its last finished
generation and ends with exactly the numbers of an uninterrupted run.

A workflow stops early when its model diverges — a metric of ``task.evaluate`` is NaN (curve
points ``series@x`` aside), or its primary metric infinite, in some replicate; that generation is dropped and the last good one
kept — or when a guard of the experiment trips (the generation that trips it is kept). The
reason goes to ``checkpoint.stop`` and ``on_stop``; a resumed stopped workflow stays stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from . import seeding
from .pool import Pool, Source, TrainingSet
from .tasks.base import Task
from .verifiers import Candidates, Verifier, selection_metrics, verification_metrics
from .workflows import Workflow

log = logging.getLogger(__name__)


@dataclass
class GenerationRecord:
    """What one generation of one workflow produced.

    Attributes
    ----------
    generation : int
    metrics : dict of str to ndarray of shape (R,)
        The task's metrics of the model fit at this generation.
    wall_time_s : float
        Seconds spent synthesizing, fitting and evaluating this generation (all replicates).
    synthesized, kept : int
        Synthetic rows produced and kept per replicate (0 at generation 0); ``kept`` counts
        the rows training uses (:meth:`Task.usable_rows`: mean over replicates where a task's
        own filter keeps different counts).
    composition : ndarray of shape (g + 1,)
        Lineage: mean rows the training set took from each source (real, 1, …, g).
    preview : ndarray or None
        A few of the model's samples to look at (:meth:`Task.preview`), e.g. images.
    """

    generation: int
    metrics: dict[str, np.ndarray]
    wall_time_s: float
    synthesized: int
    kept: int
    composition: np.ndarray
    preview: np.ndarray | None = None


@dataclass
class LoopState:
    """Everything needed to continue a workflow after its last finished generation."""

    generation: int
    model: Any
    pool: Pool
    rng_states: list[dict]
    records: list[GenerationRecord] = field(default_factory=list)
    stopped: dict | None = None  # {"generation": g, "reason": …} once the workflow stopped early


class Checkpoint(Protocol):
    def load(self) -> LoopState | None: ...

    def save(self, state: LoopState) -> None: ...

    def stop(self, stopped: dict) -> None: ...


class Guard(Protocol):
    """A stopping rule on one metric (``experiment.GuardConfig``)."""

    def check(self, metrics: dict[str, np.ndarray], baseline: dict[str, np.ndarray]) -> str | None: ...


def divergence(metrics: dict[str, np.ndarray], generation: int, primary: str) -> str | None:
    """Why the model of ``generation`` diverged, or None: a NaN metric, or an infinite primary one.

    Other metrics may be infinite by definition (a Gaussian's KL once its covariance is singular),
    and a curve point ``"<series>@<x>"`` is NaN where it is undefined (e.g. fewer kept rows than
    ``x``), so neither stops a run.
    """
    for metric, values in metrics.items():
        if "@" in metric:
            continue
        values = np.asarray(values, dtype=float)  # (R,)
        bad = np.isnan(values) | (np.isinf(values) if metric == primary else False)
        if bad.any():
            kind = "NaN or infinite" if metric == primary else "NaN"
            return f"diverged at generation {generation}: {metric} is {kind} in {int(bad.sum())} of {bad.size} replicates"
    return None


def guard_trips(guards: Sequence[Guard], records: list[GenerationRecord]) -> str | None:
    """Why a guard stops the workflow after the last of ``records`` (compared with generation 0), or None."""
    for guard in guards:
        reason = guard.check(records[-1].metrics, records[0].metrics)
        if reason:
            return f"guard at generation {records[-1].generation}: {reason}"
    return None


def _fit(task: Task, workflow: Workflow, pool: Pool, generation: int, rngs, previous=None) -> tuple[Any, np.ndarray]:
    mixture = workflow.compose(pool.sizes, generation, rngs)
    training = TrainingSet(pool, mixture)
    # A fine-tuning task (neural) continues from the previous generation's model.
    model = task.fit(training, rngs, init=previous) if task.fine_tunes else task.fit(training, rngs)
    pool.forget(workflow.reads_history, workflow.reads_rows, workflow.reads_source_statistics)
    return model, training.composition()


def _verify(task: Task, verifier: Verifier | None, model, inputs, real, n: int, rngs) -> tuple[Any, int, dict]:
    """Synthesize the generation's rows and keep what the verifier selects: the kept rows, their
    count, and the verification metrics (empty without a verifier)."""
    if verifier is None:
        return task.synthesize(model, inputs, n, rngs), n, {}
    k = verifier.candidates
    data = task.synthesize(model, inputs, n, rngs) if k == 1 else task.synthesize_candidates(model, inputs, n, k, rngs)
    correct = task.correct(data, real) if task.knows_truth else None  # (R, n·k)
    candidates = Candidates(task, model, data, real, rngs, n * k, correct, k)
    index = verifier.select(verifier.score(candidates), rngs)  # (R, m)
    kept = np.zeros((index.shape[0], n * k), dtype=bool)
    np.put_along_axis(kept, index, True, axis=1)
    metrics = selection_metrics(kept, k)
    if correct is not None:
        metrics.update(verification_metrics(correct, kept))
    return task.take_rows(data, index), index.shape[1], metrics


def run_loop(
    task: Task,
    workflow: Workflow,
    *,
    generations: int,
    replicates: int,
    seed: int,
    checkpoint: Checkpoint | None = None,
    on_generation: Callable[[GenerationRecord], None] | None = None,
    sample_real: Callable[[], Any] | None = None,
    verifier: Verifier | None = None,
    guards: Sequence[Guard] = (),
    on_stop: Callable[[dict], None] | None = None,
) -> list[GenerationRecord]:
    """Run ``generations`` rounds of ``workflow`` on ``task`` and return one record per generation.

    Replicate ``r`` draws real data from stream ``(seed, r, "real")`` — shared by every workflow,
    so all workflows start from the same generation 0 — and everything else from
    ``(seed, r, workflow.key)``. Workflows of one experiment may share the real data through
    ``sample_real`` (a zero-argument callable returning what ``task.sample_real`` would), which
    saves drawing and factorizing the same data once per workflow. A ``verifier`` keeps a share
    of each generation's synthetic rows before they enter the pool; where the task knows the
    truth, the record adds the verification metrics (p, φ, ψ, p*) of that generation's data.
    ``guards`` may stop the workflow early (see the module docstring); ``on_stop`` then receives
    ``{"generation": g, "reason": …}``, g being the last generation kept.
    """

    def stop(generation: int, reason: str) -> list[GenerationRecord]:
        stopped = {"generation": generation, "reason": reason}
        log.info("%s stopped: %s", workflow.key, reason)
        if checkpoint is not None:
            checkpoint.stop(stopped)
        if on_stop is not None:
            on_stop(stopped)
        return records

    state = checkpoint.load() if checkpoint is not None else None
    if state is None:
        start = time.perf_counter()
        real = sample_real() if sample_real is not None else task.sample_real(
            seeding.replicate_generators(seed, replicates, seeding.REAL_STREAM)
        )
        rngs = seeding.replicate_generators(seed, replicates, workflow.key)
        pool = Pool([Source(0, real, task.real_size, task.statistics(real))])
        model, composition = _fit(task, workflow, pool, 0, rngs)
        records = [GenerationRecord(0, task.evaluate(model, real), time.perf_counter() - start, 0, 0, composition, task.preview(model))]
        reason = divergence(records[0].metrics, 0, task.primary_metric)
        if reason:
            records = []
            return stop(-1, reason)
        if checkpoint is not None:
            checkpoint.save(LoopState(0, model, pool, seeding.generator_states(rngs), records))
        first = 1
    else:
        log.info("resuming %s after generation %d", workflow.key, state.generation)
        rngs = seeding.restore_generators(state.rng_states)
        pool, model, real, records = state.pool, state.model, state.pool.real.data, state.records
        first = state.generation + 1
    if on_generation is not None:
        for record in records:
            on_generation(record)
    if state is not None and state.stopped is not None:
        if on_stop is not None:
            on_stop(state.stopped)
        return records
    reason = guard_trips(guards, records) if len(records) > 1 else None  # a kill may have come before the stop was saved
    if reason:
        return stop(records[-1].generation, reason)

    for g in range(first, generations + 1):
        start = time.perf_counter()
        n = workflow.synthetic_size(g, task.synthetic_size)
        inputs = task.sample_inputs(real, n, rngs)
        data, kept, verified = _verify(task, verifier, model, inputs, real, n, rngs)
        pool.add(Source(g, data, kept, task.statistics(data)))
        model, composition = _fit(task, workflow, pool, g, rngs, previous=model)
        evaluated = task.evaluate(model, real)
        reason = divergence(evaluated, g, task.primary_metric)  # verification metrics may be NaN by design (no wrong row)
        if reason:
            return stop(g - 1, reason)
        record = GenerationRecord(g, {**evaluated, **verified}, time.perf_counter() - start, n, task.usable_rows(data, kept), composition, task.preview(model))
        records.append(record)
        if checkpoint is not None:
            checkpoint.save(LoopState(g, model, pool, seeding.generator_states(rngs), records))
        if on_generation is not None:
            on_generation(record)
        reason = guard_trips(guards, records)
        if reason:
            return stop(g, reason)
    return records
