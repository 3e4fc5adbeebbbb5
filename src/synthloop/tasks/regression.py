"""Iterated linear regression (Dohmatob, Feng & Kempe 2024; Gerstgrasser et al. 2024; Kazdan et al. 2024).

Ground truth: ``x ~ N(0, Σ)``, ``y = xᵀw* + ε``, ``ε ~ N(0, σ²)``, with ``Σ`` isotropic or with a
power-law spectrum ``λ_j = j^-β`` and ``w*`` a random vector of norm ``w_norm``. Each
generation labels inputs with the previous model plus noise ``σ0`` and the next model is fit
by least squares — OLS (minimum-norm, as ``pinv`` gives, when ``T ≤ d``) or ridge with
``(XᵀX + nλI) w = Xᵀy`` for a training set of ``n`` rows. The metric is the excess test risk
``‖ŵ − w*‖²_Σ``, computed exactly from ``Σ`` rather than on a sampled test set.

Two designs:

* ``fixed`` — one ``X`` per replicate, relabelled every generation (the Collapse-or-Thrive code).
  Every source shares ``X``, so a whole-source mixture is fit from the weighted mean label
  vector with an operator ``(XᵀX + TλI)⁺Xᵀ`` computed once: a generation costs ``O(R T d)``
  under replace and accumulate alike.
* ``random`` — fresh inputs every generation. Sources keep ``XᵀX`` and ``Xᵀy`` (additive),
  so accumulate updates running sums instead of refitting on the concatenated data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from scipy.linalg import blas

from .. import seeding
from ..pool import TrainingSet
from ..theory import regression as theory
from ..theory import workflows as mixture_theory
from ..validation import Integer, Real
from ..workflows import Workflow
from .base import Task, TaskConfig, Theory, TheoryCurve


class RegressionConfig(TaskConfig):
    name: Literal["regression"] = "regression"
    d: Integer(1, 100_000) = 10
    T: Integer(1, 10_000_000) = 100
    T0: Integer(1, 10_000_000) | None = None
    sigma: Real(0) = 1.0
    sigma0: Real(0) | None = None
    design: Literal["fixed", "random"] = "fixed"
    spectrum: Literal["isotropic", "power-law"] = "isotropic"
    beta: Real(0, lo_open=True) = 1.0
    ridge: Real(0) = Field(default=0.0, description="ridge λ (per row: XᵀX + nλI); with ridge_exponent, λ0 of λ = λ0·T^-ℓ")
    ridge_exponent: Real(0) | None = Field(
        default=None, description="adaptive ridge (Dohmatob et al. 2024): λ = ridge · T^-ridge_exponent, T the real sample size"
    )
    w_norm: Real(0, lo_open=True) = 1.0
    label_tolerance: Real(0, lo_open=True) = Field(
        default=1.0, description="a synthetic label y counts as correct when |y − xᵀw*| ≤ label_tolerance (for verifiers)"
    )

    @model_validator(mode="after")
    def _fixed_design_size(self):
        if self.design == "fixed" and self.T0 is not None and self.T0 != self.T:
            raise ValueError(
                f"T0 must equal T={self.T} under design='fixed' (the same X is relabelled every "
                f"generation); got T0={self.T0}. Use design='random' for a different synthetic size"
            )
        return self

    @model_validator(mode="after")
    def _adaptive_ridge(self):
        if self.ridge_exponent is not None and self.ridge == 0:
            raise ValueError(
                f"ridge_exponent needs ridge > 0 (λ0 of the adaptive ridge λ = λ0·T^-ℓ); got ridge=0, "
                f"ridge_exponent={self.ridge_exponent:g}"
            )
        return self

    @property
    def synthetic_T(self) -> int:
        return self.T if self.T0 is None else self.T0

    @property
    def penalty(self) -> float:
        """The ridge λ every fit uses: ``ridge``, or ``ridge · T^-ridge_exponent`` (adaptive)."""
        if self.ridge_exponent is None:
            return self.ridge
        return self.ridge * self.T ** -self.ridge_exponent

    @property
    def synthetic_sigma(self) -> float:
        return self.sigma if self.sigma0 is None else self.sigma0


@dataclass
class RegressionData:
    """Rows of one source. ``x`` is None for synthetic rows of a fixed design (they reuse the real X)."""

    y: np.ndarray  # (R, n)
    x: np.ndarray | None = None  # (R, n, d)


@dataclass
class RealRegressionData(RegressionData):
    """The real data with the ground truth and, under a fixed design, the fitting operator."""

    w_star: np.ndarray | None = None  # (R, d)
    operator: np.ndarray | None = None  # (R, d, T): (XᵀX + TλI)⁺Xᵀ


@dataclass
class LabelSums:
    """Fixed-design statistics: weighted sum of label vectors over sources, and the total weight."""

    y: np.ndarray  # (R, T)
    weight: float

    def __add__(self, other):
        return LabelSums(self.y + other.y, self.weight + other.weight)

    def __mul__(self, c: float):
        return LabelSums(self.y * c, self.weight * c)


@dataclass
class GramStats:
    """Random-design statistics: XᵀX, Xᵀy and the (weighted) row count."""

    gram: np.ndarray  # (R, d, d)
    xty: np.ndarray  # (R, d)
    count: float

    def __add__(self, other):
        return GramStats(self.gram + other.gram, self.xty + other.xty, self.count + other.count)

    def __mul__(self, c: float):
        return GramStats(self.gram * c, self.xty * c, self.count * c)


@dataclass
class LinearModel:
    coef_: np.ndarray  # (R, d)


def min_norm_solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``pinv(G) b`` for stacked symmetric PSD ``G`` (R, d, d): the minimum-norm least-squares solution."""
    vals, vecs = np.linalg.eigh(gram)  # (R, d), (R, d, d)
    cutoff = max(gram.shape[-1], 1) * np.finfo(float).eps * vals[:, -1:] * 10
    inv = np.where(vals > cutoff, 1.0 / np.where(vals > cutoff, vals, 1.0), 0.0)
    return np.einsum("rij,rj->ri", vecs, inv * np.einsum("rji,rj->ri", vecs, rhs))


