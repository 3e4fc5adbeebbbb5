r"""Breakdown points of training on pruned (verified) synthetic labels.

Setting (Feng, Dohmatob, Yang, Charton & Kempe 2024, spec §3): a generator labels inputs ``x``
with ``y′``, wrong with probability ``p = P(y′ ≠ y)``. A pruner (verifier) keeps a labelled pair
with probability ``φ = P(keep | y′ = y)`` if the label is correct and ``ψ = P(keep | y′ ≠ y)``
if it is wrong. No pruning is ``(φ, ψ) = (1, 1)``, the oracle is ``(1, 0)``. A downstream
classifier is trained on the kept pairs.

Everything about the kept data follows from Bayes' rule (derived in the docstrings):

* kept fraction ``κ = (1 − p)φ + pψ``;
* error rate of the kept labels ``p′ = pψ / κ``;
* breakdown point ``p* = φ/(φ + ψ) = 1/(1 + ψ/φ)``, the ``p`` at which ``p′ = 1/2``.

The second half of the module gives ``(φ, ψ)`` in closed form for the paper's supervised pruner
in the Gaussian mixture ``x | y ~ N(yμ, (1 − ‖μ‖²)/d · I_d)`` (`supervised_pruner_rates`),
checked against a Monte Carlo of the pruner in ``tests/test_theory_verification.py``. The
printed Appendix D.6 formula for ``ψ`` does not survive that check; see the Notes of
`supervised_pruner_rates`.

Conventions as in `synthloop.theory.regression`: functions broadcast like numpy ufuncs and return
a numpy float for scalar input; nonsensical arguments (a probability outside ``[0, 1]``, an
angle outside ``[0, π]``, …) raise ``ValueError``; a quantity that is undefined for valid
arguments (e.g. the error rate of an empty kept set) is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = [
    "BreakdownInterval",
    "PrunerRates",
    "asymptotic_accuracy",
    "breakdown_interval",
    "breakdown_point",
    "generator_error_rate",
    "isotropic_pruner_rates",
    "kept_fraction",
    "pruned_error_rate",
    "pruner_angle",
    "supervised_pruner_rates",
]

_ANGLE_TOL = 1e-12


# ----------------------------------------------------------------------------- validation


def _prob(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a > 1):
        raise ValueError(f"{name} must be a probability in [0, 1], got {x!r}")
    return a


def _angle(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a > np.pi):
        raise ValueError(f"{name} must be an angle in [0, pi] (radians), got {x!r}")
    return a


def _mu_norm(x) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a >= 1):
        raise ValueError(
            f"mu_norm must lie in [0, 1) (E‖x‖² = 1 leaves class variance 1 − ‖μ‖² > 0), got {x!r}"
        )
    return a


def _dimension(x) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(a)) or np.any(a < 1) or np.any(a != np.round(a)):
        raise ValueError(f"d must be a positive integer, got {x!r}")
    return a


def _out(x) -> np.ndarray | np.float64:
    """A numpy float for 0-d results, else the array (scipy-style return)."""
    return np.asarray(x, dtype=float)[()]


def _ratio(num, den) -> np.ndarray:
    """``num / den`` with NaN where ``den == 0``."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=float), np.asarray(den, dtype=float))
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)


def _check_triangle(theta_gen, theta_prune, theta) -> None:
    """Raise unless three unit vectors with these pairwise angles exist (spherical triangle)."""
    lo = np.abs(theta_gen - theta_prune)
    hi = np.minimum(theta_gen + theta_prune, 2 * np.pi - theta_gen - theta_prune)
    if np.any(theta < lo - _ANGLE_TOL) or np.any(theta > hi + _ANGLE_TOL):
        raise ValueError(
            "theta must satisfy |theta_gen - theta_prune| <= theta <= "
            "min(theta_gen + theta_prune, 2*pi - theta_gen - theta_prune) (no unit vectors "
            f"w_gen, w_prune, mu/‖mu‖ have these pairwise angles), got theta_gen={theta_gen!r}, "
            f"theta_prune={theta_prune!r}, theta={theta!r}"
        )


# ----------------------------------------------------------------------------- kept data


