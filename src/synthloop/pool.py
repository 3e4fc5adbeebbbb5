"""The data pool: every source of training data, with its generation of origin.

Source 0 holds the real data; source ``g >= 1`` holds what generation ``g - 1`` synthesized for
generation ``g``. A workflow never copies data: it returns a :class:`Mixture` (a weight per
source, or a draw of individual rows), and the task reads its training set through a
:class:`TrainingSet` view. Where the task's model has additive sufficient statistics (``XᵀX``,
``Xᵀy``; count, sum, scatter), the pool keeps them per source and as a running total, so that
accumulating every source costs no more per generation than replacing with the newest one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Source:
    """One batch of training data and where it came from.

    Attributes
    ----------
    generation : int
        0 for real data, ``g`` for data synthesized by the model of generation ``g - 1``.
    data : object
        The task's batch; per-row fields have shape ``(R, size, ...)``.
    size : int
        Rows per replicate.
    statistics : object or None
        The task's additive sufficient statistics of ``data`` (supports ``+`` and ``* float``).
    """

    generation: int
    data: Any
    size: int
    statistics: Any = None


@dataclass(frozen=True)
class Mixture:
    """A training set's composition over the pool's sources, as a workflow decides it.

    Exactly one of ``weights`` and ``rows`` is set.

    Attributes
    ----------
    weights : ndarray of shape (S,) or None
        Every row of source ``j`` enters with weight ``weights[j]``; 0 leaves the source out.
    rows : ndarray of shape (R, n) or None
        Flat indices into the concatenation of all sources' rows (source 0 first), drawn per
        replicate; each indexed row enters once with weight 1.
    """

    weights: np.ndarray | None = None
    rows: np.ndarray | None = None

    def __post_init__(self):
        if (self.weights is None) == (self.rows is None):
            raise ValueError("a Mixture takes exactly one of weights and rows")

    def composition(self, sizes: np.ndarray) -> np.ndarray:
        """Mean rows taken from each source over replicates, shape ``(S,)`` — the lineage."""
        if self.weights is not None:
            return np.where(self.weights > 0, sizes, 0).astype(float)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        source = np.searchsorted(offsets, self.rows, side="right") - 1  # (R, n)
        return np.bincount(source.ravel(), minlength=len(sizes)) / len(source)


class Pool:
    """Sources in order of generation, with running statistics and lazily stacked rows."""

    def __init__(self, sources: list[Source] | None = None, total=None):
        """``total``: the running sum of statistics, when the sources no longer hold theirs."""
        self.sources: list[Source] = list(sources or [])
        # The running total is folded in lazily, when first read: a task may synthesize
        # statistics on demand (gaussian), and a workflow that never reads them must not force them.
        self._total = total
        self._folded = len(self.sources) if total is not None else 0  # sources summed into _total
        self._tracking = True  # False once a workflow is known to read rows, never the total
        self._stacks: dict[str, tuple[np.ndarray, int, int]] = {}  # field -> (buffer, sources in, rows in)

    @property
    def total(self):
        """The running sum of every source's statistics (None when not kept)."""
        if not self._tracking:
            return None
        for source in self.sources[self._folded :]:
            if source.statistics is not None:
                self._total = source.statistics if self._total is None else self._total + source.statistics
        self._folded = len(self.sources)
        return self._total

    def add(self, source: Source) -> None:
        self.sources.append(source)

    def forget(self, keep_history: bool, keep_rows: bool, keep_source_statistics: bool = True) -> None:
        """Drop what no later mixture can read: every synthetic source's data when only the
        newest source is ever used, the rows of sources whose statistics suffice, the running
        total when mixtures draw rows, and the per-source statistics when only their running
        total is read. Provenance (generation, size) stays; the real data always stay."""
        if not keep_history:
            self._total, self._folded = None, len(self.sources)
        elif keep_rows:
            self._total, self._tracking = None, False
        elif not keep_source_statistics:
            self.total  # fold every source in before their statistics go
        released = False
        for source in self.sources[1:]:
            if not keep_history and (source.data is not None or source.statistics is not None):
                source.data, source.statistics, released = None, None, True
                continue
            if not keep_rows and source.statistics is not None and source.data is not None:
                source.data, released = None, True
            if not keep_source_statistics and source.data is None and self._total is not None:
                source.statistics = None
        if released:
            self._stacks.clear()

    @property
    def sizes(self) -> np.ndarray:
        return np.array([s.size for s in self.sources], dtype=np.int64)

    @property
    def offsets(self) -> np.ndarray:
        """Start of each source in the concatenation of rows, shape ``(S + 1,)``."""
        return np.concatenate([[0], np.cumsum(self.sizes)])

    @property
    def real(self) -> Source:
        return self.sources[0]

    def statistics(self, weights: np.ndarray):
        """Weighted sum of the sources' statistics; O(1) in the number of sources for the
        common cases (one source, or every source with the same weight)."""
        used = np.flatnonzero(weights)
        if len(used) == 0:
            raise ValueError("a mixture must take at least one source")
        first = weights[used[0]]
        if len(used) == len(self.sources) and np.all(weights == first) and (total := self.total) is not None:
            return total if first == 1 else total * float(first)
        total = None
        for j in used:
            stats = self.sources[j].statistics
            if stats is None:
                raise ValueError(
                    f"source {j} has no statistics: the task fits from rows, or the workflow reads only their total"
                )
            term = stats if weights[j] == 1 else stats * float(weights[j])
            total = term if total is None else total + term
        return total

    def stacked(self, name: str) -> np.ndarray:
        """Field ``name`` of every source concatenated along the row axis, ``(R, N, ...)``.

        The buffer grows geometrically, so building it over ``G`` generations costs ``O(N)``
        in total rather than ``O(N G)``.
        """
        buffer, n_sources, n_rows = self._stacks.get(name, (None, 0, 0))
        if any(s.data is None for s in self.sources[n_sources:]):
            raise ValueError("the rows of an earlier source were released: this workflow reads statistics or the newest source only")
        new = [getattr(s.data, name) for s in self.sources[n_sources:]]
        if any(a is None for a in new):
            raise ValueError(f"some sources have no field {name!r}")
        needed = n_rows + sum(a.shape[1] for a in new)
        if buffer is None or buffer.shape[1] < needed:
            shape = (new[0] if buffer is None else buffer).shape
            grown = np.empty((shape[0], max(needed, 2 * n_rows), *shape[2:]), dtype=(new[0] if buffer is None else buffer).dtype)
            if buffer is not None:
                grown[:, :n_rows] = buffer[:, :n_rows]
            buffer = grown
        for a in new:
            buffer[:, n_rows : n_rows + a.shape[1]] = a
            n_rows += a.shape[1]
        self._stacks[name] = (buffer, len(self.sources), n_rows)
        return buffer[:, :n_rows]

    def __getstate__(self):
        # The stacked buffers are a cache; they are rebuilt on demand after a restore.
        return {"sources": self.sources, "total": self._total, "folded": self._folded, "tracking": self._tracking}

    def __setstate__(self, state):
        self.__init__(state["sources"])
        self._total, self._folded = state.get("total"), state.get("folded", 0)
        self._tracking = state.get("tracking", True)


