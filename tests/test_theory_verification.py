"""Tests of synthloop.theory.verification: known values, breakdown interval, broadcasting,
errors, and Monte Carlo simulations of the supervised pruner (the generator's labels, the
pruner's keep decisions) compared with the closed forms within 5 standard errors."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import special
from scipy.stats import multivariate_normal

from synthloop.theory import verification as th

Z = 5.0  # tolerance in standard errors
N_MC = 400_000


# ----------------------------------------------------------------------------- simulations


def _frame(theta_gen, theta_prune, theta):
    """Unit vectors (μ̂, w_gen, w_prune) in R^3 with the given pairwise angles."""
    dihedral_cos = (math.cos(theta) - math.cos(theta_gen) * math.cos(theta_prune)) / (
        math.sin(theta_gen) * math.sin(theta_prune)
    )
    dh = math.acos(max(-1.0, min(1.0, dihedral_cos)))
    e = np.eye(3)
    w_gen = math.cos(theta_gen) * e[0] + math.sin(theta_gen) * e[1]
    u = math.cos(dh) * e[1] + math.sin(dh) * e[2]
    w_prune = math.cos(theta_prune) * e[0] + math.sin(theta_prune) * u
    return e[0], w_gen, w_prune


def _rate(mask_event, mask_given):
    """(estimate, standard error) of P(event | given) from boolean sample masks."""
    n = int(mask_given.sum())
    est = float((mask_event & mask_given).sum()) / n
    return est, math.sqrt(max(est * (1 - est), 1.0 / n) / n)


def _simulate_mixture(rng, theta_gen, theta_prune, theta, mu_norm, d, n=N_MC):
    """Monte Carlo of the pruner in x | y ~ N(yμ, (1 − ‖μ‖²)/d I_d); returns rates with SEs."""
    mu_hat, w_gen, w_prune = (np.pad(v, (0, d - 3)) for v in _frame(theta_gen, theta_prune, theta))
    y = rng.choice([-1.0, 1.0], size=n)
    sigma = math.sqrt((1 - mu_norm**2) / d)
    x = y[:, None] * (mu_norm * mu_hat) + sigma * rng.standard_normal((n, d))
    y_gen = np.sign(x @ w_gen)
    keep = y_gen * (x @ w_prune) > 0
    right = y_gen == y
    everything = np.ones(n, dtype=bool)
    return {
        "phi": _rate(keep, right),
        "psi": _rate(keep, ~right),
        "p": _rate(~right, everything),
    }


def _simulate_teacher(rng, theta_gen, theta_prune, theta, d=3, n=N_MC):
    """Monte Carlo of the pruner for x ~ N(0, I_d), y = sign(xᵀw*)."""
    w_star, w_gen, w_prune = (np.pad(v, (0, d - 3)) for v in _frame(theta_gen, theta_prune, theta))
    x = rng.standard_normal((n, d))
    y = np.sign(x @ w_star)
    y_gen = np.sign(x @ w_gen)
    keep = y_gen * (x @ w_prune) > 0
    right = y_gen == y
    return {
        "phi": _rate(keep, right),
        "psi": _rate(keep, ~right),
        "p": _rate(~right, np.ones(n, dtype=bool)),
    }


# (theta_gen, theta_prune, theta, mu_norm, d): coplanar same side, non-coplanar, opposite sides
CONFIGS = [
    (np.pi / 3, np.pi / 12, np.pi / 3 - np.pi / 12, 0.5, 5),
    (np.pi / 4, np.pi / 6, 1.0, 0.3, 20),
    (2 * np.pi / 5, np.pi / 8, 2 * np.pi / 5 + np.pi / 8, 0.6, 5),
]


def _printed_psi(c1, c2, rho):
    """ψ as Appendix D.6 is printed in spec §3."""
    return (special.ndtr(c1) + special.ndtr(c2) - th._bvn_cdf(c1, c2, rho)) / special.ndtr(c2)


def _printed_phi(c1, c2, rho):
    """φ as Appendix D.6 is printed in spec §3."""
    num = 1 - special.ndtr(c1) - special.ndtr(c2) + th._bvn_cdf(c1, c2, rho)
    return num / (1 - special.ndtr(c2))


@pytest.mark.parametrize("seed,config", list(enumerate(CONFIGS)))
def test_supervised_pruner_rates_match_monte_carlo(seed, config):
    tg, tp, theta, m, d = config
    sim = _simulate_mixture(np.random.default_rng(seed), tg, tp, theta, m, d)
    r = th.supervised_pruner_rates(tg, tp, m, d, theta=theta)
    for name in ("phi", "psi", "p"):
        est, se = sim[name]
        assert abs(getattr(r, name) - est) < Z * se, (name, getattr(r, name), est, se)
    assert abs(th.generator_error_rate(tg, m, d) - sim["p"][0]) < Z * sim["p"][1]
    # The printed D.6 φ agrees; the printed ψ is >= 1 and contradicts the simulation.
    scale = m * math.sqrt(d / (1 - m**2))
    c1, c2 = -scale * math.cos(tp), -scale * math.cos(tg)
    assert abs(_printed_phi(c1, c2, math.cos(theta)) - sim["phi"][0]) < Z * sim["phi"][1]
    printed_psi = _printed_psi(c1, c2, math.cos(theta))
    assert printed_psi >= 1.0
    assert abs(printed_psi - sim["psi"][0]) > 50 * sim["psi"][1]


@pytest.mark.parametrize("seed,config", list(enumerate(CONFIGS)))
def test_isotropic_pruner_rates_match_monte_carlo(seed, config):
    tg, tp, theta, _, _ = config
    sim = _simulate_teacher(np.random.default_rng(100 + seed), tg, tp, theta)
    r = th.isotropic_pruner_rates(tg, tp, theta=theta)
    for name in ("phi", "psi", "p"):
        est, se = sim[name]
        assert abs(getattr(r, name) - est) < Z * se, (name, getattr(r, name), est, se)
    assert r.p == pytest.approx(tg / np.pi)  # spec §3: p = θ_gen/π in the isotropic model


def test_generator_error_rate_is_not_theta_over_pi_in_the_mixture():
    tg = np.pi / 3
    assert th.generator_error_rate(tg, 1e-9, 10) == pytest.approx(0.5, abs=1e-8)  # ‖μ‖ → 0
    assert th.generator_error_rate(tg, 0.5, 10_000) < 1e-10  # d → ∞
    assert th.generator_error_rate(tg, 0.5, 5) != pytest.approx(tg / np.pi, abs=1e-2)


def test_bvn_cdf_matches_scipy():
    rng = np.random.default_rng(7)
    h = rng.uniform(-4, 4, 60)
    k = rng.uniform(-4, 4, 60)
    rho = rng.uniform(-0.99, 0.99, 60)
    h[:10] = 0.0
    k[5:15] = 0.0
    ours = th._bvn_cdf(h, k, rho)
    for hi, ki, ri, oi in zip(h, k, rho, ours):
        ref = multivariate_normal(mean=[0, 0], cov=[[1, ri], [ri, 1]]).cdf([hi, ki])
        assert oi == pytest.approx(ref, abs=1e-6)
    assert th._bvn_cdf(0.0, 0.0, 0.5) == pytest.approx(0.25 + math.asin(0.5) / (2 * math.pi))
    assert th._bvn_cdf(0.3, -0.2, 1.0) == pytest.approx(special.ndtr(-0.2))
    assert th._bvn_cdf(0.3, -0.2, -1.0) == pytest.approx(special.ndtr(0.3) - special.ndtr(0.2))
    assert th._bvn_cdf(0.3, np.inf, 0.4) == pytest.approx(special.ndtr(0.3))
    assert th._bvn_cdf(-np.inf, 1.0, 0.4) == 0.0


def test_supervised_pruner_limits():
    # Same direction: the pruner agrees with every generated label -> no pruning.
    r = th.supervised_pruner_rates(np.pi / 4, np.pi / 4, 0.6, 4)
    assert (r.phi, r.psi) == pytest.approx((1.0, 1.0))
    # Opposite pruner (θ = π, w_prune = −w_gen): y′·xᵀw_prune = −|xᵀw_gen| < 0, keeps nothing.
    r = th.supervised_pruner_rates(np.pi / 3, 2 * np.pi / 3, 0.6, 4, theta=np.pi)
    assert (r.phi, r.psi) == pytest.approx((0.0, 0.0), abs=1e-12)
    # Better pruner than generator: p* > 1/2.
    r = th.supervised_pruner_rates(np.pi / 3, np.pi / 12, 0.5, 5)
    assert th.breakdown_point(r.phi, r.psi) > 0.5
    phi, psi, p = r  # unpacking
    assert phi == r.phi and psi == r.psi and p == r.p


def test_pruner_angle_and_triangle_check():
    tg, tp = np.pi / 3, np.pi / 8
    assert th.pruner_angle(tg, tp) == pytest.approx(tg - tp)
    assert th.pruner_angle(tg, tp, np.pi) == pytest.approx(tg + tp)
    orthogonal = th.pruner_angle(tg, tp, np.pi / 2)
    assert math.cos(orthogonal) == pytest.approx(math.cos(tg) * math.cos(tp))
    with pytest.raises(ValueError, match="theta must satisfy"):
        th.supervised_pruner_rates(tg, tp, 0.5, 5, theta=0.01)
    with pytest.raises(ValueError, match="theta must satisfy"):
        th.isotropic_pruner_rates(tg, tp, theta=2.0)


# ----------------------------------------------------------------------------- breakdown


def test_breakdown_point_known_values():
    assert th.breakdown_point(1, 1) == 0.5
    assert th.breakdown_point(1, 0) == 1.0
    assert th.breakdown_point(0.9, 0.3) == pytest.approx(0.75)
    assert th.breakdown_point(0.0, 0.4) == 0.0
    assert np.isnan(th.breakdown_point(0.0, 0.0))
    assert isinstance(th.breakdown_point(0.9, 0.3), np.float64)


def test_breakdown_interval_brackets_and_shrinks():
    phi, psi = np.meshgrid(np.linspace(0.05, 1, 12), np.linspace(0.05, 1, 12))
    p_star = th.breakdown_point(phi, psi)
    widths = []
    for t in (0.5, 0.1, 1e-2, 1e-4, 1e-8):
        iv = th.breakdown_interval(phi, psi, t)
        assert np.all(iv.lower < p_star) and np.all(p_star < iv.upper)
        widths.append(np.max(iv.upper - iv.lower))
    assert np.all(np.diff(widths) < 0) and widths[-1] < 1e-7
    iv0 = th.breakdown_interval(phi, psi, 0.0)
    np.testing.assert_allclose(iv0.lower, p_star)
    np.testing.assert_allclose(iv0.upper, p_star)
    lo, hi = th.breakdown_interval(1.0, 1.0, 0.2)
    assert (lo, hi) == pytest.approx((0.4, 0.6))


def test_breakdown_interval_matches_printed_form_and_kept_error_margin():
    phi, psi, t = 0.8, 0.35, np.array([0.1, 0.3, 0.7])
    iv = th.breakdown_interval(phi, psi, t)
    r = psi / phi
    np.testing.assert_allclose(iv.lower, (1 - t) / (1 - t + (1 + t) * r))
    np.testing.assert_allclose(iv.upper, (1 + t) / (1 + t + (1 - t) * r))
    # p*∓(t) are where the kept error rate is (1 ∓ t)/2.
    np.testing.assert_allclose(th.pruned_error_rate(iv.lower, phi, psi), (1 - t) / 2)
    np.testing.assert_allclose(th.pruned_error_rate(iv.upper, phi, psi), (1 + t) / 2)


def test_pruned_error_below_half_iff_below_breakdown():
    p = np.linspace(0, 1, 41)[:, None, None]
    phi = np.linspace(0.05, 1, 13)[None, :, None]
    psi = np.linspace(0.0, 1, 11)[None, None, :]
    p_kept = th.pruned_error_rate(p, phi, psi)
    p_star = th.breakdown_point(phi, psi)
    assert p_kept.shape == (41, 13, 11)
    off = np.abs(p - p_star) > 1e-12  # skip exact ties
    sel = off & np.isfinite(p_kept)
    below = np.broadcast_to(p < p_star, p_kept.shape)
    np.testing.assert_array_equal((p_kept < 0.5)[sel], below[sel])
    assert sel.sum() > 5000
    acc = th.asymptotic_accuracy(p, phi, psi)
    np.testing.assert_array_equal(acc[off], np.where(p < p_star, 1.0, 0.0)[off])


def test_kept_fraction_and_pruned_error_rate_values():
    assert th.kept_fraction(0.2, 0.9, 0.3) == pytest.approx(0.78)
    assert th.pruned_error_rate(0.2, 0.9, 0.3) == pytest.approx(0.06 / 0.78)
    assert th.pruned_error_rate(0.3, 1, 1) == pytest.approx(0.3)  # no pruning
    assert th.pruned_error_rate(0.3, 1, 0) == 0.0  # oracle
    assert np.isnan(th.pruned_error_rate(0.3, 0, 0))
    assert np.isnan(th.pruned_error_rate(1.0, 0.5, 0.0))  # nothing kept


def test_broadcasting_shapes():
    p = np.linspace(0.1, 0.9, 5)[:, None]
    phi = np.array([0.5, 0.9, 1.0])
    assert th.kept_fraction(p, phi, 0.3).shape == (5, 3)
    assert th.breakdown_point(phi, np.array([[0.1], [0.2]])).shape == (2, 3)
    iv = th.breakdown_interval(phi, 0.3, np.array([[0.1], [0.2]]))
    assert iv.lower.shape == iv.upper.shape == (2, 3)
    r = th.supervised_pruner_rates(np.array([[0.5], [1.0]]), 0.2, np.array([0.2, 0.4, 0.6]), 5)
    assert r.phi.shape == r.psi.shape == r.p.shape == (2, 3)
    r = th.isotropic_pruner_rates(np.array([0.5, 1.0]), 0.2)
    assert r.phi.shape == (2,)
    assert th.generator_error_rate([0.1, 0.2], 0.5, [[5], [10]]).shape == (2, 2)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: th.breakdown_point(1.2, 0.5), "phi must be a probability"),
        (lambda: th.breakdown_point(0.5, -0.1), "psi must be a probability"),
        (lambda: th.breakdown_point(np.nan, 0.5), "phi must be a probability"),
        (lambda: th.pruned_error_rate(1.5, 0.5, 0.5), "p must be a probability"),
        (lambda: th.kept_fraction(0.5, 0.5, 2), "psi must be a probability"),
        (lambda: th.asymptotic_accuracy(-0.5, 0.5, 0.5), "p must be a probability"),
        (lambda: th.breakdown_interval(0.9, 0.3, 1.5), "t must be a threshold"),
        (lambda: th.breakdown_interval(0.9, 0.3, -0.1), "t must be a threshold"),
        (lambda: th.generator_error_rate(4.0, 0.5, 5), "theta_gen must be an angle"),
        (lambda: th.generator_error_rate(1.0, 1.0, 5), "mu_norm must lie in"),
        (lambda: th.generator_error_rate(1.0, 0.5, 2.5), "d must be a positive integer"),
        (lambda: th.supervised_pruner_rates(1.0, -0.1, 0.5, 5), "theta_prune must be an angle"),
        (lambda: th.supervised_pruner_rates(1.0, 0.5, 0.5, 0), "d must be a positive integer"),
        (lambda: th.pruner_angle(1.0, 0.5, 4.0), "dihedral must be an angle"),
    ],
)
def test_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_docstring_examples():
    result = doctest.testmod(th, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_asymptotic_accuracy_boundary_is_up_to_rounding():
    """p = p* computed in floating point (0.75 for (0.9, 0.3)) is the boundary, not a side of it."""
    from synthloop.theory.verification import asymptotic_accuracy, breakdown_point

    assert np.isnan(asymptotic_accuracy(0.75, 0.9, 0.3))
    assert np.isnan(asymptotic_accuracy(breakdown_point(0.7, 0.2), 0.7, 0.2))
    np.testing.assert_array_equal(asymptotic_accuracy([0.75 - 1e-9, 0.75 + 1e-9], 0.9, 0.3), [1.0, 0.0])


def test_theory_verification_command():
    from typer.testing import CliRunner

    from synthloop.cli import app
    from synthloop.theory.verification import supervised_pruner_rates

    runner = CliRunner()
    result = runner.invoke(app, ["theory", "verification", "--theta-gen", "0.8", "--theta-prune", "0.3", "--d", "100"])
    assert result.exit_code == 0, result.output
    rates = supervised_pruner_rates(0.8, 0.3, 0.15 / np.sqrt(1 + 0.15**2), 100)
    assert f"{float(rates.phi):.6g}" in result.output and f"{float(rates.psi):.6g}" in result.output
    assert "p < p*: training on the curated data is predicted to recover" in result.output
    result = runner.invoke(app, ["theory", "verification", "--p", "0.6", "--phi", "0.5", "--psi", "0.9"])
    assert result.exit_code == 0 and "0.357143" in result.output and "p > p*" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["verification"], "give either --theta-gen and --theta-prune"),
        (["verification", "--theta-gen", "0.8"], "--theta-prune is required with the angles of a supervised pruner"),
        (["verification", "--p", "0.2", "--phi", "0.9"], "--psi is required with --p, --phi and --psi"),
        (["verification", "--p", "2", "--phi", "1", "--psi", "1"], r"--p must be a probability in \[0, 1\]; got 2.0"),
        (["verification", "--theta-gen", "0.8", "--theta-prune", "0.3", "--theta", "2"], "theta must satisfy"),
        (["regression", "--theta-gen", "1"], "--theta-gen applies to `synthloop theory verification`, not to task 'regression'"),
    ],
)
def test_theory_verification_command_errors(args, message):
    import re

    from typer.testing import CliRunner

    from synthloop.cli import app

    result = CliRunner().invoke(app, ["theory", *args])
    assert result.exit_code == 2 and re.search(message, result.output), result.output