def kept_fraction(p, phi, psi):
    r"""Fraction of generated pairs that the pruner keeps.

    Parameters
    ----------
    p : array_like of float
        Generator error rate ``P(y′ ≠ y)`` in ``[0, 1]``.
    phi : array_like of float
        ``φ = P(keep | y′ = y)`` in ``[0, 1]``.
    psi : array_like of float
        ``ψ = P(keep | y′ ≠ y)`` in ``[0, 1]``.

    Returns
    -------
    kappa : ndarray or numpy.float64
        ``P(keep)``, broadcast over the arguments.

    Notes
    -----
    By the law of total probability over the events ``y′ = y`` (probability ``1 − p``) and
    ``y′ ≠ y`` (probability ``p``):

    .. math:: \kappa = P(\mathrm{keep}) = (1 - p)\,\varphi + p\,\psi.

    References
    ----------
    .. [1] Y. Feng, E. Dohmatob, P. Yang, F. Charton, J. Kempe, "Beyond Model Collapse: Scaling
       Up with Synthesized Data Requires Verification", 2024, arXiv:2406.07515 — the pruner
       ``(φ, ψ)`` model of their theoretical section.

    Examples
    --------
    >>> from synthloop.theory.verification import kept_fraction
    >>> print(f"{kept_fraction(0.2, 0.9, 0.3):.2f}")
    0.78
    >>> kept_fraction(0.2, [1.0, 1.0], [1.0, 0.0])  # no pruning keeps all; the oracle keeps 1 - p
    array([1. , 0.8])
    """
    p, phi, psi = _prob(p, "p"), _prob(phi, "phi"), _prob(psi, "psi")
    return _out((1 - p) * phi + p * psi)


def pruned_error_rate(p, phi, psi):
    r"""Error rate ``p′ = P(y′ ≠ y | keep)`` of the pairs the pruner keeps.

    Parameters
    ----------
    p : array_like of float
        Generator error rate ``P(y′ ≠ y)`` in ``[0, 1]``.
    phi : array_like of float
        ``φ = P(keep | y′ = y)`` in ``[0, 1]``.
    psi : array_like of float
        ``ψ = P(keep | y′ ≠ y)`` in ``[0, 1]``.

    Returns
    -------
    p_kept : ndarray or numpy.float64
        ``p′``, broadcast over the arguments. NaN where nothing is kept (``κ = 0``, see
        `kept_fraction`).

    Notes
    -----
    Bayes' rule with ``P(keep | wrong) = ψ``, ``P(keep | correct) = φ``:

    .. math:: p' = \frac{p\,\psi}{p\,\psi + (1 - p)\,\varphi}.

    ``p′ < 1/2 ⟺ pψ < (1 − p)φ ⟺ p < φ/(φ + ψ) = p*`` (`breakdown_point`), where the kept set
    is non-empty; checked on a grid in the tests. No pruning leaves ``p′ = p``, the oracle gives
    ``p′ = 0``.

    References
    ----------
    .. [1] Y. Feng, E. Dohmatob, P. Yang, F. Charton, J. Kempe, "Beyond Model Collapse: Scaling
       Up with Synthesized Data Requires Verification", 2024, arXiv:2406.07515 — the pruner
       ``(φ, ψ)`` model of their theoretical section.

    Examples
    --------
    ``0.2·0.3 / (0.2·0.3 + 0.8·0.9) = 0.06/0.78``:

    >>> from synthloop.theory.verification import pruned_error_rate
    >>> print(f"{pruned_error_rate(0.2, 0.9, 0.3):.6f}")
    0.076923
    >>> pruned_error_rate(0.3, [1.0, 1.0, 0.0], [1.0, 0.0, 0.0])  # none, oracle, keeps nothing
    array([0.3, 0. , nan])
    """
    p, phi, psi = _prob(p, "p"), _prob(phi, "phi"), _prob(psi, "psi")
    wrong = p * psi
    return _out(_ratio(wrong, wrong + (1 - p) * phi))


# ----------------------------------------------------------------------------- breakdown


def breakdown_point(phi, psi):
    r"""Breakdown point ``p* = 1/(1 + ψ/φ)`` of training on pruned synthetic labels.

    Parameters
    ----------
    phi : array_like of float
        ``φ = P(keep | y′ = y)`` in ``[0, 1]``.
    psi : array_like of float
        ``ψ = P(keep | y′ ≠ y)`` in ``[0, 1]``.

    Returns
    -------
    p_star : ndarray or numpy.float64
        ``p*``, broadcast over the arguments. ``φ = 0 < ψ`` gives ``0``; ``φ = ψ = 0`` (the
        pruner keeps nothing) gives NaN.

    Notes
    -----
    .. math:: p^* = \frac{1}{1 + \psi/\varphi} = \frac{\varphi}{\varphi + \psi}.

    It is the generator error rate at which the kept labels carry no signal,
    ``p′ = 1/2`` (`pruned_error_rate`); as the number of kept samples grows the downstream
    classifier's accuracy tends to 100% for ``p < p*`` and to 0% for ``p > p*`` (spec §3; see
    `asymptotic_accuracy`).

    ``φ = 0``: the form ``φ/(φ + ψ)`` (equal to ``1/(1 + ψ/φ)`` for ``φ > 0``) is evaluated, so
    ``φ = 0 < ψ`` gives ``p* = 0`` — this is the limit ``φ → 0⁺`` and it is the right answer:
    such a pruner keeps only wrong labels (``p′ = 1``) for every ``p > 0``, so no ``p`` lies
    below the breakdown point. ``φ = ψ = 0`` keeps nothing and has no breakdown point: NaN.

    References
    ----------
    .. [1] Y. Feng, E. Dohmatob, P. Yang, F. Charton, J. Kempe, "Beyond Model Collapse: Scaling
       Up with Synthesized Data Requires Verification", 2024, arXiv:2406.07515 — breakdown
       point of their theoretical section (Gaussian mixture, pruned labels).

    Examples
    --------
    >>> from synthloop.theory.verification import breakdown_point
    >>> breakdown_point([1.0, 1.0, 0.9], [1.0, 0.0, 0.3])  # none, oracle, a pruner
    array([0.5 , 1.  , 0.75])
    >>> print(breakdown_point(0.0, 0.5), breakdown_point(0.0, 0.0))
    0.0 nan
    """
    phi, psi = _prob(phi, "phi"), _prob(psi, "psi")
    return _out(_ratio(phi, phi + psi))


