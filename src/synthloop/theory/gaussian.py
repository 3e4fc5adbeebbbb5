r"""Moments of iterated Gaussian fitting with sample synthesis (Shumailov et al.; Kazdan et al. 2024).

Setting: the truth is ``N(μ, Σ)`` in ``R^d`` (synthloop's task draws ``μ = 0``, ``Σ = σ²I``).
Generation ``g = 0`` fits the sample mean ``μ̂_0`` and the covariance ``Σ̂_0 = S_0/D`` of ``T``
real samples, where ``S`` is the scatter about the sample mean and the divisor is ``D = n``
(``variance="mle"``, the maximum-likelihood estimate Kazdan et al. use) or ``D = n − 1``
(``variance="unbiased"``, as in Shumailov et al.) for a training set of ``n`` rows. Every
generation ``g ≥ 1`` draws ``T0`` samples from ``N(μ̂_{g−1}, Σ̂_{g−1})``; the workflow decides
which rows the fit of generation ``g`` sees:

* ``replace`` — only the ``T0`` newest rows;
* ``accumulate`` — every row so far (``N_g = T + g·T0`` rows);
* ``accumulate-subsample`` — ``budget`` rows drawn uniformly without replacement from all rows;
* ``growing`` — replace, but generation ``g`` draws ``g·T0`` rows;
* ``weighted`` (whole sources with weights ``real`` and ``decay^age``) and ``real-fraction``
  (a fixed share of real rows) — the general recursion of `weighted_moments`.

Indexing: synthloop's generation ``g`` is the spec's and Shumailov's ``t = g + 1`` (their
``t = 1`` is the fit on real data) and the "generation ``g + 1``" of Kazdan et al.'s tables:
their generation 1 is the real-data fit. Checked against the published numbers of spec §2
(d = 1, σ² = 1, 100 seeds): replace, T = 10, squared error of the mean at their generations
1/10/50/100 is 0.108/0.541/0.941/0.926 against ``1 − 0.9^{g+1}`` = 0.100/0.651/0.995/1.000 at
``g`` = 0/9/49/99 (within 1.2 standard errors of 100 seeds), and the trace ratio
0.964/0.301/0.003/0.000 against ``0.9^{g+1}`` = 0.900/0.349/0.005/0.000; read with
``g = 1, 10, …`` instead, generation 1 would predict 0.190 and 0.81, far from 0.108 and 0.964.

Every formula below follows from two facts about a Gaussian sample of ``n`` rows drawn from
``N(m, A)``: the sample mean is ``N(m, A/n)``, independent of the scatter, and the scatter is
``Wishart_d(n − 1, A)``. Conditionally on the previous model, a new source's mean and scatter
are therefore *linear* in ``(μ̂_{g−1}, Σ̂_{g−1})`` in expectation, which closes recursions for the
first two moments under every workflow. All of them were checked against simulation of the
synthloop task (``tests/test_gaussian.py``) with tolerances from the replicate count, the task
itself against a brute-force per-replicate refit on the rows (``benchmarks/gaussian_grid.py``),
and the formulas against each other: the accumulate closed forms (martingale + Chan's update)
equal the pairwise recursion of `accumulate_subsample_moments` with an unlimited budget, and
with the MLE every workflow conserves ``E‖μ̂_g − μ‖² + E tr Σ̂_g = tr Σ`` (the fit's second
moment about ``μ`` is its training rows', and sampling preserves it in expectation). Nothing depends on ``μ``; by rotation equivariance the second moments of an
isotropic truth are multiples of ``I``, which is why the functions take ``d`` and ``σ`` only
(the replace formulas for the trace hold for any ``Σ`` with ``dσ² → tr Σ``).

Functions are pure and broadcast like numpy ufuncs over their array arguments, returning a
numpy float for scalar input; ``accumulate_mean_sq_error`` takes scalar ``T`` and ``T0``, and
the ``*_moments`` functions return whole curves ``g = 0..G`` for scalar parameters. Where an expectation is infinite or the fit singular the
result is NaN (``−inf``/``0`` where that is the exact value: ``E log det`` and ``E det`` of a
singular fit). Invalid arguments raise ``ValueError``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from scipy import special

__all__ = [
    "Moments",
    "accumulate_mean_sq_error",
    "accumulate_subsample_moments",
    "accumulate_trace_ratio",
    "gaussian_entropy",
    "growing_moments",
    "real_fraction_moments",
    "replace_det_ratio",
    "replace_kl",
    "replace_log_det_ratio",
    "replace_mean_sq_error",
    "replace_nll",
    "replace_trace_ratio",
    "replace_trace_ratio_variance",
    "weighted_moments",
]

_VARIANCES = ("mle", "unbiased")


# ----------------------------------------------------------------------------- validation


def _integers(x, name: str, minimum: int) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(a)) or np.any(a < minimum) or np.any(a != np.round(a)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {x!r}")
    return a


def _generation(x) -> np.ndarray:
    return _integers(x, "generation", 0)


def _sizes(T, T0) -> tuple[np.ndarray, np.ndarray]:
    T = _integers(T, "T", 2)
    return T, (T if T0 is None else _integers(T0, "T0", 2))


def _sigma(x) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"sigma must be a positive standard deviation, got {x!r}")
    return a


def _divisor(n: np.ndarray, variance: str) -> np.ndarray:
    """``n`` (MLE) or ``n − 1`` (unbiased) for a training set of ``n >= 2`` rows."""
    if variance not in _VARIANCES:
        raise ValueError(f"variance must be one of {_VARIANCES}, got {variance!r}")
    return n if variance == "mle" else n - 1


def _scalar(x, name: str):
    if np.ndim(x) != 0:
        raise ValueError(f"{name} must be a scalar here, got {x!r}")
    return x


def _out(x):
    return np.asarray(x, dtype=float)[()]


# ----------------------------------------------------------------------------- replace


def replace_trace_ratio(generation, T, T0=None, variance="mle"):
    r"""Expected covariance shrinkage under ``replace``: ``E tr Σ̂_g / tr Σ``.

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0`` (0: fit on ``T`` real samples).
    T : array_like of int
        Real samples, ``>= 2``.
    T0 : array_like of int, optional
        Synthetic samples per generation ``g >= 1``, ``>= 2``. Default: ``T``.
    variance : {"mle", "unbiased"}
        Covariance divisor ``n`` or ``n − 1``.

    Returns
    -------
    ratio : ndarray or numpy.float64
        Broadcast over the arguments; independent of ``d``, ``σ`` and even of ``Σ``.

    Notes
    -----
    .. math::

        \frac{E\,\mathrm{tr}\,\hat\Sigma_g}{\mathrm{tr}\,\Sigma}
            = \frac{T - 1}{D(T)}\Big(\frac{T_0 - 1}{D(T_0)}\Big)^{g}.

    Derivation: the scatter of ``n`` rows from ``N(m, A)`` is ``Wishart_d(n − 1, A)`` with mean
    ``(n − 1)A``, so ``E[Σ̂_g | Σ̂_{g−1}] = (T0 − 1)/D(T0) · Σ̂_{g−1}`` and
    ``E Σ̂_0 = (T − 1)/D(T) · Σ``. With the MLE and ``T0 = T`` this is Shumailov's
    ``E σ̂_t² = ((T − 1)/T)^t σ²`` with ``t = g + 1`` (spec §5), generalised to any ``d``;
    with the unbiased divisor it is 1 for every ``g`` (although ``Σ̂_g → 0`` almost surely,
    see `replace_log_det_ratio`).

    References
    ----------
    .. [1] I. Shumailov et al., "The Curse of Recursion: Training on Generated Data Makes
       Models Forget", arXiv:2305.17493, Section 4.2 (single-dimensional Gaussian).
    .. [2] J. Kazdan et al., "Collapse or Thrive? Perils and Promises of Synthetic Data in a
       Self-Generating World", arXiv:2410.16713 (2024), multivariate Gaussian modelling.

    Examples
    --------
    Spec check, ``T = 100``, ``t = 100`` (``g = 99``): ``0.99^100``.

    >>> from synthloop.theory.gaussian import replace_trace_ratio
    >>> print(f"{replace_trace_ratio(99, T=100):.4f}")
    0.3660
    >>> print(replace_trace_ratio(99, T=100, variance="unbiased"))
    1.0
    """
    g = _generation(generation)
    T, T0 = _sizes(T, T0)
    c, c0 = (T - 1) / _divisor(T, variance), (T0 - 1) / _divisor(T0, variance)
    return _out(c * c0**g)


def replace_mean_sq_error(generation, d, T, sigma=1.0, T0=None, variance="mle"):
    r"""Expected squared error of the mean under ``replace``: ``E ‖μ̂_g − μ‖²``.

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0``.
    d : array_like of int
        Dimension, ``>= 1``.
    T : array_like of int
        Real samples, ``>= 2``.
    sigma : array_like of float
        Standard deviation of the isotropic truth ``N(μ, σ²I)``, ``> 0``.
    T0 : array_like of int, optional
        Synthetic samples per generation, ``>= 2``. Default: ``T``.
    variance : {"mle", "unbiased"}
        Covariance divisor.

    Returns
    -------
    error : ndarray or numpy.float64
        Broadcast over the arguments.

    Notes
    -----
    With ``c = (T − 1)/D(T)`` and ``c0 = (T0 − 1)/D(T0)``,

    .. math::

        E\|\hat\mu_g - \mu\|^2 = \frac{d\sigma^2}{T}
            + \frac{d\sigma^2 c}{T_0}\sum_{j=0}^{g-1} c_0^{\,j}.

    Derivation: ``μ̂_g | past ~ N(μ̂_{g−1}, Σ̂_{g−1}/T0)``, so the errors form a martingale with
    ``E‖μ̂_g − μ‖² = E‖μ̂_{g−1} − μ‖² + E tr Σ̂_{g−1}/T0``, and `replace_trace_ratio` gives
    ``E tr Σ̂_j``. With the MLE and ``T0 = T`` it is spec §5's
    ``(σ²/T) Σ_{s=1}^{t} ((T − 1)/T)^{s−1}`` (``t = g + 1``) times ``d``, which sums to
    ``dσ²(1 − ((T − 1)/T)^{g+1})`` and saturates at ``dσ²``: the mean wanders about as far as
    one real sample. With the unbiased divisor it grows without bound,
    ``dσ²(1/T + g/T0)``.

    References
    ----------
    .. [1] I. Shumailov et al., arXiv:2305.17493, Section 4.2.
    .. [2] J. Kazdan et al., arXiv:2410.16713 (2024).

    Examples
    --------
    Kazdan et al.'s replace, ``T = 10``, at their generation 10 (``g = 9``): ``1 − 0.9^10``.

    >>> from synthloop.theory.gaussian import replace_mean_sq_error
    >>> print(f"{replace_mean_sq_error(9, d=1, T=10):.4f}")
    0.6513
    >>> print(f"{replace_mean_sq_error(0, d=3, T=100, sigma=2.0):.4f}")  # dσ²/T
    0.1200
    """
    g = _generation(generation)
    d = _integers(d, "d", 1)
    sigma = _sigma(sigma)
    T, T0 = _sizes(T, T0)
    c, c0 = (T - 1) / _divisor(T, variance), (T0 - 1) / _divisor(T0, variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        geometric = np.where(c0 == 1, g, (1 - c0**g) / np.where(c0 == 1, 2.0, 1 - c0))
    return _out(d * sigma**2 * (1 / T + c / T0 * geometric))


def replace_trace_ratio_variance(generation, d, T, T0=None, variance="mle"):
    r"""Variance over replicates of the trace ratio ``tr Σ̂_g / tr Σ`` under ``replace``.

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0``.
    d : array_like of int
        Dimension, ``>= 1`` (isotropic truth).
    T : array_like of int
        Real samples, ``>= 2``.
    T0 : array_like of int, optional
        Synthetic samples per generation, ``>= 2``. Default: ``T``.
    variance : {"mle", "unbiased"}
        Covariance divisor.

    Returns
    -------
    var : ndarray or numpy.float64

    Notes
    -----
    With ``n = T − 1``, ``n0 = T0 − 1``, ``D = D(T)``, ``D0 = D(T0)``,

    .. math::

        \mathrm{Var} = \frac{d + 2}{3d}\Lambda_1 + \frac{2(d - 1)}{3d}\Lambda_2 - m_g^2,\quad
        \Lambda_1 = \frac{n(n+2)}{D^2}\Big(\frac{n_0(n_0+2)}{D_0^2}\Big)^g,\quad
        \Lambda_2 = \frac{n(n-1)}{D^2}\Big(\frac{n_0(n_0-1)}{D_0^2}\Big)^g,

    and ``m_g`` = `replace_trace_ratio`. Derivation: for ``W ~ Wishart_d(n, A)``,
    ``E(tr W)² = n²(tr A)² + 2n tr A²`` and ``E tr W² = n(n+1) tr A² + n (tr A)²``, so the
    pair ``((tr Σ̂)², tr Σ̂²)`` evolves by the matrix ``[[n², 2n], [n, n(n+1)]]/D²`` in
    expectation. Its eigenvalues are ``n(n+2)`` (eigenvector ``(1, 1)``) and ``n(n−1)``
    (eigenvector ``(2, −1)``); the truth's ``(d², d)σ⁴`` decomposes as
    ``d(d+2)/3·(1, 1) + d(d−1)/3·(2, −1)``.

    For ``d = 1`` with the unbiased divisor and ``T0 = T`` this is Shumailov's
    ``Var σ̂_t²/σ⁴ = (1 + 2/(T − 1))^t − 1`` (``t = g + 1``, spec §5): the mean stays at 1
    while the spread grows geometrically.

    References
    ----------
    .. [1] I. Shumailov et al., arXiv:2305.17493, Section 4.2 (variance of the unbiased
       estimate grows; ``σ̂² → 0`` almost surely).

    Examples
    --------
    >>> from synthloop.theory.gaussian import replace_trace_ratio_variance
    >>> v = replace_trace_ratio_variance(99, d=1, T=100, variance="unbiased")
    >>> print(f"{v:.4f} {(1 + 2 / 99) ** 100 - 1:.4f}")
    6.3895 6.3895
    """
    g = _generation(generation)
    d = _integers(d, "d", 1)
    T, T0 = _sizes(T, T0)
    n, n0 = T - 1, T0 - 1
    D, D0 = _divisor(T, variance), _divisor(T0, variance)
    lam1 = n * (n + 2) / D**2 * (n0 * (n0 + 2) / D0**2) ** g
    lam2 = n * (n - 1) / D**2 * (n0 * (n0 - 1) / D0**2) ** g
    mean = (n / D) * (n0 / D0) ** g
    return _out((d + 2) / (3 * d) * lam1 + 2 * (d - 1) / (3 * d) * lam2 - mean**2)


def _expected_log_det_wishart(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``E log det W`` for ``W ~ Wishart_d(n, I)``: ``Σ_{i<d} ψ((n − i)/2) + d log 2``; −inf if ``n < d``."""

    def one(n_, d_):
        if n_ < d_:
            return -np.inf
        return float(np.sum(special.digamma((n_ - np.arange(int(d_))) / 2)) + d_ * np.log(2))

    return np.vectorize(one, otypes=[float])(n, d)


