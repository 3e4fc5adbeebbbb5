"""Ridge (λ > 0) theory vs simulation: fixed design (any whole-source mixture) and random design."""

import numpy as np
import pytest
from conftest import mean_and_sem, regression, theory_values, z_for

import synthloop
from synthloop.theory import regression as theory

GENERATIONS = 10
CASES = {  # name: (d, T, λ)
    "under": (5, 30, 0.05),  # T ≥ d + 2
    "over": (20, 10, 0.1),  # T < d + 2: ridge still well posed
}


def _alpha(workflow: str, size: int) -> np.ndarray:
    return np.eye(size) if workflow == "replace" else np.tril(np.ones((size, size)))


@pytest.fixture(scope="module")
def runs():
    out = {}
    for name, (d, T, lam) in CASES.items():
        experiment = regression(**{"task.d": d, "task.T": T, "task.ridge": lam, "generations": GENERATIONS,
                                   "replicates": 2000, "workflows": ["replace", "accumulate", "accumulate-subsample"]})
        out[name] = synthloop.run(experiment)
    d, T, lam = CASES["under"]
    experiment = regression(**{"task.d": d, "task.T": T, "task.ridge": lam, "task.design": "random", "generations": GENERATIONS,
                               "replicates": 2000, "workflows": ["replace", "accumulate"]})
    out["random"] = synthloop.run(experiment)
    return out


@pytest.mark.parametrize("case", ["under", "over"])
@pytest.mark.parametrize("workflow", ["replace", "accumulate"])
def test_fixed_design_ridge_matches_simulation(runs, case, workflow):
    d, T, lam = CASES[case]
    run = runs[case]
    mean, sem, _ = mean_and_sem(run, workflow)
    predicted = theory_values(run, workflow, kind="numerical")
    mc = theory.ridge_mixture_risk_fixed_design(_alpha(workflow, GENERATIONS + 1), d, T, 1.0, lam, draws=1000, seed=0)
    np.testing.assert_array_equal(predicted, mc.mean)  # the task's curve is this function
    tolerance = z_for(len(mean)) * np.hypot(sem, mc.sem)
    assert np.all(np.abs(mean - predicted) < tolerance), (mean, predicted, tolerance)


@pytest.mark.parametrize("workflow", ["replace", "accumulate"])
def test_random_design_ridge_matches_simulation(runs, workflow):
    d, T, lam = CASES["under"]
    run = runs["random"]
    mean, sem, _ = mean_and_sem(run, workflow)
    predicted = theory_values(run, workflow, kind="numerical")
    mc = theory.ridge_risk_random_design(GENERATIONS, d, T, 1.0, lam, workflow=workflow, draws=1000, seed=0)
    np.testing.assert_array_equal(predicted, mc.mean)
    tolerance = z_for(len(mean)) * np.hypot(sem, mc.sem)
    assert np.all(np.abs(mean - predicted) < tolerance), (mean, predicted, tolerance)


def test_row_drawing_workflow_gets_a_note(runs):
    assert runs["under"].theory.query("workflow == 'accumulate-subsample'").empty
    assert "draws individual rows" in runs["under"].theory_notes["accumulate-subsample"]


def test_small_ridge_recovers_ols():
    d, T, G = 5, 30, 6
    g = np.arange(G + 1)
    checks = [
        (theory.ridge_mixture_risk_fixed_design(np.eye(G + 1), d, T, 1.0, 1e-10, draws=4000), theory.ols_replace_risk(g, d, T, 1.0)),
        (theory.ridge_mixture_risk_fixed_design(np.tril(np.ones((G + 1, G + 1))), d, T, 1.0, 1e-10, draws=4000),
         theory.ols_accumulate_risk_fixed_design(g, d, T, 1.0)),
        (theory.ridge_risk_random_design(G, d, T, 1.0, 1e-10, draws=2000), theory.ols_replace_risk(g, d, T, 1.0)),
        (theory.ridge_risk_random_design(G, d, T, 1.0, 1e-10, workflow="accumulate", draws=2000),
         theory.ols_accumulate_risk_random_design_closed_form(g, d, T, 1.0)),
    ]
    z = z_for(4 * (G + 1))
    for mc, exact in checks:
        assert np.all(np.abs(mc.mean - exact) < z * mc.sem), (mc.mean, exact, mc.sem)


