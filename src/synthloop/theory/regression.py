r"""Excess test risk of iterated least squares (OLS) on its own labels.

Setting (Dohmatob, Feng & Kempe 2024; Gerstgrasser et al. 2024): inputs ``x ~ N(0, Σ)`` in
``R^d``, real labels ``y = xᵀw* + ε`` with ``ε ~ N(0, σ²)``. Generation ``g = 0`` fits OLS on
``T`` real samples; generation ``g ≥ 1`` fits OLS on data whose labels are the predictions of
generation ``g - 1`` plus fresh noise ``N(0, σ0²)`` (``T0`` synthetic samples per generation
unless a workflow says otherwise). The risk is the excess test risk

    E_g = E ‖ŵ_g − w*‖²_Σ = E (ŵ_g − w*)ᵀ Σ (ŵ_g − w*),

the expectation taken over the noise *and* the Gaussian design(s).

Indexing: synthloop's generation ``g`` is the papers' ``n = g + 1`` in Gerstgrasser et al. and
in spec §1 (whose "generation 1" is the real-data fit), and it is Dohmatob et al.'s ``n`` (their
number of synthetic relabelling stages before the model that is evaluated).

Whitening: every OLS error below is ``ŵ − w* = (XᵀX)⁻¹Xᵀ(noise)`` for a stacked design with
Gaussian rows. Writing ``X = Z Σ^{1/2}`` with ``Z`` standard Gaussian gives
``Σ^{1/2}(ŵ − w*) = (ZᵀZ)⁻¹Zᵀ(noise)``, so every risk here is the same for every ``Σ`` (and
every ``w*``): the functions take no ``Σ``.

The workhorse is the inverse-Wishart mean: for ``W = ZᵀZ ~ Wishart_d(n, I)`` with ``n > d + 1``,
``E W⁻¹ = I / (n − d − 1)``, hence ``E tr(W⁻¹) = d / (n − d − 1)``; for ``n ≤ d + 1`` the
expectation is infinite (``n = d + 1``) or OLS is not unique (``n ≤ d``). Outside that domain the
functions return NaN, as scipy.stats does outside a distribution's support; nonsensical arguments
(negative noise, negative generation, non-integer counts) raise ``ValueError``.

Functions broadcast over array arguments like numpy ufuncs and return a numpy float for scalar
input. ``ols_accumulate_risk_random_design`` is the exception: it returns the whole curve
``g = 0 … G`` for scalar parameters.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = [
    "MonteCarloRisk",
    "ols_accumulate_bound",
    "ols_accumulate_risk_fixed_design",
    "ols_accumulate_risk_random_design",
    "ols_accumulate_risk_random_design_closed_form",
    "ols_growing_risk",
    "ols_replace_risk",
    "ols_replace_risk_asymptotic",
    "ridge_mixture_risk_fixed_design",
    "ridge_risk_random_design",
]

_BASEL_TAIL = np.pi**2 / 6 - 1  # sum_{k>=2} 1/k^2


# ----------------------------------------------------------------------------- validation


def _integers(x, name: str, minimum: int, what: str) -> np.ndarray:
    """``x`` as a float array after checking it holds integers ``>= minimum``."""
    a = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(a)) or np.any(a < minimum) or np.any(a != np.round(a)):
        raise ValueError(f"{name} must be {what}, got {x!r}")
    return a


def _generation(x) -> np.ndarray:
    return _integers(x, "generation", 0, "a non-negative integer (g = 0, 1, 2, ...)")


def _count(x, name: str) -> np.ndarray:
    return _integers(x, name, 1, "a positive integer")


def _scale(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"{name} must be non-negative (a noise standard deviation), got {x!r}")
    return a


def _out(x) -> np.ndarray | np.float64:
    """A numpy float for 0-d results, else the array (scipy-style return)."""
    return np.asarray(x, dtype=float)[()]


def _inv_wishart_trace(d: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``E tr(W⁻¹) = d / (n − d − 1)`` for ``W ~ Wishart_d(n, I)``; NaN where ``n ≤ d + 1``."""
    d, n = np.broadcast_arrays(d, n)
    denom = n - d - 1
    return np.divide(d, denom, out=np.full(denom.shape, np.nan), where=denom > 0)


# ----------------------------------------------------------------------------- replace


def ols_replace_risk(generation, d, T, sigma, T0=None, sigma0=None):
    r"""Exact excess risk of OLS under the ``replace`` workflow (finite samples).

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0``; generation 0 is fit on ``T`` real samples, generation ``g >= 1``
        on ``T0`` samples labelled by generation ``g - 1`` (with noise ``sigma0``).
    d : array_like of int
        Input dimension, ``d >= 1``.
    T : array_like of int
        Number of real samples (generation 0).
    sigma : array_like of float
        Standard deviation of the real label noise, ``>= 0``.
    T0 : array_like of int, optional
        Synthetic samples per generation ``g >= 1``. Default: ``T``.
    sigma0 : array_like of float, optional
        Standard deviation of the noise added to synthetic labels. Default: ``sigma``.

    Returns
    -------
    risk : ndarray or numpy.float64
        ``E ‖ŵ_g − w*‖²_Σ``, broadcast over the arguments. NaN where ``T <= d + 1``, or where
        ``g >= 1`` and ``T0 <= d + 1``.

    Notes
    -----
    .. math::

        E_g = \sigma^2 \frac{d}{T - d - 1} + g\,\sigma_0^2 \frac{d}{T_0 - d - 1}.

    Derivation. With ``u_g = X_g^+ ε_g = (X_gᵀX_g)⁻¹X_gᵀε_g``, generation ``g`` fits labels
    ``X_g ŵ_{g-1} + ε_g``, so ``ŵ_g = ŵ_{g-1} + u_g`` and ``e_g = ŵ_g − w* = Σ_{k≤g} u_k``.
    The noises are independent with mean zero, so the cross terms vanish and
    ``E‖e_g‖² = Σ_k σ_k² E tr((X_kᵀX_k)⁻¹) = Σ_k σ_k² d/(n_k − d − 1)`` (inverse-Wishart
    mean, ``n_k`` rows, whitened design). This holds for a *random* design (fresh ``X_g``
    every generation) and for a *fixed* design (one ``X`` relabelled every generation, which
    needs ``T0 = T``): only the independence of the noises is used. The risk does not depend
    on ``Σ`` or ``w*`` (see the module docstring).

    With ``T0 = T`` and ``sigma0 = sigma`` this is Gerstgrasser et al.'s
    ``σ² d/(T − d − 1) · (g + 1)`` (their ``n = g + 1``). Dohmatob et al. state it with the
    real-data fit last and the synthetic fits first; the risk is a sum of independent terms,
    so the order does not matter.

    References
    ----------
    .. [1] E. Dohmatob, Y. Feng, J. Kempe, "Model Collapse Demystified: The Case of
       Regression", NeurIPS 2024, arXiv:2402.07712, Section 4 "Exact Test Error
       Characterization" (unregularized, under-parametrized case ``T, T0 >= d + 2``).
    .. [2] M. Gerstgrasser et al., "Is Model Collapse Inevitable? Breaking the Curse of
       Recursion by Accumulating Real and Synthetic Data", arXiv:2404.01413, linear-regression
       analysis, result for replacing data (test error linear in the number of iterations).

    Examples
    --------
    Spec check (Dohmatob's ``n = 5`` synthetic stages is ``g = 5``): ``6 · 50/149``.

    >>> from synthloop.theory.regression import ols_replace_risk
    >>> print(f"{ols_replace_risk(5, d=50, T=200, sigma=1.0):.4f}")
    2.0134
    >>> print(f"{ols_replace_risk(4, d=50, T=200, sigma=1.0):.4f}")
    1.6779
    >>> ols_replace_risk([0, 1, 2], d=10, T=11, sigma=1.0)  # T <= d + 1: outside the domain
    array([nan, nan, nan])
    """
    g = _generation(generation)  # (...)
    d, T = _count(d, "d"), _count(T, "T")
    T0 = T if T0 is None else _count(T0, "T0")
    sigma = _scale(sigma, "sigma")
    sigma0 = sigma if sigma0 is None else _scale(sigma0, "sigma0")
    first = sigma**2 * _inv_wishart_trace(d, T)
    later = g * sigma0**2 * _inv_wishart_trace(d, T0)
    return _out(first + np.where(g > 0, later, 0.0))


