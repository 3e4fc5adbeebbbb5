"""Workflows: the rule that composes each generation's training set from the pool.

Following Dey & Donoho (2024), a workflow is a *mixture* over the pool's sources (real data,
then the synthetic data of generations 1, 2, …): ``replace`` puts all weight on the newest
source, ``accumulate`` weights every source equally, ``accumulate-subsample`` draws a fixed
budget of rows uniformly from everything so far. A workflow also says how many examples a
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
from .validation import Integer, StrictModel


class Workflow(StrictModel, ABC):
    """Interface the loop calls; subclasses add their parameters as fields.

    Two class attributes tell the pool what it may forget after each generation, which keeps
    memory and checkpoints bounded: ``reads_history`` (False when only the newest synthetic
    source is ever used) and ``reads_rows`` (True when mixtures draw individual rows, so sources
    must keep their rows rather than only their sufficient statistics).
    """

    reads_history: ClassVar[bool] = True
    reads_rows: ClassVar[bool] = False

    name: str
    label: str | None = Field(default=None, description="name shown in tables and figures; defaults to `name`")

    @property
    def key(self) -> str:
        """Unique name of this workflow within an experiment (its label, else its name)."""
        return self.label or self.name

    def synthetic_size(self, generation: int, base: int) -> int:
        """Examples to synthesize at ``generation >= 1`` when the task's default is ``base``."""
        return base

    @abstractmethod
    def compose(self, sizes: np.ndarray, generation: int, rngs: Sequence[np.random.Generator]) -> Mixture:
        """The training mixture of ``generation`` given the rows per source, ``sizes`` of shape (g+1,)."""


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

    def compose(self, sizes, generation, rngs):
        return Mixture(weights=np.ones(len(sizes)))


class AccumulateSubsample(Workflow):
    """Train on ``budget`` rows drawn uniformly without replacement from everything so far.

    The budget defaults to the real data's size, so the training set has a fixed size ``T``
    in every generation (Kazdan et al. 2024).
    """

    reads_rows: ClassVar[bool] = True
    name: Literal["accumulate-subsample"] = "accumulate-subsample"
    budget: Integer(1, 10**9) | None = Field(default=None, description="rows per training set; default: the real data's size")

    def compose(self, sizes, generation, rngs):
        total = int(sizes.sum())
        budget = int(sizes[0]) if self.budget is None else self.budget
        if budget >= total:
            return Mixture(weights=np.ones(len(sizes)))
        rows = np.stack([np.sort(rng.choice(total, budget, replace=False, shuffle=False)) for rng in rngs])  # (R, budget)
        return Mixture(rows=rows)


class Growing(Workflow):
    """Replace, but generation ``g`` receives ``g`` times as many synthetic examples (Dohmatob et al. 2024)."""

    reads_history: ClassVar[bool] = False
    name: Literal["growing"] = "growing"

    def synthetic_size(self, generation, base):
        return generation * base

    def compose(self, sizes, generation, rngs):
        return _newest_only(sizes)


WorkflowConfig = Annotated[Union[Replace, Accumulate, AccumulateSubsample, Growing], Field(discriminator="name")]
WORKFLOWS: dict[str, type[Workflow]] = {cls.model_fields["name"].default: cls for cls in (Replace, Accumulate, AccumulateSubsample, Growing)}
