"""Synthesized labels with verification in a Gaussian mixture (Feng et al. 2024, Section 4).

Ground truth: ``x | y ~ N(y·τ·w*, I_d/d)``, ``y ∈ {−1, +1}`` uniform, ``w*`` a random unit
vector per replicate (``τ = 0.15``, ``d = 50`` by default).

* Generation 0 is the *generator*: least squares on the ``N0`` real samples,
  ``w_gen = argmin ‖Xw − y‖²`` (batched over replicates). With ``theta_gen`` set, the generator is
  instead the unit vector at angle ``theta_gen`` to ``w*`` (a random direction in the orthogonal
  complement), and the real samples are not used for it.
* Generation ``g ≥ 1`` draws ``T0`` fresh inputs from the mixture, keeps their true labels ``y``
  as hidden ground truth, and labels them with the previous model:
  ``y′ = +1`` with probability ``sigmoid(β·xᵀŵ)``, ``ŵ = w/‖w‖`` (else ``−1``). The score is
  normalized so that ``β`` does not depend on the scale of the fit; ``xᵀŵ`` is of order
  ``sqrt(τ² + 1/d) ≈ 0.2``, so the default ``β = 100`` gives labels that are nearly
  ``sign(xᵀw)`` (about 2% extra flips near the boundary at the defaults). ``label_beta = None``
  gives exactly ``y′ = sign(xᵀw)`` (``β → ∞``), the setting of the paper's pruner analysis.
  The downstream model is ridge-regularized logistic regression without intercept,
  ``min_w (1/N) Σ a_i [log(1 + e^{z_i}) − t_i z_i] + (λ/2)‖w‖²`` with ``z = xᵀw``,
  ``t = (y′ + 1)/2`` and row weights ``a`` (the workflow's), solved by batched Newton steps (IRLS)
  with backtracking. A training set made of the real source only is fit by the generator;
  any other training set by the downstream fit.

Verification: :meth:`MixtureTask.correct` is ``y′ == y`` (the hidden truth), so the ``oracle``
and ``rlhf`` verifiers work and the loop records ``p``, ``φ``, ``ψ`` and ``p*``.
:meth:`MixtureTask.judge` is the paper's supervised pruner ``1[y′·xᵀw_prune > 0]`` with
``w_prune`` a unit vector at angle ``theta_prune`` to ``w*`` (drawn with the real data).

Metrics are exact rather than sampled: given ``y = +1``, ``xᵀw = τ w·w* + ‖w‖Z/√d``, so a linear
classifier errs with probability ``Φ(−τ √d cos∠(w, w*))`` (the ``y = −1`` case mirrors it):
``accuracy = 1 − Φ(−τ √d cos∠(w, w*))``; ``bayes_accuracy`` is the same at ``w = w*``.

Selection curves (Feng et al.'s Figure 3): with ``curve_sizes`` set, every fit on synthetic data
also fits the downstream model on the first ``n′`` rows of the newest generation that each of
several selections keeps — ``oracle`` (``y′ = y``), ``random`` (every row), one supervised
pruner per angle in ``curve_pruners`` (``y′·xᵀw_prune > 0``) — and ``clean`` (the same inputs
with their true labels: ``n′`` fresh real samples), for each ``n′`` in ``curve_sizes``. The
metric ``"<selection>@<n′>"`` is the test error of that fit relative to the Bayes error,
``(1 − accuracy)/(1 − bayes_accuracy)`` (1 is optimal); it is NaN in a replicate where fewer
than ``n′`` rows pass. The rows are i.i.d., so the first ``n′`` passing rows are a uniform draw
of them. The run's figure then shows these curves against ``n′`` (``synthloop.report.curve_figure``).

Breakdown curves (Feng et al.'s Figure 2): with ``curve_flip_rates`` set, every fit on synthetic
data also trains the downstream model, for each generator error ``p`` in ``curve_flip_rates`` and
each parametrized pruner ``(φ, ψ)`` in ``curve_rlhf``, on the newest generation's inputs with
their true labels flipped with probability ``p`` independently of ``x`` (the symmetric label
noise of the paper's theorem), of which a correct row is kept with probability ``φ`` and a wrong
one with probability ``ψ`` (a fit weighted by the kept indicator). The metric
``"φ=…, ψ=…@<p>"`` is its accuracy. Theory: with ``p′ = pψ/(pψ + (1 − p)φ)`` the kept labels
are flipped at rate ``p′`` independently of ``x``, so the population logistic fit points along
``+w*`` when ``p′ < 1/2`` and along ``−w*`` when ``p′ > 1/2``: as the synthetic data grow the
accuracy tends to the Bayes accuracy for ``p < p* = φ/(φ + ψ)`` and to one minus it above —
the 100%/0% regime of :func:`synthloop.theory.verification.asymptotic_accuracy` for a mixture
whose Bayes accuracy is below 100%. That limit is drawn as an asymptotic theory curve, with
``p*`` marked.

Supervised-pruner curves (Feng et al.'s Figure 5): with ``curve_generator_angles`` set, the
same, with the paper's linear generator and pruner instead of label noise: for each angle
``θ_gen`` a generator ``w_gen`` labels the newest generation's inputs ``y′ = sign(xᵀw_gen)``
(error ``p = Φ(−τ√d cos θ_gen)``), and each pruner of ``curve_pruners`` keeps the rows with
``y′·xᵀw_prune > 0``; ``w_gen`` and every ``w_prune`` lie in one plane with ``w*``, on the same
side, so ``θ = |θ_gen − θ_prune|`` and :func:`~synthloop.theory.verification.supervised_pruner_rates`
gives their ``φ``, ``ψ`` and ``p*`` exactly. The metric ``"supervised pruner <angle>°@<p>"`` is
the accuracy of the fit on the kept rows. The theory curve is the regime the breakdown point
predicts (Bayes accuracy where ``p < p*``, one minus it above); unlike label noise, these errors
depend on ``x``, so it is the paper's prediction rather than a derived limit, and the figure
shows how far it holds. The mark is the ``p`` at which ``p = p*(θ_gen)``.

Relation to :func:`synthloop.theory.verification.supervised_pruner_rates`: that model is
``x = yμ + sqrt((1 − ‖μ‖²)/d)·η``. Every quantity there depends only on the standardized threshold
``‖μ‖ sqrt(d/(1 − ‖μ‖²)) cos θ``; here the threshold is ``τ √d cos θ``, so the two coincide with
``‖μ‖ = τ/sqrt(1 + τ²)`` — exactly, when the labels are ``sign(xᵀw_gen)`` (``label_beta = None``)
and ``θ = ∠(w_gen, w_prune)`` is the replicate's own angle (the tests check this).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from scipy.special import expit, ndtr

from .. import seeding
from ..pool import TrainingSet
from ..theory import verification
from ..validation import Integer, Real
from ..workflows import Workflow
from .base import Task, TaskConfig, Theory, TheoryCurve
from .logistic import fit_logistic


class MixtureConfig(TaskConfig):
    name: Literal["mixture"] = "mixture"
    d: Integer(1, 10_000) = 50
    tau: Real(0, lo_open=True) = Field(default=0.15, description="class mean τ: x | y ~ N(y·τ·w*, I_d/d)")
    N0: Integer(1, 10_000_000) = Field(default=300, description="real samples the generator (least squares) is fit on")
    T0: Integer(1, 10_000_000) = Field(default=2000, description="inputs synthesized per generation (N1)")
    theta_gen: Real(0, np.pi) | None = Field(default=None, description="if set, the generator is the unit vector at this angle to w* (radians)")
    theta_prune: Real(0, np.pi) = Field(default=np.pi / 6, description="angle of the pruner w_prune to w* (radians)")
    label_beta: Real(0, lo_open=True) | None = Field(
        default=100.0, description="y′ = +1 w.p. sigmoid(β·xᵀw/‖w‖); None: y′ = sign(xᵀw)"
    )
    ridge: Real(0) = Field(default=1e-3, description="ridge λ of the downstream logistic regression")
    max_newton_steps: Integer(1, 10_000) = 100
    curve_sizes: list[Integer(1, 10_000_000)] | None = Field(
        default=None, description="n′ values: also fit on the first n′ rows each selection keeps (Figure 3 curves)"
    )
    curve_pruners: list[Real(0, np.pi)] = Field(
        default=[np.pi / 12, np.pi / 6], description="angles to w* of the supervised pruners in the selection curves (radians)"
    )
    curve_flip_rates: list[Real(0, 1)] | None = Field(
        default=None, description="generator errors p: also fit on labels flipped at rate p and pruned by each curve_rlhf pruner (Figure 2 curves)"
    )
    curve_rlhf: list[tuple[Real(0, 1), Real(0, 1)]] = Field(
        default=[(1.0, 1.0), (0.9, 0.3), (0.5, 0.9)], description="(φ, ψ) pruners of the breakdown curves"
    )
    curve_generator_angles: list[Real(0, np.pi)] | None = Field(
        default=None, description="θ_gen values: also fit on sign(xᵀw_gen) labels kept by each curve_pruners pruner (Figure 5 curves)"
    )

    @model_validator(mode="after")
    def _angles_exist(self):
        if self.d == 1:
            for key in ("theta_gen", "theta_prune"):
                value = getattr(self, key)
                if value is not None and not (np.isclose(value, 0) or np.isclose(value, np.pi)):
                    raise ValueError(f"{key}={value:g} needs d ≥ 2: in d = 1 a unit vector is at angle 0 or π to w*")
        if self.curve_sizes is not None and (not self.curve_sizes or sorted(set(self.curve_sizes)) != self.curve_sizes):
            raise ValueError(f"curve_sizes must be a non-empty increasing list of integers; got {self.curve_sizes}")
        if self.curve_flip_rates is not None and (not self.curve_flip_rates or sorted(set(self.curve_flip_rates)) != self.curve_flip_rates):
            raise ValueError(f"curve_flip_rates must be a non-empty increasing list of probabilities; got {self.curve_flip_rates}")
        angles = self.curve_generator_angles
        if angles is not None and (not angles or sorted(set(angles)) != angles):
            raise ValueError(f"curve_generator_angles must be a non-empty increasing list of angles; got {angles}")
        if self.curve_sizes is not None and (self.curve_flip_rates is not None or angles is not None):
            raise ValueError("curve_sizes cannot be combined with curve_flip_rates or curve_generator_angles: "
                             "their curves have different x axes (n′ and p); run them separately")
        if self.d == 1 and angles is not None:
            raise ValueError("curve_generator_angles needs d ≥ 2: in d = 1 a unit vector is at angle 0 or π to w*")
        for phi, psi in self.curve_rlhf:
            if phi == 0 and psi == 0:
                raise ValueError("curve_rlhf must not hold (0, 0): that pruner keeps nothing")
        if self.curve_sizes is not None and self.curve_sizes[-1] > self.T0:
            raise ValueError(f"curve_sizes must not exceed T0={self.T0} (rows synthesized per generation); got {self.curve_sizes[-1]}")
        return self


@dataclass
class MixtureData:
    """Rows of one source: inputs, labels (y′ for synthetic rows) and the true labels."""

    x: np.ndarray  # (R, n, d)
    y: np.ndarray  # (R, n) in {−1, +1}
    y_true: np.ndarray  # (R, n) in {−1, +1}: hidden ground truth


@dataclass
class RealMixtureData(MixtureData):
    w_star: np.ndarray | None = None  # (R, d) unit
    w_prune: np.ndarray | None = None  # (R, d) unit, at angle theta_prune to w*
    w_gen: np.ndarray | None = None  # (R, d) unit, at angle theta_gen to w* (None without theta_gen)
    curve_w_prune: np.ndarray | None = None  # (P, R, d) unit: the selection curves' pruners (None without curves)
    curve_deviation: np.ndarray | None = None  # (R, d) unit ⟂ w*: the plane of the supervised-pruner curves


@dataclass
class MixtureModel:
    coef_: np.ndarray  # (R, d)
    newton_steps: int = 0
    curves_: dict[str, np.ndarray] | None = None  # selection -> (S, R, d) fits on n′ = curve_sizes rows; NaN where too few pass
    breakdown_: dict[str, np.ndarray] | None = None  # pruner -> (P, R, d) fits at p = curve_flip_rates
    supervised_: dict[str, np.ndarray] | None = None  # pruner -> (A, R, d) fits at θ_gen = curve_generator_angles


def _at_angle(w_star: np.ndarray, angle: float, rngs) -> np.ndarray:
    """Unit vectors at ``angle`` to the unit rows of ``w_star``, deviating in a random orthogonal direction."""
    d = w_star.shape[1]
    if d == 1:
        if not (np.isclose(angle, 0) or np.isclose(angle, np.pi)):
            raise ValueError("d = 1 admits only the angles 0 and π")
        return w_star * np.sign(np.cos(angle))
    v = seeding.standard_normal(rngs, (d,))
    v -= np.einsum("rd,rd->r", v, w_star)[:, None] * w_star
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return np.cos(angle) * w_star + np.sin(angle) * v


def _pruner_name(phi: float, psi: float) -> str:
    return f"φ={phi:g}, ψ={psi:g}"


def _supervised_name(angle: float) -> str:
    return f"supervised pruner {np.degrees(angle):.3g}°"


def mixture_accuracy(w: np.ndarray, w_star: np.ndarray, tau: float, d: int) -> np.ndarray:
    """Exact accuracy ``1 − Φ(−τ √d cos∠(w, w*))`` of ``sign(xᵀw)`` for rows of ``w`` (unit ``w*``)."""
    norm = np.linalg.norm(w, axis=-1)
    cos = np.einsum("...d,...d->...", w, w_star) / np.where(norm > 0, norm, 1.0)
    return 1.0 - ndtr(-tau * np.sqrt(d) * cos)


class MixtureTask(Task):
    Config = MixtureConfig
    primary_metric = "accuracy"
    metric_labels = {
        "accuracy": "test accuracy of sign(xᵀw) (exact, over the mixture)",
        "bayes_accuracy": "Bayes accuracy (w = w*)",
        "relative_accuracy": "accuracy / Bayes accuracy",
        "error": "test error 1 − accuracy",
    }

    @property
    def real_size(self) -> int:
        return self.config.N0

    @property
    def synthetic_size(self) -> int:
        return self.config.T0

    def _draw(self, w_star: np.ndarray, n: int, rngs) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        y = np.where(np.stack([rng.random(n) for rng in rngs]) < 0.5, -1.0, 1.0)  # (R, n)
        noise = seeding.standard_normal(rngs, (n, c.d)) / np.sqrt(c.d)
        return y[..., None] * c.tau * w_star[:, None, :] + noise, y

    def sample_real(self, rngs) -> RealMixtureData:
        c = self.config
        w_star = seeding.standard_normal(rngs, (c.d,))
        w_star /= np.linalg.norm(w_star, axis=1, keepdims=True)
        x, y = self._draw(w_star, c.N0, rngs)
        w_prune = _at_angle(w_star, c.theta_prune, rngs)
        w_gen = None if c.theta_gen is None else _at_angle(w_star, c.theta_gen, rngs)
        # Drawn last, and only with curves, so that the other draws do not depend on them.
        curve_w = None if c.curve_sizes is None else np.stack([_at_angle(w_star, angle, rngs) for angle in c.curve_pruners])
        deviation = None
        if c.curve_generator_angles is not None:
            deviation = _at_angle(w_star, np.pi / 2, rngs)  # (R, d): a random unit vector ⟂ w*
        return RealMixtureData(x=x, y=y, y_true=y.copy(), w_star=w_star, w_prune=w_prune, w_gen=w_gen, curve_w_prune=curve_w,
                               curve_deviation=deviation)

    def sample_inputs(self, real: RealMixtureData, n: int, rngs) -> MixtureData:
        x, y = self._draw(real.w_star, n, rngs)
        return MixtureData(x=x, y=y, y_true=y)

    def synthesize_candidates(self, model: MixtureModel, inputs: MixtureData, n: int, k: int, rngs) -> MixtureData:
        """``k`` independent label draws through the sigmoid for every input (identical when ``label_beta = None``)."""
        repeated = MixtureData(x=np.repeat(inputs.x, k, axis=1), y=np.repeat(inputs.y, k, axis=1), y_true=np.repeat(inputs.y_true, k, axis=1))
        return self.synthesize(model, repeated, n * k, rngs)

    def synthesize(self, model: MixtureModel, inputs: MixtureData, n: int, rngs) -> MixtureData:
        w = model.coef_
        norm = np.linalg.norm(w, axis=1, keepdims=True)
        score = np.einsum("rnd,rd->rn", inputs.x, w / np.where(norm > 0, norm, 1.0))
        if self.config.label_beta is None:
            label = np.where(score > 0, 1.0, -1.0)
        else:
            u = np.stack([rng.random(n) for rng in rngs])
            label = np.where(u < expit(self.config.label_beta * score), 1.0, -1.0)
        return MixtureData(x=inputs.x, y=label, y_true=inputs.y_true)

    def correct(self, data: MixtureData, real: RealMixtureData) -> np.ndarray:
        return data.y == data.y_true

    def confidence(self, model: MixtureModel, data: MixtureData) -> np.ndarray:
        """The generator's own margin for the label it gave, ``y′ · xᵀŵ`` (the ``self`` verifier)."""
        w = model.coef_
        norm = np.linalg.norm(w, axis=1, keepdims=True)
        return data.y * np.einsum("rnd,rd->rn", data.x, w / np.where(norm > 0, norm, 1.0))

    def judge(self, data: MixtureData, real: RealMixtureData, rngs) -> np.ndarray:
        margin = data.y * np.einsum("rnd,rd->rn", data.x, real.w_prune)
        return (margin > 0).astype(float)

    def fit(self, training: TrainingSet, rngs) -> MixtureModel:
        c = self.config
        real: RealMixtureData = training.pool.real.data
        only_real = (np.flatnonzero(training.mixture.weights) == 0).all() if training.is_weighted \
            else bool((training.source_index() == 0).all())
        if only_real:  # the generator
            if real.w_gen is not None:
                return MixtureModel(real.w_gen.copy())
            x, y = real.x, real.y
            gram = np.matmul(x.transpose(0, 2, 1), x)
            xty = np.einsum("rnd,rn->rd", x, y)
            if c.N0 >= c.d:
                return MixtureModel(np.linalg.solve(gram, xty[..., None])[..., 0])
            return MixtureModel(np.einsum("rij,rj->ri", np.linalg.pinv(gram, hermitian=True), xty))
        x, y = training.rows("x"), training.rows("y")
        weights = training.row_weights()
        a = np.broadcast_to(weights, y.shape).astype(float)
        a = a / a.sum(axis=1, keepdims=True)
        fitted = fit_logistic(x, (y + 1.0) / 2.0, a, c.ridge, c.max_newton_steps, intercept=False)
        newest = training.pool.sources[-1].data
        curves = None if c.curve_sizes is None else self._selection_curves(newest, real)
        breakdown = None if c.curve_flip_rates is None else self._breakdown_curves(newest, rngs)
        supervised = None if c.curve_generator_angles is None else self._supervised_curves(newest, real)
        return MixtureModel(fitted.coef_, fitted.newton_steps, curves, breakdown, supervised)

    def _supervised_curves(self, data: MixtureData, real: RealMixtureData) -> dict[str, np.ndarray]:
        """Downstream fits on ``sign(xᵀw_gen)`` labels kept by coplanar supervised pruners (module docstring)."""
        c = self.config
        R, n, d = data.x.shape
        along = np.einsum("rnd,rd->rn", data.x, real.w_star)  # (R, n): every w in the plane gives cos·along + sin·across
        across = np.einsum("rnd,rd->rn", data.x, real.curve_deviation)
        curves = {}
        for prune in c.curve_pruners:
            coefs = np.full((len(c.curve_generator_angles), R, d), np.nan)  # (A, R, d)
            for i, gen in enumerate(c.curve_generator_angles):
                labels = np.where(np.cos(gen) * along + np.sin(gen) * across > 0, 1.0, -1.0)  # (R, n): sign(xᵀw_gen)
                kept = labels * (np.cos(prune) * along + np.sin(prune) * across) > 0
                count = kept.sum(axis=1)
                rows = count > 0
                if rows.any():
                    coefs[i, rows] = fit_logistic(data.x[rows], (labels[rows] + 1.0) / 2.0, kept[rows] / count[rows, None],
                                                  c.ridge, c.max_newton_steps, intercept=False).coef_
            curves[_supervised_name(prune)] = coefs
        return curves

    def _breakdown_curves(self, data: MixtureData, rngs) -> dict[str, np.ndarray]:
        """Downstream fits on flipped and pruned true labels of ``data``'s inputs (module docstring)."""
        c = self.config
        R, n, d = data.x.shape
        curves = {}
        for phi, psi in c.curve_rlhf:
            coefs = np.full((len(c.curve_flip_rates), R, d), np.nan)  # (P, R, d)
            for i, p in enumerate(c.curve_flip_rates):
                draws = np.stack([rng.random((2, n)) for rng in rngs])  # (R, 2, n)
                wrong = draws[:, 0] < p
                kept = draws[:, 1] < np.where(wrong, psi, phi)  # (R, n)
                count = kept.sum(axis=1)
                rows = count > 0
                if rows.any():
                    labels = np.where(wrong, -data.y_true, data.y_true)[rows]
                    weights = kept[rows] / count[rows, None]
                    coefs[i, rows] = fit_logistic(data.x[rows], (labels + 1.0) / 2.0, weights, c.ridge, c.max_newton_steps, intercept=False).coef_
            curves[_pruner_name(phi, psi)] = coefs
        return curves

    def _selection_curves(self, data: MixtureData, real: RealMixtureData) -> dict[str, np.ndarray]:
        """Downstream fits on the first n′ rows of ``data`` that each selection keeps (module docstring)."""
        c = self.config
        everything = np.ones(data.y.shape, bool)
        selections = {"clean": (everything, data.y_true), "oracle": (data.y == data.y_true, data.y), "random": (everything, data.y)}
        for angle, w in zip(c.curve_pruners, real.curve_w_prune):
            selections[f"pruner {np.degrees(angle):.3g}°"] = (data.y * np.einsum("rnd,rd->rn", data.x, w) > 0, data.y)
        curves = {}
        for name, (passing, labels) in selections.items():
            order = np.argsort(~passing, axis=1, kind="stable")  # (R, n): passing rows first, in row order
            enough = passing.sum(axis=1)  # (R,)
            coefs = np.full((len(c.curve_sizes), *data.x.shape[::2]), np.nan)  # (S, R, d)
            for i, size in enumerate(c.curve_sizes):
                rows = enough >= size
                if not rows.any():
                    continue
                index = order[rows, :size]  # (R', n′)
                x = np.take_along_axis(data.x[rows], index[..., None], axis=1)  # (R', n′, d)
                t = (np.take_along_axis(labels[rows], index, axis=1) + 1.0) / 2.0
                coefs[i, rows] = fit_logistic(x, t, None, c.ridge, c.max_newton_steps, intercept=False).coef_
            curves[name] = coefs
        return curves

    def evaluate(self, model: MixtureModel, real: RealMixtureData) -> dict[str, np.ndarray]:
        c = self.config
        accuracy = mixture_accuracy(model.coef_, real.w_star, c.tau, c.d)
        bayes = np.full_like(accuracy, 1.0 - ndtr(-c.tau * np.sqrt(c.d)))
        metrics = {"accuracy": accuracy, "bayes_accuracy": bayes, "relative_accuracy": accuracy / bayes, "error": 1.0 - accuracy}
        for name, coefs in (model.curves_ or {}).items():
            for size, coef in zip(c.curve_sizes, coefs):  # coef (R, d), NaN rows where too few rows passed
                metrics[f"{name}@{size}"] = (1.0 - mixture_accuracy(coef, real.w_star, c.tau, c.d)) / (1.0 - bayes)
        for name, coefs in (model.breakdown_ or {}).items():
            for p, coef in zip(c.curve_flip_rates, coefs):
                metrics[f"{name}@{p:g}"] = mixture_accuracy(coef, real.w_star, c.tau, c.d)
        for name, coefs in (model.supervised_ or {}).items():
            for p, coef in zip(self._generator_errors(), coefs):
                metrics[f"{name}@{p:.6g}"] = mixture_accuracy(coef, real.w_star, c.tau, c.d)
        return metrics

    def _generator_errors(self) -> np.ndarray:
        """``p = Φ(−τ√d cos θ_gen)`` of the supervised-pruner curves' generators."""
        c = self.config
        return ndtr(-c.tau * np.sqrt(c.d) * np.cos(np.asarray(c.curve_generator_angles)))

    def _mu_norm(self) -> float:
        """``‖μ‖`` of the same mixture in :mod:`synthloop.theory.verification`'s parametrization (module docstring)."""
        return self.config.tau / np.sqrt(1 + self.config.tau**2)

    @property
    def curve_labels(self) -> tuple[str, str]:
        if self.config.curve_flip_rates is not None or self.config.curve_generator_angles is not None:
            return "generator error p = P(y′ ≠ y)", "test accuracy of sign(xᵀw) (exact, over the mixture)"
        return ("n′: selected synthetic examples trained on (clean: real examples)", "relative error (test error / Bayes error; 1 is optimal)")

    def curve_marks(self) -> dict[str, float]:
        """The breakdown point p* of each pruner of the breakdown curves, marked on their figure."""
        c = self.config
        marks = {}
        if c.curve_flip_rates is not None:
            marks.update({_pruner_name(phi, psi): float(verification.breakdown_point(phi, psi)) for phi, psi in c.curve_rlhf})
        if c.curve_generator_angles is not None:
            # Where p(θ_gen) crosses p*(θ_gen), on a fine grid of generator angles.
            grid = np.linspace(0, np.pi, 2001)
            for prune in c.curve_pruners:
                rates = verification.supervised_pruner_rates(grid, prune, self._mu_norm(), c.d)
                gap = rates.p - verification.breakdown_point(np.nan_to_num(rates.phi), np.nan_to_num(rates.psi))
                cross = np.flatnonzero(np.isfinite(gap[:-1]) & np.isfinite(gap[1:]) & (np.sign(gap[:-1]) != np.sign(gap[1:])))
                if len(cross):
                    i = cross[0]
                    marks[_supervised_name(prune)] = float(rates.p[i] + (rates.p[i + 1] - rates.p[i]) * gap[i] / (gap[i] - gap[i + 1]))
        return marks

    def theory(self, workflow: Workflow, generations: int) -> Theory:
        c = self.config
        curves = []
        if c.curve_flip_rates is not None:
            # The breakdown curves' limit: Bayes accuracy below p*, one minus it above (module docstring).
            bayes = 1.0 - ndtr(-c.tau * np.sqrt(c.d))
            for phi, psi in c.curve_rlhf:
                regime = verification.asymptotic_accuracy(np.array(c.curve_flip_rates), phi, psi)  # 1, 0 or NaN at p = p*
                for p, a in zip(c.curve_flip_rates, regime):
                    values = np.full(generations + 1, np.nan)
                    values[1:] = bayes * a + (1 - bayes) * (1 - a)
                    curves.append(TheoryCurve(f"{_pruner_name(phi, psi)}@{p:g}", values, "asymptotic",
                                              "Feng et al. 2024: p* = φ/(φ+ψ), synthetic data → ∞ (symmetric label noise)"))
        if c.curve_generator_angles is not None:
            bayes = 1.0 - ndtr(-c.tau * np.sqrt(c.d))
            for prune in c.curve_pruners:
                rates = verification.supervised_pruner_rates(np.array(c.curve_generator_angles), prune, self._mu_norm(), c.d)
                regime = verification.asymptotic_accuracy(rates.p, np.nan_to_num(rates.phi), np.nan_to_num(rates.psi))
                for p, a in zip(self._generator_errors(), regime):
                    values = np.full(generations + 1, np.nan)
                    values[1:] = bayes * a + (1 - bayes) * (1 - a)
                    curves.append(TheoryCurve(f"{_supervised_name(prune)}@{p:.6g}", values, "asymptotic",
                                              "Feng et al. 2024: p < p* (supervised pruner, Appendix D.6) predicts the Bayes accuracy"))
        note = ("not covered: the downstream logistic fits (g ≥ 1) — Feng et al.'s breakdown point p* = φ/(φ+ψ) "
                "is asymptotic in the synthetic sample size; the pruner rates are recorded per generation instead")
        if curves:
            note = "the breakdown curves' N → ∞ limits are drawn (asymptotic); the loop's own fits have no closed form"
        if c.theta_gen is None:
            return Theory(curves, note="no closed form for the least-squares generator's accuracy at finite N0; " + note)
        values = np.full(generations + 1, np.nan)
        values[0] = 1.0 - ndtr(-c.tau * np.sqrt(c.d) * np.cos(c.theta_gen))
        return Theory([TheoryCurve("accuracy", values, "exact", "1 − Φ(−τ√d cos θ_gen) for a generator at angle θ_gen (Feng et al. 2024, §4 mixture)")] + curves, note=note)

    def describe(self) -> str:
        c = self.config
        parts = [f"d={c.d}", f"τ={c.tau:g}"]
        parts.append(f"generator at θ_gen={c.theta_gen:.3g}" if c.theta_gen is not None else f"OLS generator on N0={c.N0}")
        parts.append(f"N1={c.T0}")
        parts.append("labels sign(xᵀw)" if c.label_beta is None else f"labels sigmoid(β={c.label_beta:g}·xᵀŵ)")
        parts += [f"pruner θ_prune={c.theta_prune:.3g}", f"ridge λ={c.ridge:g}"]
        if c.curve_sizes is not None:
            parts.append(f"selection curves at n′ = {', '.join(map(str, c.curve_sizes))}")
        if c.curve_generator_angles is not None:
            parts.append(f"supervised-pruner curves at {len(c.curve_generator_angles)} generator angles")
        if c.curve_flip_rates is not None:
            parts.append(f"breakdown curves at {len(c.curve_flip_rates)} flip rates p ∈ [{c.curve_flip_rates[0]:g}, {c.curve_flip_rates[-1]:g}]")
        return "mixture: " + ", ".join(parts)