def ols_replace_risk_asymptotic(generation, phi, sigma, phi0=None, sigma0=None):
    r"""Excess risk of OLS under ``replace`` in the proportional limit ``d, T → ∞, d/T → φ``.

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0`` (see `ols_replace_risk`).
    phi : array_like of float
        Aspect ratio ``φ = d/T > 0`` of the real-data fit.
    sigma : array_like of float
        Standard deviation of the real label noise, ``>= 0``.
    phi0 : array_like of float, optional
        Aspect ratio ``φ0 = d/T0`` of the synthetic fits. Default: ``phi``.
    sigma0 : array_like of float, optional
        Standard deviation of the synthetic label noise. Default: ``sigma``.

    Returns
    -------
    risk : ndarray or numpy.float64
        The limiting risk, broadcast over the arguments. NaN where ``φ >= 1``, or where
        ``g >= 1`` and ``φ0 >= 1`` (over-parametrized: OLS is not the least-squares solution
        and this formula does not apply).

    Notes
    -----
    .. math::

        E_g = \sigma^2 \frac{\phi}{1 - \phi} + g\,\sigma_0^2 \frac{\phi_0}{1 - \phi_0}.

    It is the limit of `ols_replace_risk`: ``d/(T − d − 1) → φ/(1 − φ)``. Divided by the null
    predictor's risk ``‖w*‖²_Σ`` it reads ``(1/SNR) φ/(1−φ) + (g/SNR0) φ0/(1−φ0)``.

    References
    ----------
    .. [1] E. Dohmatob, Y. Feng, J. Kempe, "Model Collapse Demystified: The Case of
       Regression", NeurIPS 2024, arXiv:2402.07712, Section 4 "Exact Test Error
       Characterization".

    Examples
    --------
    ``φ = φ0 = 1/4`` gives ``φ/(1−φ) = 1/3`` per fit: ``(g + 1)/3``.

    >>> from synthloop.theory.regression import ols_replace_risk_asymptotic
    >>> print(f"{ols_replace_risk_asymptotic(4, phi=0.25, sigma=1.0):.6f}")
    1.666667
    >>> print(f"{ols_replace_risk_asymptotic(5, phi=0.25, sigma=1.0):.6f}")
    2.000000
    """
    g = _generation(generation)
    phi = np.asarray(phi, dtype=float)
    if not np.all(np.isfinite(phi)) or np.any(phi <= 0):
        raise ValueError(f"phi must be a positive aspect ratio d/T, got {phi!r}")
    if phi0 is None:
        phi0 = phi
    else:
        phi0 = np.asarray(phi0, dtype=float)
        if not np.all(np.isfinite(phi0)) or np.any(phi0 <= 0):
            raise ValueError(f"phi0 must be a positive aspect ratio d/T0, got {phi0!r}")
    sigma = _scale(sigma, "sigma")
    sigma0 = sigma if sigma0 is None else _scale(sigma0, "sigma0")

    def ratio(p):
        p = np.asarray(p)
        return np.divide(p, 1 - p, out=np.full(p.shape, np.nan), where=p < 1)

    later = g * sigma0**2 * ratio(phi0)
    return _out(sigma**2 * ratio(phi) + np.where(g > 0, later, 0.0))


# ----------------------------------------------------------------------------- accumulate


def ols_accumulate_risk_fixed_design(generation, d, T, sigma, sigma0=None):
    r"""Exact excess risk of OLS under ``accumulate`` with a fixed design.

    One design ``X`` (``T`` Gaussian rows, drawn once) is relabelled every generation, and
    generation ``g`` fits OLS on the ``g + 1`` stacked copies of ``X`` with their labels: the
    real ones and those produced by generations ``0 … g − 1``.

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0``.
    d : array_like of int
        Input dimension, ``d >= 1``.
    T : array_like of int
        Rows of the design (real and every synthetic set alike: ``T0 = T``).
    sigma : array_like of float
        Standard deviation of the real label noise, ``>= 0``.
    sigma0 : array_like of float, optional
        Standard deviation of the synthetic label noise. Default: ``sigma``.

    Returns
    -------
    risk : ndarray or numpy.float64
        ``E ‖ŵ_g − w*‖²_Σ`` (averaged over the Gaussian design too), broadcast over the
        arguments; NaN where ``T <= d + 1``.

    Notes
    -----
    .. math::

        E_g = \frac{d}{T - d - 1}\Big(\sigma^2 + \sigma_0^2 \sum_{k=2}^{g+1} \frac{1}{k^2}\Big)
            = \frac{d}{T - d - 1}\Big(\sigma^2 + \sigma_0^2\big(\tfrac{\pi^2}{6} - 1
              - \psi_1(g + 2)\big)\Big),

    with ``ψ1`` the trigamma function.

    Derivation (re-derived here; spec §1 gives it with ``n = g + 1``). Let
    ``u_k = (XᵀX)⁻¹Xᵀε_k`` and ``e_g = ŵ_g − w*``. The normal equations of ``g + 1`` stacked
    copies of ``X`` are ``(g+1) XᵀX ŵ_g = Xᵀ(Xw* + ε_0) + Σ_{k=1}^{g} Xᵀ(Xŵ_{k−1} + ε_k)``, i.e.
    ``(g+1) e_g = Σ_{k=0}^{g} u_k + Σ_{k=0}^{g−1} e_k``. Subtracting the same identity at
    ``g − 1`` gives ``(g+1) e_g − g e_{g−1} = u_g + e_{g−1}``, so

        e_g = e_{g−1} + u_g / (g + 1) = Σ_{k=0}^{g} u_k / (k + 1).

    The ``u_k`` are uncorrelated given ``X`` with ``E‖u_k‖² = σ_k² E tr((XᵀX)⁻¹) =
    σ_k² d/(T − d − 1)`` (inverse-Wishart mean, whitened design), which gives the formula. It
    does not depend on ``Σ`` or ``w*``; it increases to `ols_accumulate_bound` as
    ``g → ∞``. Checked against a brute-force simulation (stacked least squares) in the tests.

    References
    ----------
    .. [1] M. Gerstgrasser et al., "Is Model Collapse Inevitable? Breaking the Curse of
       Recursion by Accumulating Real and Synthetic Data", arXiv:2404.01413, linear-regression
       analysis, result for accumulating data (fixed design; bounded test error).

    Examples
    --------
    The ratio to generation 0 is ``Σ_{k=1}^{g+1} 1/k²`` (1.5498 at ``g = 9``, → π²/6):

    >>> from synthloop.theory.regression import ols_accumulate_risk_fixed_design
    >>> r = ols_accumulate_risk_fixed_design([0, 9], d=10, T=100, sigma=1.0)
    >>> print(f"{r[1] / r[0]:.4f}")
    1.5498
    """
    g = _generation(generation)
    d, T = _count(d, "d"), _count(T, "T")
    sigma = _scale(sigma, "sigma")
    sigma0 = sigma if sigma0 is None else _scale(sigma0, "sigma0")
    tail = _BASEL_TAIL - special.polygamma(1, g + 2)  # sum_{k=2}^{g+1} 1/k^2, exactly 0 at g = 0
    return _out(_inv_wishart_trace(d, T) * (sigma**2 + sigma0**2 * np.where(g > 0, tail, 0.0)))