def replace_log_det_ratio(generation, d, T, T0=None, variance="mle"):
    r"""Expected log-determinant ratio under ``replace``: ``E log det Σ̂_g − log det Σ``.

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0``.
    d : array_like of int
        Dimension, ``>= 1``.
    T : array_like of int
        Real samples, ``>= 2``.
    T0 : array_like of int, optional
        Synthetic samples per generation, ``>= 2``. Default: ``T``.
    variance : {"mle", "unbiased"}
        Covariance divisor.

    Returns
    -------
    log_ratio : ndarray or numpy.float64
        ``−inf`` where a fit is singular (``T − 1 < d``, or ``g >= 1`` and ``T0 − 1 < d``).

    Notes
    -----
    With ``ℓ(n, D) = Σ_{i=0}^{d−1} ψ((n − i)/2) + d log 2 − d log D``,

    .. math::

        E \log\det\hat\Sigma_g - \log\det\Sigma = \ell(T - 1, D(T)) + g\,\ell(T_0 - 1, D(T_0)).

    Derivation: ``Σ̂_g = C W_g Cᵀ/D0`` with ``C Cᵀ = Σ̂_{g−1}`` and ``W_g ~ Wishart_d(T0 − 1, I)``
    independent of the past, so log-determinants add independent terms, and
    ``E log det W = Σ_i E log χ²_{n−i} = Σ_i (ψ((n − i)/2) + log 2)`` (Bartlett).

    ``ℓ < 0`` for both divisors (Jensen), so ``log det Σ̂_g`` is a random walk with negative
    drift and ``Σ̂_g → 0`` almost surely even when ``E Σ̂_g = Σ`` (unbiased divisor) —
    Shumailov et al.'s collapse, made quantitative.

    References
    ----------
    .. [1] I. Shumailov et al., arXiv:2305.17493, Section 4.2.

    Examples
    --------
    ``d = 1``, unbiased, ``T = 100``: drift ``ψ(49.5) + log 2 − log 99`` per generation.

    >>> from synthloop.theory.gaussian import replace_log_det_ratio
    >>> print(f"{replace_log_det_ratio(0, d=1, T=100, variance='unbiased'):.5f}")
    -0.01014
    """
    g = _generation(generation)
    d = _integers(d, "d", 1)
    T, T0 = _sizes(T, T0)
    D, D0 = _divisor(T, variance), _divisor(T0, variance)
    first = _expected_log_det_wishart(T - 1, d) - d * np.log(D)
    later = _expected_log_det_wishart(T0 - 1, d) - d * np.log(D0)
    with np.errstate(invalid="ignore"):
        return _out(first + np.where(g > 0, g * later, 0.0))