def test_noise_free_shrinkage_bias_compounds_under_replace():
    """σ = 0: only the shrinkage bias is left. Replace compounds it, β_g = m^{g+1}, towards the
    null predictor (risk ‖w*‖² = 1); accumulate compounds it far more slowly (β_g ∝ g^{−(1−m)})."""
    d, T, lam, G = 5, 30, 0.05, 100
    replace = theory.ridge_mixture_risk_fixed_design(np.eye(G + 1), d, T, 0.0, lam, draws=500)
    accumulate = theory.ridge_mixture_risk_fixed_design(np.tril(np.ones((G + 1, G + 1))), d, T, 0.0, lam, draws=500)
    assert np.all(np.diff(replace.mean) > 0) and np.all(np.diff(accumulate.mean) > 0)  # same designs at every g
    assert np.all(accumulate.mean[1:] < replace.mean[1:])
    assert 0.95 < replace.mean[-1] <= 1.0  # 0.969 at g = 100 (0.004 at g = 0)
    assert accumulate.mean[-1] < 0.1  # 0.075 at g = 100
    # With noise, replace saturates instead of growing linearly as OLS does: bias → 1 plus a
    # bounded noise term, at most σ0² d / (2Tλ).
    noisy = theory.ridge_mixture_risk_fixed_design(np.eye(G + 1), d, T, 1.0, lam, draws=500)
    assert noisy.mean[-1] < 1 + d / (2 * T * lam)
    steps = np.diff(noisy.mean)
    assert np.all(steps > 0) and steps[-1] < steps[0] / 100


def test_power_law_spectrum_fixed_and_random_design():
    """A non-isotropic Σ: theory vs simulation (the Σ-norm enters through diag(VᵀΣV))."""
    experiment = regression(**{"task.d": 6, "task.T": 20, "task.ridge": 0.1, "task.spectrum": "power-law", "task.beta": 1.5,
                               "generations": 5, "replicates": 2000, "workflows": ["replace", "accumulate"]})
    for design in ("fixed", "random"):
        run = synthloop.run(experiment.with_overrides({"task.design": design}))
        spectrum = np.arange(1, 7, dtype=float) ** -1.5
        for workflow in ("replace", "accumulate"):
            mean, sem, _ = mean_and_sem(run, workflow)
            if design == "fixed":
                mc = theory.ridge_mixture_risk_fixed_design(_alpha(workflow, 6), 6, 20, 1.0, 0.1, spectrum=spectrum)
            else:
                mc = theory.ridge_risk_random_design(5, 6, 20, 1.0, 0.1, workflow=workflow, spectrum=spectrum)
            np.testing.assert_array_equal(theory_values(run, workflow, kind="numerical"), mc.mean)
            assert np.all(np.abs(mean - mc.mean) < z_for(4 * len(mean)) * np.hypot(sem, mc.sem)), (design, workflow, mean, mc.mean)


def test_ridge_functions_validate_and_are_pure():
    a = theory.ridge_mixture_risk_fixed_design(np.eye(3), 4, 10, 1.0, 0.1, draws=50, seed=7)
    b = theory.ridge_mixture_risk_fixed_design(np.eye(3), 4, 10, 1.0, 0.1, draws=50, seed=7)
    assert a is b and a.mean.shape == (3,) and not a.mean.flags.writeable
    with pytest.raises(ValueError):
        theory.ridge_mixture_risk_fixed_design(np.eye(3), 4, 10, 1.0, 0.0)
    with pytest.raises(ValueError):
        theory.ridge_mixture_risk_fixed_design(np.ones((3, 3)), 4, 10, 1.0, 0.1)
    with pytest.raises(ValueError):
        theory.ridge_risk_random_design(3, 4, 10, 1.0, 0.1, workflow="weighted")