@dataclass(frozen=True)
class BreakdownInterval:
    """The finite-threshold interval ``[p*⁻(t), p*⁺(t)]`` of `breakdown_interval`.

    Attributes
    ----------
    lower : ndarray or numpy.float64
        ``p*⁻(t)``.
    upper : ndarray or numpy.float64
        ``p*⁺(t)``.
    """

    lower: np.ndarray | np.float64
    upper: np.ndarray | np.float64

    def __iter__(self):
        """Unpack as ``lower, upper = breakdown_interval(...)``."""
        return iter((self.lower, self.upper))


def breakdown_interval(phi, psi, t):
    r"""Finite-threshold breakdown interval ``[p*⁻(t), p*⁺(t)]`` (Theorem D.3).

    Parameters
    ----------
    phi : array_like of float
        ``φ = P(keep | y′ = y)`` in ``[0, 1]``.
    psi : array_like of float
        ``ψ = P(keep | y′ ≠ y)`` in ``[0, 1]``.
    t : array_like of float
        Threshold in ``[0, 1]``; the theorem takes ``t ∈ (0, 1)``, ``t = 0`` returns the limit
        ``p*`` on both sides and ``t = 1`` the trivial interval ``[0, 1]`` (for ``φ, ψ > 0``).

    Returns
    -------
    interval : BreakdownInterval
        Fields ``lower = p*⁻(t)`` and ``upper = p*⁺(t)``, each broadcast over the arguments;
        NaN where ``φ = ψ = 0``. Unpacks as ``lower, upper``.

    Notes
    -----
    As printed (spec §3, Theorem D.3):

    .. math::

        p^{*-}(t) = \frac{1 - t}{1 - t + (1 + t)\,\psi/\varphi}, \qquad
        p^{*+}(t) = \frac{1 + t}{1 + t + (1 - t)\,\psi/\varphi},

    evaluated as ``(1 − t)φ / ((1 − t)φ + (1 + t)ψ)`` and ``(1 + t)φ / ((1 + t)φ + (1 − t)ψ)``
    so that ``φ = 0`` is handled as in `breakdown_point`.

    Interpretation (derived here, checked in the tests): solving ``p′(p) = (1 ∓ t)/2`` with
    ``p′ = pψ/(pψ + (1 − p)φ)`` (`pruned_error_rate`) gives exactly ``p = p*⁻(t)`` and
    ``p = p*⁺(t)``. So ``p < p*⁻(t)`` means the kept labels have a margin ``1 − 2p′ > t`` in
    favour of the truth, and ``p > p*⁺(t)`` a margin ``> t`` against it. Since ``p′`` is
    increasing in ``p`` (for ``φ, ψ > 0``), ``p*⁻(t) ≤ p* ≤ p*⁺(t)``, with equality at
    ``t = 0``; the interval widens to ``[0, 1]`` as ``t → 1``.

    References
    ----------
    .. [1] Y. Feng, E. Dohmatob, P. Yang, F. Charton, J. Kempe, "Beyond Model Collapse: Scaling
       Up with Synthesized Data Requires Verification", 2024, arXiv:2406.07515, Appendix D,
       Theorem D.3.

    Examples
    --------
    No pruning, ``t = 0.2``: ``[0.8/2, 1.2/2]``.

    >>> from synthloop.theory.verification import breakdown_interval
    >>> lo, hi = breakdown_interval(1.0, 1.0, 0.2)
    >>> print(f"{lo:.2f} {hi:.2f}")
    0.40 0.60
    >>> iv = breakdown_interval(0.9, 0.3, 0.0)  # t = 0: p* = 0.75 on both sides
    >>> print(f"{iv.lower:.2f} {iv.upper:.2f}")
    0.75 0.75
    """
    phi, psi = _prob(phi, "phi"), _prob(psi, "psi")
    t = np.asarray(t, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t > 1):
        raise ValueError(f"t must be a threshold in [0, 1] (Theorem D.3: t in (0, 1)), got {t!r}")
    lo_num = (1 - t) * phi
    hi_num = (1 + t) * phi
    lower = _ratio(lo_num, lo_num + (1 + t) * psi)
    upper = _ratio(hi_num, hi_num + (1 - t) * psi)
    return BreakdownInterval(lower=_out(lower), upper=_out(upper))


