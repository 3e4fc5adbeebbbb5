"""Workflows: the rule that composes each generation's training set from the pool.

Following Dey & Donoho (2024), a workflow is a *mixture* over the pool's sources (real data,
then the synthetic data of generations 1, 2, …): ``replace`` puts all weight on the newest
source, ``accumulate`` weights every source equally, ``accumulate-subsample`` draws a fixed
budget of rows uniformly from everything so far, ``weighted`` gives real and synthetic rows any
weights (decaying with age), and Kazdan et al.'s ``real-fraction`` and ``cardinality`` hold the
real data's proportion, respectively its amount, fixed. A workflow also says how many examples a
generation synthesizes (``growing`` scales that with the generation, as in Dohmatob et al.
2024). Workflows know nothing about tasks: they see only the number of rows per source.

Workflows are pydantic models, so a workflow *is* its configuration: ``{name = "accumulate-
subsample", budget = 50}`` in a preset builds the object the loop calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal, Union

import numpy as np
from pydantic import Field

from .pool import Mixture
from .validation import Integer, Real, StrictModel


class Workflow(StrictModel, ABC):
    """Interface the loop calls; subclasses add their parameters as fields.

    Two attributes tell the pool what it may forget after each generation, which keeps memory
    and checkpoints bounded: ``reads_history`` (False when only the newest synthetic source is
    ever used) and ``reads_rows`` (True when mixtures draw individual rows, so sources must keep
    their rows rather than only their sufficient statistics).
    """

    reads_history: ClassVar[bool] = True

    name: str
    label: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$",
        max_length=100,
        description="name shown in tables and figures and used for the checkpoint folder; defaults to `name`",
    )

    @property
    def key(self) -> str:
        """Unique name of this workflow within an experiment (its label, else its name)."""
        return self.label or self.name

    @property
    def reads_rows(self) -> bool:
        return False

    @property
    def reads_source_statistics(self) -> bool:
        """False when only the running total of every source's statistics is ever read."""
        return True

    def synthetic_size(self, generation: int, base: int) -> int:
        """Examples to synthesize at ``generation >= 1`` when the task's default is ``base``."""
        return base

    def size_problem(self, real_size: int, synthetic_size: int) -> str | None:
        """Why this workflow cannot run with these pool sizes (checked before a run), or None."""
        return None

    @abstractmethod
    def compose(self, sizes: np.ndarray, generation: int, rngs: Sequence[np.random.Generator]) -> Mixture:
        """The training mixture of ``generation`` given the rows per source, ``sizes`` of shape (g+1,)."""


def _budget_problem(budget: int | None, real_size: int) -> str | None:
    if budget is not None and budget > real_size:
        return (f"budget must be an integer in [1, {real_size}] (at most the real data's size, so every "
                f"generation can draw a full budget); got {budget}")
    return None


def _uniform_draw(sizes: np.ndarray, budget: int, rngs) -> Mixture:
    """``budget`` rows uniformly without replacement from all rows, or every row if fewer."""
    total = int(sizes.sum())
    if budget >= total:
        return Mixture(weights=np.ones(len(sizes)))
    rows = np.stack([np.sort(rng.choice(total, budget, replace=False, shuffle=False)) for rng in rngs])  # (R, budget)
    return Mixture(rows=rows)


def _newest_only(sizes: np.ndarray) -> Mixture:
    weights = np.zeros(len(sizes))
    weights[-1] = 1.0
    return Mixture(weights=weights)


class Replace(Workflow):
    """Train generation ``g`` on the data synthesized by generation ``g - 1`` only (a.k.a. discard)."""

    reads_history: ClassVar[bool] = False
    name: Literal["replace"] = "replace"

    def compose(self, sizes, generation, rngs):
        return _newest_only(sizes)


class Accumulate(Workflow):
    """Train on the real data and every synthetic set so far, all rows weighted equally (augment)."""

    name: Literal["accumulate"] = "accumulate"

    @property
    def reads_source_statistics(self) -> bool:
        return False

    def compose(self, sizes, generation, rngs):
        return Mixture(weights=np.ones(len(sizes)))


class AccumulateSubsample(Workflow):
    """Train on ``budget`` rows drawn uniformly without replacement from everything so far.

    The budget defaults to the real data's size, so the training set has a fixed size ``T``
    in every generation (Kazdan et al. 2024).
    """

    name: Literal["accumulate-subsample"] = "accumulate-subsample"
    budget: Integer(1, 10**9) | None = Field(default=None, description="rows per training set; default: the real data's size")

    @property
    def reads_rows(self) -> bool:
        return True

    def size_problem(self, real_size, synthetic_size):
        return _budget_problem(self.budget, real_size)

    def compose(self, sizes, generation, rngs):
        return _uniform_draw(sizes, int(sizes[0]) if self.budget is None else self.budget, rngs)


class Growing(Workflow):
    """Replace, but generation ``g`` receives ``g`` times as many synthetic examples (Dohmatob et al. 2024)."""

    reads_history: ClassVar[bool] = False
    name: Literal["growing"] = "growing"

    def synthetic_size(self, generation, base):
        return generation * base

    def compose(self, sizes, generation, rngs):
        return _newest_only(sizes)