def ols_accumulate_bound(d, T, sigma, sigma0=None):
    r"""Gerstgrasser et al.'s bound on the excess risk of OLS under ``accumulate``.

    Parameters
    ----------
    d : array_like of int
        Input dimension, ``d >= 1``.
    T : array_like of int
        Real samples, equal to the synthetic samples per generation.
    sigma : array_like of float
        Standard deviation of the real label noise, ``>= 0``.
    sigma0 : array_like of float, optional
        Standard deviation of the synthetic label noise. Default: ``sigma``.

    Returns
    -------
    bound : ndarray or numpy.float64
        ``sup_g E_g``, broadcast over the arguments; NaN where ``T <= d + 1``.

    Notes
    -----
    .. math::

        \sup_g E_g = \frac{d}{T - d - 1}\Big(\sigma^2 + \sigma_0^2\big(\tfrac{\pi^2}{6} - 1\big)\Big),

    which is ``π²/6 · σ² d/(T − d − 1)`` when ``σ0 = σ``. It is the ``g → ∞`` limit of
    `ols_accumulate_risk_fixed_design`; with ``T0 = T`` the random-design risk
    (`ols_accumulate_risk_random_design_closed_form`) stays below it, term by term.

    References
    ----------
    .. [1] M. Gerstgrasser et al., "Is Model Collapse Inevitable? Breaking the Curse of
       Recursion by Accumulating Real and Synthetic Data", arXiv:2404.01413, linear-regression
       analysis, result for accumulating data (the π²/6 upper bound).

    Examples
    --------
    >>> from synthloop.theory.regression import ols_accumulate_bound
    >>> print(f"{ols_accumulate_bound(d=10, T=100, sigma=1.0):.4f}")  # π²/6 · 10/89
    0.1848
    """
    d, T = _count(d, "d"), _count(T, "T")
    sigma = _scale(sigma, "sigma")
    sigma0 = sigma if sigma0 is None else _scale(sigma0, "sigma0")
    return _out(_inv_wishart_trace(d, T) * (sigma**2 + sigma0**2 * _BASEL_TAIL))


def ols_accumulate_risk_random_design_closed_form(generation, d, T, sigma, T0=None, sigma0=None):
    r"""Exact excess risk of OLS under ``accumulate`` with a fresh design every generation.

    Generation ``g >= 1`` adds ``T0`` fresh Gaussian rows labelled by generation ``g − 1`` (noise
    ``sigma0``) and fits OLS on every row so far (``T + g T0`` rows).

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0``.
    d : array_like of int
        Input dimension, ``d >= 1``.
    T : array_like of int
        Number of real samples.
    sigma : array_like of float
        Standard deviation of the real label noise, ``>= 0``.
    T0 : array_like of int, optional
        Fresh synthetic rows per generation. Default: ``T``.
    sigma0 : array_like of float, optional
        Standard deviation of the synthetic label noise. Default: ``sigma``.

    Returns
    -------
    risk : ndarray or numpy.float64
        ``E ‖ŵ_g − w*‖²_Σ``, broadcast over the arguments; NaN where ``T <= d + 1``.

    Notes
    -----
    With ``N_k = T + k T0`` rows after generation ``k``,

    .. math::

        E_g = \sigma^2\frac{d}{T - d - 1}
              + \sigma_0^2 \sum_{k=1}^{g} \frac{T_0}{N_k}\,\frac{d}{N_k - d - 1}
            = \sigma^2\frac{d}{T - d - 1} + \sigma_0^2 \frac{d}{d + 1}
              \big[\psi(g+1+c) - \psi(1+c) - \psi(g+1+a) + \psi(1+a)\big],

    ``a = T/T0``, ``c = (T − d − 1)/T0``, ``ψ`` the digamma function (partial fractions).

    Derivation (not in the cited papers, which treat this case only by its bound; derived
    for synthloop and checked against brute-force simulation in the tests). Let
    ``A_g = Σ_{k≤g} X_kᵀX_k`` and ``b_k = X_kᵀε_k``. This is recursive least squares: the
    normal equations give ``A_g e_g = A_{g−1} e_{g−1} + X_gᵀX_g e_{g−1} + b_g = A_g e_{g−1} + b_g``
    because the residual of the new labels against the previous model is the pure noise
    ``ε_g``. Hence ``e_g = e_{g−1} + A_g⁻¹ b_g = Σ_{k≤g} A_k⁻¹ b_k``, the terms are
    uncorrelated, and ``E[‖e_g‖² | X] = Σ_{k≤g} σ_k² tr(A_k⁻² X_kᵀX_k)``. All
    ``N_k`` rows of ``A_k`` are i.i.d. (whitened), so by exchangeability each row ``x`` has
    ``E xᵀA_k⁻²x = E tr(A_k⁻¹)/N_k = d/(N_k (N_k − d − 1))``; the ``T0`` rows of generation ``k``
    give the ``k``-th term. The same identity with ``A_k = (k+1)XᵀX`` recovers the fixed-design
    formula. With ``T0 = T`` each term is at most its fixed-design counterpart, so the risk
    stays below `ols_accumulate_bound`. Independent of ``Σ`` and ``w*``.

    References
    ----------
    .. [1] M. Gerstgrasser et al., "Is Model Collapse Inevitable? Breaking the Curse of
       Recursion by Accumulating Real and Synthetic Data", arXiv:2404.01413 (setting and
       bound; this exact form is derived here).

    Examples
    --------
    With ``T0 = T`` and ``d ≪ T`` it approaches the fixed-design value ``Σ_{k≤g+1} 1/k²``:

    >>> from synthloop.theory.regression import ols_accumulate_risk_random_design_closed_form
    >>> r = ols_accumulate_risk_random_design_closed_form([0, 9], d=1, T=10**6, sigma=1.0)
    >>> print(f"{r[1] / r[0]:.4f}")
    1.5498
    """
    g = _generation(generation)
    d, T = _count(d, "d"), _count(T, "T")
    T0 = T if T0 is None else _count(T0, "T0")
    sigma = _scale(sigma, "sigma")
    sigma0 = sigma if sigma0 is None else _scale(sigma0, "sigma0")
    first = _inv_wishart_trace(d, T)  # NaN where T <= d + 1
    ok = np.isfinite(first)
    a = T / T0
    c = np.where(ok, (T - d - 1) / T0, 1.0)  # c > 0 in the domain; placeholder elsewhere
    later = d / (d + 1) * (special.digamma(g + 1 + c) - special.digamma(1 + c)
                           - special.digamma(g + 1 + a) + special.digamma(1 + a))
    return _out(sigma**2 * first + np.where(ok, sigma0**2 * np.where(g > 0, later, 0.0), np.nan))


