"""Tests of synthloop.theory.regression: known values, broadcasting, domain, errors, and
brute-force simulations (explicit per-replicate least squares) compared with the formulas
within 4 standard errors of the simulation mean."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from synthloop.theory import regression as th

Z = 4.0  # tolerance in standard errors


# ----------------------------------------------------------------------------- brute force


def _covariance_root(rng: np.random.Generator, d: int) -> np.ndarray:
    """C with C Cᵀ = Σ, a non-isotropic covariance (the risks must not depend on it)."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sqrt(np.linspace(0.3, 3.0, d))


def _simulate(rng, *, workflow, design, d, T, sigma, G, R, T0=None, sigma0=None):
    """Per-replicate simulation of the loop; returns (mean, sem) of ‖ŵ_g − w*‖²_Σ, shape (G+1,)."""
    T0 = T if T0 is None else T0
    sigma0 = sigma if sigma0 is None else sigma0
    C = _covariance_root(rng, d)
    Sigma = C @ C.T
    lstsq = lambda X, y: np.linalg.lstsq(X, y, rcond=None)[0]  # noqa: E731
    err = np.empty((R, G + 1))
    for r in range(R):
        w_star = rng.standard_normal(d)
        X0 = rng.standard_normal((T, d)) @ C.T
        Xs, ys = [X0], [X0 @ w_star + sigma * rng.standard_normal(T)]
        w = lstsq(Xs[0], ys[0])
        for g in range(G + 1):
            if g > 0:
                if design == "fixed":
                    X = X0
                else:
                    n = g * T0 if workflow == "growing" else T0
                    X = rng.standard_normal((n, d)) @ C.T
                y = X @ w + sigma0 * rng.standard_normal(len(X))
                if workflow == "accumulate":
                    Xs.append(X)
                    ys.append(y)
                    w = lstsq(np.vstack(Xs), np.concatenate(ys))
                else:
                    w = lstsq(X, y)
            e = w - w_star
            err[r, g] = e @ Sigma @ e
    return err.mean(axis=0), err.std(axis=0, ddof=1) / math.sqrt(R)


# ----------------------------------------------------------------------------- known values


def test_replace_known_values():
    # Spec check: Dohmatob's n = 5 synthetic stages (synthloop g = 5) -> 6 · 50/149.
    assert round(float(th.ols_replace_risk(5, 50, 200, 1.0)), 4) == 2.0134
    assert round(float(th.ols_replace_risk(4, 50, 200, 1.0)), 4) == 1.6779
    # Gerstgrasser: σ² d/(T−d−1) · (g+1) when T0 = T and σ0 = σ.
    g = np.arange(8)
    np.testing.assert_allclose(th.ols_replace_risk(g, 10, 100, 0.5), 0.25 * 10 / 89 * (g + 1))
    # different first / later rounds
    assert th.ols_replace_risk(3, 4, 20, 2.0, T0=10, sigma0=0.5) == pytest.approx(4 * 4 / 15 + 3 * 0.25 * 4 / 5)
    assert isinstance(th.ols_replace_risk(1, 5, 20, 1.0), np.float64)


def test_replace_asymptotic_known_values():
    assert th.ols_replace_risk_asymptotic(4, 0.25, 1.0) == pytest.approx(5 / 3, abs=1e-15)
    assert th.ols_replace_risk_asymptotic(5, 0.25, 1.0) == pytest.approx(2.0, abs=1e-15)
    assert th.ols_replace_risk_asymptotic(2, 0.5, 1.0, phi0=0.2, sigma0=2.0) == pytest.approx(1 + 2 * 4 * 0.25)
    # the finite-sample form converges to it in the proportional limit
    finite = th.ols_replace_risk(5, 25_000, 100_000, 1.0)
    assert finite == pytest.approx(th.ols_replace_risk_asymptotic(5, 0.25, 1.0), rel=1e-4)


def test_accumulate_fixed_design_known_values():
    r = th.ols_accumulate_risk_fixed_design([0, 1, 9, 99], 10, 100, 1.0)
    e0 = 10 / 89
    assert r[0] == pytest.approx(e0)
    assert r[1] == pytest.approx(e0 * 1.25)
    assert round(r[2] / e0, 4) == 1.5498  # spec: R_10
    assert round(r[3] / e0, 4) == 1.6350  # spec: R_100
    # explicit sum with σ0 ≠ σ
    g = 7
    direct = 3 / (20 - 4) * (0.7**2 + 1.3**2 * sum(1 / k**2 for k in range(2, g + 2)))
    assert th.ols_accumulate_risk_fixed_design(g, 3, 20, 0.7, sigma0=1.3) == pytest.approx(direct, rel=1e-12)
    # generation 0 is plain OLS, as under replace
    assert th.ols_accumulate_risk_fixed_design(0, 3, 20, 0.7, 1.3) == th.ols_replace_risk(0, 3, 20, 0.7)


