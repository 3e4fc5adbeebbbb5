"""Label filters for self-improvement: which self-labelled rows enter the pool (no truth used).

Lee et al. (2025) filter the model's own labels without any external verifier:

- ``none``: every label is kept;
- ``length``: a label is kept when it is well formed — it ended with the end token, has the
  length the prompt implies (answers are zero-padded, so the length is known) and only answer
  characters;
- ``majority``: ``models`` independently trained models label every input; the most common
  label wins, and the row is kept when the share of models agreeing with it is at least
  ``agreement`` and the winner is well formed.

Unlike :mod:`synthloop.verifiers`, which keep a fixed share of each generation's rows, these
keep a variable number of rows: whatever passes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from .validation import Integer, Real, StrictModel


class FilterConfig(StrictModel):
    """How self-labelled rows are filtered."""

    name: Literal["none", "length", "majority"] = Field(default="length", description="none, length (format) or majority vote")
    models: Integer(1, 64) = Field(default=1, description="independently trained models that label each input (majority vote)")
    agreement: Real(0, 1) = Field(default=0.7, description="share of models that must agree with the majority label")

    def problem(self) -> str | None:
        """What is inconsistent in this filter (its keys named relative to it), or None."""
        if self.name == "majority" and self.models < 2:
            return f"models must be at least 2 for a majority vote; got {self.models}"
        if self.name != "majority" and self.models != 1:
            return f"models applies to the majority filter only; got {self.models} with name {self.name!r}"
        return None



@dataclass
class Filtered:
    """Result of filtering ``n`` inputs.

    Attributes
    ----------
    labels : ndarray of shape (n,), object
        The label of each row (the majority label under ``majority``, else the model's).
    keep : ndarray of shape (n,), bool
    agreement : ndarray of shape (n,)
        Share of models agreeing with ``labels`` (1 with one model).
    """

    labels: np.ndarray
    keep: np.ndarray
    agreement: np.ndarray


def majority_vote(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The most common label of each column of ``labels`` (M, n) and the share of the ``M``
    models that gave it; ties go to the lowest-numbered model's label.

    Examples
    --------
    >>> winner, share = majority_vote(np.array([["12", "7"], ["12", "8"], ["13", "9"]], dtype=object))
    >>> winner.tolist(), share.round(3).tolist()
    (['12', '7'], [0.667, 0.333])
    """
    M, n = labels.shape
    winner = np.empty(n, dtype=object)
    share = np.empty(n)
    for j in range(n):
        counts = Counter(labels[:, j].tolist())  # insertion order breaks ties by model number
        winner[j], top = counts.most_common(1)[0]
        share[j] = top / M
    return winner, share


def apply_filter(config: FilterConfig, labels: np.ndarray, well_formed: np.ndarray) -> Filtered:
    """Filter labels ``(M, n)`` given which of them are well formed ``(M, n)``."""
    labels = np.asarray(labels, dtype=object)
    if config.name == "majority":
        winner, share = majority_vote(labels)
        first = np.argmax(labels == winner[None], axis=0)  # a model that gave the winner
        winner_ok = well_formed[first, np.arange(labels.shape[1])]
        return Filtered(winner, (share >= config.agreement) & winner_ok, share)
    keep = well_formed[0] if config.name == "length" else np.ones(labels.shape[1], dtype=bool)
    return Filtered(labels[0], keep.copy(), np.ones(labels.shape[1]))