def asymptotic_accuracy(p, phi, psi):
    r"""Limit of the downstream classifier's accuracy as the amount of synthetic data grows.

    Parameters
    ----------
    p : array_like of float
        Generator error rate ``P(y′ ≠ y)`` in ``[0, 1]``.
    phi : array_like of float
        ``φ = P(keep | y′ = y)`` in ``[0, 1]``.
    psi : array_like of float
        ``ψ = P(keep | y′ ≠ y)`` in ``[0, 1]``.

    Returns
    -------
    accuracy : ndarray or numpy.float64
        ``1.0`` where ``p < p*``, ``0.0`` where ``p > p*``, NaN at ``p = p*`` (the statement
        does not cover it) and where the pruner keeps nothing (``κ = 0``).

    Notes
    -----
    Spec §3 states the paper's dichotomy: as ``N → ∞``, accuracy → 100% for ``p < p*`` and
    → 0% for ``p > p*`` (``p* = φ/(φ + ψ)``, `breakdown_point`). The comparison is made through
    the kept error rate, ``p′ < 1/2 ⟺ p < p*`` (`pruned_error_rate`), which also covers
    ``φ = 0``. The boundary ``p = p*`` (kept labels independent of the class) is not part of the
    statement we can confirm, so it is NaN rather than a guessed ``1/2`` (equality is up to a
    relative rounding error of ``1e-12``, so that ``p = 0.75`` with ``(φ, ψ) = (0.9, 0.3)`` is on it).

    References
    ----------
    .. [1] Y. Feng, E. Dohmatob, P. Yang, F. Charton, J. Kempe, "Beyond Model Collapse: Scaling
       Up with Synthesized Data Requires Verification", 2024, arXiv:2406.07515 — breakdown
       point of their theoretical section.

    Examples
    --------
    >>> from synthloop.theory.verification import asymptotic_accuracy
    >>> asymptotic_accuracy([0.1, 0.5, 0.7, 0.8], 0.9, 0.3)  # p* = 0.75
    array([1., 1., 1., 0.])
    >>> print(asymptotic_accuracy(0.5, 1.0, 1.0))  # p = p* = 1/2
    nan
    """
    p, phi, psi = _prob(p, "p"), _prob(phi, "phi"), _prob(psi, "psi")
    wrong = p * psi
    right = (1 - p) * phi
    # p = p* up to rounding (0.75·0.3 ≠ 0.25·0.9 in floating point) is the boundary too.
    boundary = np.isclose(wrong, right, rtol=1e-12, atol=1e-300)
    acc = np.where(boundary, np.nan, np.where(wrong < right, 1.0, 0.0))
    return _out(acc)


# ----------------------------------------------------------------------------- pruner rates


@dataclass(frozen=True)
class PrunerRates:
    """Keep probabilities of a pruner and the generator error rate it sees.

    Attributes
    ----------
    phi : ndarray or numpy.float64
        ``φ = P(keep | y′ = y)``.
    psi : ndarray or numpy.float64
        ``ψ = P(keep | y′ ≠ y)``.
    p : ndarray or numpy.float64
        Generator error rate ``P(y′ ≠ y)``.
    """

    phi: np.ndarray | np.float64
    psi: np.ndarray | np.float64
    p: np.ndarray | np.float64

    def __iter__(self):
        """Unpack as ``phi, psi, p = supervised_pruner_rates(...)``."""
        return iter((self.phi, self.psi, self.p))


