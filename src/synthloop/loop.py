"""The generation loop: one loop for every task, workflow and verifier.

::

    pool  = Pool([real])                                  # generation 0: real data only
    model = task.fit(pool through workflow.compose(...))
    for g in 1..G:
        inputs = task.sample_inputs(real, n_g)             # fresh x, the fixed design, or None
        data   = task.synthesize(model, inputs, n_g)       # n_g = workflow.synthetic_size(g, n)
        data   = task.take_rows(data, verifier.select(...))  # optional: keep a share, by score
        pool.add(data, generation=g)
        model  = task.fit(pool through workflow.compose(pool.sizes, g))
        record(g, task.evaluate(model), verification, cost, lineage)

After every finished generation the loop hands its whole state (pool, model, generator
states, records) to a checkpoint, so a run killed at any point resumes after its last finished
generation and ends with exactly the numbers of an uninterrupted run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from . import seeding
from .pool import Pool, Source, TrainingSet
from .tasks.base import Task
from .verifiers import Candidates, Verifier, verification_metrics
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
        Synthetic rows produced and kept per replicate (0 at generation 0).
    composition : ndarray of shape (g + 1,)
        Lineage: mean rows the training set took from each source (real, 1, …, g).
    """

    generation: int
    metrics: dict[str, np.ndarray]
    wall_time_s: float
    synthesized: int
    kept: int
    composition: np.ndarray


@dataclass
class LoopState:
    """Everything needed to continue a workflow after its last finished generation."""

    generation: int
    model: Any
    pool: Pool
    rng_states: list[dict]
    records: list[GenerationRecord] = field(default_factory=list)


class Checkpoint(Protocol):
    def load(self) -> LoopState | None: ...

    def save(self, state: LoopState) -> None: ...


def _fit(task: Task, workflow: Workflow, pool: Pool, generation: int, rngs, previous=None) -> tuple[Any, np.ndarray]:
    mixture = workflow.compose(pool.sizes, generation, rngs)
    training = TrainingSet(pool, mixture)
    # A fine-tuning task (neural) continues from the previous generation's model.
    model = task.fit(training, rngs, init=previous) if task.fine_tunes else task.fit(training, rngs)
    pool.forget(workflow.reads_history, workflow.reads_rows, workflow.reads_source_statistics)
    return model, training.composition()


def _verify(task: Task, verifier: Verifier | None, model, data, real, n: int, rngs) -> tuple[Any, int, dict]:
    """The kept rows, their count, and the verification metrics (empty without a verifier)."""
    if verifier is None:
        return data, n, {}
    correct = task.correct(data, real) if task.knows_truth else None  # (R, n)
    candidates = Candidates(task, model, data, real, rngs, n, correct)
    index = verifier.select(verifier.score(candidates), rngs)  # (R, m)
    metrics = {}
    if correct is not None:
        kept = np.zeros(correct.shape, dtype=bool)
        np.put_along_axis(kept, index, True, axis=1)
        metrics = verification_metrics(correct, kept)
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
) -> list[GenerationRecord]:
    """Run ``generations`` rounds of ``workflow`` on ``task`` and return one record per generation.

    Replicate ``r`` draws real data from stream ``(seed, r, "real")`` — shared by every workflow,
    so all workflows start from the same generation 0 — and everything else from
    ``(seed, r, workflow.key)``. Workflows of one experiment may share the real data through
    ``sample_real`` (a zero-argument callable returning what ``task.sample_real`` would), which
    saves drawing and factorizing the same data once per workflow. A ``verifier`` keeps a share
    of each generation's synthetic rows before they enter the pool; where the task knows the
    truth, the record adds the verification metrics (p, φ, ψ, p*) of that generation's data.
    """
    state = checkpoint.load() if checkpoint is not None else None
    if state is None:
        start = time.perf_counter()
        real = sample_real() if sample_real is not None else task.sample_real(
            seeding.replicate_generators(seed, replicates, seeding.REAL_STREAM)
        )
        rngs = seeding.replicate_generators(seed, replicates, workflow.key)
        pool = Pool([Source(0, real, task.real_size, task.statistics(real))])
        model, composition = _fit(task, workflow, pool, 0, rngs)
        records = [GenerationRecord(0, task.evaluate(model, real), time.perf_counter() - start, 0, 0, composition)]
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

    for g in range(first, generations + 1):
        start = time.perf_counter()
        n = workflow.synthetic_size(g, task.synthetic_size)
        inputs = task.sample_inputs(real, n, rngs)
        data = task.synthesize(model, inputs, n, rngs)
        data, kept, verified = _verify(task, verifier, model, data, real, n, rngs)
        pool.add(Source(g, data, kept, task.statistics(data)))
        model, composition = _fit(task, workflow, pool, g, rngs, previous=model)
        record = GenerationRecord(g, {**task.evaluate(model, real), **verified}, time.perf_counter() - start, n, kept, composition)
        records.append(record)
        if checkpoint is not None:
            checkpoint.save(LoopState(g, model, pool, seeding.generator_states(rngs), records))
        if on_generation is not None:
            on_generation(record)
    return records