class Weighted(Workflow):
    """Dey & Donoho's general workflow: every real row weighs ``real``, every row synthesized at
    generation ``j`` weighs ``decay ** (g − j)`` in generation ``g``'s fit.

    ``real=0, decay=0`` is replace; ``real=1, decay=1`` is accumulate; adding a ``budget`` draws
    that many rows with probability proportional to their weight instead (uniform weights: the
    same draw as accumulate-subsample). Generation 0 trains on the real data whatever ``real``.
    """

    name: Literal["weighted"] = "weighted"
    real: Real(0) = Field(default=1.0, description="weight of each real row")
    decay: Real(0) = Field(default=1.0, description="weight ratio between successive synthetic generations")
    budget: Integer(1, 10**9) | None = Field(default=None, description="draw this many rows ∝ weight instead of weighting whole sources")

    @property
    def reads_rows(self) -> bool:
        return self.budget is not None

    def size_problem(self, real_size, synthetic_size):
        return _budget_problem(self.budget, real_size)

    def source_weights(self, generation: int) -> np.ndarray:
        """Per-row weight of each source, shape (g+1,)."""
        if generation == 0:
            return np.ones(1)
        age = generation - np.arange(1, generation + 1)
        synthetic = np.where(age == 0, 1.0, self.decay ** np.maximum(age, 1))  # 0**0 is 1: newest weighs 1
        return np.concatenate([[self.real], synthetic])

    def compose(self, sizes, generation, rngs):
        weights = self.source_weights(generation)
        if self.budget is None:
            return Mixture(weights=weights)
        if np.all(weights == weights[0]):
            return _uniform_draw(sizes, self.budget, rngs)
        p = np.repeat(weights, sizes)
        budget = min(self.budget, int(np.count_nonzero(p)))
        p = p / p.sum()
        rows = np.stack([np.sort(rng.choice(len(p), budget, replace=False, p=p, shuffle=False)) for rng in rngs])
        return Mixture(rows=rows)


class RealFraction(Workflow):
    """Kazdan et al. 2024: every training set has ``budget`` rows (default: the real data's size),
    a fixed ``fraction`` of them drawn from the real data and the rest from all synthetic data so
    far — the proportion of real data is held fixed."""

    name: Literal["real-fraction"] = "real-fraction"
    fraction: Real(0, 1) = Field(default=0.5, description="share of real rows in every training set")
    budget: Integer(1, 10**9) | None = Field(default=None, description="rows per training set; default: the real data's size")

    @property
    def reads_rows(self) -> bool:
        return True

    def size_problem(self, real_size, synthetic_size):
        problem = _budget_problem(self.budget, real_size)
        synthetic_rows = (self.budget or real_size) - round(self.fraction * (self.budget or real_size))
        if problem is None and synthetic_rows > synthetic_size:
            problem = (f"budget leaves {synthetic_rows} synthetic rows per training set, more than the "
                       f"{synthetic_size} a generation synthesizes; lower budget or raise fraction")
        return problem

    def compose(self, sizes, generation, rngs):
        budget = int(sizes[0]) if self.budget is None else self.budget
        if generation == 0:
            return _uniform_draw(sizes, budget, rngs)
        n_real = round(self.fraction * budget)
        real_rows, synthetic_rows = int(sizes[0]), int(sizes[1:].sum())
        rows = np.stack([
            np.concatenate([
                np.sort(rng.choice(real_rows, n_real, replace=False, shuffle=False)),
                real_rows + np.sort(rng.choice(synthetic_rows, budget - n_real, replace=False, shuffle=False)),
            ])
            for rng in rngs
        ])  # (R, budget)
        return Mixture(rows=rows)


class Cardinality(Workflow):
    """Kazdan et al. 2024: a fixed amount of real data — ``real`` rows, the same rows in every
    generation — plus all synthetic data so far, so the real data's proportion falls while its
    amount stays fixed (contrast with ``real-fraction``)."""

    name: Literal["cardinality"] = "cardinality"
    real: Integer(1, 10**9) | None = Field(default=None, description="real rows kept in every training set; default: all")

    @property
    def reads_rows(self) -> bool:
        return self.real is not None

    def size_problem(self, real_size, synthetic_size):
        if self.real is not None and self.real > real_size:
            return f"real must be an integer in [1, {real_size}] (at most the real data's size); got {self.real}"
        return None

    def compose(self, sizes, generation, rngs):
        if self.real is None or self.real == sizes[0]:
            return Mixture(weights=np.ones(len(sizes)))
        # Real rows are exchangeable, so the first `real` of them are a uniform subset.
        rows = np.concatenate([np.arange(self.real), np.arange(sizes[0], sizes.sum())])
        return Mixture(rows=np.broadcast_to(rows, (len(rngs), len(rows))).copy())


WORKFLOW_CLASSES = (Replace, Accumulate, AccumulateSubsample, Growing, Weighted, RealFraction, Cardinality)
WorkflowConfig = Annotated[Union[WORKFLOW_CLASSES], Field(discriminator="name")]
WORKFLOWS: dict[str, type[Workflow]] = {cls.model_fields["name"].default: cls for cls in WORKFLOW_CLASSES}