def test_accumulate_bound():
    assert th.ols_accumulate_bound(10, 100, 1.0) == pytest.approx(np.pi**2 / 6 * 10 / 89)
    assert th.ols_accumulate_bound(5, 20, 0.7, sigma0=1.3) == pytest.approx(5 / 14 * (0.49 + 1.69 * (np.pi**2 / 6 - 1)))
    g = np.arange(0, 2000, 37)
    fixed = th.ols_accumulate_risk_fixed_design(g, 5, 20, 0.7, sigma0=1.3)
    bound = th.ols_accumulate_bound(5, 20, 0.7, sigma0=1.3)
    assert np.all(np.diff(fixed) > 0) and np.all(fixed < bound)
    assert th.ols_accumulate_risk_fixed_design(10**7, 5, 20, 0.7, sigma0=1.3) == pytest.approx(bound, rel=1e-6)


def test_growing_known_values():
    # harmonic check, d ≪ T: E_g / E_0 ≈ 1 + H_g
    g = np.arange(12)
    r = th.ols_growing_risk(g, 1, 10**6, 1.0)
    harmonic = np.array([sum(1 / k for k in range(1, n + 1)) for n in g])
    np.testing.assert_allclose(r / r[0], 1 + harmonic, rtol=1e-5)
    # explicit sum
    direct = 0.49 * 4 / 15 + 1.69 * sum(4 / (k * 7 - 5) for k in range(1, 7))
    assert th.ols_growing_risk(6, 4, 20, 0.7, T0=7, sigma0=1.3) == pytest.approx(direct, rel=1e-12)
    assert th.ols_growing_risk(1, 4, 20, 0.7, T0=7, sigma0=1.3) == th.ols_replace_risk(1, 4, 20, 0.7, T0=7, sigma0=1.3)


def test_random_design_closed_form_known_values():
    g = np.arange(30)
    cf = th.ols_accumulate_risk_random_design_closed_form(g, 5, 20, 0.7, T0=8, sigma0=1.3)
    N = 20 + np.arange(1, 30) * 8
    direct = 0.49 * 5 / 14 + np.concatenate([[0.0], np.cumsum(1.69 * 8 / N * 5 / (N - 6))])
    np.testing.assert_allclose(cf, direct, rtol=1e-10)
    assert cf[0] == th.ols_replace_risk(0, 5, 20, 0.7)
    # T0 = T: below the fixed-design risk (term by term) and so below the π²/6 bound
    cf = th.ols_accumulate_risk_random_design_closed_form(g, 5, 20, 1.0)
    assert np.all(cf[1:] < th.ols_accumulate_risk_fixed_design(g[1:], 5, 20, 1.0))
    assert np.all(cf < th.ols_accumulate_bound(5, 20, 1.0))
    # d ≪ T: random and fixed designs agree
    a = th.ols_accumulate_risk_random_design_closed_form(g, 1, 10**6, 1.0)
    np.testing.assert_allclose(a, th.ols_accumulate_risk_fixed_design(g, 1, 10**6, 1.0), rtol=1e-5)


# ----------------------------------------------------------------------------- broadcasting, domain, errors

VECTORIZED = [
    (th.ols_replace_risk, dict(T0=40, sigma0=0.5)),
    (th.ols_growing_risk, dict(T0=40, sigma0=0.5)),
    (th.ols_accumulate_risk_random_design_closed_form, dict(T0=40, sigma0=0.5)),
    (th.ols_accumulate_risk_fixed_design, dict(sigma0=0.5)),
]


@pytest.mark.parametrize("fn, extra", VECTORIZED)
def test_broadcasting(fn, extra):
    g = np.arange(6)[:, None]  # (6, 1)
    d = np.array([2, 5, 10])  # (3,)
    out = fn(g, d, 30, np.array([[1.0], [2.0]])[:, None], **extra)  # sigma (2, 1, 1)
    assert out.shape == (2, 6, 3)
    for i, s in enumerate([1.0, 2.0]):
        for j in range(6):
            for k in range(3):
                assert out[i, j, k] == fn(j, int(d[k]), 30, s, **extra)
    assert isinstance(fn(1, 2, 30, 1.0, **extra), np.float64)