def _bvn_cdf(h, k, rho) -> np.ndarray:
    r"""Standard bivariate normal CDF ``Φ2(h, k; ρ) = P(Z1 ≤ h, Z2 ≤ k)``, vectorized.

    Owen (1956) via Owen's T function (``scipy.special.owens_t``):
    ``Φ2 = ½Φ(h) + ½Φ(k) − T(h, a_h) − T(k, a_k) − β`` with
    ``a_h = (k − ρh)/(h√(1−ρ²))``, ``a_k = (h − ρk)/(k√(1−ρ²))``, ``β = ½`` if ``hk < 0`` or
    (``hk = 0`` and ``h + k < 0``), else 0. ``h = 0`` uses ``T(0, ±∞) = ±¼`` with the sign of
    ``k`` (the limit ``h → 0⁺``); ``h = k = 0`` is ``¼ + arcsin(ρ)/(2π)``; ``ρ = ±1`` are the
    degenerate ``Φ(min(h, k))`` and ``max(0, Φ(h) − Φ(−k))``. Infinite ``h, k`` are allowed.
    Checked against ``scipy.stats.multivariate_normal.cdf`` in the tests.
    """
    h, k, rho = np.broadcast_arrays(
        np.asarray(h, dtype=float), np.asarray(k, dtype=float), np.asarray(rho, dtype=float)
    )
    ndtr = special.ndtr
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(np.clip(1 - rho**2, 0.0, None))

        def owen_term(x, y):
            # T(x, (y − ρx)/(x s)), with the x = 0 (and infinite) limits.
            a = (y - rho * x) / (x * s)
            t = special.owens_t(x, a)
            t = np.where(x == 0, np.sign(y) / 4, t)
            return np.where(np.isinf(x), 0.0, t)

        hk = h * k
        beta = np.where((hk < 0) | ((hk == 0) & (h + k < 0)), 0.5, 0.0)
        general = 0.5 * ndtr(h) + 0.5 * ndtr(k) - owen_term(h, k) - owen_term(k, h) - beta
        # Infinite arguments: Φ2(h, +∞) = Φ(h), Φ2(h, −∞) = 0.
        general = np.where(np.isposinf(k), ndtr(h), general)
        general = np.where(np.isposinf(h), ndtr(k), general)
        general = np.where(np.isneginf(h) | np.isneginf(k), 0.0, general)
        both_zero = 0.25 + np.arcsin(np.clip(rho, -1, 1)) / (2 * np.pi)
        out = np.where((h == 0) & (k == 0), both_zero, general)
        out = np.where(rho >= 1, ndtr(np.minimum(h, k)), out)
        out = np.where(rho <= -1, np.maximum(0.0, ndtr(h) - ndtr(-k)), out)
    return np.clip(out, 0.0, 1.0)


def pruner_angle(theta_gen, theta_prune, dihedral=0.0):
    r"""Angle ``θ = ∠(w_gen, w_prune)`` from the two angles to ``μ`` and the dihedral angle.

    Parameters
    ----------
    theta_gen : array_like of float
        ``θ_gen = ∠(w_gen, μ)`` in ``[0, π]``.
    theta_prune : array_like of float
        ``θ_prune = ∠(w_prune, μ)`` in ``[0, π]``.
    dihedral : array_like of float, optional
        Angle in ``[0, π]`` between the parts of ``w_gen`` and ``w_prune`` orthogonal to ``μ``.
        ``0`` (default): coplanar, same side of ``μ`` (``θ = |θ_gen − θ_prune|``); ``π``:
        coplanar, opposite sides; ``π/2``: orthogonal deviations, the typical configuration of
        two independently perturbed directions in high dimension
        (``cos θ = cos θ_gen cos θ_prune``).

    Returns
    -------
    theta : ndarray or numpy.float64
        ``θ`` in ``[0, π]``, broadcast over the arguments.

    Notes
    -----
    With ``w = cos θ_· μ̂ + sin θ_· u_·`` and ``u_gen · u_prune = cos(dihedral)`` (spherical law
    of cosines):

    .. math:: \cos\theta = \cos\theta_{gen}\cos\theta_{prune}
              + \sin\theta_{gen}\sin\theta_{prune}\cos(\mathrm{dihedral}).

    Examples
    --------
    >>> import numpy as np
    >>> from synthloop.theory.verification import pruner_angle
    >>> print(f"{pruner_angle(np.pi / 3, np.pi / 12):.6f}")  # coplanar: π/3 − π/12 = π/4
    0.785398
    >>> print(f"{pruner_angle(np.pi / 2, np.pi / 6, np.pi / 2):.6f}")  # cos θ = 0: π/2
    1.570796
    """
    tg, tp = _angle(theta_gen, "theta_gen"), _angle(theta_prune, "theta_prune")
    dh = _angle(dihedral, "dihedral")
    c = np.cos(tg) * np.cos(tp) + np.sin(tg) * np.sin(tp) * np.cos(dh)
    return _out(np.arccos(np.clip(c, -1.0, 1.0)))


def _thresholds(theta, mu_norm, d):
    """``c = −‖μ‖ √(d/(1 − ‖μ‖²)) cos θ``: the standardized threshold of ``xᵀw`` (class +1)."""
    return -mu_norm * np.sqrt(d / (1 - mu_norm**2)) * np.cos(theta)