@dataclass(frozen=True, eq=False)
class MonteCarloRisk:
    """A Monte Carlo risk curve over generations ``g = 0 … G``.

    Attributes
    ----------
    mean : numpy.ndarray, shape (G + 1,)
        Estimated risk per generation (read-only).
    sem : numpy.ndarray, shape (G + 1,)
        Standard error of ``mean`` (sample standard deviation over draws / sqrt(draws)).
    draws : int
        Number of independent draws averaged.
    """

    mean: np.ndarray
    sem: np.ndarray
    draws: int


def _wishart_factor(rng: np.random.Generator, draws: int, n: int, d: int) -> np.ndarray:
    """``F`` of shape (draws, d, m) with ``F Fᵀ ~ Wishart_d(n, I)`` independently per draw.

    Bartlett decomposition (``m = d``, cost independent of ``n``) when ``n >= d``; else the
    transposed Gaussian design itself (``m = n < d``).
    """
    if n < d:
        return np.swapaxes(rng.standard_normal((draws, n, d)), 1, 2)  # (draws, d, n)
    L = np.zeros((draws, d, d))
    below = np.tril_indices(d, -1)
    L[:, below[0], below[1]] = rng.standard_normal((draws, below[0].size))
    diag = np.arange(d)
    L[:, diag, diag] = np.sqrt(rng.chisquare(n - diag, size=(draws, d)))  # chi2 with n, n-1, …, n-d+1 dof
    return L


@functools.lru_cache(maxsize=256)
def _accumulate_random_mc(G: int, d: int, T: int, sigma: float, T0: int, sigma0: float,
                          draws: int, seed: int) -> MonteCarloRisk:
    if T <= d + 1:
        nan = np.full(G + 1, np.nan)
        nan.flags.writeable = False
        return MonteCarloRisk(mean=nan, sem=nan, draws=draws)
    rng = np.random.default_rng(seed)
    per_draw = np.empty((draws, G + 1))  # conditional risk E[‖e_g‖² | designs], per draw
    A = np.zeros((draws, d, d))  # running Gram matrix A_g
    total = np.zeros(draws)
    for g in range(G + 1):
        n, s = (T, sigma) if g == 0 else (T0, sigma0)
        F = _wishart_factor(rng, draws, n, d)  # (draws, d, m), X_gᵀX_g = F Fᵀ
        A += F @ np.swapaxes(F, 1, 2)
        Y = np.linalg.solve(A, F)  # A_g⁻¹ F, (draws, d, m)
        total += s**2 * np.einsum("rij,rij->r", Y, Y)  # σ_g² tr(A_g⁻¹ G_g A_g⁻¹)
        per_draw[:, g] = total
    mean = per_draw.mean(axis=0)
    sem = per_draw.std(axis=0, ddof=1) / np.sqrt(draws)
    mean.flags.writeable = False
    sem.flags.writeable = False
    return MonteCarloRisk(mean=mean, sem=sem, draws=draws)


def ols_accumulate_risk_random_design(generation, d, T, sigma, T0=None, sigma0=None, draws=2000, seed=0):
    r"""Monte Carlo (over designs) excess risk of OLS under ``accumulate``, fresh design each generation.

    The setting of `ols_accumulate_risk_random_design_closed_form`, computed numerically:
    generation ``g >= 1`` adds ``T0`` fresh rows ``X_g`` labelled ``X_g ŵ_{g−1} + ε_g``
    (``ε_g ~ N(0, σ0² I)``); the real rows carry noise ``σ``; model ``g`` is OLS on all rows so far.

    Parameters
    ----------
    generation : int
        The number of generations ``G >= 0``. Unlike the other functions this is not a single
        generation: the result covers every ``g = 0, 1, …, G``.
    d : int
        Input dimension, ``d >= 1``.
    T : int
        Number of real samples.
    sigma : float
        Standard deviation of the real label noise, ``>= 0``.
    T0 : int, optional
        Fresh synthetic rows per generation. Default: ``T``.
    sigma0 : float, optional
        Standard deviation of the synthetic label noise. Default: ``sigma``.
    draws : int, optional
        Independent draws of the designs (default 2000), ``>= 2``.
    seed : int, optional
        Seed of the ``numpy.random.Generator`` used (default 0). The result is a pure function
        of the arguments and is cached (``functools.lru_cache``).

    Returns
    -------
    MonteCarloRisk
        ``mean`` and ``sem``, shape (G + 1,), for ``g = 0 … G``; all NaN where ``T <= d + 1``.

    Notes
    -----
    Whitened coordinates (``Σ = I``; the risk does not depend on ``Σ`` or ``w*``). Per draw, the
    Gram matrices ``G_0 ~ Wishart_d(T, I)`` and ``G_k ~ Wishart_d(T0, I)`` are sampled directly
    (Bartlett decomposition ``G = L Lᵀ``, so the cost does not depend on ``T``; for ``T0 < d``
    the ``T0 × d`` design itself). With ``A_g = Σ_{k≤g} G_k`` the model error obeys the
    recursive-least-squares identity ``e_g = e_{g−1} + A_g⁻¹ X_gᵀε_g`` (derived in
    `ols_accumulate_risk_random_design_closed_form`; the direct recursion
    ``S_g = S_{g−1} + G_g e_{g−1} + b_g``, ``e_g = A_g⁻¹S_g`` reduces to it). The noise is
    integrated out exactly (Rao–Blackwellization):

    .. math::

        E\big[\|e_g\|^2 \mid G_0, \dots, G_g\big] = \sum_{k=0}^{g} \sigma_k^2
            \operatorname{tr}\big(A_k^{-1} G_k A_k^{-1}\big) = \sum_{k=0}^{g} \sigma_k^2
            \|A_k^{-1} L_k\|_F^2,

    ``σ_0 = σ``, ``σ_k = σ0`` for ``k >= 1``, and the Monte Carlo average is over designs only.
    Cost ``O(draws · G · d³)``. Its expectation equals the closed form; this function is the
    independent numerical check of it (and of `ols_accumulate_bound`), agreeing within a few
    ``sem`` in the tests.

    References
    ----------
    .. [1] M. Gerstgrasser et al., "Is Model Collapse Inevitable? Breaking the Curse of
       Recursion by Accumulating Real and Synthetic Data", arXiv:2404.01413, linear-regression
       analysis (setting and the π²/6 bound).

    Examples
    --------
    Generation 0 is plain OLS on ``T`` real samples, ``σ² d/(T − d − 1) = 10/89``:

    >>> from synthloop.theory.regression import ols_accumulate_risk_random_design
    >>> mc = ols_accumulate_risk_random_design(50, d=10, T=100, sigma=1.0)
    >>> mc.mean.shape
    (51,)
    >>> bool(abs(mc.mean[0] - 10 / 89) < 4 * mc.sem[0])
    True
    """
    G = int(_generation(generation).item()) if np.ndim(generation) == 0 else None
    if G is None:
        raise ValueError(f"generation must be a single non-negative integer (the number of generations G), got {generation!r}")
    for name, value in (("d", d), ("T", T)) + ((("T0", T0),) if T0 is not None else ()):
        if np.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar here, got {value!r}")
    d, T = int(_count(d, "d")), int(_count(T, "T"))
    T0 = T if T0 is None else int(_count(T0, "T0"))
    if np.ndim(sigma) != 0 or (sigma0 is not None and np.ndim(sigma0) != 0):
        raise ValueError("sigma and sigma0 must be scalars here")
    sigma = float(_scale(sigma, "sigma"))
    sigma0 = sigma if sigma0 is None else float(_scale(sigma0, "sigma0"))
    if np.ndim(draws) != 0:
        raise ValueError(f"draws must be an integer >= 2, got {draws!r}")
    draws = int(_integers(draws, "draws", 2, "an integer >= 2"))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return _accumulate_random_mc(G, d, T, sigma, T0, sigma0, draws, int(seed))