def test_broadcasting_bound_and_asymptotic():
    b = th.ols_accumulate_bound(np.array([2, 5]), np.array([[30], [60]]), 1.0)
    assert b.shape == (2, 2) and b[1, 0] == th.ols_accumulate_bound(2, 60, 1.0)
    a = th.ols_replace_risk_asymptotic(np.arange(3)[:, None], np.array([0.1, 0.5]), 1.0)
    assert a.shape == (3, 2) and a[2, 1] == th.ols_replace_risk_asymptotic(2, 0.5, 1.0)


def test_nan_outside_domain():
    g = np.arange(4)
    assert np.all(np.isnan(th.ols_replace_risk(g, 10, 11, 1.0)))  # T = d + 1
    assert np.all(np.isnan(th.ols_replace_risk(g, 10, 5, 1.0)))  # T < d
    # T0 ≤ d + 1 only matters from generation 1 on
    r = th.ols_replace_risk(g, 10, 30, 1.0, T0=11)
    assert np.isfinite(r[0]) and np.all(np.isnan(r[1:]))
    r = th.ols_growing_risk(g, 10, 30, 1.0, T0=11)
    assert np.isfinite(r[0]) and np.all(np.isnan(r[1:]))
    assert np.all(np.isnan(th.ols_growing_risk(g, 10, 11, 1.0, T0=50)))
    assert np.all(np.isnan(th.ols_accumulate_risk_fixed_design(g, 10, 11, 1.0)))
    assert np.isnan(th.ols_accumulate_bound(10, 11, 1.0))
    assert np.all(np.isnan(th.ols_accumulate_risk_random_design_closed_form(g, 10, 11, 1.0)))
    assert np.all(np.isfinite(th.ols_accumulate_risk_random_design_closed_form(g, 10, 12, 1.0, T0=1)))
    assert np.all(np.isnan(th.ols_replace_risk_asymptotic(g, 1.0, 1.0)))
    r = th.ols_replace_risk_asymptotic(g, 0.5, 1.0, phi0=1.5)
    assert r[0] == 1.0 and np.all(np.isnan(r[1:]))
    mc = th.ols_accumulate_risk_random_design(3, 10, 11, 1.0)
    assert mc.mean.shape == (4,) and np.all(np.isnan(mc.mean)) and np.all(np.isnan(mc.sem))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: th.ols_replace_risk(1, 5, 20, -1.0), "sigma must be non-negative"),
        (lambda: th.ols_replace_risk(1, 5, 20, 1.0, sigma0=-0.1), "sigma0 must be non-negative"),
        (lambda: th.ols_replace_risk(-1, 5, 20, 1.0), "generation must be a non-negative integer"),
        (lambda: th.ols_replace_risk([0, 1.5], 5, 20, 1.0), "generation must be a non-negative integer"),
        (lambda: th.ols_replace_risk(1, 0, 20, 1.0), "d must be a positive integer"),
        (lambda: th.ols_replace_risk(1, 5, 20.5, 1.0), "T must be a positive integer"),
        (lambda: th.ols_replace_risk(1, 5, 20, 1.0, T0=0), "T0 must be a positive integer"),
        (lambda: th.ols_growing_risk(-2, 5, 20, 1.0), "generation must be a non-negative integer"),
        (lambda: th.ols_accumulate_risk_fixed_design(1, 5, 20, np.nan), "sigma must be non-negative"),
        (lambda: th.ols_accumulate_bound(5, 20, -1.0), "sigma must be non-negative"),
        (lambda: th.ols_accumulate_risk_random_design_closed_form(-1, 5, 20, 1.0), "generation must be"),
        (lambda: th.ols_replace_risk_asymptotic(1, 0.0, 1.0), "phi must be a positive"),
        (lambda: th.ols_replace_risk_asymptotic(1, 0.5, 1.0, phi0=-1), "phi0 must be a positive"),
        (lambda: th.ols_replace_risk_asymptotic(1, 0.5, -1.0), "sigma must be non-negative"),
        (lambda: th.ols_accumulate_risk_random_design(-1, 5, 20, 1.0), "generation must be a non-negative integer"),
        (lambda: th.ols_accumulate_risk_random_design([1, 2], 5, 20, 1.0), "generation must be a single"),
        (lambda: th.ols_accumulate_risk_random_design(3, 5, 20, -1.0), "sigma must be non-negative"),
        (lambda: th.ols_accumulate_risk_random_design(3, 5, 20, 1.0, draws=1), "draws must be an integer >= 2"),
        (lambda: th.ols_accumulate_risk_random_design(3, 5, 20, 1.0, seed=-1), "seed must be a non-negative integer"),
        (lambda: th.ols_accumulate_risk_random_design(3, 5, 20, 1.0, seed=None), "seed must be a non-negative integer"),
    ],
)
def test_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- Monte Carlo function


