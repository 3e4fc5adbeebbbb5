"""Difficulty schedules for self-improvement: which difficulties round ``g`` synthesizes.

The *frontier* is the largest difficulty in the training data so far (the labelled range's top
``L`` at round 0). Given the current model's exact-match accuracy per difficulty, a schedule
names the difficulties whose inputs the model labels next (Lee et al. 2025):

- ``standard``: one more than the frontier, every round;
- ``accelerated``: every difficulty from ``frontier + 1`` up to the largest one that the model
  already solves at ``≥ threshold`` (all levels in between too) — skipping ahead when the
  model generalizes further than one step; never less than ``standard``;
- ``gate``: ``frontier + 1`` only when the model already solves it at ``≥ threshold``; otherwise
  nothing (the round holds: no new rows, more training on the pool).

Examples
--------
>>> s = ScheduleConfig(name="accelerated", threshold=0.99)
>>> s.difficulties(10, {11: 1.0, 12: 0.995, 13: 0.9, 14: 1.0})
[11, 12]
>>> ScheduleConfig(name="gate").difficulties(10, {11: 0.5})
[]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field

from .validation import Real, StrictModel

SCHEDULES = ("standard", "accelerated", "gate")


class ScheduleConfig(StrictModel):
    """Which difficulty each self-improvement round synthesizes."""

    name: Literal["standard", "accelerated", "gate"] = Field(default="standard", description="standard (+1 per round), accelerated, or gate")
    threshold: Real(0, 1) = Field(default=0.99, description="accuracy at which a difficulty counts as solved")

    def difficulties(self, frontier: int, accuracy: Mapping[int, float]) -> list[int]:
        """Difficulties to synthesize after ``frontier``, given accuracy per difficulty (a
        difficulty missing from ``accuracy`` counts as unsolved); empty when the round holds."""
        following = frontier + 1
        solved = accuracy.get(following, 0.0) >= self.threshold
        if self.name == "standard":
            return [following]
        if self.name == "gate":
            return [following] if solved else []
        last = following
        while accuracy.get(last + 1, 0.0) >= self.threshold and solved:
            last += 1
        return list(range(following, last + 1))