# ----------------------------------------------------------------------------- growing


def ols_growing_risk(generation, d, T, sigma, T0=None, sigma0=None):
    r"""Exact excess risk of OLS when the synthetic sample size grows with the generation.

    The ``growing`` workflow: replace, but generation ``g >= 1`` fits ``g · T0`` fresh inputs
    labelled by generation ``g − 1`` (noise ``sigma0``); generation 0 fits ``T`` real samples.
    This matches ``synthloop.workflows.Growing`` (``synthetic_size = g · base``).

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0``.
    d : array_like of int
        Input dimension, ``d >= 1``.
    T : array_like of int
        Number of real samples.
    sigma : array_like of float
        Standard deviation of the real label noise, ``>= 0``.
    T0 : array_like of int, optional
        Growth unit: generation ``g >= 1`` has ``g · T0`` samples. Default: ``T``.
    sigma0 : array_like of float, optional
        Standard deviation of the synthetic label noise. Default: ``sigma``.

    Returns
    -------
    risk : ndarray or numpy.float64
        ``E ‖ŵ_g − w*‖²_Σ``, broadcast over the arguments. NaN where ``T <= d + 1``, or where
        ``g >= 1`` and ``T0 <= d + 1`` (generation 1 has ``T0`` samples; later ones have more).

    Notes
    -----
    .. math::

        E_g = \sigma^2\frac{d}{T - d - 1} + \sigma_0^2 \sum_{k=1}^{g} \frac{d}{k T_0 - d - 1}
            = \sigma^2\frac{d}{T - d - 1} + \sigma_0^2 \frac{d}{T_0}
              \big[\psi(g + 1 - c) - \psi(1 - c)\big],\qquad c = \frac{d+1}{T_0},

    ``ψ`` the digamma function. Derivation as in `ols_replace_risk` (random design): the errors
    add independent increments ``X_k^+ ε_k`` with ``E‖X_k^+ ε_k‖² = σ0² d/(k T0 − d − 1)``.
    Independent of ``Σ`` and ``w*``.

    Approximation: with ``T0 = T``, ``σ0 = σ`` and ``d ≪ T``, ``E_g ≈ (1 + H_g) E_0`` with
    ``H_g = 1 + 1/2 + … + 1/g`` (≈ ``log g``), the harmonic growth reported by Dohmatob et al.
    With the schedule of spec §1, where the sizes run ``T, 2T, 3T, …`` (generation ``g``
    receiving ``(g + 1) T``), the same argument gives ``H_{g+1} E_0`` instead; synthloop's
    ``growing`` workflow synthesizes ``g · T0``, which is what this function computes.

    References
    ----------
    .. [1] E. Dohmatob, Y. Feng, J. Kempe, "Model Collapse Demystified: The Case of
       Regression", NeurIPS 2024, arXiv:2402.07712, Section 4 "Exact Test Error
       Characterization" (synthetic sample sizes growing with the generation).

    Examples
    --------
    Harmonic check (``d ≪ T``): ``E_9 / E_0 ≈ 1 + H_9 = 3.8290``.

    >>> from synthloop.theory.regression import ols_growing_risk
    >>> r = ols_growing_risk([0, 9], d=1, T=10**6, sigma=1.0)
    >>> print(f"{r[1] / r[0]:.4f}")
    3.8290
    """
    g = _generation(generation)
    d, T = _count(d, "d"), _count(T, "T")
    T0 = T if T0 is None else _count(T0, "T0")
    sigma = _scale(sigma, "sigma")
    sigma0 = sigma if sigma0 is None else _scale(sigma0, "sigma0")
    first = sigma**2 * _inv_wishart_trace(d, T)
    ok = T0 > d + 1  # then k·T0 > d + 1 for every k >= 1
    c = np.where(ok, (d + 1) / T0, 0.0)  # c < 1 in the domain; placeholder elsewhere
    later = sigma0**2 * d / T0 * (special.digamma(g + 1 - c) - special.digamma(1 - c))
    later = np.where(ok, later, np.nan)
    return _out(first + np.where(g > 0, later, 0.0))


# ----------------------------------------------------------------------------- ridge


def _ridge_scalars(name: str, value, kind: str) -> float:
    if np.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar here, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < 0 or (kind == "positive" and v == 0):
        raise ValueError(f"{name} must be {'positive' if kind == 'positive' else 'non-negative'}, got {value!r}")
    return v


def _ridge_draws_seed(draws, seed) -> tuple[int, int]:
    if np.ndim(draws) != 0:
        raise ValueError(f"draws must be an integer >= 2, got {draws!r}")
    draws = int(_integers(draws, "draws", 2, "an integer >= 2"))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return draws, int(seed)


def _ridge_spectrum(spectrum, d: int) -> tuple[float, ...] | None:
    """``None`` for isotropic ``Σ = I``, else the diagonal of ``Σ`` as a hashable tuple."""
    if spectrum is None:
        return None
    s = np.asarray(spectrum, dtype=float)
    if s.shape != (d,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"spectrum must be None or {d} positive numbers (the diagonal of Σ), got shape {s.shape}")
    return None if np.all(s == 1.0) else tuple(s.tolist())


def _frozen(curve: np.ndarray) -> np.ndarray:
    curve = np.ascontiguousarray(curve, dtype=float)
    curve.flags.writeable = False
    return curve


def _summarize(per_draw: np.ndarray) -> MonteCarloRisk:
    draws = per_draw.shape[0]
    return MonteCarloRisk(mean=_frozen(per_draw.mean(axis=0)),
                          sem=_frozen(per_draw.std(axis=0, ddof=1) / np.sqrt(draws)), draws=draws)


