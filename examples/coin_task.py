"""A user-defined task in the user's own file: estimating a coin's bias from its own flips.

Run it with ``synthloop run examples/coin.toml`` (see docs/custom-task.md).
Generation g flips a coin with the bias estimated by generation g-1 (Wright-Fisher drift).
"""

from dataclasses import dataclass

import numpy as np

from synthloop import Task, TaskConfig, Theory, TheoryCurve
from synthloop.validation import Integer, Real


class CoinConfig(TaskConfig):
    name: str = "coin_task.py:CoinTask"
    p: Real(0, 1) = 0.3  # the true bias
    T: Integer(1, 10**7) = 50  # real flips per replicate


@dataclass
class Flips:
    flips: np.ndarray  # (R, n) zeros and ones


@dataclass
class Coin:
    p_: np.ndarray  # (R,) estimated bias


class CoinTask(Task):
    Config = CoinConfig
    primary_metric = "squared_error"
    metric_labels = {"squared_error": "squared error of the bias (p̂ − p)²"}

    @property
    def real_size(self):
        return self.config.T

    def _flip(self, p, n, rngs):
        return Flips(np.stack([rng.random(n) < p_r for rng, p_r in zip(rngs, np.broadcast_to(p, len(rngs)))]).astype(float))

    def sample_real(self, rngs):
        return self._flip(self.config.p, self.config.T, rngs)

    def synthesize(self, model, inputs, n, rngs):
        return self._flip(model.p_, n, rngs)

    def fit(self, training, rngs):
        flips = training.rows("flips")  # (R, n): the rows the workflow chose
        weights = np.broadcast_to(training.row_weights(), flips.shape)
        return Coin((flips * weights).sum(axis=1) / weights.sum(axis=1))

    def evaluate(self, model, real):
        return {"squared_error": (model.p_ - self.config.p) ** 2}

    def theory(self, workflow, generations):
        if workflow.name != "replace":
            return Theory(note=f"no closed form for {workflow.name!r} in this example")
        # E p̂_g(1 - p̂_g) shrinks by (1 - 1/T) per generation; each generation adds it / T to the error.
        p, T = self.config.p, self.config.T
        s = np.arange(generations + 1)
        values = np.cumsum(p * (1 - p) * (1 - 1 / T) ** s / T)
        return Theory([TheoryCurve("squared_error", values, "exact", "binomial resampling (Wright-Fisher drift)")])
