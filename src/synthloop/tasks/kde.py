"""Iterated Gaussian kernel density estimation on 2-D toy data (Kazdan et al. 2024, "Collapse or Thrive").

Ground truth: one of scikit-learn's 2-D dataset makers — ``blobs`` (three isotropic Gaussian
clusters with centres drawn in ``[-10, 10]²``), ``moons``, ``circles`` or ``swiss-roll`` (the
``(x, z)`` projection of ``make_swiss_roll``). Each replicate draws one integer seed from its own
generator and calls the maker once for ``T + test_size`` points, which are split at random into
``T`` training and ``test_size`` (default 500) held-out test points: train and test come from the
same distribution, and for ``blobs`` share the same centres.

Model: a Gaussian KDE ``p̂(x) = Σ_i w_i N(x; x_i, h²I) / Σ_i w_i`` over the training rows. Fitting
keeps the rows; under a weighted mixture of sources (Dey & Donoho's weights) every row of source
``j`` enters the density, and the sampler, with weight ``w_j``. Synthesis draws ``T0`` points
(default ``T``): pick a training row with probability proportional to its weight, add
``N(0, h²I)`` noise. The metric ``nll`` is the mean negative log-likelihood of the real test
points under the KDE, computed with a log-sum-exp over the training rows.

Bandwidth: a positive number (default 0.75, as in the paper), or ``"scott"`` / ``"silverman"``
recomputed on each generation's training set. The rules use the factors of
``scipy.stats.gaussian_kde`` — Scott ``n_eff^(-1/(d+4))``, Silverman ``(n_eff (d+2)/4)^(-1/(d+4))``
with ``n_eff = (Σw)²/Σw²`` — times the data's scale; since the kernel here is isotropic, that
scale is the root mean per-axis variance, ``h² = factor² · tr(Ĉ)/d`` with ``Ĉ`` the (weighted,
unbiased) sample covariance that scipy uses. Note that scikit-learn's ``KernelDensity``, which
Kazdan et al. used, applies the bare factor without the data's scale; to reproduce that, give the
number ``n^(-1/6)`` (0.473 for T = 89) as the bandwidth.

Cost: with a numeric bandwidth, the kernel sums of each source at the test points are additive
over sources. They are computed once per source (the first time a fit uses it) and cached on the
source, so an accumulate generation costs ``O(T0 · test_size)`` rather than a pass over every row
accumulated so far. Data-driven bandwidths change every generation and are evaluated on all rows.

Dataset noise: ``noise`` is the makers' ``noise`` (moons, circles, swiss-roll; default 0, as
scikit-learn and the authors' code use) or the clusters' standard deviation for ``blobs``
(default 1). ``circles`` uses scikit-learn's default ``factor = 0.8``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator

from ..pool import TrainingSet
from ..validation import Integer, Real
from ..workflows import Workflow
from .base import Task, TaskConfig, Theory

DATASETS = ("blobs", "moons", "circles", "swiss-roll")
RULES = ("scott", "silverman")
#: elements of one (replicates × test points × rows) block of squared distances
_BLOCK = 4_000_000


def _bandwidth(value: Any):
    if isinstance(value, str) and value in RULES:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a number > 0 or one of {RULES}")
    return float(value)


Bandwidth = Annotated[float | str, BeforeValidator(_bandwidth)]


class KDEConfig(TaskConfig):
    name: Literal["kde"] = "kde"
    dataset: Literal["blobs", "moons", "circles", "swiss-roll"] = "moons"
    T: Integer(2, 10_000_000) = 89
    T0: Integer(1, 10_000_000) | None = None
    test_size: Integer(1, 10_000_000) = 500
    bandwidth: Bandwidth = 0.75
    noise: Real(0) | None = None

    @property
    def synthetic_T(self) -> int:
        return self.T if self.T0 is None else self.T0

    @property
    def dataset_noise(self) -> float:
        if self.noise is not None:
            return self.noise
        return 1.0 if self.dataset == "blobs" else 0.0


@dataclass
class KDEData:
    """Rows of one source, and (numeric bandwidth) a cache of their kernel sums at the test points."""

    x: np.ndarray  # (R, n, 2)
    test_log_kernel: np.ndarray | None = None  # (R, m): log Σ_i exp(-‖t - x_i‖² / 2h²)


@dataclass
class RealKDEData(KDEData):
    """The real training rows and the held-out real test points."""

    test: np.ndarray | None = None  # (R, m, 2)


@dataclass
class KDEModel:
    """A fitted KDE per replicate: its centres, their weights and bandwidth, and its log-density at the test points."""

    centers: np.ndarray  # (R, n, 2)
    weights: np.ndarray | None  # (n,) or (R, n) mixture weights of the rows; None: uniform
    h: np.ndarray  # (R,)
    test_log_density: np.ndarray  # (R, m)


def make_dataset(name: str, n: int, noise: float, seed: int) -> np.ndarray:
    """``n`` points of a scikit-learn 2-D dataset, shuffled, shape ``(n, 2)``."""
    from sklearn import datasets

    if name == "blobs":
        x = datasets.make_blobs(n_samples=n, n_features=2, centers=3, cluster_std=noise, random_state=seed)[0]
    elif name == "moons":
        x = datasets.make_moons(n_samples=n, noise=noise, random_state=seed)[0]
    elif name == "circles":
        x = datasets.make_circles(n_samples=n, noise=noise, random_state=seed)[0]
    elif name == "swiss-roll":
        x = datasets.make_swiss_roll(n_samples=n, noise=noise, random_state=seed)[0][:, [0, 2]]
    else:
        raise ValueError(f"unknown dataset {name!r}")
    return np.asarray(x, dtype=float)


def log_kernel_sums(points: np.ndarray, centers: np.ndarray, h: np.ndarray, log_weights: np.ndarray | None = None) -> np.ndarray:
    """``log Σ_i w_i exp(-‖t - c_i‖² / 2h²)`` for every point ``t``, shape ``(R, m)``.

    ``points`` (R, m, d), ``centers`` (R, n, d), ``h`` (R,), ``log_weights`` None (all 1), (n,)
    or (R, n). Squared distances come from ``‖t‖² + ‖c‖² − 2tᵀc`` (one batched matmul), in
    blocks of replicates and points that bound the memory.
    """
    R, m, _ = points.shape
    n = centers.shape[1]
    out = np.empty((R, m))
    p_norm = np.einsum("rmd,rmd->rm", points, points)
    c_norm = np.einsum("rnd,rnd->rn", centers, centers)
    if log_weights is not None and log_weights.ndim == 1:
        log_weights = np.broadcast_to(log_weights, (R, n))
    rows = max(1, _BLOCK // max(n, 1))  # points per block
    reps = max(1, rows // m)
    for r0 in range(0, R, reps):
        rs = slice(r0, min(R, r0 + reps))
        scale = (-0.5 / h[rs] ** 2)[:, None, None]
        for m0 in range(0, m, rows):
            ms = slice(m0, min(m, m0 + rows))
            e = np.matmul(points[rs, ms], centers[rs].transpose(0, 2, 1))  # (r, m', n)
            e *= -2.0
            e += p_norm[rs, ms, None]
            e += c_norm[rs, None, :]
            np.maximum(e, 0.0, out=e)
            e *= scale
            if log_weights is not None:
                e += log_weights[rs, None, :]
            peak = e.max(axis=2, keepdims=True)
            np.exp(e - peak, out=e)
            out[rs, ms] = np.log(e.sum(axis=2)) + peak[..., 0]
    return out


def rule_bandwidth(x: np.ndarray, rule: str, weights: np.ndarray | None = None) -> np.ndarray:
    """Scott or Silverman bandwidth of an isotropic Gaussian kernel per replicate, shape ``(R,)``.

    ``h = factor · sqrt(tr(Ĉ)/d)`` with scipy's ``gaussian_kde`` factor (from the effective sample
    size ``(Σw)²/Σw²``) and its covariance ``Ĉ`` (``np.cov`` with ``aweights``, unbiased).
    ``x`` (R, n, d); ``weights`` None, (n,) or (R, n).
    """
    R, n, d = x.shape
    w = np.ones((R, n)) if weights is None else np.broadcast_to(np.asarray(weights, float), (R, n))
    w = w / w.sum(axis=1, keepdims=True)
    sum_sq = (w**2).sum(axis=1)  # (R,) = 1 / n_eff
    mean = np.einsum("rn,rnd->rd", w, x)
    spread = np.einsum("rn,rnd->r", w, (x - mean[:, None, :]) ** 2)  # Σ_k weighted variance (biased)
    trace = spread / (1.0 - sum_sq)
    n_eff = 1.0 / sum_sq
    if rule == "scott":
        factor = n_eff ** (-1.0 / (d + 4))
    elif rule == "silverman":
        factor = (n_eff * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    else:
        raise ValueError(f"unknown bandwidth rule {rule!r}")
    return factor * np.sqrt(trace / d)


class KDETask(Task):
    Config = KDEConfig
    primary_metric = "nll"
    metric_labels = {"nll": "test NLL: mean −log p̂(x) of held-out real points (nats)"}

    @property
    def real_size(self) -> int:
        return self.config.T

    @property
    def synthetic_size(self) -> int:
        return self.config.synthetic_T

    @property
    def fixed_bandwidth(self) -> float | None:
        return None if isinstance(self.config.bandwidth, str) else float(self.config.bandwidth)

    def sample_real(self, rngs) -> RealKDEData:
        c = self.config
        n = c.T + c.test_size
        points = np.empty((len(rngs), n, 2))
        for rng, out in zip(rngs, points):
            seed = int(rng.integers(0, 2**32 - 1))
            out[:] = make_dataset(c.dataset, n, c.dataset_noise, seed)[rng.permutation(n)]
        return RealKDEData(x=points[:, : c.T].copy(), test=points[:, c.T :].copy())

    def synthesize(self, model: KDEModel, inputs, n: int, rngs) -> KDEData:
        R, rows, d = model.centers.shape
        x = np.empty((R, n, d))
        for r, rng in enumerate(rngs):
            if model.weights is None:
                pick = rng.integers(0, rows, size=n)
            else:
                w = model.weights if model.weights.ndim == 1 else model.weights[r]
                pick = rng.choice(rows, size=n, p=w / w.sum())
            x[r] = model.centers[r, pick] + model.h[r] * rng.standard_normal((n, d))
        return KDEData(x=x)

    def _source_kernel(self, data: KDEData, test: np.ndarray, h: np.ndarray) -> np.ndarray:
        """The source's kernel sums at the test points (fixed bandwidth), cached on the source."""
        if data.test_log_kernel is None:
            data.test_log_kernel = log_kernel_sums(test, data.x, h)
        return data.test_log_kernel

    def fit(self, training: TrainingSet, rngs) -> KDEModel:
        real: RealKDEData = training.pool.real.data
        centers = training.rows("x")  # (R, n, 2)
        R, n, d = centers.shape
        weights = None
        if training.is_weighted:
            used = np.flatnonzero(training.mixture.weights)
            if not np.all(training.mixture.weights[used] == training.mixture.weights[used[0]]):
                weights = training.row_weights()  # (n,)
        fixed = self.fixed_bandwidth
        if fixed is not None:
            h = np.full(R, fixed)
        elif n < 2:
            raise ValueError(f"task.bandwidth={self.config.bandwidth!r} needs at least 2 training rows; this workflow trains on {n}")
        else:
            h = rule_bandwidth(centers, self.config.bandwidth, weights)
        if fixed is not None and training.is_weighted:
            # Additive over sources: log Σ_j w_j S_j(t), with S_j the source's cached kernel sums.
            mix = training.mixture.weights
            terms = np.stack([np.log(mix[j]) + self._source_kernel(training.pool.sources[j].data, real.test, h) for j in used])
            peak = terms.max(axis=0)
            log_sum = peak + np.log(np.exp(terms - peak).sum(axis=0))
            total = float((mix[used] * training.pool.sizes[used]).sum())
        else:
            log_w = None if weights is None else np.log(weights)
            log_sum = log_kernel_sums(real.test, centers, h, log_w)
            total = float(n) if weights is None else float(weights.sum())
        log_density = log_sum - math.log(total) - 0.5 * d * np.log(2 * np.pi * h[:, None] ** 2)
        return KDEModel(centers=centers, weights=weights, h=h, test_log_density=log_density)

    def log_density(self, model: KDEModel, points: np.ndarray) -> np.ndarray:
        """``log p̂(x)`` of the fitted KDE at ``points`` (R, m, 2), shape ``(R, m)``."""
        R, n, d = model.centers.shape
        log_w = None if model.weights is None else np.log(model.weights)
        total = float(n) if model.weights is None else model.weights.sum(axis=-1)
        return log_kernel_sums(points, model.centers, model.h, log_w) - np.reshape(np.log(total), (-1, 1)) - 0.5 * d * np.log(2 * np.pi * model.h[:, None] ** 2)

    def evaluate(self, model: KDEModel, real: RealKDEData) -> dict[str, np.ndarray]:
        return {"nll": -model.test_log_density.mean(axis=1)}

    def theory(self, workflow: Workflow, generations: int) -> Theory:
        return Theory(note="no closed form for iterated KDE (Kazdan et al. 2024: simulations only)")

    def describe(self) -> str:
        c = self.config
        bandwidth = c.bandwidth if isinstance(c.bandwidth, str) else f"h={c.bandwidth:g}"
        parts = [c.dataset, f"T={c.T}"] + ([f"T0={c.T0}"] if c.T0 is not None else [])
        parts += [f"{c.test_size} test points", f"Gaussian kernel, {bandwidth}"]
        if c.noise is not None:
            parts.append(f"noise={c.noise:g}")
        return "kde: " + ", ".join(parts)