def generator_error_rate(theta_gen, mu_norm, d):
    r"""Error rate ``p = P(sign(xᵀw_gen) ≠ y)`` of a linear generator in the Gaussian mixture.

    Parameters
    ----------
    theta_gen : array_like of float
        ``θ_gen = ∠(w_gen, μ)`` in ``[0, π]``.
    mu_norm : array_like of float
        ``‖μ‖`` in ``[0, 1)``.
    d : array_like of int
        Dimension ``d >= 1``.

    Returns
    -------
    p : ndarray or numpy.float64
        ``Φ(c2)``, broadcast over the arguments.

    Notes
    -----
    Model: ``y = ±1`` with probability ½ each, ``x = yμ + σ η`` with ``η ~ N(0, I_d)`` and
    ``σ² = (1 − ‖μ‖²)/d`` (so ``E‖x‖² = 1``), unit ``w_gen``, generated label
    ``y′ = sign(xᵀw_gen)`` (deterministic). Given ``y = +1``,
    ``xᵀw_gen = ‖μ‖cos θ_gen + σ Z`` with ``Z ~ N(0, 1)``, so
    ``P(y′ ≠ y) = P(Z < c2)``; ``y = −1`` is the mirror image. Hence

    .. math:: p = \Phi(c_2), \qquad c_2 = -\|\mu\|\sqrt{\frac{d}{1 - \|\mu\|^2}}\,\cos\theta_{gen},

    which confirms the threshold of spec §3 with the root and the fraction restored (checked
    by Monte Carlo in the tests).

    *Check* of spec §3's ``p = θ_gen/π``: it does **not** hold in this mixture — as
    ``‖μ‖ → 0`` the classes merge and ``p → ½`` for every ``θ_gen``; for fixed ``‖μ‖ > 0`` and
    ``d → ∞``, ``p → 0`` (``θ_gen < π/2``). ``θ_gen/π`` is the error of ``sign(xᵀw_gen)`` for
    the noiseless teacher model ``x ~ N(0, I_d)``, ``y = sign(xᵀμ)`` (the probability that a
    random hyperplane separates ``w_gen`` and ``μ``); see `isotropic_pruner_rates`, whose
    ``p`` is checked by Monte Carlo in the tests.

    References
    ----------
    .. [1] Y. Feng, E. Dohmatob, P. Yang, F. Charton, J. Kempe, "Beyond Model Collapse: Scaling
       Up with Synthesized Data Requires Verification", 2024, arXiv:2406.07515, Appendix D
       (supervised pruning, Section D.6 per spec §3).

    Examples
    --------
    ``‖μ‖ = 0.6, d = 4`` gives ``√(d/(1 − ‖μ‖²)) = 2.5``; at ``θ_gen = π/3``, ``c2 = −0.75``:

    >>> import numpy as np
    >>> from synthloop.theory.verification import generator_error_rate
    >>> print(f"{generator_error_rate(np.pi / 3, 0.6, 4):.6f}")
    0.226627
    >>> print(f"{generator_error_rate(np.pi / 2, 0.6, 4):.6f}")  # w_gen ⟂ μ: chance
    0.500000
    """
    tg = _angle(theta_gen, "theta_gen")
    m, d = _mu_norm(mu_norm), _dimension(d)
    return _out(special.ndtr(_thresholds(tg, m, d)))