def replace_det_ratio(generation, d, T, T0=None, variance="mle"):
    r"""Expected determinant ratio under ``replace``: ``E det Σ̂_g / det Σ``.

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0``.
    d : array_like of int
        Dimension, ``>= 1``.
    T : array_like of int
        Real samples, ``>= 2``.
    T0 : array_like of int, optional
        Synthetic samples per generation, ``>= 2``. Default: ``T``.
    variance : {"mle", "unbiased"}
        Covariance divisor.

    Returns
    -------
    ratio : ndarray or numpy.float64
        0 where a fit is singular.

    Notes
    -----
    With ``ρ(n, D) = Π_{i=0}^{d−1} (n − i)/D``,

    .. math::

        E\det\hat\Sigma_g / \det\Sigma = \rho(T - 1, D(T))\,\rho(T_0 - 1, D(T_0))^{g}.

    Derivation: as in `replace_log_det_ratio`, with ``E det W = Π_i E χ²_{n−i} = Π_i (n − i)``
    for ``W ~ Wishart_d(n, I)`` and independent factors. The mean is dominated by rare large
    values when ``d`` is large (the log-determinant is the better-behaved summary).

    References
    ----------
    .. [1] J. Kazdan et al., arXiv:2410.16713 (2024) (determinant of the fitted covariance
       over the truth's, logged in their Gaussian experiments).

    Examples
    --------
    >>> from synthloop.theory.gaussian import replace_det_ratio
    >>> print(f"{replace_det_ratio(1, d=2, T=10):.4f}")  # (9·8/100)²
    0.5184
    """
    g = _generation(generation)
    d = _integers(d, "d", 1)
    T, T0 = _sizes(T, T0)
    D, D0 = _divisor(T, variance), _divisor(T0, variance)

    def rho(n, D):
        def one(n_, d_, D_):
            if n_ < d_:
                return 0.0
            return float(np.exp(np.sum(np.log((n_ - np.arange(int(d_))) / D_))))

        return np.vectorize(one, otypes=[float])(n, d, D)

    return _out(rho(T - 1, D) * rho(T0 - 1, D0) ** g)


