"""The task protocol: ground truth, model family and evaluation — everything the loop calls.

A task never knows which workflow runs it. Per generation the loop calls, in order::

    real   = task.sample_real(rngs)                        # generation 0 only
    inputs = task.sample_inputs(real, n, rngs)             # fresh x, the fixed design, or None
    data   = task.synthesize(model, inputs, n, rngs)       # n synthetic rows per replicate
    data   = task.synthesize_candidates(model, inputs, n, k, rngs)  # instead, under label selection
    model  = task.fit(TrainingSet(pool, mixture), rngs)    # the workflow chose the mixture
    scores = task.evaluate(model, real)                    # {metric: (R,) array}

Data objects are the task's own (a dataclass is simplest); fields with a row axis have shape
``(R, n, ...)`` with replicates first, so the pool can stack and subsample them by name. A
task whose model has additive sufficient statistics returns them from :meth:`Task.statistics`
so that accumulating costs no more than replacing. Tasks are constructed from their pydantic
``Config``; a user task lives in the user's own file and is named ``"file.py:ClassName"``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..pool import TrainingSet
from ..validation import ConfigError, StrictModel
from ..workflows import Workflow

Rngs = Sequence[np.random.Generator]


class TaskConfig(StrictModel):
    """Parameters of a task; subclasses add fields. ``name`` selects the task."""

    name: str


@dataclass(frozen=True)
class TheoryCurve:
    """A prediction for one metric of one workflow, generation by generation.

    Attributes
    ----------
    metric : str
        The metric predicted (a key of :meth:`Task.evaluate`).
    values : ndarray of shape (G + 1,)
        Prediction at generations ``0..G``; NaN where the theory does not apply.
    kind : str
        ``"exact"`` (closed form), ``"numerical"`` (numerically exact, e.g. Monte Carlo over
        designs), ``"bound"`` (an upper bound, drawn as such) or ``"asymptotic"``.
    source : str
        Paper and equation, e.g. ``"Gerstgrasser et al. 2024, Thm 2"``.
    """

    metric: str
    values: np.ndarray
    kind: str
    source: str


@dataclass(frozen=True)
class Theory:
    """All predictions for one workflow, and why a curve is missing when it is."""

    curves: list[TheoryCurve] = field(default_factory=list)
    note: str | None = None


class Task(ABC):
    """Base class of every task; see the module docstring for the call order."""

    Config: ClassVar[type[TaskConfig]]
    #: metric drawn by default, and the label (with units) of each metric
    primary_metric: ClassVar[str]
    metric_labels: ClassVar[dict[str, str]] = {}
    #: True when :meth:`fit` takes ``init``, the previous generation's model, and continues from it
    fine_tunes: ClassVar[bool] = False

    def __init__(self, config: TaskConfig):
        self.config = config

    @property
    @abstractmethod
    def real_size(self) -> int:
        """Rows of real data per replicate."""

    @property
    def synthetic_size(self) -> int:
        """Rows synthesized per generation before the workflow scales it (default: ``real_size``)."""
        return self.real_size

    def synthetic_capacity(self) -> tuple[int, str] | None:
        """Largest number of rows :meth:`synthesize` can produce per generation, with the reason,
        or None when unbounded. Checked against every workflow before a run starts."""
        return None

    @abstractmethod
    def sample_real(self, rngs: Rngs) -> Any:
        """Real data (and whatever ground truth :meth:`evaluate` needs), replicates first."""

    def sample_inputs(self, real: Any, n: int, rngs: Rngs) -> Any:
        """Inputs to label (label synthesis); None for tasks that synthesize whole samples."""
        return None

    @abstractmethod
    def synthesize(self, model: Any, inputs: Any, n: int, rngs: Rngs) -> Any:
        """``n`` synthetic rows per replicate produced by ``model``."""

    def synthesize_candidates(self, model: Any, inputs: Any, n: int, k: int, rngs: Rngs) -> Any:
        """``k`` independent candidate labels for each of the ``n`` inputs: ``n·k`` rows per
        replicate, row ``i·k + j`` being candidate ``j`` of input ``i`` (label selection keeps
        one per input). Tasks that cannot propose several labels per input do not implement it."""
        raise NotImplementedError(f"task {self.config.name!r} does not synthesize several candidates per input")

    @property
    def has_candidates(self) -> bool:
        return type(self).synthesize_candidates is not Task.synthesize_candidates

    @property
    def curve_labels(self) -> tuple[str, str]:
        """x and y axis labels of curves measured inside a generation (metrics named ``"<series>@<x>"``)."""
        return "x", "value"

    def curve_marks(self) -> dict[str, float]:
        """An x value to mark per series of those curves (e.g. a breakdown point); none by default."""
        return {}

    def label_distance(self, data: Any, real: Any) -> np.ndarray | None:
        """How far each synthetic label is from the truth, (R, n) — what the oracle picks the
        closest candidate by; None (the default) where correctness is all there is."""
        return None

    @property
    def measures_distance(self) -> bool:
        return type(self).label_distance is not Task.label_distance

    def correct(self, data: Any, real: Any) -> np.ndarray:
        """Whether each synthetic row is correct, shape (R, n) bool — the ground truth that oracle
        and rlhf verifiers use and the verification metrics (p, φ, ψ, p*) are computed from.
        Tasks without such a truth do not implement it."""
        raise NotImplementedError(f"task {self.config.name!r} has no ground truth for synthetic rows")

    @property
    def knows_truth(self) -> bool:
        return type(self).correct is not Task.correct

    def judge(self, data: Any, real: Any, rngs: Rngs) -> np.ndarray:
        """Scores (R, n) of synthetic rows by the task's own second model (the ``model`` verifier),
        higher kept first. Tasks without such a judge do not implement it."""
        raise NotImplementedError(f"task {self.config.name!r} has no judge model")

    @property
    def has_judge(self) -> bool:
        return type(self).judge is not Task.judge

    def confidence(self, model: Any, data: Any) -> np.ndarray:
        """The generating model's confidence in each of its synthetic rows, (R, n) — what the
        ``self`` verifier keeps first. Tasks without a notion of confidence do not implement it."""
        raise NotImplementedError(f"task {self.config.name!r} has no model confidence")

    @property
    def has_confidence(self) -> bool:
        return type(self).confidence is not Task.confidence

    def verification_problem(self) -> str | None:
        """Why this task's synthetic rows cannot be filtered by a verifier, or None."""
        return None

    def take_rows(self, data: Any, index: np.ndarray) -> Any:
        """The rows ``index`` (R, m) of ``data``: every field shaped (R, n, ...) is gathered.

        Works for dataclasses whose per-row fields have replicates first; override otherwise."""
        R, n = index.shape[0], None
        changes = {}
        for f in dataclasses.fields(data):
            value = getattr(data, f.name)
            if isinstance(value, np.ndarray) and value.ndim >= 2 and value.shape[0] == R:
                n = value.shape[1] if n is None else n
                if value.shape[1] == n:
                    changes[f.name] = np.take_along_axis(value, index.reshape(index.shape + (1,) * (value.ndim - 2)), axis=1)
        return dataclasses.replace(data, **changes)

    def statistics(self, data: Any) -> Any:
        """Additive sufficient statistics of ``data`` (supporting ``+`` and ``* float``), or None.

        A task that returns statistics promises that :meth:`fit` uses ``training.statistics()``
        whenever ``training.is_weighted``: the pool then keeps only the statistics of sources that
        no row draw can reach, and their rows are gone.
        """
        return None

    @abstractmethod
    def fit(self, training: TrainingSet, rngs: Rngs) -> Any:
        """A model fit on the training set (one model per replicate, batched)."""

    @abstractmethod
    def evaluate(self, model: Any, real: Any) -> dict[str, np.ndarray]:
        """Metrics of ``model``, each an array of shape ``(R,)``."""

    def preview(self, model: Any) -> np.ndarray | None:
        """A few samples of ``model`` to look at, e.g. images ``(k, height, width)`` of replicate 0,
        kept per generation and drawn as ``samples.png``; None (the default) for tasks without."""
        return None

    def usable_rows(self, data: Any, kept: int) -> float:
        """How many of a generation's ``kept`` synthetic rows training uses, as recorded in
        ``generations.parquet``: all of them (the default), unless the task masks some out of
        training itself while they stay in the pool (self-improvement's filter)."""
        return kept

    def extra_figures(self, metrics: Any, title: str) -> dict[str, Any]:
        """Figures beyond ``figure.png``, pure functions of a run's long-format ``metrics`` frame,
        by file name: ``{"heatmap": fig}`` is written as ``heatmap.png`` by ``synthloop.run`` and
        redrawn by ``synthloop report``; none (the default) for most tasks."""
        return {}

    def theory(self, workflow: Workflow, generations: int) -> Theory:
        """Predictions for this configuration under ``workflow``; none by default."""
        return Theory(note=f"no theory for task {self.config.name!r}")

    def describe(self) -> str:
        """One line for captions: the task's parameters."""
        params = self.config.model_dump(exclude={"name"})
        name = self.config.name
        if ":" in name:  # a user task file: its file name is enough for a caption
            file, cls_name = name.rsplit(":", 1)
            name = f"{Path(file).name}:{cls_name}"
        return f"{name}: " + ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)


def require_torch(task: str, device: str) -> None:
    """Refuse, at config time, a neural task without PyTorch or a CUDA device it was told to use."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise ConfigError(f"task {task!r} needs PyTorch, which is not installed: pip install 'synthloop[nn]'")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("task.device = 'cuda', but torch sees no CUDA device; use 'auto' or 'cpu'")
