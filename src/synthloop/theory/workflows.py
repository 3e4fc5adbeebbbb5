r"""Risk of any mixture workflow in the linear-Gaussian (local) limit — Dey & Donoho (2024).

A workflow trains generation ``g`` on a mixture of sources: source 0 is the real data, source
``j ≥ 1`` was sampled from the model of generation ``j − 1``. Let ``α[g, j] ≥ 0`` be the share
of source ``j`` in generation ``g``'s training set (rows × weight, normalized so each row of
``α`` sums to 1). When the estimator is linear in its training data, as OLS on a fixed design
or the mean of a Gaussian, the error of generation ``g`` is

.. math::

    Z_g = \sum_{j \le g} \alpha_{g,j}\,(Z_{j-1} + \xi_j), \qquad Z_{-1} = 0,

with independent zero-mean source noises ``ξ_j`` of variance ``v_j``. Unrolling gives
``Z_g = Σ_j C[g, j] ξ_j`` with a lower-triangular coefficient matrix ``C``, so the risk is
``E‖Z_g‖² = Σ_j C[g, j]² v_j`` *exactly* — no simulation is needed for deterministic weights.

Dey & Donoho show the same recursion governs any smooth parametric family in the large-sample
(local asymptotic normal) limit, with ``ξ_j ~ N(0, I(θ)⁻¹/n)``; for OLS on one fixed design
relabelled every generation it is exact at every sample size (``ξ_j = X⁺ε_j``). Discard
(``α[g, g] = 1``) gives ``R_g = g + 1``; uniform augment (``α[g, j] = 1/(g+1)``) gives
``R_g = Σ_{i ≤ g+1} 1/i²`` (``R_9 = 1.5498``, ``R_99 = 1.6350``, limit ``π²/6``).

Indexing: synthloop's generation ``g`` (0 = real data only) is Dey & Donoho's ``k = g + 1``.

References
----------
.. [1] A. Dey and D. Donoho, "Universality of the π²/6 Pathway in Avoiding Model Collapse",
   arXiv:2410.22812, 2024 (the general workflow and its local-limit recursion).
"""

from __future__ import annotations

import numpy as np

__all__ = ["mixture_error_coefficients", "mixture_risk", "mixture_risk_ratio"]


def _shares(alpha) -> np.ndarray:
    alpha = np.asarray(alpha, dtype=float)
    if alpha.ndim != 2 or alpha.shape[0] != alpha.shape[1]:
        raise ValueError(f"alpha must be a square (G+1, G+1) matrix; got shape {alpha.shape}")
    if np.any(alpha < 0) or not np.all(np.isfinite(alpha)):
        raise ValueError("alpha must be finite and non-negative")
    if np.any(np.triu(alpha, 1) != 0):
        raise ValueError("alpha must be lower-triangular: generation g can only use sources 0..g")
    totals = alpha.sum(axis=1, keepdims=True)
    if np.any(totals == 0):
        raise ValueError("every generation must give positive weight to some source")
    return alpha / totals


def mixture_error_coefficients(alpha) -> np.ndarray:
    r"""Coefficients ``C`` with ``Z_g = Σ_j C[g, j] ξ_j`` for the mixture recursion.

    Parameters
    ----------
    alpha : array_like of shape (G+1, G+1)
        Lower-triangular, non-negative shares; row ``g`` is normalized to sum to 1.

    Returns
    -------
    C : ndarray of shape (G+1, G+1)
        Lower-triangular.

    Notes
    -----
    ``C[g] = Σ_{j ≤ g} α[g, j] (C[j − 1] + e_j)`` with ``C[−1] = 0`` and ``e_j`` the ``j``-th
    unit vector (Dey & Donoho 2024, the general workflow's local recursion).

    Examples
    --------
    >>> mixture_error_coefficients([[1, 0], [0, 1]])   # discard
    array([[1., 0.],
           [1., 1.]])
    """
    shares = _shares(alpha)
    size = shares.shape[0]
    C = np.zeros((size, size))
    for g in range(size):
        C[g] = shares[g]
        if g > 0:
            C[g] += shares[g, 1 : g + 1] @ C[:g]  # sources 1..g carry the errors of models 0..g-1
    return C


def mixture_risk(alpha, variances) -> np.ndarray:
    r"""Risk ``E‖Z_g‖² = Σ_j C[g, j]² v_j`` of every generation of a mixture workflow.

    Parameters
    ----------
    alpha : array_like of shape (G+1, G+1)
        Shares of each source in each generation (see :func:`mixture_error_coefficients`).
    variances : array_like of shape (G+1,) or scalar
        ``v_j``: the risk contributed by source ``j``'s own noise had it been fit alone
        (for OLS on a fixed design: ``σ_j² d/(T − d − 1)``).

    Returns
    -------
    risk : ndarray of shape (G+1,)

    Notes
    -----
    Exact for OLS on one fixed design relabelled every generation and for Gaussian means;
    the large-sample limit for other smooth parametric models (Dey & Donoho 2024).

    Examples
    --------
    Uniform augment over 10 generations reaches ``Σ_{i≤10} 1/i²``:

    >>> alpha = np.tril(np.ones((10, 10)))
    >>> print(f"{mixture_risk(alpha, 1.0)[-1]:.4f}")
    1.5498
    """
    C = mixture_error_coefficients(alpha)
    v = np.broadcast_to(np.asarray(variances, dtype=float), (C.shape[0],))
    if np.any(v < 0):
        raise ValueError("variances must be non-negative")
    return (C**2) @ v


def mixture_risk_ratio(alpha) -> np.ndarray:
    r"""``R_g = E‖Z_g‖² / E‖Z_0‖²`` for equal source variances (Dey & Donoho's risk ratio).

    Examples
    --------
    >>> print(mixture_risk_ratio(np.eye(4))[-1])   # discard: R_g = g + 1
    4.0
    """
    risk = mixture_risk(alpha, 1.0)
    return risk / risk[0]