def supervised_pruner_rates(theta_gen, theta_prune, mu_norm, d, theta=None):
    r"""``φ``, ``ψ`` (and ``p``) of the supervised pruner ``q = 1[y′·xᵀw_prune > 0]``.

    Parameters
    ----------
    theta_gen : array_like of float
        ``θ_gen = ∠(w_gen, μ)`` in ``[0, π]``; the generator labels ``y′ = sign(xᵀw_gen)``.
    theta_prune : array_like of float
        ``θ_prune = ∠(w_prune, μ)`` in ``[0, π]``.
    mu_norm : array_like of float
        ``‖μ‖`` in ``[0, 1)``.
    d : array_like of int
        Dimension ``d >= 1``.
    theta : array_like of float, optional
        ``θ = ∠(w_gen, w_prune)`` in ``[0, π]``; it must be consistent with the other two
        angles (``|θ_gen − θ_prune| ≤ θ ≤ min(θ_gen + θ_prune, 2π − θ_gen − θ_prune)``, else
        ``ValueError``). Default: the coplanar configuration with both vectors on the same side
        of ``μ``, ``θ = |θ_gen − θ_prune|``; `pruner_angle` gives the others (e.g. orthogonal
        deviations, ``cos θ = cos θ_gen cos θ_prune``). A configuration other than the
        coplanar one needs ``d ≥ 3`` to exist.

    Returns
    -------
    rates : PrunerRates
        Fields ``phi``, ``psi`` and ``p`` (`generator_error_rate`), each broadcast over the
        arguments. Unpacks as ``phi, psi, p``.

    Notes
    -----
    Model as in `generator_error_rate`: ``x = yμ + σ η``, ``σ² = (1 − ‖μ‖²)/d``, unit
    ``w_gen``, ``w_prune``; ``y′ = sign(xᵀw_gen)``; keep iff ``y′·xᵀw_prune > 0``. By the
    ``y → −y`` symmetry condition on ``y = +1``: ``xᵀw_gen = ‖μ‖cos θ_gen + σZ1``,
    ``xᵀw_prune = ‖μ‖cos θ_prune + σZ2`` with ``(Z1, Z2)`` standard bivariate normal of
    correlation ``ρ = w_genᵀw_prune = cos θ``. With

    .. math:: c_1 = -\|\mu\|\sqrt{\tfrac{d}{1-\|\mu\|^2}}\cos\theta_{prune}, \qquad
              c_2 = -\|\mu\|\sqrt{\tfrac{d}{1-\|\mu\|^2}}\cos\theta_{gen},

    ``y′ = y ⟺ Z1 > c2``, and then keep ``⟺ Z2 > c1``; ``y′ ≠ y ⟺ Z1 < c2``, and then
    ``y′ = −1`` so keep ``⟺ xᵀw_prune < 0 ⟺ Z2 < c1``. Hence

    .. math::

        \varphi = \frac{P(Z_1 > c_2, Z_2 > c_1)}{P(Z_1 > c_2)}
                = \frac{1 - \Phi(c_1) - \Phi(c_2) + \Phi_2(c_1, c_2; \cos\theta)}{1 - \Phi(c_2)}
                = \frac{\Phi_2(-c_1, -c_2; \cos\theta)}{\Phi(-c_2)},

        \psi = \frac{P(Z_1 < c_2, Z_2 < c_1)}{P(Z_1 < c_2)}
             = \frac{\Phi_2(c_1, c_2; \cos\theta)}{\Phi(c_2)},

        p = \Phi(c_2)

    (the last forms are the ones evaluated; they avoid ``1 − Φ`` cancellation).

    *Check against Appendix D.6 as printed in spec §3* (Monte Carlo of the pruner with
    400 000 samples in ``d = 5`` and ``d = 20``, three configurations including a
    non-coplanar one, in ``tests/test_theory_verification.py``):

    * ``φ``: the printed ``(1 − Φ(c1) − Φ(c2) + Φ2(c1, c2; cos θ))/(1 − Φ(c2))`` is
      **confirmed** (within 5 standard errors).
    * ``ψ``: the printed ``(Φ(c1) + Φ(c2) − Φ2(c1, c2; cos θ))/Φ(c2)`` is **wrong** as extracted:
      it equals ``P(Z1 < c2 or Z2 < c1)/P(Z1 < c2) = 1 + (Φ(c1) − Φ2)/Φ(c2) ≥ 1``, not a
      probability. The simulation confirms ``ψ = Φ2(c1, c2; cos θ)/Φ(c2)``, implemented here.
      (The printed numerator is the complement ``1 − P(Z1 > c2, Z2 > c1)`` of φ's numerator —
      plausibly a transcription slip.)
    * thresholds ``c1, c2``: the forms with ``√(d/(1 − ‖μ‖²))`` above are confirmed.
    * spec §3's ``p = θ_gen/π`` does not hold in this model (see `generator_error_rate`).

    ``Φ2`` is computed with Owen's T function (vectorized, ~1e-15 absolute accuracy; checked
    against ``scipy.stats.multivariate_normal.cdf``). Relative accuracy of ``ψ`` degrades when
    ``Φ(c2)`` is tiny (``c2 ≲ −8``).

    References
    ----------
    .. [1] Y. Feng, E. Dohmatob, P. Yang, F. Charton, J. Kempe, "Beyond Model Collapse: Scaling
       Up with Synthesized Data Requires Verification", 2024, arXiv:2406.07515, Appendix D
       (supervised pruning, Section D.6 per spec §3).
    .. [2] D. B. Owen, "Tables for computing bivariate normal probabilities", Annals of
       Mathematical Statistics 27 (1956) — ``Φ2`` via Owen's T.

    Examples
    --------
    ``w_prune = μ̂`` (``θ_prune = 0``) with the generator at ``θ_gen = π/3``, ``‖μ‖ = 0.6``,
    ``d = 4`` (``c1 = −1.5``, ``c2 = −0.75``):

    >>> import numpy as np
    >>> from synthloop.theory.verification import supervised_pruner_rates, breakdown_point
    >>> r = supervised_pruner_rates(np.pi / 3, 0.0, 0.6, 4)
    >>> print(f"phi={r.phi:.4f} psi={r.psi:.4f} p={r.p:.4f}")
    phi=0.9652 psi=0.1759 p=0.2266
    >>> print(f"{breakdown_point(r.phi, r.psi):.4f}")
    0.8458

    Identical generator and pruner (``θ = 0``) keep every generated label as it is: ``φ = 1``
    and ``ψ = 1`` — no pruning.

    >>> r = supervised_pruner_rates(np.pi / 4, np.pi / 4, 0.6, 4)
    >>> print(f"{r.phi:.6f} {r.psi:.6f}")
    1.000000 1.000000
    """
    tg, tp = _angle(theta_gen, "theta_gen"), _angle(theta_prune, "theta_prune")
    m, d = _mu_norm(mu_norm), _dimension(d)
    th = np.abs(tg - tp) if theta is None else _angle(theta, "theta")
    _check_triangle(tg, tp, th)
    c1, c2 = _thresholds(tp, m, d), _thresholds(tg, m, d)
    rho = np.cos(th)
    p = special.ndtr(c2)
    phi = _ratio(_bvn_cdf(-c1, -c2, rho), special.ndtr(-c2))
    psi = _ratio(_bvn_cdf(c1, c2, rho), p)
    return PrunerRates(phi=_out(phi), psi=_out(psi), p=_out(np.broadcast_to(p, phi.shape)))