def _ridge_mixture_polynomials(shares: np.ndarray, noise_var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (in powers of the shrinkage ``m``) of ``β_g(m)`` and ``V_g(m) = Σ_j C_m[g, j]² σ_j²``.

    Returns ``beta`` of shape (G + 1, G + 2) and ``var`` of shape (G + 1, 2G + 1), row ``g`` holding
    the coefficients of ``m^0, m^1, …``. Every coefficient is non-negative (products and sums of the
    shares), so evaluating them at ``0 <= m <= 1`` involves no cancellation.
    """
    size = shares.shape[0]  # G + 1
    beta = np.zeros((size + 1, size + 1))  # beta[j] = β_{j−1}; β_{−1} = 1
    beta[0, 0] = 1.0
    C = np.zeros((size, size, size))  # C[g, j, p]: coefficient of m^p in C_m[g, j]
    var = np.zeros((size, 2 * size - 1))
    degree = np.add.outer(np.arange(size), np.arange(size)).ravel()
    for g in range(size):
        a = shares[g, : g + 1]
        beta[g + 1, 1:] = (a @ beta[: g + 1])[:-1]  # β_g = m Σ_j α[g, j] β_{j−1}
        C[g, : g + 1, 0] = a
        nz = np.flatnonzero(a[1:]) + 1
        if nz.size:
            C[g, :g, 1:] += np.tensordot(a[nz], C[nz - 1, :g, :-1], axes=1)  # m Σ_j α[g, j] C[j − 1]
        square = np.einsum("j,jp,jq->pq", noise_var[: g + 1], C[g, : g + 1], C[g, : g + 1])
        var[g] = np.bincount(degree, weights=square.ravel(), minlength=2 * size - 1)
    return beta[1:], var


@functools.lru_cache(maxsize=128)
def _ridge_fixed_mc(alpha_key: tuple, d: int, T: int, sigma: float, sigma0: float, ridge: float,
                    w_norm: float, spectrum: tuple | None, draws: int, seed: int) -> MonteCarloRisk:
    shares = np.array(alpha_key, dtype=float)
    shares = shares / shares.sum(axis=1, keepdims=True)
    size = shares.shape[0]  # G + 1
    noise_var = np.full(size, sigma0**2)
    noise_var[0] = sigma**2
    beta_poly, var_poly = _ridge_mixture_polynomials(shares, noise_var)
    lam = None if spectrum is None else np.array(spectrum)
    rng = np.random.default_rng(seed)
    chunk = int(max(1, min(draws, 16e6 // (2 * size * d * 8))))
    per_draw = np.empty((draws, size))
    for start in range(0, draws, chunk):
        k = min(chunk, draws - start)
        F = _wishart_factor(rng, k, T, d)  # (k, d, m): F Fᵀ ~ Wishart_d(T, I), the whitened XᵀX
        if lam is None:
            if F.shape[2] < d:  # T < d: the T nonzero eigenvalues, padded with d − T zeros
                s2 = np.concatenate([np.linalg.eigvalsh(np.swapaxes(F, 1, 2) @ F), np.zeros((k, d - F.shape[2]))], axis=1)
            else:
                s2 = np.linalg.eigvalsh(F @ np.swapaxes(F, 1, 2))
            h = np.ones((k, d))
        else:
            root = np.sqrt(lam)
            gram = root[:, None] * (F @ np.swapaxes(F, 1, 2)) * root[None, :]  # XᵀX = Σ^½ Zᵀ Z Σ^½
            s2, V = np.linalg.eigh(gram)
            h = np.einsum("j,rji->ri", lam, V**2)  # (VᵀΣV)_ii
        s2 = np.maximum(s2, 0.0)
        m = s2 / (s2 + T * ridge)  # shrinkage per eigendirection
        q = s2 / (s2 + T * ridge) ** 2  # noise gain per eigendirection (times σ_j²)
        powers = m[..., None] ** np.arange(2 * size - 1)  # (k, d, 2G + 1)
        bias = (powers[..., : size + 1] @ beta_poly.T - 1.0) ** 2 * (w_norm**2 / d)  # (k, d, G + 1)
        var = q[..., None] * (powers @ var_poly.T)
        per_draw[start : start + k] = np.einsum("kdg,kd->kg", bias + var, h)
    return _summarize(per_draw)


def ridge_mixture_risk_fixed_design(alpha, d, T, sigma, ridge, sigma0=None, w_norm=1.0, spectrum=None,
                                    draws=1000, seed=0):
    r"""Excess risk of ridge under any whole-source mixture workflow on a fixed design (Monte Carlo over designs).

    One Gaussian design ``X`` (``T`` rows ``x ~ N(0, Σ)``) is relabelled every generation.
    Source 0 holds the real labels ``y_0 = Xw* + ε_0`` (``ε_0 ~ N(0, σ² I)``), source ``j >= 1``
    the labels ``y_j = Xŵ_{j−1} + ε_j`` (``ε_j ~ N(0, σ0² I)``), and generation ``g`` fits ridge
    on the mixture with shares ``α[g, j]``, i.e. on the weighted mean label vector:
    ``ŵ_g = (XᵀX + TλI)⁻¹Xᵀ Σ_j α[g, j] y_j`` (the ``(XᵀX + nλI)w = Xᵀy`` convention with ``n``
    the rows of the training set; the penalty scales with the weights, so it is ``Tλ`` here).

    Parameters
    ----------
    alpha : array_like of shape (G + 1, G + 1)
        Lower-triangular non-negative weights of the sources in each generation; each row is
        normalized to sum to 1 (e.g. ``np.eye`` for replace, ``np.tril(np.ones(...))`` for
        accumulate).
    d : int
        Input dimension, ``d >= 1``.
    T : int
        Rows of the design, ``T >= 1`` (``T < d + 2`` is allowed: ridge is always well posed).
    sigma : float
        Standard deviation of the real label noise, ``>= 0``.
    ridge : float
        ``λ > 0``.
    sigma0 : float, optional
        Standard deviation of the synthetic label noise. Default: ``sigma``.
    w_norm : float, optional
        ``‖w*‖``; ``w*`` has a uniformly random direction, independent of ``X`` (default 1).
    spectrum : array_like of shape (d,), optional
        Diagonal of ``Σ``. Default (or all ones): ``Σ = I``.
    draws : int, optional
        Independent designs averaged (default 1000), ``>= 2``.
    seed : int, optional
        Seed of the ``numpy.random.Generator`` (default 0). The result is a pure function of the
        arguments and is cached (``functools.lru_cache``).

    Returns
    -------
    MonteCarloRisk
        ``mean`` and ``sem`` of ``E ‖ŵ_g − w*‖²_Σ``, shape (G + 1,), for ``g = 0 … G``.

    Notes
    -----
    Let ``XᵀX = Σ_i s_i² v_i v_iᵀ``, ``m_i = s_i²/(s_i² + Tλ)`` (shrinkage) and
    ``q_i = s_i²/(s_i² + Tλ)²`` (noise gain). With ``M = (XᵀX + TλI)⁻¹XᵀX`` and
    ``P = (XᵀX + TλI)⁻¹Xᵀ`` the fits obey ``ŵ_g = Σ_j α[g, j](Mŵ_{j−1} + Pε_j)``,
    ``ŵ_{−1} = w*``. ``M`` and ``PPᵀ = V diag(q) Vᵀ`` share the eigenvectors ``v_i``, so the
    coordinates ``v_iᵀŵ_g`` follow independent scalar recursions: the mean (over the noise) is
    ``β_g(m_i) v_iᵀw*`` with

    .. math::

        \beta_{-1} = 1, \qquad \beta_g(m) = m \sum_{j \le g} \alpha_{g,j}\, \beta_{j-1}(m),

    and the noise part is Dey & Donoho's mixture recursion with a factor ``m``:
    ``Z_g = Σ_j α[g, j](m Z_{j−1} + η_j)``, ``Var η_j = σ_j² q_i``, unrolled as
    ``Z_g = Σ_j C_m[g, j] η_j`` with ``C_m[g] = α[g] + m Σ_{j≥1} α[g, j] C_m[j − 1]``. Averaging
    over the noise and over ``w*`` (``E w*w*ᵀ = ‖w*‖²/d · I``), and writing
    ``h_i = v_iᵀΣv_i`` (the Σ-norm enters only through the diagonal of ``VᵀΣV``, because the
    coordinates are uncorrelated and the bias matrix ``V diag(β − 1) Vᵀ`` is diagonal in ``V``),

    .. math::

        E\big[\|\hat w_g - w^*\|_\Sigma^2 \mid X\big] = \sum_{i=1}^{d} h_i \Big[
            \big(\beta_g(m_i) - 1\big)^2 \frac{\|w^*\|^2}{d}
            + q_i \sum_{j \le g} C_{m_i}[g, j]^2\, \sigma_j^2 \Big],

    ``σ_0 = σ``, ``σ_j = σ0``. This is exact given ``X``; the function averages it over ``draws``
    designs (``Z ᵀZ ~ Wishart_d(T, I)`` by the Bartlett decomposition, ``XᵀX = Σ^½ZᵀZΣ^½``; with
    ``Σ = I`` only the eigenvalues are needed, ``h_i = 1``). Directions with ``s_i = 0``
    (``T < d``) have ``m_i = q_i = 0``: the model never learns them, a bias ``h_i ‖w*‖²/d``.

    Limits: ``λ → 0`` with ``T >= d + 2`` gives ``m = 1``, ``q_i = 1/s_i²`` and the OLS risk
    ``mixture_risk(α, σ_j² d/(T − d − 1))``. Under replace ``β_g = m^{g+1}`` and
    ``C_m[g, j] = m^{g−j}``: the shrinkage compounds, the bias factor ``(1 − m_i^{g+1})²`` rises to
    1 (the model decays to the null predictor, bias ``→ ‖w*‖² tr(Σ)/d``), while the noise term
    saturates at ``σ0² Σ_i h_i s_i²/(Tλ(2s_i² + Tλ))`` (at most ``σ0² tr(Σ)/(2Tλ)``) instead of
    growing linearly as for OLS. Under accumulate ``β_g = β_{g−1}(g + m)/(g + 1)``, i.e.
    ``β_g = m Π_{k=1}^{g} (k + m)/(k + 1) ∝ g^{−(1−m)}``: the bias also drifts to the null
    predictor's, but only polynomially slowly, while the averaged noise shrinks. Checked against
    ``synthloop.run`` (batched ridge on simulated data) in ``tests/test_theory_ridge.py``.

    References
    ----------
    .. [1] E. Dohmatob, Y. Feng, J. Kempe, "Model Collapse Demystified: The Case of
       Regression", NeurIPS 2024, arXiv:2402.07712 (iterated ridge; this exact fixed-design
       form is derived here).
    .. [2] A. Dey and D. Donoho, "Universality of the π²/6 Pathway in Avoiding Model Collapse",
       arXiv:2410.22812, 2024 (the mixture recursion).

    Examples
    --------
    Replace at ``λ → 0`` is OLS: ``(g + 1) σ² d/(T − d − 1)`` up to Monte Carlo error.

    >>> import numpy as np
    >>> from synthloop.theory.regression import ridge_mixture_risk_fixed_design
    >>> mc = ridge_mixture_risk_fixed_design(np.eye(3), d=5, T=30, sigma=1.0, ridge=1e-9, draws=4000)
    >>> bool(np.all(np.abs(mc.mean - 5 / 24 * np.arange(1, 4)) < 4 * mc.sem))
    True
    """
    a = np.asarray(alpha, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"alpha must be a square (G+1, G+1) matrix; got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(np.triu(a, 1) != 0):
        raise ValueError("alpha must be finite, non-negative and lower-triangular")
    if np.any(a.sum(axis=1) == 0):
        raise ValueError("every generation must give positive weight to some source")
    for name, value in (("d", d), ("T", T)):
        if np.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar here, got {value!r}")
    d, T = int(_count(d, "d")), int(_count(T, "T"))
    sigma = _ridge_scalars("sigma", sigma, "non-negative")
    sigma0 = sigma if sigma0 is None else _ridge_scalars("sigma0", sigma0, "non-negative")
    ridge = _ridge_scalars("ridge", ridge, "positive")
    w_norm = _ridge_scalars("w_norm", w_norm, "non-negative")
    draws, seed = _ridge_draws_seed(draws, seed)
    key = tuple(map(tuple, a.tolist()))
    return _ridge_fixed_mc(key, d, T, sigma, sigma0, ridge, w_norm, _ridge_spectrum(spectrum, d), draws, seed)


@functools.lru_cache(maxsize=128)
def _ridge_random_mc(G: int, d: int, T: int, T0: int, sigma: float, sigma0: float, ridge: float,
                     w_norm: float, spectrum: tuple | None, workflow: str, draws: int, seed: int) -> MonteCarloRisk:
    rng = np.random.default_rng(seed)
    lam = np.ones(d) if spectrum is None else np.array(spectrum)
    root = np.sqrt(lam)
    eye = np.eye(d)
    chunk = int(max(1, min(draws, 16e6 // (d * max(d, T, T0) * 8 * 4))))
    per_draw = np.empty((draws, G + 1))
    for start in range(0, draws, chunk):
        k = min(chunk, draws - start)
        B = np.zeros((k, d, d))
        Pi = np.broadcast_to(eye, (k, d, d)).copy()  # mean map: E[ŵ_g | X] = Π_g w*
        Q = np.zeros((k, d, d))  # noise covariance of ŵ_g given the designs
        for g in range(G + 1):
            n = T if g == 0 else (g * T0 if workflow == "growing" else T0)
            s = sigma if g == 0 else sigma0
            F = _wishart_factor(rng, k, n, d)
            gram = root[:, None] * (F @ np.swapaxes(F, 1, 2)) * root[None, :]  # X_gᵀX_g
            B = (B if workflow == "accumulate" else 0.0) + gram + n * ridge * eye
            Binv = np.linalg.inv(B)
            step = eye - n * ridge * Binv  # F_g
            Pi = step @ Pi
            Q = step @ Q @ np.swapaxes(step, 1, 2) + s**2 * (Binv @ gram @ Binv)
            E = Pi - eye
            bias = np.einsum("rij,i,rij->r", E, lam, E) * (w_norm**2 / d)  # tr(Eᵀ Σ E) ‖w*‖²/d
            per_draw[start : start + k, g] = bias + np.einsum("i,rii->r", lam, Q)
    return _summarize(per_draw)


def ridge_risk_random_design(generation, d, T, sigma, ridge, workflow="replace", T0=None, sigma0=None,
                             w_norm=1.0, spectrum=None, draws=1000, seed=0):
    r"""Excess risk of ridge with a fresh Gaussian design every generation (Monte Carlo over designs).

    Generation 0 fits ridge on ``T`` real rows; generation ``g >= 1`` labels ``n_g`` fresh rows
    ``X_g`` with the previous model plus noise ``σ0`` and fits ridge, ``(A + NλI)w = b``, on
    the rows of its training set: only the new rows (``replace``, ``n_g = T0``; ``growing``,
    ``n_g = g T0``) or every row so far (``accumulate``, ``n_g = T0``, ``N = T + g T0``).

    Parameters
    ----------
    generation : int
        The number of generations ``G >= 0``; the result covers ``g = 0 … G``.
    d, T : int
        Input dimension and number of real rows.
    sigma : float
        Standard deviation of the real label noise, ``>= 0``.
    ridge : float
        ``λ > 0``.
    workflow : {"replace", "accumulate", "growing"}
        Which rows generation ``g`` trains on (default ``"replace"``).
    T0 : int, optional
        Fresh synthetic rows per generation (``growing``: the growth unit). Default: ``T``.
    sigma0 : float, optional
        Standard deviation of the synthetic label noise. Default: ``sigma``.
    w_norm : float, optional
        ``‖w*‖`` (uniformly random direction; default 1).
    spectrum : array_like of shape (d,), optional
        Diagonal of ``Σ``; default ``Σ = I``.
    draws : int, optional
        Independent sequences of designs averaged (default 1000), ``>= 2``.
    seed : int, optional
        Seed (default 0); the result is a pure function of the arguments and is cached.

    Returns
    -------
    MonteCarloRisk
        ``mean`` and ``sem`` of ``E ‖ŵ_g − w*‖²_Σ``, shape (G + 1,).

    Notes
    -----
    With ``G_g = X_gᵀX_g``, ``B_g = G_g + n_gλI`` (replace, growing) or
    ``B_g = Σ_{k≤g} G_k + N_gλI`` (accumulate, ``N_g = T + g T0``) and ``b_g = X_gᵀε_g``, every
    workflow here is a linear recursion with ``ŵ_{−1} = w*``:

    .. math::

        \hat w_g = F_g \hat w_{g-1} + B_g^{-1} b_g, \qquad F_g = I - n_g\lambda B_g^{-1}.

    For replace it is ``ŵ_g = B_g⁻¹(G_g ŵ_{g−1} + b_g)`` and ``I − n_gλB_g⁻¹ = B_g⁻¹G_g``. For
    accumulate the running sum ``S_g = Σ_k X_kᵀy_k = B_g ŵ_g`` gains
    ``G_g ŵ_{g−1} + b_g``, so ``B_g ŵ_g = (B_g − n_gλI)ŵ_{g−1} + b_g`` (recursive least
    squares with the penalty's growth ``n_gλ`` as the only new term). Given the designs, the
    mean is ``Π_g w*`` with ``Π_g = F_g ⋯ F_0`` and the noise covariance obeys
    ``Q_g = F_g Q_{g−1} F_gᵀ + σ_g² B_g⁻¹G_gB_g⁻¹`` (``Q_{−1} = 0``), hence

    .. math::

        E\big[\|\hat w_g - w^*\|_\Sigma^2 \mid X_0, \dots, X_g\big]
            = \frac{\|w^*\|^2}{d} \operatorname{tr}\big((\Pi_g - I)^\top \Sigma (\Pi_g - I)\big)
              + \operatorname{tr}(\Sigma Q_g),

    averaged over ``draws`` sequences of designs (``X_gᵀX_g = Σ^½ W Σ^½``, ``W`` Wishart by the
    Bartlett decomposition). Exact given the designs; cost ``O(draws · G · d³)``. At ``λ → 0``
    replace gives `ols_replace_risk` and accumulate the recursive-least-squares identity of
    `ols_accumulate_risk_random_design_closed_form`.

    References
    ----------
    .. [1] E. Dohmatob, Y. Feng, J. Kempe, "Model Collapse Demystified: The Case of
       Regression", NeurIPS 2024, arXiv:2402.07712 (iterated ridge with fresh designs; this
       numerical form is derived here).

    Examples
    --------
    >>> from synthloop.theory.regression import ridge_risk_random_design
    >>> mc = ridge_risk_random_design(2, d=5, T=30, sigma=1.0, ridge=1e-9, draws=4000)
    >>> bool(np.all(np.abs(mc.mean - 5 / 24 * np.arange(1, 4)) < 4 * mc.sem))
    True
    """
    if np.ndim(generation) != 0:
        raise ValueError(f"generation must be a single non-negative integer (the number of generations G), got {generation!r}")
    G = int(_generation(generation).item())
    if workflow not in ("replace", "accumulate", "growing"):
        raise ValueError(f"workflow must be 'replace', 'accumulate' or 'growing', got {workflow!r}")
    for name, value in (("d", d), ("T", T)) + ((("T0", T0),) if T0 is not None else ()):
        if np.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar here, got {value!r}")
    d, T = int(_count(d, "d")), int(_count(T, "T"))
    T0 = T if T0 is None else int(_count(T0, "T0"))
    sigma = _ridge_scalars("sigma", sigma, "non-negative")
    sigma0 = sigma if sigma0 is None else _ridge_scalars("sigma0", sigma0, "non-negative")
    ridge = _ridge_scalars("ridge", ridge, "positive")
    w_norm = _ridge_scalars("w_norm", w_norm, "non-negative")
    draws, seed = _ridge_draws_seed(draws, seed)
    return _ridge_random_mc(G, d, T, T0, sigma, sigma0, ridge, w_norm, _ridge_spectrum(spectrum, d), workflow, draws, seed)


# ----------------------------------------------------------------------------- adaptive ridge


def adaptive_ridge_risk_rate(generation, d, T, sigma, ell, beta, r=0.5, T0=None, sigma0=None):
    r"""Scaling law of ridge with the adaptive penalty ``λ = λ0·T^-ℓ`` under ``replace``.

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0``: ``g`` rounds of synthetic labels after the fit on real data.
    d : int
        Dimension, for the synthetic fits' aspect ratio ``φ0 = d/T0``.
    T : array_like of int
        Real sample size, ``>= 1``.
    sigma : array_like of float
        Standard deviation of the real label noise, ``>= 0``.
    ell : float
        Exponent ``ℓ >= 0`` of the penalty ``λ ∝ T^-ℓ``.
    beta : float
        Capacity exponent ``β > 0``: the spectrum of ``Σ`` decays as ``λ_j ≍ j^-β``.
    r : float, default 0.5
        Source exponent: ``‖Σ^(1/2 − r) w*‖ = O(1)``. ``r = 1/2`` holds for every ``w*`` of
        bounded norm (the regression task's ``w*``).
    T0 : array_like of int, optional
        Synthetic sample size per generation. Default: ``T``.
    sigma0 : array_like of float, optional
        Standard deviation of the synthetic label noise. Default: ``sigma``.

    Returns
    -------
    rate : ndarray or numpy.float64
        The rate, broadcast over the arguments; NaN where ``φ0 = d/T0 >= 1``.

    Notes
    -----
    An asymptotic rate, up to constants, not a finite-sample prediction: compare its slope in
    ``T`` and its growth in ``g`` with a simulation, not its level. With ``φ0 = d/T0``,

    .. math::

        E_g \asymp \max(\sigma^2, T^{1 - 2r\ell - \ell/\beta})\, T^{-(1 - \ell/\beta)}
        + g\,\frac{\sigma_0^2}{1 - \phi_0} \max(T/T_0, \phi_0)\, T^{-(1 - \ell/\beta)}.

    The first term is the clean-data scaling law; every synthetic generation adds a term of the
    same order, so model collapse shifts the law by a factor that grows linearly in ``g``
    rather than changing its exponent.

    References
    ----------
    .. [1] E. Dohmatob, Y. Feng, J. Kempe, "Model Collapse Demystified: The Case of
       Regression", NeurIPS 2024, arXiv:2402.07712, Section 5 "Scaling laws" (adaptive
       regularization, Theorem 5.1 / Corollary 5.2).

    Examples
    --------
    ``ℓ = 0`` (a fixed λ): the bias ``max(σ², T)/T = 1`` does not decay with ``T``, and each
    generation adds ``σ0²/(1 − φ0)/T = 1/75`` for ``d = 25``, ``T = 100``.

    >>> from synthloop.theory.regression import adaptive_ridge_risk_rate
    >>> print(f"{adaptive_ridge_risk_rate(2, d=25, T=100, sigma=1.0, ell=0.0, beta=2.0):.6f}")
    1.026667
    """
    g = _generation(generation)
    T = _count(T, "T")
    T0 = T if T0 is None else _count(T0, "T0")
    sigma = _scale(sigma, "sigma")
    sigma0 = sigma if sigma0 is None else _scale(sigma0, "sigma0")
    ell = _ridge_scalars("ell", ell, "non-negative")
    beta = _ridge_scalars("beta", beta, "positive")
    r = _ridge_scalars("r", r, "non-negative")
    d = int(_integers(d, "d", 1, "an integer >= 1"))
    T, T0 = T.astype(float), np.asarray(T0, dtype=float)
    scale = T ** -(1 - ell / beta)
    phi0 = d / T0
    clean = np.maximum(sigma**2, T ** (1 - 2 * r * ell - ell / beta)) * scale
    synthetic = sigma0**2 / np.where(phi0 < 1, 1 - phi0, np.nan) * np.maximum(T / T0, phi0) * scale
    return _out(clean + g * synthetic)