@pytest.mark.parametrize("d, T, T0, sigma, sigma0", [(5, 20, 8, 0.7, 1.3), (5, 20, 3, 1.0, 1.0), (10, 15, 40, 1.0, 0.5)])
def test_random_design_mc_matches_closed_form(d, T, T0, sigma, sigma0):
    mc = th.ols_accumulate_risk_random_design(10, d, T, sigma, T0=T0, sigma0=sigma0, draws=4000, seed=3)
    cf = th.ols_accumulate_risk_random_design_closed_form(np.arange(11), d, T, sigma, T0=T0, sigma0=sigma0)
    assert mc.mean.shape == mc.sem.shape == (11,) and mc.draws == 4000
    assert np.all(np.abs(mc.mean - cf) <= Z * mc.sem)


def test_random_design_mc_generation0_and_bound():
    d, T, G = 10, 100, 50
    mc = th.ols_accumulate_risk_random_design(G, d, T, 1.0)  # defaults: T0 = T, σ0 = σ, 2000 draws
    assert abs(mc.mean[0] - th.ols_replace_risk(0, d, T, 1.0)) <= Z * mc.sem[0]
    assert np.all(mc.mean < th.ols_accumulate_bound(d, T, 1.0))
    assert np.all(np.diff(mc.mean) > 0)  # risk increases towards its plateau


def test_random_design_mc_is_pure_and_cached():
    a = th.ols_accumulate_risk_random_design(5, 4, 12, 1.0, draws=100, seed=7)
    b = th.ols_accumulate_risk_random_design(5, 4, 12, 1.0, T0=12, sigma0=1.0, draws=100, seed=7)
    assert a is b  # normalized arguments share the cache
    c = th.ols_accumulate_risk_random_design(5, 4, 12, 1.0, draws=100, seed=8)
    assert not np.array_equal(a.mean, c.mean)
    th._accumulate_random_mc.cache_clear()
    d = th.ols_accumulate_risk_random_design(5, 4, 12, 1.0, draws=100, seed=7)
    np.testing.assert_array_equal(a.mean, d.mean)
    with pytest.raises(ValueError):
        a.mean[0] = 0.0  # read-only: the cached result cannot be corrupted


# ----------------------------------------------------------------------------- simulations


def test_accumulate_fixed_design_vs_simulation():
    rng = np.random.default_rng(20240401)
    mean, sem = _simulate(rng, workflow="accumulate", design="fixed", d=5, T=20, sigma=0.7, sigma0=1.3, G=5, R=4000)
    theory = th.ols_accumulate_risk_fixed_design(np.arange(6), 5, 20, 0.7, sigma0=1.3)
    assert np.all(np.abs(mean - theory) <= Z * sem), (mean, theory, sem)


def test_accumulate_random_design_vs_simulation():
    rng = np.random.default_rng(2404_01413)
    mean, sem = _simulate(rng, workflow="accumulate", design="random", d=5, T=20, T0=8, sigma=0.7, sigma0=1.3, G=5, R=4000)
    mc = th.ols_accumulate_risk_random_design(5, 5, 20, 0.7, T0=8, sigma0=1.3)
    assert np.all(np.abs(mean - mc.mean) <= Z * np.hypot(sem, mc.sem)), (mean, mc.mean, sem)
    cf = th.ols_accumulate_risk_random_design_closed_form(np.arange(6), 5, 20, 0.7, T0=8, sigma0=1.3)
    assert np.all(np.abs(mean - cf) <= Z * sem), (mean, cf, sem)


@pytest.mark.parametrize("design", ["random", "fixed"])
def test_replace_vs_simulation(design):
    rng = np.random.default_rng(2402_07712 + (design == "fixed"))
    T0 = 12 if design == "random" else 20
    mean, sem = _simulate(rng, workflow="replace", design=design, d=5, T=20, T0=T0, sigma=0.7, sigma0=1.3, G=5, R=3000)
    theory = th.ols_replace_risk(np.arange(6), 5, 20, 0.7, T0=T0, sigma0=1.3)
    assert np.all(np.abs(mean - theory) <= Z * sem), (mean, theory, sem)


def test_growing_vs_simulation():
    rng = np.random.default_rng(17)
    # T0 ≥ d + 4 so that every fit's risk has finite variance and the standard error means something
    mean, sem = _simulate(rng, workflow="growing", design="random", d=5, T=20, T0=9, sigma=0.7, sigma0=1.3, G=5, R=3000)
    theory = th.ols_growing_risk(np.arange(6), 5, 20, 0.7, T0=9, sigma0=1.3)
    assert np.all(np.abs(mean - theory) <= Z * sem), (mean, theory, sem)


def test_docstring_examples():
    result = doctest.testmod(th, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
