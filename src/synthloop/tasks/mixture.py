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

    @model_validator(mode="after")
    def _angles_exist(self):
        if self.d == 1:
            for key in ("theta_gen", "theta_prune"):
                value = getattr(self, key)
                if value is not None and not (np.isclose(value, 0) or np.isclose(value, np.pi)):
                    raise ValueError(f"{key}={value:g} needs d ≥ 2: in d = 1 a unit vector is at angle 0 or π to w*")
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


@dataclass
class MixtureModel:
    coef_: np.ndarray  # (R, d)
    newton_steps: int = 0


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
        return RealMixtureData(x=x, y=y, y_true=y.copy(), w_star=w_star, w_prune=w_prune, w_gen=w_gen)

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
        return MixtureModel(fitted.coef_, fitted.newton_steps)

    def evaluate(self, model: MixtureModel, real: RealMixtureData) -> dict[str, np.ndarray]:
        c = self.config
        accuracy = mixture_accuracy(model.coef_, real.w_star, c.tau, c.d)
        bayes = np.full_like(accuracy, 1.0 - ndtr(-c.tau * np.sqrt(c.d)))
        return {"accuracy": accuracy, "bayes_accuracy": bayes, "relative_accuracy": accuracy / bayes, "error": 1.0 - accuracy}

    def theory(self, workflow: Workflow, generations: int) -> Theory:
        c = self.config
        note = ("not covered: the downstream logistic fits (g ≥ 1) — Feng et al.'s breakdown point p* = φ/(φ+ψ) "
                "is asymptotic in the synthetic sample size; the pruner rates are recorded per generation instead")
        if c.theta_gen is None:
            return Theory(note="no closed form for the least-squares generator's accuracy at finite N0; " + note)
        values = np.full(generations + 1, np.nan)
        values[0] = 1.0 - ndtr(-c.tau * np.sqrt(c.d) * np.cos(c.theta_gen))
        return Theory([TheoryCurve("accuracy", values, "exact", "1 − Φ(−τ√d cos θ_gen) for a generator at angle θ_gen (Feng et al. 2024, §4 mixture)")], note=note)

    def describe(self) -> str:
        c = self.config
        parts = [f"d={c.d}", f"τ={c.tau:g}"]
        parts.append(f"generator at θ_gen={c.theta_gen:.3g}" if c.theta_gen is not None else f"OLS generator on N0={c.N0}")
        parts.append(f"N1={c.T0}")
        parts.append("labels sign(xᵀw)" if c.label_beta is None else f"labels sigmoid(β={c.label_beta:g}·xᵀŵ)")
        parts += [f"pruner θ_prune={c.theta_prune:.3g}", f"ridge λ={c.ridge:g}"]
        return "mixture: " + ", ".join(parts)