def gaussian_entropy(d, sigma=1.0):
    r"""Differential entropy of ``N(μ, σ²I_d)`` in nats: ``½ d (1 + log 2πσ²)``.

    The expected negative log-likelihood of real data under a fit is this entropy plus the
    fit's KL divergence from the truth (`replace_nll`).

    Examples
    --------
    >>> from synthloop.theory.gaussian import gaussian_entropy
    >>> print(f"{gaussian_entropy(1):.4f}")
    1.4189
    """
    d = _integers(d, "d", 1)
    sigma = _sigma(sigma)
    return _out(0.5 * d * (1 + np.log(2 * np.pi * sigma**2)))


def replace_kl(generation, d, T, T0=None, variance="mle"):
    r"""Expected ``KL(truth ‖ fit)`` under ``replace``, in nats.

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0``.
    d : array_like of int
        Dimension, ``>= 1``.
    T : array_like of int
        Real samples, ``>= 2``.
    T0 : array_like of int, optional
        Synthetic samples per generation, ``>= 2``. Default: ``T``.
    variance : {"mle", "unbiased"}
        Covariance divisor.

    Returns
    -------
    kl : ndarray or numpy.float64
        NaN where the expectation is infinite: ``T ≤ d + 2``, or ``g >= 1`` and ``T0 ≤ d + 2``
        (the inverse-Wishart mean needs ``n > d + 1`` degrees of freedom, ``n = T − 1``).

    Notes
    -----
    ``KL(N(μ, σ²I) ‖ N(μ̂, Σ̂)) = ½[σ² tr Σ̂⁻¹ + (μ̂ − μ)ᵀΣ̂⁻¹(μ̂ − μ) − d + log det Σ̂ − d log σ²]``,
    and each term has an exact expectation (``n = T − 1``, ``n0 = T0 − 1``):

    * ``E σ² tr Σ̂_g⁻¹ = d κ κ0^g`` with ``κ = D/(n − d − 1)``, ``κ0 = D0/(n0 − d − 1)``: given
      the past, ``E Σ̂_g⁻¹ = κ0 Σ̂_{g−1}⁻¹`` (inverse-Wishart mean ``E W⁻¹ = A⁻¹/(n − d − 1)``);
    * ``q_g = E (μ̂_g − μ)ᵀΣ̂_g⁻¹(μ̂_g − μ)`` obeys ``q_0 = κ d/T`` and
      ``q_g = κ0 (q_{g−1} + d/T0)``, because ``μ̂_g`` and ``Σ̂_g`` are independent given the
      past (mean and scatter of one Gaussian sample) and ``μ̂_g ~ N(μ̂_{g−1}, Σ̂_{g−1}/T0)``;
    * the log-determinant term is `replace_log_det_ratio`.

    The KL divergence does not depend on ``σ`` (rescaling data rescales the fit).

    References
    ----------
    .. [1] J. Kazdan et al., arXiv:2410.16713 (2024); the formula is derived here.

    Examples
    --------
    >>> from synthloop.theory.gaussian import replace_kl
    >>> print(f"{replace_kl(0, d=1, T=100):.5f}")
    0.01053
    """
    g = _generation(generation)
    d = _integers(d, "d", 1)
    T, T0 = _sizes(T, T0)
    n, n0 = T - 1, T0 - 1
    D, D0 = _divisor(T, variance), _divisor(T0, variance)
    ok = (n > d + 1) & ((g == 0) | (n0 > d + 1))
    kappa = np.where(n > d + 1, D / np.where(n > d + 1, n - d - 1, 1.0), np.nan)
    kappa0 = np.where(n0 > d + 1, D0 / np.where(n0 > d + 1, n0 - d - 1, 1.0), np.nan)
    with np.errstate(invalid="ignore"):
        trace = d * kappa * np.where(g > 0, kappa0**g, 1.0)
        # q_g = κ0^g q_0 + (d/T0) Σ_{j=1}^{g} κ0^j
        geometric = np.where(kappa0 == 1, g, kappa0 * (1 - kappa0**g) / np.where(kappa0 == 1, 2.0, 1 - kappa0))
        quad = np.where(g > 0, kappa0**g * kappa * d / T + d / T0 * geometric, kappa * d / T)
        value = 0.5 * (trace + quad - d + replace_log_det_ratio(g, d, T, T0, variance))
    return _out(np.where(ok, value, np.nan))


def replace_nll(generation, d, T, sigma=1.0, T0=None, variance="mle"):
    r"""Expected negative log-likelihood (nats per sample) of fresh real data under ``replace``.

    Exactly ``E KL(truth ‖ fit_g) + H(truth)``: `replace_kl` plus `gaussian_entropy`, because
    ``E_x[−log p̂(x)] = H(p) + KL(p ‖ p̂)`` for every fit ``p̂``. NaN where `replace_kl` is.

    Examples
    --------
    >>> from synthloop.theory.gaussian import replace_nll
    >>> print(f"{replace_nll(0, d=1, T=100):.4f}")
    1.4295
    """
    return _out(replace_kl(generation, d, T, T0, variance) + gaussian_entropy(d, sigma))


# ----------------------------------------------------------------------------- accumulate