def isotropic_pruner_rates(theta_gen, theta_prune, theta=None):
    r"""``φ``, ``ψ``, ``p`` of the supervised pruner for the noiseless isotropic teacher.

    Parameters
    ----------
    theta_gen : array_like of float
        ``θ_gen = ∠(w_gen, w*)`` in ``[0, π]``.
    theta_prune : array_like of float
        ``θ_prune = ∠(w_prune, w*)`` in ``[0, π]``.
    theta : array_like of float, optional
        ``θ = ∠(w_gen, w_prune)``; default and consistency rule as in
        `supervised_pruner_rates`.

    Returns
    -------
    rates : PrunerRates
        Fields ``phi``, ``psi``, ``p``; ``psi`` is NaN where ``θ_gen = 0`` (no wrong labels),
        ``phi`` NaN where ``θ_gen = π``.

    Notes
    -----
    Model: ``x ~ N(0, I_d)``, ``y = sign(xᵀw*)``, ``y′ = sign(xᵀw_gen)``, keep iff
    ``y′·xᵀw_prune > 0`` — the limit of the mixture in which spec §3's ``p = θ_gen/π`` holds.
    With ``(Z0, Z1, Z2) = xᵀ(w*, w_gen, w_prune)`` (unit vectors), ``P(sign Zi ≠ sign Zj) =
    ∠_{ij}/π`` and the orthant probability
    ``P(Z0, Z1, Z2 > 0) = 1/8 + (arcsin ρ01 + arcsin ρ02 + arcsin ρ12)/(4π)`` give
    ``P(all signs equal) = 1 − (θ_gen + θ_prune + θ)/(2π)``, hence

    .. math::

        p = \frac{\theta_{gen}}{\pi}, \qquad
        \varphi = \frac{1 - (\theta_{gen} + \theta_{prune} + \theta)/(2\pi)}
                       {1 - \theta_{gen}/\pi}, \qquad
        \psi = \frac{\theta_{gen} + \theta_{prune} - \theta}{2\,\theta_{gen}}.

    (``ψ``: ``P(y′ ≠ y, keep) = P(sign Z1 = sign Z2) − P(all equal) = (θ_gen + θ_prune − θ)/(2π)``.)
    Coplanar with ``θ_prune ≤ θ_gen``: ``ψ = θ_prune/θ_gen``. Derived here and checked by
    Monte Carlo in the tests; not a formula printed in the paper.

    Examples
    --------
    Coplanar, ``w_prune`` between ``w*`` and ``w_gen``: ``φ = 1``, ``ψ = θ_prune/θ_gen = 1/3``;
    with ``θ = π/4`` instead, ``φ = (1 − (π/2 + π/12)/(2π))/(3/4) = 17/18``, ``ψ = 1/6``.

    >>> import numpy as np
    >>> from synthloop.theory.verification import isotropic_pruner_rates
    >>> r = isotropic_pruner_rates(np.pi / 4, np.pi / 12)
    >>> print(f"phi={r.phi:.4f} psi={r.psi:.4f} p={r.p:.4f}")
    phi=1.0000 psi=0.3333 p=0.2500
    >>> r = isotropic_pruner_rates(np.pi / 4, np.pi / 12, theta=np.pi / 4)
    >>> print(f"phi={r.phi:.4f} psi={r.psi:.4f}")
    phi=0.9444 psi=0.1667
    """
    tg, tp = _angle(theta_gen, "theta_gen"), _angle(theta_prune, "theta_prune")
    th = np.abs(tg - tp) if theta is None else _angle(theta, "theta")
    _check_triangle(tg, tp, th)
    tg, tp, th = np.broadcast_arrays(tg, tp, th)
    p = tg / np.pi
    phi = _ratio(1 - (tg + tp + th) / (2 * np.pi), 1 - p)
    psi = _ratio(tg + tp - th, 2 * tg)
    return PrunerRates(phi=_out(np.clip(phi, 0, 1)), psi=_out(np.clip(psi, 0, 1)), p=_out(p))
