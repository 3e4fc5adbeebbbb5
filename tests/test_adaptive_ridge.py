"""Adaptive ridge λ = λ0·T^-ℓ (Dohmatob et al. 2024): config, simulation vs theory, the rate."""

import numpy as np
import pytest
from conftest import mean_and_sem, regression, theory_values, z_for

import synthloop
from synthloop.experiment import load_experiment
from synthloop.tasks.regression import RegressionTask
from synthloop.theory import regression as theory
from synthloop.validation import ConfigError

ADAPTIVE = {"task.d": 8, "task.T": 40, "task.spectrum": "power-law", "task.beta": 2.0,
            "task.ridge": 0.5, "task.ridge_exponent": 0.5, "generations": 6}


@pytest.fixture(scope="module")
def adaptive_run():
    return synthloop.run(regression(**ADAPTIVE, replicates=2000, workflows=["replace", "accumulate"]))


@pytest.mark.parametrize("workflow", ["replace", "accumulate"])
def test_adaptive_ridge_matches_the_exact_ridge_theory_at_its_lambda(adaptive_run, workflow):
    lam = 0.5 * 40**-0.5
    mean, sem, _ = mean_and_sem(adaptive_run, workflow)
    predicted = theory_values(adaptive_run, workflow, kind="numerical")
    alpha = np.eye(7) if workflow == "replace" else np.tril(np.ones((7, 7)))
    spectrum = np.arange(1, 9, dtype=float) ** -2.0
    mc = theory.ridge_mixture_risk_fixed_design(alpha, 8, 40, 1.0, lam, spectrum=spectrum, draws=1000, seed=0)
    np.testing.assert_array_equal(predicted, mc.mean)  # the task's curve is the exact formula at λ0·T^-ℓ
    tolerance = z_for(len(mean)) * np.hypot(sem, mc.sem)
    assert np.all(np.abs(mean - predicted) < tolerance), (mean, predicted, tolerance)


def test_adaptive_ridge_is_ridge_at_the_adaptive_lambda():
    adaptive = synthloop.run(regression(**ADAPTIVE, replicates=20)).metrics
    plain = {k: v for k, v in ADAPTIVE.items() if k != "task.ridge_exponent"} | {"task.ridge": 0.5 * 40**-0.5}
    fixed = synthloop.run(regression(**plain, replicates=20)).metrics
    np.testing.assert_allclose(adaptive["value"], fixed["value"], rtol=1e-12)


def test_replace_gets_the_scaling_law_rate_labelled_asymptotic(adaptive_run):
    rate = theory_values(adaptive_run, "replace", kind="asymptotic")
    expected = theory.adaptive_ridge_risk_rate(np.arange(7), 8, 40, 1.0, 0.5, 2.0, r=0.5)
    np.testing.assert_array_equal(rate, expected)
    assert theory_values(adaptive_run, "accumulate", kind="asymptotic").size == 0


def test_rate_has_the_papers_exponents():
    T = np.array([100.0, 10_000.0])
    # noise-dominated clean term: σ² T^-(1 − ℓ/β); ℓ = 0.5, β = 2 → slope −3/4
    clean = theory.adaptive_ridge_risk_rate(0, d=1, T=T, sigma=10.0, ell=0.5, beta=2.0)
    np.testing.assert_allclose(np.log(clean[1] / clean[0]) / np.log(100), -0.75)
    # bias-dominated: T^-2rℓ; r = 1, ℓ = 0.5 → slope −1
    bias = theory.adaptive_ridge_risk_rate(0, d=1, T=T, sigma=1e-6, ell=0.5, beta=2.0, r=1.0)
    np.testing.assert_allclose(np.log(bias[1] / bias[0]) / np.log(100), -1.0)
    # each generation adds the same term, σ0²/(1 − φ0)·max(T/T0, φ0)·T^-(1 − ℓ/β)
    g = theory.adaptive_ridge_risk_rate([0, 1, 2], d=10, T=100, sigma=1.0, ell=0.5, beta=2.0, T0=50)
    np.testing.assert_allclose(np.diff(g), 1 / 0.8 * 2 * 100**-0.75)
    assert np.isnan(theory.adaptive_ridge_risk_rate(1, d=60, T=100, sigma=1.0, ell=0.5, beta=2.0, T0=50))


@pytest.mark.parametrize("kwargs, match", [
    ({"ell": -1}, r"^ell must be non-negative, got -1$"),
    ({"beta": 0}, r"^beta must be positive, got 0$"),
    ({"T": 0}, r"^T must be a positive integer, got 0$"),
])
def test_rate_validates(kwargs, match):
    args = {"generation": 1, "d": 5, "T": 100, "sigma": 1.0, "ell": 0.5, "beta": 2.0} | kwargs
    with pytest.raises(ValueError, match=match):
        theory.adaptive_ridge_risk_rate(**args)


@pytest.mark.parametrize("overrides, match", [
    ({"task.ridge_exponent": 0.5}, r"^task.ridge_exponent needs ridge > 0 \(λ0 of the adaptive ridge λ = λ0·T\^-ℓ\); got ridge=0, ridge_exponent=0.5$"),
    ({"task.ridge": 1.0, "task.ridge_exponent": -0.5}, r"^task.ridge_exponent must be a number ≥ 0; got -0.5$"),
])
def test_adaptive_ridge_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        regression(**overrides)


def test_preset_describes_its_lambda():
    experiment = load_experiment("dohmatob-adaptive-ridge")
    assert experiment.task.penalty == pytest.approx(200**-0.5)
    assert "adaptive ridge λ=1·T^-0.5=0.0707" in RegressionTask(experiment.task).describe()