def _log_rising(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``log Π_{j=1}^{g} (j + x) = lnΓ(g + 1 + x) − lnΓ(1 + x)`` for ``1 + x > 0``."""
    return special.gammaln(g + 1 + x) - special.gammaln(1 + x)


def accumulate_trace_ratio(generation, T, T0=None, variance="mle"):
    r"""Expected covariance ratio ``E tr Σ̂_g / tr Σ`` under ``accumulate`` (exact).

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0``; generation ``g`` fits all ``N_g = T + g T0`` rows.
    T : array_like of int
        Real samples, ``>= 2``.
    T0 : array_like of int, optional
        Synthetic samples per generation, ``>= 2``. Default: ``T``.
    variance : {"mle", "unbiased"}
        Covariance divisor (``D_g = N_g`` or ``N_g − 1``).

    Returns
    -------
    ratio : ndarray or numpy.float64

    Notes
    -----
    .. math::

        \frac{E\,\mathrm{tr}\,\hat\Sigma_g}{\mathrm{tr}\,\Sigma}
            = \frac{T - 1}{D_0}\prod_{j=1}^{g}\Big(1 - \frac{T_0}{N_j D_j}\Big),

    evaluated in closed form with Gamma functions (the factors are ratios of linear terms in
    ``j``). With the MLE and ``T0 = T``: ``((T − 1)/T) Π_{k=2}^{g+1} (1 − 1/(k² T))``, which
    tends to about ``((T − 1)/T)·exp(−(π²/6 − 1)/T)`` — e.g. 0.984 for ``T = 100``.

    Derivation: the pooled scatter of all rows obeys Chan's update
    ``S_g = S_{g−1} + W_g + (N_{g−1}T0/N_g)(x̄_g − μ̂_{g−1})(x̄_g − μ̂_{g−1})ᵀ`` with
    ``E[W_g | past] = (T0 − 1)Σ̂_{g−1}`` and ``E[(x̄_g − μ̂_{g−1})(…)ᵀ | past] = Σ̂_{g−1}/T0``, so
    ``E tr S_g = E tr S_{g−1} + (T0 − 1 + N_{g−1}/N_g) E tr Σ̂_{g−1}``; dividing by ``D_g`` and
    using ``S_{g−1} = D_{g−1}Σ̂_{g−1}`` gives the factor ``1 − T0/(N_g D_g)``.

    References
    ----------
    .. [1] J. Kazdan et al., arXiv:2410.16713 (2024) (accumulating keeps the fitted covariance
       near the truth's; their trace ratio for ``T = 100`` ≈ 0.997 over 100 seeds).

    Examples
    --------
    >>> from synthloop.theory.gaussian import accumulate_trace_ratio
    >>> print(f"{accumulate_trace_ratio(1, T=100):.6f}")  # 0.99 · (1 − 1/400)
    0.987525
    >>> print(f"{accumulate_trace_ratio(10**6, T=100):.4f}")
    0.9836
    """
    g = _generation(generation)
    T, T0 = _sizes(T, T0)
    a = T / T0  # N_j = T0 (j + a)
    first = (T - 1) / _divisor(T, variance)
    if variance == "mle":
        # 1 − T0/N² = (N − √T0)(N + √T0)/N²
        s = 1 / np.sqrt(T0)
        log_product = _log_rising(a - s, g) + _log_rising(a + s, g) - 2 * _log_rising(a, g)
    else:
        # 1 − T0/(N(N − 1)) = (N − r₊)(N − r₋)/(N(N − 1)), r± = (1 ± √(1 + 4T0))/2
        root = np.sqrt(1 + 4 * T0)
        r_plus, r_minus = (1 + root) / 2, (1 - root) / 2
        log_product = (_log_rising(a - r_plus / T0, g) + _log_rising(a - r_minus / T0, g)
                       - _log_rising(a, g) - _log_rising(a - 1 / T0, g))
    return _out(first * np.exp(log_product))


@functools.lru_cache(maxsize=256)
def _accumulate_error_curve(G: int, T: int, T0: int, variance: str) -> np.ndarray:
    """``E‖μ̂_g − μ‖²/(dσ²)`` for ``g = 0..G``: ``1/T + Σ_{j=1}^{g} T0 v_{j−1}/N_j²``."""
    j = np.arange(1, G + 1)
    v = accumulate_trace_ratio(j - 1, T, T0, variance)  # E tr Σ̂_{j−1} / (dσ²)
    N = T + j * T0
    curve = np.concatenate([[1 / T], 1 / T + np.cumsum(T0 * np.atleast_1d(v) / N**2)])
    curve.flags.writeable = False
    return curve


def accumulate_mean_sq_error(generation, d, T, sigma=1.0, T0=None, variance="mle"):
    r"""Expected squared error of the mean under ``accumulate`` (exact).

    Parameters
    ----------
    generation : array_like of int
        Generation ``g >= 0``.
    d : array_like of int
        Dimension, ``>= 1``.
    T : int
        Real samples, ``>= 2`` (scalar).
    sigma : array_like of float
        Standard deviation of the isotropic truth, ``> 0``.
    T0 : int, optional
        Synthetic samples per generation, ``>= 2`` (scalar). Default: ``T``.
    variance : {"mle", "unbiased"}
        Covariance divisor.

    Returns
    -------
    error : ndarray or numpy.float64

    Notes
    -----
    With ``N_j = T + j T0`` and ``v_j`` = `accumulate_trace_ratio` at ``j``,

    .. math::

        E\|\hat\mu_g - \mu\|^2 = d\sigma^2\Big(\frac{1}{T}
            + \sum_{j=1}^{g} \frac{T_0\, v_{j-1}}{N_j^2}\Big).

    Derivation: the pooled mean updates as ``μ̂_g = μ̂_{g−1} + (T0/N_g)(x̄_g − μ̂_{g−1})``, whose
    increments have mean zero and conditional covariance ``Σ̂_{g−1}/T0`` given the past — a
    martingale, so the squared errors add (spec §5's ``e_g = e_{g−1} + (x̄_g − μ̂_{g−1})/(g+1)``
    for ``T0 = T``). This is exact: it uses ``E tr Σ̂_{j−1}`` under accumulate, not the truth's.

    With ``v ≈ 1`` and ``T0 = T`` the bracket is ``(1/T) Σ_{k=1}^{g+1} 1/k²``, Dey & Donoho's
    local limit, which tends to ``π²/(6T)``; the exact value is slightly lower because the
    accumulated covariance shrinks a little (``v < 1``).

    References
    ----------
    .. [1] J. Kazdan et al., arXiv:2410.16713 (2024): plateau ≈ (π²/6)/T for ``d = 1``.
    .. [2] A. Dey, D. Donoho, "Universality of the π²/6 Pathway in Avoiding Model Collapse",
       arXiv:2410.22812 (2024).

    Examples
    --------
    >>> from synthloop.theory.gaussian import accumulate_mean_sq_error
    >>> print(f"{accumulate_mean_sq_error(99, d=1, T=100):.5f}")  # published: 0.0160
    0.01627
    >>> print(f"{accumulate_mean_sq_error(99, d=1, T=10**6) * 10**6:.4f}")  # Σ_{k≤100} 1/k²
    1.6350
    """
    g = _generation(generation)
    d = _integers(d, "d", 1)
    sigma = _sigma(sigma)
    T = int(_integers(_scalar(T, "T"), "T", 2))
    T0 = T if T0 is None else int(_integers(_scalar(T0, "T0"), "T0", 2))
    _divisor(T, variance)
    curve = _accumulate_error_curve(int(g.max(initial=0)), T, T0, variance)
    return _out(d * sigma**2 * curve[g.astype(int)])


# ----------------------------------------------------------------------------- general recursions


class Moments(NamedTuple):
    """Exact first and second moments of one workflow, generation by generation ``0..G``.

    Attributes
    ----------
    mean_sq_error : ndarray of shape (G + 1,)
        ``E ‖μ̂_g − μ‖²``.
    trace_ratio : ndarray of shape (G + 1,)
        ``E tr Σ̂_g / tr Σ``.
    """

    mean_sq_error: np.ndarray
    trace_ratio: np.ndarray


def _readonly(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


@functools.lru_cache(maxsize=256)
def _subsample_curves(G: int, T: int, T0: int, budget: int, variance: str) -> Moments:
    # Per coordinate, in units of σ². Rows of one source are exchangeable, so for a row i of
    # source a: V[a] = E(x_i − μ)², and rho[a] = Σ_{l ≠ i} E(x_i − μ)(x_l − μ) over every other
    # row l of the pool. The selection S (m of the N rows) is independent of the rows.
    sizes = np.array([T] + [T0] * G, dtype=float)
    V, rho = np.zeros(G + 1), np.zeros(G + 1)
    V[0] = 1.0  # real rows: variance σ², independent of each other
    errors, traces = np.empty(G + 1), np.empty(G + 1)
    for g in range(G + 1):
        n = sizes[: g + 1]
        N = n.sum()
        m = min(budget, N)
        p1 = m / N  # P(i ∈ S)
        p2 = m * (m - 1) / (N * (N - 1)) if N > 1 else 0.0  # P(i ∈ S and l ∈ S), i ≠ l
        first = float(n @ V[: g + 1])  # Σ_i E(x_i − μ)²
        pairs = float(n @ rho[: g + 1])  # Σ_{i ≠ l} E(x_i − μ)(x_l − μ)
        e = (p1 * first + p2 * pairs) / m**2  # E(μ̂_g − μ)²
        D = m if variance == "mle" else max(m - 1, 1)
        v = (p1 * first - m * e) / D  # E Σ_{i ∈ S}(x_i − μ̂_g)² / D
        errors[g], traces[g] = e, v
        if g == G:
            break
        # The new source g + 1: rows μ̂_g + noise of covariance Σ̂_g, fresh given the past.
        h = (V[: g + 1] + rho[: g + 1]) / N  # E(μ̂_g − μ)(x_l − μ) for a row l of each source
        s = sizes[g + 1]
        rho[: g + 1] += s * h
        rho[g + 1] = float(n @ h) + (s - 1) * e  # two new rows share μ̂_g: covariance e
        V[g + 1] = e + v
    return Moments(*_readonly(errors, traces))


def accumulate_subsample_moments(generations, d, T, sigma=1.0, T0=None, budget=None, variance="mle") -> Moments:
    r"""Exact ``E‖μ̂_g − μ‖²`` and ``E tr Σ̂_g/tr Σ`` under ``accumulate-subsample``, ``g = 0..G``.

    Generation ``g`` fits ``budget`` rows drawn uniformly without replacement from the
    ``N_g = T + g T0`` rows of the pool (all of them while ``N_g <= budget``).

    Parameters
    ----------
    generations : int
        The number of generations ``G >= 0``; the result covers ``g = 0..G``.
    d : int
        Dimension, ``>= 1``.
    T : int
        Real samples, ``>= 2``.
    sigma : float
        Standard deviation of the isotropic truth, ``> 0``.
    T0 : int, optional
        Synthetic samples per generation, ``>= 2``. Default: ``T``.
    budget : int, optional
        Rows per training set, ``>= 1``. Default: ``T`` (Kazdan et al.). A budget of at least
        ``T + G T0`` takes every row: the recursion then reproduces `accumulate_mean_sq_error`
        and `accumulate_trace_ratio` (checked in the tests).
    variance : {"mle", "unbiased"}
        Covariance divisor (of the ``budget`` rows).

    Returns
    -------
    Moments
        ``mean_sq_error`` and ``trace_ratio``, each of shape ``(G + 1,)``.

    Notes
    -----
    Exact, not a local limit: per coordinate (second moments are multiples of ``I`` by
    rotation equivariance), rows of one source are exchangeable and the draw ``S_g`` is
    independent of the rows, so with ``V_a = E(x_i − μ)²`` for a row of source ``a`` and
    ``c(i, l) = E(x_i − μ)(x_l − μ)``,

    .. math::

        E(\hat\mu_g - \mu)^2 = rac{1}{m^2}\Big(rac{m}{N}\sum_i V_{a(i)}
            + rac{m(m-1)}{N(N-1)}\sum_{i 
e l} c(i, l)\Big),\qquad
        E\,\hat\sigma_g^2 = rac{1}{D}\Big(rac{m}{N}\sum_i V_{a(i)} - m\,E(\hat\mu_g - \mu)^2\Big).

    A new row of source ``g + 1`` is ``μ̂_g + ε`` with ``ε`` fresh given the past, so it has
    ``V = E(μ̂_g − μ)² + E σ̂_g²``, covariance ``E(μ̂_g − μ)²`` with its siblings and
    ``E(μ̂_g − μ)(x_l − μ) = (V_{a(l)} + Σ_{i ≠ l} c(i, l))/N`` with an older row ``l``. The
    recursion keeps one number per source for ``Σ_{l ≠ i} c(i, l)``: ``O(G)`` memory and
    ``O(G²)`` time. Only linearity of conditional expectations is used — no Gaussian limit.

    References
    ----------
    .. [1] J. Kazdan et al., arXiv:2410.16713 (2024), accumulate-subsample workflow; the
       recursion is derived here.

    Examples
    --------
    >>> from synthloop.theory.gaussian import accumulate_subsample_moments
    >>> m = accumulate_subsample_moments(99, d=1, T=100)
    >>> print(f"{m.mean_sq_error[0]:.4f} {m.trace_ratio[0]:.4f}")
    0.0100 0.9900
    """
    G = int(_integers(_scalar(generations, "generations"), "generations", 0))
    d = int(_integers(_scalar(d, "d"), "d", 1))
    sigma = float(_sigma(_scalar(sigma, "sigma")))
    T = int(_integers(_scalar(T, "T"), "T", 2))
    T0 = T if T0 is None else int(_integers(_scalar(T0, "T0"), "T0", 2))
    budget = T if budget is None else int(_integers(_scalar(budget, "budget"), "budget", 1))
    _divisor(T, variance)
    curves = _subsample_curves(G, T, T0, budget, variance)
    return Moments(*_readonly(d * sigma**2 * curves.mean_sq_error, curves.trace_ratio.copy()))


def growing_moments(generations, d, T, sigma=1.0, T0=None, variance="mle") -> Moments:
    r"""Exact moments under ``growing``: replace, with ``g·T0`` synthetic rows at generation ``g``.

    Parameters
    ----------
    generations : int
        The number of generations ``G >= 0``.
    d : int
        Dimension, ``>= 1``.
    T : int
        Real samples, ``>= 2``.
    sigma : float
        Standard deviation of the isotropic truth, ``> 0``.
    T0 : int, optional
        Growth unit, ``>= 2``: generation ``g >= 1`` fits ``g·T0`` rows. Default: ``T``.
    variance : {"mle", "unbiased"}
        Covariance divisor.

    Returns
    -------
    Moments

    Notes
    -----
    As in `replace_trace_ratio` and `replace_mean_sq_error` with the size ``n_j = j T0`` of
    generation ``j``:

    .. math::

        v_g = rac{T - 1}{D(T)}\prod_{j=1}^{g}rac{n_j - 1}{D(n_j)},\qquad
        E\|\hat\mu_g - \mu\|^2 = d\sigma^2\Big(rac{1}{T} + \sum_{j=1}^{g}rac{v_{j-1}}{n_j}\Big).

    With the MLE the covariance still shrinks, but by ``Π(1 − 1/(jT0))``, which decays only
    like a power of ``g``; the mean error grows like ``(dσ²/T0) log g`` (harmonic numbers).

    Examples
    --------
    >>> from synthloop.theory.gaussian import growing_moments
    >>> m = growing_moments(2, d=1, T=10)
    >>> print(f"{m.mean_sq_error[2]:.4f}")  # 0.1 + 0.9/10 + 0.9·0.9/20
    0.2305
    """
    G = int(_integers(_scalar(generations, "generations"), "generations", 0))
    d = int(_integers(_scalar(d, "d"), "d", 1))
    sigma = float(_sigma(_scalar(sigma, "sigma")))
    T = int(_integers(_scalar(T, "T"), "T", 2))
    T0 = T if T0 is None else int(_integers(_scalar(T0, "T0"), "T0", 2))
    n = np.arange(1, G + 1) * float(T0)
    v = (T - 1) / _divisor(float(T), variance) * np.concatenate([[1.0], np.cumprod((n - 1) / _divisor(n, variance))])
    errors = d * sigma**2 * np.concatenate([[1 / T], 1 / T + np.cumsum(v[:-1] / n)])
    return Moments(*_readonly(errors, v))


# ----------------------------------------------------------------------------- any uniform-within-source mixture

_MAX_GENERATIONS = 2000  # the general recursion keeps a (G + 1)² matrix and costs O(G³)


def _mixture_curves(G: int, T: int, T0: int, variance: str, plan) -> Moments:
    """Exact moments, per coordinate and in units of σ², for any training-set rule whose row
    weights ``ω`` are independent of the rows and exchangeable within each source.

    ``plan(g, n)`` returns ``(W, p, q, P)`` for the pool sizes ``n`` (shape (g+1,)): the total
    weight ``W = Σ ω_i`` (fixed), ``p_a = E ω_i`` and ``q_a = E ω_i²`` for a row of source
    ``a``, and ``P_ab = E ω_i ω_l`` for distinct rows of sources ``a`` and ``b``.
    """
    sizes = np.array([T] + [T0] * G, dtype=float)
    V = np.zeros(G + 1)
    C = np.zeros((G + 1, G + 1))  # C_ab = E(x_i − μ)(x_l − μ), distinct rows i ∈ a, l ∈ b
    V[0] = 1.0
    errors, traces = np.empty(G + 1), np.empty(G + 1)
    for g in range(G + 1):
        n = sizes[: g + 1]
        W, p, q, P = plan(g, n)
        Cg = C[: g + 1, : g + 1]
        distinct = n[:, None] * (n[None, :] - np.eye(g + 1))  # ordered pairs of distinct rows
        e = (float(np.sum(n * q * V[: g + 1])) + float(np.sum(distinct * P * Cg))) / W**2
        D = W if variance == "mle" else max(W - 1, 1)
        v = (float(np.sum(n * p * V[: g + 1])) - W * e) / D
        errors[g], traces[g] = e, v
        if g == G:
            break
        h = (p * V[: g + 1] + np.sum((n[:, None] - np.eye(g + 1)) * p[:, None] * Cg, axis=0)) / W
        C[g + 1, : g + 1] = C[: g + 1, g + 1] = h
        C[g + 1, g + 1] = e
        V[g + 1] = e + v
    return Moments(*_readonly(errors, traces))


def _check_generations(G: int) -> int:
    if G > _MAX_GENERATIONS:
        raise ValueError(f"generations must be at most {_MAX_GENERATIONS} for this O(G³) recursion, got {G}")
    return G


@functools.lru_cache(maxsize=256)
def _weighted_curves(G, T, T0, real, decay, variance):
    def plan(g, n):
        if g == 0:
            w = np.ones(1)
        else:
            age = g - np.arange(1, g + 1)
            w = np.concatenate([[real], np.where(age == 0, 1.0, decay ** np.maximum(age, 1))])
        return float(w @ n), w, w**2, np.outer(w, w)

    return _mixture_curves(G, T, T0, variance, plan)


def weighted_moments(generations, d, T, sigma=1.0, T0=None, real=1.0, decay=1.0, variance="mle") -> Moments:
    r"""Exact moments under Dey & Donoho's ``weighted`` workflow (whole sources, no ``budget``).

    Generation ``g >= 1`` fits every row, real rows with weight ``real`` and rows synthesized at
    generation ``j`` with weight ``decay^(g − j)`` (the newest weighs 1); generation 0 fits the
    real data. ``real = decay = 1`` is accumulate, ``real = decay = 0`` is replace.

    Parameters
    ----------
    generations : int
        ``G``, at most 2000; the result covers ``g = 0..G``.
    d, T, sigma, T0, variance
        As in `accumulate_subsample_moments`.
    real : float
        Weight of each real row, ``>= 0``.
    decay : float
        Weight ratio between successive synthetic generations, ``>= 0``.

    Returns
    -------
    Moments

    Notes
    -----
    The weighted mean and scatter (divisor ``D(W)``, ``W = Σ ω_i``) are linear in the rows given
    the weights, so the pair-covariance recursion of `accumulate_subsample_moments` applies with
    ``E ω_i ω_l = w_a w_b``; it keeps the full source-by-source covariance matrix
    (``O(G²)`` memory, ``O(G³)`` time). Exact, not Dey & Donoho's local limit.

    References
    ----------
    .. [1] A. Dey, D. Donoho, arXiv:2410.22812 (2024) (the weighted workflows; their local
       limit is the large-``T`` version of this recursion).

    Examples
    --------
    >>> from synthloop.theory.gaussian import weighted_moments, replace_mean_sq_error
    >>> m = weighted_moments(5, d=1, T=10, real=0.0, decay=0.0)  # replace
    >>> print(f"{m.mean_sq_error[5]:.6f} {replace_mean_sq_error(5, d=1, T=10):.6f}")
    0.468559 0.468559
    """
    G = _check_generations(int(_integers(_scalar(generations, "generations"), "generations", 0)))
    d = int(_integers(_scalar(d, "d"), "d", 1))
    sigma = float(_sigma(_scalar(sigma, "sigma")))
    T = int(_integers(_scalar(T, "T"), "T", 2))
    T0 = T if T0 is None else int(_integers(_scalar(T0, "T0"), "T0", 2))
    real, decay = float(_scalar(real, "real")), float(_scalar(decay, "decay"))
    if not (np.isfinite(real) and np.isfinite(decay) and real >= 0 and decay >= 0):
        raise ValueError(f"real and decay must be finite and >= 0, got {real!r}, {decay!r}")
    _divisor(T, variance)
    curves = _weighted_curves(G, T, T0, real, decay, variance)
    return Moments(*_readonly(d * sigma**2 * curves.mean_sq_error, curves.trace_ratio.copy()))


@functools.lru_cache(maxsize=256)
def _real_fraction_curves(G, T, T0, fraction, budget, variance):
    def plan(g, n):
        if g == 0:
            m = min(budget, T)
            p = np.array([m / T])
            return float(m), p, p, np.array([[m * (m - 1) / (T * (T - 1))]])
        n_real = round(fraction * budget)
        n_synthetic = budget - n_real
        N = float(n[1:].sum())
        pr, ps = n_real / T, n_synthetic / N
        prr = n_real * (n_real - 1) / (T * (T - 1))
        pss = n_synthetic * (n_synthetic - 1) / (N * (N - 1)) if N > 1 else 0.0
        p = np.concatenate([[pr], np.full(g, ps)])
        P = np.full((g + 1, g + 1), pss)
        P[0, :], P[:, 0], P[0, 0] = pr * ps, pr * ps, prr
        return float(budget), p, p, P

    return _mixture_curves(G, T, T0, variance, plan)


def real_fraction_moments(generations, d, T, sigma=1.0, T0=None, fraction=0.5, budget=None, variance="mle") -> Moments:
    r"""Exact moments under Kazdan et al.'s ``real-fraction`` workflow.

    Every training set has ``budget`` rows (default ``T``): ``round(fraction · budget)`` drawn
    uniformly without replacement from the real rows and the rest from all synthetic rows so
    far; generation 0 draws ``budget`` real rows.

    Parameters
    ----------
    generations : int
        ``G``, at most 2000.
    d, T, sigma, T0, variance
        As in `accumulate_subsample_moments`.
    fraction : float
        Share of real rows, in ``[0, 1]``.
    budget : int, optional
        Rows per training set, in ``[1, T]``. Default: ``T``.

    Returns
    -------
    Moments

    Notes
    -----
    The recursion of `weighted_moments` with the inclusion probabilities of the two
    independent draws: ``E ω_i = k/N`` within a group of ``N`` rows of which ``k`` are drawn,
    ``E ω_i ω_l = k(k−1)/(N(N−1))`` within a group and the product of the two across groups.

    References
    ----------
    .. [1] J. Kazdan et al., arXiv:2410.16713 (2024) (fixed proportion of real data).

    Examples
    --------
    >>> from synthloop.theory.gaussian import real_fraction_moments
    >>> m = real_fraction_moments(50, d=1, T=100, fraction=1.0)  # always T real rows
    >>> print(f"{m.mean_sq_error[50]:.4f} {m.trace_ratio[50]:.4f}")
    0.0100 0.9900
    """
    G = _check_generations(int(_integers(_scalar(generations, "generations"), "generations", 0)))
    d = int(_integers(_scalar(d, "d"), "d", 1))
    sigma = float(_sigma(_scalar(sigma, "sigma")))
    T = int(_integers(_scalar(T, "T"), "T", 2))
    T0 = T if T0 is None else int(_integers(_scalar(T0, "T0"), "T0", 2))
    budget = T if budget is None else int(_integers(_scalar(budget, "budget"), "budget", 1))
    fraction = float(_scalar(fraction, "fraction"))
    if not 0 <= fraction <= 1 or budget > T:
        raise ValueError(f"fraction must be in [0, 1] and budget in [1, T={T}], got {fraction!r}, {budget!r}")
    _divisor(T, variance)
    curves = _real_fraction_curves(G, T, T0, fraction, budget, variance)
    return Moments(*_readonly(d * sigma**2 * curves.mean_sq_error, curves.trace_ratio.copy()))