def weighted_gram(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``Xᵀ diag(c) X`` per replicate: one batched matmul for small ``d``; for larger ``d`` a BLAS
    syrk per replicate over the rows with ``c > 0`` (half a matmul's work, measured 2× faster at d=100)."""
    R, _, d = x.shape
    if d <= 32:
        return np.matmul(x.transpose(0, 2, 1) * counts[:, None, :], x)
    gram = np.empty((R, d, d))
    for r in range(R):
        rows = counts[r] > 0
        upper = blas.dsyrk(1.0, x[r, rows] * np.sqrt(counts[r, rows])[:, None], trans=1)
        gram[r] = upper + np.triu(upper, 1).T
    return gram


class RegressionTask(Task):
    Config = RegressionConfig
    primary_metric = "excess_risk"
    metric_labels = {"excess_risk": "excess test risk ‖ŵ − w*‖²_Σ (Σ-norm, units of y²)"}

    def __init__(self, config: RegressionConfig):
        super().__init__(config)
        d = config.d
        self.spectrum_ = np.ones(d) if config.spectrum == "isotropic" else np.arange(1, d + 1, dtype=float) ** -config.beta

    @property
    def real_size(self) -> int:
        return self.config.T

    @property
    def synthetic_size(self) -> int:
        return self.config.synthetic_T

    def synthetic_capacity(self):
        if self.config.design == "fixed":
            return self.config.T, f"task.design='fixed' relabels the task.T={self.config.T} real inputs"
        return None

    def _inputs(self, n: int, rngs) -> np.ndarray:
        scale = np.sqrt(self.spectrum_)
        x = seeding.standard_normal(rngs, (n, self.config.d))  # (R, n, d)
        return x if self.config.spectrum == "isotropic" else x * scale

    def _labels(self, x: np.ndarray, coef: np.ndarray, sigma: float, rngs) -> np.ndarray:
        noise = seeding.standard_normal(rngs, (x.shape[1],))  # (R, n)
        return np.einsum("rnd,rd->rn", x, coef) + sigma * noise

    def sample_real(self, rngs) -> RealRegressionData:
        c = self.config
        w_star = seeding.standard_normal(rngs, (c.d,))
        w_star *= c.w_norm / np.linalg.norm(w_star, axis=1, keepdims=True)  # (R, d)
        x = self._inputs(c.T, rngs)
        y = self._labels(x, w_star, c.sigma, rngs)
        operator = None
        if c.design == "fixed":
            u, s, vt = np.linalg.svd(x, full_matrices=False)  # (R, T, k), (R, k), (R, k, d)
            if c.penalty > 0:
                gain = s / (s**2 + c.T * c.penalty)
            else:
                keep = s > s[:, :1] * max(x.shape[1:]) * np.finfo(float).eps
                gain = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
            operator = np.einsum("rkd,rk,rtk->rdt", vt, gain, u)
        return RealRegressionData(y=y, x=x, w_star=w_star, operator=operator)

    def sample_inputs(self, real: RealRegressionData, n: int, rngs) -> np.ndarray:
        return real.x if self.config.design == "fixed" else self._inputs(n, rngs)

    def synthesize(self, model: LinearModel, inputs: np.ndarray, n: int, rngs) -> RegressionData:
        y = self._labels(inputs, model.coef_, self.config.synthetic_sigma, rngs)
        return RegressionData(y=y, x=None if self.config.design == "fixed" else inputs)

    def synthesize_candidates(self, model: LinearModel, inputs: np.ndarray, n: int, k: int, rngs) -> RegressionData:
        """``k`` independent noisy labels ``xᵀŵ + σ0·ε`` for every input (random design)."""
        return self.synthesize(model, np.repeat(inputs, k, axis=1), n * k, rngs)

    def label_distance(self, data: RegressionData, real: RealRegressionData) -> np.ndarray:
        return np.abs(data.y - np.einsum("rnd,rd->rn", data.x, real.w_star))

    def correct(self, data: RegressionData, real: RealRegressionData) -> np.ndarray:
        return self.label_distance(data, real) <= self.config.label_tolerance

    def verification_problem(self):
        if self.config.design == "fixed":
            return "task.design='fixed' relabels every row of one X; filtering rows needs task.design='random'"
        return None

    def statistics(self, data: RegressionData):
        if self.config.design == "fixed":
            return LabelSums(data.y, 1.0)
        return GramStats(np.matmul(data.x.transpose(0, 2, 1), data.x), np.einsum("rni,rn->ri", data.x, data.y), float(data.y.shape[1]))

    def fit(self, training: TrainingSet, rngs) -> LinearModel:
        c = self.config
        real: RealRegressionData = training.pool.real.data
        if training.is_weighted:
            stats = training.statistics()
            if c.design == "fixed":
                return LinearModel(np.einsum("rdt,rt->rd", real.operator, stats.y / stats.weight))
            return LinearModel(self._solve(stats.gram, stats.xty, stats.count, full_rank=stats.count >= c.d))
        if c.design == "fixed":
            return LinearModel(self._fit_fixed_design_rows(training, real))
        x, y = training.rows("x"), training.rows("y")
        gram, xty = np.matmul(x.transpose(0, 2, 1), x), np.einsum("rni,rn->ri", x, y)
        return LinearModel(self._solve(gram, xty, y.shape[1], full_rank=y.shape[1] >= c.d))

    def _fit_fixed_design_rows(self, training: TrainingSet, real: RealRegressionData) -> np.ndarray:
        """Fit on rows drawn from several relabellings of one X, via counts and label sums per X row.

        Duplicated rows only reweight the least-squares problem ``Σ_i c_i (x_iᵀw − ȳ_i)²``. With
        Gaussian rows, ``m`` distinct rows have rank ``min(m, d)`` almost surely: when ``m ≥ d``
        the weighted Gram matrix is invertible, otherwise the minimum-norm solution interpolates
        the distinct rows' mean labels, ``X_sᵀ(X_s X_sᵀ)⁻¹ȳ_s``, whatever the weights.
        """
        x, d = real.x, self.config.d  # (R, T, d)
        R, T = real.y.shape
        flat = (np.arange(R)[:, None] * T + training.local_rows()).ravel()
        counts = np.bincount(flat, minlength=R * T).reshape(R, T).astype(float)
        sums = np.bincount(flat, weights=training.rows("y").ravel(), minlength=R * T).reshape(R, T)
        n = training.mixture.rows.shape[1]
        coef = np.empty((R, d))
        full = (counts > 0).sum(axis=1) >= d if self.config.penalty == 0 else np.ones(R, bool)
        if full.all():  # the common case: no copy of the (R, T, d) design
            return self._solve(weighted_gram(x, counts), np.einsum("rti,rt->ri", x, sums), n, full_rank=True)
        if full.any():
            gram = weighted_gram(x[full], counts[full])
            coef[full] = self._solve(gram, np.einsum("rti,rt->ri", x[full], sums[full]), n, full_rank=True)
        if not full.all():
            xs, seen = x[~full], counts[~full] > 0  # (R', T, d), (R', T)
            kernel = np.matmul(xs, xs.transpose(0, 2, 1)) * (seen[:, :, None] & seen[:, None, :])
            kernel[:, np.arange(T), np.arange(T)] += ~seen  # unseen rows: identity, zero target
            target = np.where(seen, sums[~full] / np.where(seen, counts[~full], 1.0), 0.0)
            alpha = np.linalg.solve(kernel, target[..., None])[..., 0]
            coef[~full] = np.einsum("rti,rt->ri", xs, alpha)
        return coef

    def _solve(self, gram, xty, n, full_rank: bool) -> np.ndarray:
        if self.config.penalty > 0:
            return np.linalg.solve(gram + n * self.config.penalty * np.eye(self.config.d), xty[..., None])[..., 0]
        if full_rank:
            return np.linalg.solve(gram, xty[..., None])[..., 0]
        return min_norm_solve(gram, xty)

    def evaluate(self, model: LinearModel, real: RealRegressionData) -> dict[str, np.ndarray]:
        error = model.coef_ - real.w_star  # (R, d)
        return {"excess_risk": error**2 @ self.spectrum_}

    def describe(self) -> str:
        c = self.config
        parts = [f"d={c.d}", f"T={c.T}"] + ([f"T0={c.T0}"] if c.T0 is not None else [])
        parts += [f"σ={c.sigma:g}"] + ([f"σ0={c.sigma0:g}"] if c.sigma0 is not None else [])
        if c.ridge_exponent is not None:
            ridge = f"adaptive ridge λ={c.ridge:g}·T^-{c.ridge_exponent:g}={c.penalty:.3g}"
        else:
            ridge = "OLS" if c.ridge == 0 else f"ridge λ={c.ridge:g}"
        parts += [f"{c.design} design", ridge]
        if c.spectrum == "power-law":
            parts.append(f"Σ spectrum j^-{c.beta:g}")
        return "regression: " + ", ".join(parts)

    def theory(self, workflow: Workflow, generations: int) -> Theory:
        c = self.config
        d, T, T0, sigma, sigma0 = c.d, c.T, c.synthetic_T, c.sigma, c.synthetic_sigma
        if c.penalty > 0:
            spectrum = None if c.spectrum == "isotropic" else self.spectrum_
            if c.design == "fixed" and not workflow.reads_rows:
                # Exact given X (per-eigendirection recursions); averaged over random designs.
                alpha = np.zeros((generations + 1, generations + 1))
                for k in range(generations + 1):
                    alpha[k, : k + 1] = workflow.compose(np.full(k + 1, T), k, []).weights
                draws = 1000
                mc = theory.ridge_mixture_risk_fixed_design(alpha, d, T, sigma, c.penalty, sigma0=sigma0, w_norm=c.w_norm,
                                                            spectrum=spectrum, draws=draws, seed=0)
            elif c.design == "random" and workflow.name in ("replace", "accumulate", "growing"):
                # O(draws · G · d³), about 10 d³ flops per design and generation: aim at ~2·10⁹ flops, 100 to 1000 designs.
                draws = int(np.clip(2e8 / ((generations + 1) * d**3), 100, 1000))
                mc = theory.ridge_risk_random_design(generations, d, T, sigma, c.penalty, workflow=workflow.name, T0=T0,
                                                     sigma0=sigma0, w_norm=c.w_norm, spectrum=spectrum, draws=draws, seed=0)
            else:
                why = "it draws individual rows" if workflow.reads_rows else "only replace, accumulate and growing are covered"
                return Theory(note=f"no ridge (λ > 0) theory for the {workflow.name!r} workflow on a {c.design} design: {why}")
            source = f"Monte Carlo over {draws} designs; exact given the design (synthloop.theory.regression, ridge)"
            curves = [TheoryCurve("excess_risk", np.array(mc.mean), "numerical", source)]
            if c.ridge_exponent is not None and c.spectrum == "power-law" and workflow.name == "replace":
                rate = theory.adaptive_ridge_risk_rate(np.arange(generations + 1), d, T, sigma, c.ridge_exponent, c.beta,
                                                       r=0.5, T0=T0, sigma0=sigma0)
                curves.append(TheoryCurve("excess_risk", rate, "asymptotic",
                                          "Dohmatob et al. 2024 scaling law for adaptive ridge, source r = 1/2 (‖w*‖ bounded); a rate, up to constants"))
            return Theory(curves)
        if T <= d + 1 or (T0 <= d + 1 and workflow.name != "accumulate"):
            return Theory(note=f"T ≤ d + 1 (d={d}, T={T}, T0={T0}): least squares interpolates; OLS theory needs T ≥ d + 2")
        g = np.arange(generations + 1)
        if workflow.name == "replace":
            values = theory.ols_replace_risk(g, d, T, sigma, T0=T0, sigma0=sigma0)
            return Theory([TheoryCurve("excess_risk", values, "exact", "Dohmatob et al. 2024 (finite-sample form); Gerstgrasser et al. 2024")])
        if workflow.name == "growing":
            values = theory.ols_growing_risk(g, d, T, sigma, T0=T0, sigma0=sigma0)
            return Theory([TheoryCurve("excess_risk", values, "exact", "Dohmatob et al. 2024, growing synthetic data")])
        if workflow.name == "accumulate":
            if c.design == "fixed":
                curves = [TheoryCurve("excess_risk", theory.ols_accumulate_risk_fixed_design(g, d, T, sigma, sigma0=sigma0), "exact", "Gerstgrasser et al. 2024, fixed design")]
            else:
                values = theory.ols_accumulate_risk_random_design_closed_form(g, d, T, sigma, T0=T0, sigma0=sigma0)
                curves = [TheoryCurve("excess_risk", values, "exact", "recursive least squares, derived in synthloop.theory.regression")]
            if T0 == T:
                bound = np.full(generations + 1, theory.ols_accumulate_bound(d, T, sigma, sigma0=sigma0))
                curves.append(TheoryCurve("excess_risk", bound, "bound", "Gerstgrasser et al. 2024, π²/6 bound"))
            return Theory(curves)
        if c.design == "fixed" and not workflow.reads_rows:
            # Any whole-source mixture on one fixed design follows Dey & Donoho's recursion exactly.
            alpha = np.zeros((generations + 1, generations + 1))
            for k in range(generations + 1):
                alpha[k, : k + 1] = workflow.compose(np.full(k + 1, T), k, []).weights
            variances = np.full(generations + 1, sigma0**2 * d / (T - d - 1))
            variances[0] = sigma**2 * d / (T - d - 1)
            values = mixture_theory.mixture_risk(alpha, variances)
            return Theory([TheoryCurve("excess_risk", values, "exact", "Dey & Donoho 2024 mixture recursion (exact for a fixed design)")])
        return Theory(note=f"no closed form for the {workflow.name!r} workflow on a {c.design} design")