@dataclass
class TrainingSet:
    """What a task fits on: the pool seen through one mixture."""

    pool: Pool
    mixture: Mixture
    _source: np.ndarray | None = field(default=None, repr=False)

    @property
    def is_weighted(self) -> bool:
        """True when whole sources are taken with weights (statistics apply)."""
        return self.mixture.weights is not None

    def statistics(self):
        """The weighted sufficient statistics of the training set (whole-source mixtures only)."""
        if not self.is_weighted:
            raise ValueError("a row-subsampled training set has no precomputed statistics; read rows()")
        return self.pool.statistics(self.mixture.weights)

    def rows(self, name: str) -> np.ndarray:
        """Field ``name`` of the training rows, shape ``(R, n, ...)``."""
        if self.mixture.rows is not None:
            stacked = self.pool.stacked(name)
            index = self.mixture.rows.reshape(self.mixture.rows.shape + (1,) * (stacked.ndim - 2))
            return np.take_along_axis(stacked, index, axis=1)
        used = np.flatnonzero(self.mixture.weights)
        if len(used) == len(self.pool.sources):
            return self.pool.stacked(name)
        return np.concatenate([getattr(self.pool.sources[j].data, name) for j in used], axis=1)

    def row_weights(self) -> np.ndarray:
        """Weight of each training row, shape ``(n,)`` (weighted) or ``(R, n)`` (row draws)."""
        if self.mixture.rows is not None:
            return np.ones(self.mixture.rows.shape)
        used = np.flatnonzero(self.mixture.weights)
        return np.repeat(self.mixture.weights[used], self.pool.sizes[used]).astype(float)

    def source_index(self) -> np.ndarray:
        """Source of each training row, shape ``(R, n)`` or ``(n,)``."""
        if self.mixture.rows is None:
            used = np.flatnonzero(self.mixture.weights)
            return np.repeat(used, self.pool.sizes[used])
        if self._source is None:
            self._source = np.searchsorted(self.pool.offsets, self.mixture.rows, side="right") - 1
        return self._source

    def local_rows(self) -> np.ndarray:
        """Index of each training row within its own source, same shape as :meth:`source_index`."""
        source = self.source_index()
        if self.mixture.rows is None:
            return np.concatenate([np.arange(self.pool.sizes[j]) for j in np.unique(source)])
        return self.mixture.rows - self.pool.offsets[source]

    def composition(self) -> np.ndarray:
        return self.mixture.composition(self.pool.sizes)
