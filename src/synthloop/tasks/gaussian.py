"""Multivariate Gaussian fitting with sample synthesis (Shumailov et al.; Kazdan et al. 2024).

Ground truth ``N(0, σ²I_d)``. Each generation fits the sample mean ``μ̂`` and covariance
``Σ̂ = S/D`` of its training set — ``S`` the scatter about the sample mean, ``D = n`` (``variance
= "mle"``, the default, as in Kazdan et al.) or ``D = n − 1`` (``"unbiased"``, as in Shumailov
et al.) — and the next generation's ``T0`` samples are drawn from ``N(μ̂, Σ̂)``. There are no
inputs (``sample_inputs`` is None): whole samples are synthesized.

Metrics, each exact for the fitted Gaussian (no sampled test set is involved):

* ``mean_sq_error`` ``‖μ̂ − μ‖²``;
* ``trace_ratio`` ``tr Σ̂ / tr Σ``, ``det_ratio`` ``det Σ̂ / det Σ`` and ``log_det_ratio``
  ``log det Σ̂ − log det Σ`` (computed from the Cholesky factor: ``0`` and ``−inf`` when ``Σ̂``
  is singular);
* ``kl`` ``KL(truth ‖ fit) = ½[σ² tr Σ̂⁻¹ + (μ̂ − μ)ᵀΣ̂⁻¹(μ̂ − μ) − d + log det Σ̂ − d log σ²]``;
* ``nll`` the expected negative log-likelihood of fresh real data under the fit, in closed form
  ``½[d log 2π + log det Σ̂ + tr(Σ̂⁻¹Σ) + (μ − μ̂)ᵀΣ̂⁻¹(μ − μ̂)]`` = ``kl`` + the truth's entropy.

When ``Σ̂`` is singular — always when ``T ≤ d`` (every later sample stays in the affine hull of
the real data, of dimension ``T − 1``), and under ``replace`` when ``T0 ≤ d`` — the fit has no
density off a subspace that carries all the truth's mass: ``kl`` and ``nll`` are ``+inf``, the
honest value (not NaN, which would mean "undefined"); means over replicates are then inf too.

How a generation stays cheap (``O(R d³)`` per generation, independent of ``T0`` and of the
generation, for ``replace`` and ``accumulate`` alike):

* Sources carry centered sufficient statistics ``(count, mean, scatter)`` — equivalent to the
  additive ``(count, Σx, Σxxᵀ)`` of the design, but merged with Chan's update
  ``S = S_a + S_b + (n_a n_b/n) δδᵀ`` instead of differences of raw sums: raw sums lose ``Σ̂``
  to cancellation once it has collapsed below ``1e-16 ‖μ̂‖²``, which ``replace`` reaches. Weighted
  mixtures use ``stats * w`` (count and scatter scale, the mean does not).
* ``synthesize`` draws nothing: the new source keeps the model and one random stream per
  replicate, and draws what the workflow first reads (``GaussianData``). Workflows that mix
  whole sources read statistics, drawn directly — the mean ``μ̂ + C z/√T0`` and the scatter
  ``(C B)(C B)ᵀ`` with ``C Cᵀ = Σ̂`` and ``B`` a Bartlett factor of ``Wishart_k(T0 − 1, I)`` —
  which is exactly the distribution of the statistics of ``T0`` Gaussian rows, at the cost of
  ``d²`` draws instead of ``T0 d``. The factor ``C B`` is kept, so ``replace`` never factorizes
  a matrix. The pool sums sources lazily, so a workflow that never reads statistics never
  draws them.
* A source drawn from the model fit on the running total itself (``accumulate``, and every
  workflow weighting all sources equally) is folded into that total in the model's whitened
  coordinates (``GaussianData.fold_into``): with ``S = D C Cᵀ`` the total's scatter, the new
  total's is ``C K (C K)ᵀ``, ``K = chol(D I + B Bᵀ + N/(N + T0) z zᵀ)``, so the total arrives
  with its Cholesky factor; the Cholesky of a ``k × k`` matrix and its rank-``k`` product are
  all that ``accumulate`` adds to ``replace`` (whose ``C B`` product becomes ``C K``). Same
  draws as the source's own statistics, which stay drawable; values agree with forming the
  statistics and refactoring to rounding (~1e-14 relative).
* Workflows that draw rows (``accumulate-subsample``, ``real-fraction``, …) read rows first,
  drawn directly as ``μ̂ + C z`` (a triangular product); their statistics, if ever read, come
  from the rows. **Such a source keeps its rows in float32**: the deviations ``C z`` (normals
  by the Box–Muller transform, `box_muller_float32`, and a float32 triangular product), apart
  from the model mean ``μ̂`` (float64, ``row_center``), which is added in float64 where rows are
  read — so float32 rounds the spread only, however far the mean has drifted — and every fit on
  rows accumulates its mean and scatter in float64. Float32 is used only where
  `single_precision_suffices` bounds the rounding's relative effect on the rows' covariance by
  1e-6 (well-conditioned ``Σ̂`` in float32's range); otherwise, e.g. for a collapsing or nearly
  singular fit, the source keeps float64 deviations, drawn with numpy's ziggurat as before. Rows read after statistics are drawn from the conditional law of a Gaussian
  sample given its mean and scatter: ``X = 1μ̄ᵀ + U (C B)ᵀ`` with ``U = Z_c L⁻ᵀ`` the
  Haar-distributed orthonormal ``Q`` factor of a centered standard normal ``Z`` (``ZcᵀZc = L
  Lᵀ``), continuing the source's stream; the rows then have exactly the source's statistics
  (up to rounding) and are distributed as ``T0`` i.i.d. draws from ``N(μ̂, Σ̂)``. With
  ``T0 − 1 < k`` (fewer rows than the model's rank) the scatter is drawn as ``(C Gᵀ)(C Gᵀ)ᵀ``
  with ``G`` Gaussian and the rows are ``1μ̄ᵀ + V G Cᵀ`` with ``V`` a Helmert basis of ``1⊥``
  — the identity ``Zc = V VᵀZ``. Row-drawn training sets are gathered source by source; the
  pool's stacked buffer is not used.
* ``T ≤ d``: every later sample lies in the real data's affine hull ``x̄ + span(Q)``, of
  dimension ``T − 1``, so the task works in those ``T − 1`` coordinates (``GaussianData``'s
  *working coordinates*; metrics are computed back in the original ``d``). Square roots of
  ``Σ̂`` are then always a Cholesky factor, a product of such factors with Bartlett factors,
  or a low-rank factor ``Xcᵀ V`` straight from ``n − 1`` < working-dimension rows; LAPACK's
  rank-revealing pivoted Cholesky (``dpstrf``) is only a fallback (e.g. a weighted mixture
  that leaves the real data out).

Costs to know. ``accumulate`` pays one ``k × k`` rank-``k`` product and Cholesky per generation
over ``replace`` (see docs/benchmarks.md for the measured ratio); it keeps only the running
total. Weighted mixtures keep every source's statistics, ``O(G R d²)`` memory. Row-drawn workflows
(``accumulate-subsample``, ``real-fraction``, …) keep every source's rows, ``O(G R T0 d)``
memory (4 GB in float32 for ``d = 100``, ``T = 1000``, 100 generations × 100 replicates), and
cost ``O(R T d²)`` per generation to draw, gather and refit rows.

Theory (``synthloop.theory.gaussian``): exact curves for ``replace`` (every metric but ``kl``/
``nll`` where their expectation is infinite), and for the squared error of the mean and the
trace ratio under ``accumulate``, ``accumulate-subsample``, ``growing``, ``cardinality``,
``weighted`` (whole sources, or a uniform budget) and ``real-fraction``; see that module for
the derivations and the generation indexing (synthloop's ``g`` is the papers' ``t = g + 1``).
"""

from __future__ import annotations

import functools
import mmap
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.linalg import blas, lapack

from .. import seeding
from ..pool import TrainingSet
from ..theory import gaussian as theory
from ..validation import Integer, Real
from ..workflows import Workflow
from .base import Task, TaskConfig, Theory, TheoryCurve


class GaussianConfig(TaskConfig):
    name: Literal["gaussian"] = "gaussian"
    d: Integer(1, 10_000) = 1
    T: Integer(2, 10_000_000) = 100
    T0: Integer(2, 10_000_000) | None = None
    sigma: Real(0, lo_open=True) = 1.0
    variance: Literal["mle", "unbiased"] = "mle"

    @property
    def synthetic_T(self) -> int:
        return self.T if self.T0 is None else self.T0


def _divisor(count: float, variance: str) -> float:
    """``n`` or ``n − 1``; a single row has scatter 0, whatever it is divided by."""
    return count if variance == "mle" or count <= 1 else count - 1


@functools.lru_cache(maxsize=64)
def helmert(n: int) -> np.ndarray:
    """Orthonormal basis of the vectors of ``R^n`` orthogonal to ``1``, shape ``(n, n − 1)``."""
    j = np.arange(1, n)  # column j − 1 holds j ones, then −j, scaled
    basis = np.where(np.arange(n)[:, None] < j, 1.0, 0.0) - np.where(np.arange(n)[:, None] == j, j, 0.0)
    basis /= np.sqrt(j * (j + 1.0))
    basis.flags.writeable = False
    return basis


@functools.lru_cache(maxsize=64)
def _strict_lower(k: int) -> np.ndarray:
    """Flat indices of the strict lower triangle of a ``k × k`` matrix, row by row."""
    i, j = np.tril_indices(k, -1)
    return i * k + j


def psd_factor(scatter: np.ndarray, max_rank: int) -> tuple[np.ndarray, bool, np.ndarray]:
    """``(F, lower, rank)`` with ``F Fᵀ = scatter`` for stacked PSD matrices ``(R, d, d)``.

    Cholesky (``lower`` True) when ``max_rank = d`` and every matrix is numerically positive
    definite; otherwise LAPACK's pivoted Cholesky per replicate, truncated to ``max_rank``
    columns (the structural rank, which rounding cannot exceed), with the numerical rank.
    """
    R, d, _ = scatter.shape
    if max_rank >= d:
        try:
            return np.linalg.cholesky(scatter), True, np.full(R, d)
        except np.linalg.LinAlgError:
            pass
    k = max(min(max_rank, d), 1)
    factor = np.zeros((R, d, k))
    rank = np.zeros(R, dtype=int)
    for r in range(R):
        c, piv, numerical, _ = lapack.dpstrf(scatter[r], lower=1)
        rank[r] = min(numerical, max_rank)
        factor[r, piv - 1, : rank[r]] = np.tril(c)[:, : rank[r]]  # Pᵀ S P = L Lᵀ  ⇒  S = (P L)(P L)ᵀ
    return factor, False, rank


_LAPACK_MIN_K = 41  # from this size LAPACK per replicate beats batched numpy (calls cost less than copies)


_BOX_MULLER_PAIRS = 1 << 15  # pairs per block: the temporaries stay in cache
_BOX_MULLER_MIN = 1 << 12  # draws per replicate from which Box–Muller beats numpy's float32 ziggurat


def box_muller_float32(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """Fill the float32 array ``out`` with i.i.d. standard normal draws, by the Box–Muller transform.

    Parameters
    ----------
    rng : numpy.random.Generator
        Consumed, per block of draws, for a float64 uniform per pair, then a float32 uniform per pair.
    out : ndarray of float32, C-contiguous

    Returns
    -------
    out : ndarray

    Notes
    -----
    For independent uniforms ``u, v``, ``ρ = √(−2 log(1 − u))`` and ``θ = 2πv`` give the independent
    standard normals ``ρ cos θ`` and ``ρ sin θ`` (Box & Muller 1958); the cosines fill the first
    half of a block, the sines the second. ``u`` is a 53-bit float64 uniform and ``1 − u`` is formed
    in float64 before rounding to float32 (the tails reach ``8.5σ``, beyond which lies probability
    ``1e-17``); ``v`` is a 24-bit float32 uniform (an angle to ``2π·2⁻²⁴``); the rest is float32, where numpy's vectorized ``log``, ``sin`` and
    ``cos`` make a draw about 3× cheaper than numpy's own float32 ziggurat; each draw carries a
    relative rounding error of a few float32 units (``2⁻²⁴``).

    References
    ----------
    G. E. P. Box and M. E. Muller, "A note on the generation of random normal deviates",
    Ann. Math. Statist. 29(2), 610–611 (1958).

    Examples
    --------
    >>> z = box_muller_float32(np.random.default_rng(0), np.empty(200_000, np.float32))
    >>> bool(abs(z.mean()) < 0.01 and abs(z.var() - 1) < 0.01)
    True
    """
    flat = out.reshape(-1)
    pairs = min(_BOX_MULLER_PAIRS, (flat.size + 1) // 2)
    u, radius, angle = np.empty(pairs), np.empty(pairs, np.float32), np.empty(pairs, np.float32)
    for start in range(0, flat.size, 2 * pairs):
        block = flat[start : start + 2 * pairs]
        half = (block.size + 1) // 2
        rng.random(out=u[:half])
        np.subtract(1.0, u[:half], out=radius[:half])  # in (0, 1], rounded to float32
        rng.random(out=angle[:half], dtype=np.float32)
        np.log(radius[:half], out=radius[:half])
        radius[:half] *= -2.0
        np.sqrt(radius[:half], out=radius[:half])
        angle[:half] *= np.float32(2 * np.pi)
        np.cos(angle[:half], out=block[:half])
        block[:half] *= radius[:half]
        rest = block.size - half
        np.sin(angle[:rest], out=block[half:])
        block[half:] *= radius[:rest]
    return out


# Rows kept in float32 are rounded to a relative u = 2⁻²⁴ per coordinate, after a float32 triangular
# product that accumulates k such roundings; this bounds what that may perturb (see below).
_SINGLE_PRECISION_TOLERANCE = 1e-6


def single_precision_suffices(factor: np.ndarray) -> bool:
    """Whether rows ``μ̂ + C z`` drawn from ``N(μ̂, C Cᵀ)`` may keep their deviations ``C z`` in float32.

    ``factor`` holds lower-triangular ``C`` (R, k, k). Rounding each coordinate of ``C z`` (and
    the float32 product forming it) perturbs the rows' covariance by at most about
    ``k u² diag(C Cᵀ)``, i.e. by ``k u² cond₂(C)²`` relative to ``C Cᵀ`` in its own whitened
    coordinates (``u = 2⁻²⁴``); float32 is used when that bound, with ``cond₂² ≤ cond₁ cond_∞``
    exact for small ``k``, from LAPACK's ``dtrcon`` estimates for large, is at most 1e-6 in every replicate — far below any
    sampling error — and the diagonal lies in [1e-30, 1e30], so that every deviation is a normal
    float32 (with the condition bounded, all singular values lie near the diagonal). Otherwise
    (nearly singular or collapsing fits) float64.
    """
    R, k, _ = factor.shape
    diag = np.abs(np.diagonal(factor, axis1=1, axis2=2))
    if not (diag.min() >= 1e-30 and diag.max() <= 1e30):  # also False for NaN
        return False
    limit = _SINGLE_PRECISION_TOLERANCE / (k * 2.0**-48)
    if k < _LAPACK_MIN_K:  # exact condition numbers, batched
        inverse = np.abs(np.linalg.inv(factor))
        absolute = np.abs(factor)
        conditions = (absolute.sum(axis=1).max(axis=1) * inverse.sum(axis=1).max(axis=1)
                      * absolute.sum(axis=2).max(axis=1) * inverse.sum(axis=2).max(axis=1))  # cond₁ cond_∞
        return bool(np.all(conditions <= limit))
    for r in range(R):
        upper = factor[r].T  # a Fortran-ordered view: no copy; cond₁ cond_∞ is the same for Cᵀ
        product = lapack.dtrcon(upper, norm="1", uplo="U")[0] * lapack.dtrcon(upper, norm="I", uplo="U")[0]
        if not product * limit >= 1.0:  # 1 / (cond₁ cond_∞) ≥ 1 / limit
            return False
    return True


def triangular_inverse(lower: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """Inverses of stacked lower-triangular matrices ``(R, d, d)`` whose strict upper triangles are
    zero (Cholesky factors and their products are), with LAPACK ``dtrtri`` for large ``d``;
    ``overwrite`` inverts a C-contiguous ``lower`` in place."""
    R, d, _ = lower.shape
    if d <= 16:
        return np.linalg.inv(lower)
    out = lower if overwrite and lower.flags.c_contiguous else lower.copy()
    for r in range(R):  # out[r].T is upper-triangular (a Fortran view): inverted in place, out holds L⁻¹
        lapack.dtrtri(out[r].T, lower=0, overwrite_c=1)
    return out


def _update_factor(b: np.ndarray, z: np.ndarray, c: float, D: float) -> np.ndarray:
    """``chol(D I + b bᵀ + c z zᵀ)`` for stacked lower-triangular ``b`` (R, k, k) and ``z`` (R, k)."""
    R, k, _ = b.shape
    if k < _LAPACK_MIN_K:
        wide = np.concatenate([b, (z * np.sqrt(c))[:, :, None]], axis=2)  # (R, k, k + 1)
        inner = np.matmul(wide, wide.transpose(0, 2, 1))
        inner[:, np.arange(k), np.arange(k)] += D
        return np.linalg.cholesky(inner)
    # b bᵀ = P (P b P)(P b P)ᵀ P with P the reversal of the order: the middle product of a triangular
    # matrix and its transpose is LAPACK's lauum, a third of syrk's flops. Fortran views throughout:
    # work[r].T is the lower-triangular P bᵀ P, where lauum leaves the lower triangle of P b bᵀ P;
    # reversing both axes back puts b bᵀ in the upper triangle of out[r].T, where potrf leaves Kᵀ,
    # so that out holds K.
    work = b[:, ::-1, ::-1].copy()
    for r in range(R):
        lapack.dlauum(work[r].T, lower=1, overwrite_c=1)
    out = work[:, ::-1, ::-1].copy()
    out.reshape(R, k * k)[:, :: k + 1] += D
    for r in range(R):
        inner = out[r].T
        blas.dsyr(c, z[r], a=inner, lower=0, overwrite_a=1)
        _, info = lapack.dpotrf(inner, lower=0, clean=1, overwrite_a=1)
        if info != 0:  # D I + PSD is positive definite; only non-finite input gets here
            raise np.linalg.LinAlgError("the accumulated scatter is not positive definite")
    return out


def _lower_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a b`` for stacked lower-triangular ``a`` and C-contiguous ``b`` (R, k, k); ``b`` is overwritten."""
    R, k, _ = a.shape
    if k < _LAPACK_MIN_K:
        return np.matmul(a, b)
    for r in range(R):  # (a b)ᵀ = bᵀ aᵀ on the Fortran views, in place: a triangular product
        blas.dtrmm(1.0, a[r].T, b[r].T, side=1, lower=0, overwrite_b=1)
    return b


@dataclass(eq=False)
class GaussianStats:
    """Sufficient statistics of one or more sources: row count, mean, scatter about the mean.

    Attributes
    ----------
    count : float
        (Weighted) number of rows.
    mean : ndarray of shape (R, d)
    rank : ndarray of int, shape (R,)
        Upper bound on the scatter's rank, exact almost surely for Gaussian data.
    factor : ndarray of shape (R, d, k) or None
        A factor with ``scatter = factor factorᵀ`` when one is known without factorizing.
    lower : bool
        ``factor`` is square and lower-triangular (a Cholesky factor).
    """

    count: float
    mean: np.ndarray
    rank: np.ndarray
    factor: np.ndarray | None = None
    lower: bool = False
    _scatter: np.ndarray | None = field(default=None, repr=False)

    @property
    def scatter(self) -> np.ndarray:
        """``Σ (x − x̄)(x − x̄)ᵀ``, shape ``(R, d, d)``.

        Not cached when computed from ``factor``: the pool keeps every source's statistics, and
        a second ``(R, d, d)`` array per source would double that memory for one use (the
        running total of ``accumulate``)."""
        if self._scatter is None:
            return np.matmul(self.factor, self.factor.transpose(0, 2, 1))
        return self._scatter

    def __add__(self, other: "GaussianStats") -> "GaussianStats":
        # Chan et al.'s pairwise update: no difference of large raw sums.
        if isinstance(other, GaussianData):  # a source's statistics, drawn on first use
            folded = other.fold_into(self)
            if folded is not None:
                return folded
            other = other.stats
        n = self.count + other.count
        delta = other.mean - self.mean  # (R, d)
        between = self.count * other.count / n
        if other._scatter is None:
            # other's factor widened by the between-means column: one product gives F Fᵀ + c δδᵀ
            # in a fresh array, which then takes self's scatter in place.
            wide = np.concatenate([other.factor, (delta * np.sqrt(between))[:, :, None]], axis=2)  # (R, d, k + 1)
            scatter = np.matmul(wide, wide.transpose(0, 2, 1))
            scatter += self.scatter
        else:
            scatter = self.scatter + other.scatter
            scatter += delta[:, :, None] * (delta * between)[:, None, :]
        rank = np.minimum(self.rank + other.rank + 1, self.mean.shape[1])
        return GaussianStats(n, self.mean + delta * (other.count / n), rank, _scatter=scatter)

    def __mul__(self, c: float) -> "GaussianStats":
        # A copy of the mean: statistics share a mean array only with the model fit on them
        # (GaussianData.fold_into tells the total a model was fit on by it).
        return GaussianStats(
            self.count * c, self.mean.copy(), self.rank,
            None if self.factor is None else self.factor * np.sqrt(c), self.lower,
            None if self._scatter is None else self._scatter * c,
        )


def row_stats(x: np.ndarray, rank_cap: np.ndarray | int | None = None, overwrite: bool = False) -> GaussianStats:
    """Statistics of rows ``x`` of shape ``(R, n, w)``; ``overwrite`` centers ``x`` in place.

    ``rank_cap`` bounds the rank further (the rank of the model the rows were drawn from)."""
    R, n, w = x.shape
    mean = x.mean(axis=1)
    xc = np.subtract(x, mean[:, None, :], out=x if overwrite else None)
    rank = np.full(R, min(n - 1, w)) if rank_cap is None else np.minimum(rank_cap, min(n - 1, w))
    if n - 1 < w:  # a low-rank factor straight from the rows: Xcᵀ V, (R, w, n − 1)
        return GaussianStats(float(n), mean, rank, factor=np.matmul(xc.transpose(0, 2, 1), helmert(n)))
    return GaussianStats(float(n), mean, rank, _scatter=np.matmul(xc.transpose(0, 2, 1), xc))


def _kept_empty(shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """``np.empty(shape, dtype)`` for rows a source keeps for the rest of the run, on small pages.

    numpy advises the kernel to back large arrays with huge pages; once a long row-drawing run
    has fragmented memory, every such fault compacts memory first (Linux THP ``defrag =
    madvise``), which made drawing rows ~2.5× slower at d = 100, T = 1000. An anonymous map
    without that advice faults in plain pages. They are mapped in at once (``MAP_POPULATE``):
    a page fault per 4 KiB page cost more than drawing the normals that fill it (measured 2.2×
    the kernel time of one populating map on this machine's VM)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    if size < 1 << 22:
        return np.empty(shape, dtype)
    if hasattr(mmap, "MAP_POPULATE"):  # Linux
        buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)
    else:
        buffer = mmap.mmap(-1, size)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


class _Streams:
    """Per-replicate PCG64 streams set from stored 128-bit states, through one reused generator
    (setting a state costs ~1 µs; seeding a fresh generator ~10 µs)."""

    def __init__(self):
        self.bit_generator = np.random.PCG64(0)
        self.generator = np.random.Generator(self.bit_generator)

    def at(self, state: tuple[int, int]) -> np.random.Generator:
        self.bit_generator.state = {
            "bit_generator": "PCG64", "state": {"state": state[0], "inc": state[1]}, "has_uint32": 0, "uinteger": 0,
        }
        return self.generator

    def state(self) -> tuple[int, int]:
        s = self.bit_generator.state["state"]
        return s["state"], s["inc"]


@dataclass(eq=False)
class GaussianData:
    """One source: its statistics ``stats`` and its rows ``x`` of shape ``(R, size, w)``, on demand.

    Everything is stored in the task's *working coordinates*, ``w`` of them: the original ``d``
    when ``T > d``; with ``T ≤ d`` the ``w = T − 1`` coordinates ``u = Qᵀ(x − origin)`` of the real
    data's affine hull, which every later sample stays in (``origin``, ``basis`` = ``Q`` are set
    on the real data only; `to_original` maps back).

    Real data hold their rows. A synthetic source holds the model it is drawn from and one
    random stream per replicate (``streams``, 128-bit PCG64 states), and draws on first read:

    * ``stats`` first (workflows that mix whole sources): the statistics directly, from their
      exact law (normal mean, Bartlett-factored Wishart scatter); rows, if read later, from the
      conditional law of a Gaussian sample given its statistics, continuing the same stream;
    * ``x`` first (workflows that draw rows): ``T0`` i.i.d. rows ``μ̂ + C z``; statistics, if read
      later, from the rows.

    Either way ``(rows, stats)`` has the law of ``T0`` i.i.d. draws from the model and their
    statistics; which way a source went is fixed by the workflow, so runs are reproducible.
    Rows are dropped from pickles and rebuilt identically after a restore. A source also
    behaves as its statistics under ``+`` and ``*`` (the pool sums sources lazily).
    """

    size: int
    _stats: GaussianStats | None = field(default=None, repr=False)
    synthetic: bool = False
    model: "GaussianModel | None" = field(default=None, repr=False)  # what a synthetic source is drawn from
    streams: list | None = field(default=None, repr=False)  # (R,) PCG64 (state, inc): the first draw
    drawn: str | None = None  # "stats" or "rows": what a synthetic source drew first
    rows_streams: list | None = field(default=None, repr=False)  # continuation streams for conditional rows
    rows: np.ndarray | None = field(default=None, repr=False)  # kept rows, or deviations from row_center
    row_center: np.ndarray | None = field(default=None, repr=False)  # (R, w): the model mean rows drawn first deviate from
    origin: np.ndarray | None = field(default=None, repr=False)  # (R, d), real data with T ≤ d
    basis: np.ndarray | None = field(default=None, repr=False)  # (R, d, T − 1), orthonormal columns

    @property
    def stats(self) -> GaussianStats:
        if self._stats is None:
            if self.rows is not None or self.drawn == "rows":
                self._stats = row_stats(self.x, None if self.model is None else self.model.rank)
            else:
                self._stats = self._draw_stats()
        return self._stats

    @property
    def x(self) -> np.ndarray:
        """The rows ``(R, size, w)``, float64: a fresh array (``row_center`` + kept deviations) for a
        synthetic source whose rows were drawn first, else the kept rows themselves."""
        kept = self.kept_rows()
        if self.row_center is None:
            return kept
        return kept + self.row_center[:, None, :]

    def kept_rows(self) -> np.ndarray:
        """The rows as the source keeps them: ``x`` itself, or, with ``row_center`` set, the
        deviations ``x − row_center`` (float32 where `single_precision_suffices`)."""
        if self.rows is None:
            self.rows = self._draw_rows() if self.drawn in (None, "rows") else self._conditional_rows()
        return self.rows

    def __add__(self, other):
        return self.stats + other

    def __radd__(self, other):
        return other + self.stats

    def __mul__(self, c: float) -> GaussianStats:
        return self.stats * c

    def to_original(self, u: np.ndarray) -> np.ndarray:
        """Points ``(R, ..., w)`` in working coordinates, in the original ``d`` (``origin + Q u``)."""
        if self.basis is None:
            return u
        flat = u.reshape(len(u), -1, u.shape[-1])
        out = self.origin[:, None, :] + np.matmul(flat, self.basis.transpose(0, 2, 1))
        return out.reshape(*u.shape[:-1], self.basis.shape[1])

    def _whitened_draws(self) -> tuple[np.ndarray, np.ndarray, list | None]:
        """The statistics' draws in the model's whitened coordinates, from the source's streams:
        ``z`` (R, k) for the mean and a factor ``b`` of the scatter, the Bartlett factor of
        ``Wishart_k(n − 1, I)`` (R, k, k) when ``n − 1 ≥ k``, else ``Gᵀ`` (R, k, n − 1) with ``G``
        Gaussian; and the streams that continue them (conditional rows; None without Bartlett)."""
        model, n = self.model, self.size
        R, w, k = model.factor.shape
        dof = n - 1
        bartlett = dof >= k  # else the scatter has rank n − 1 < k: draw G directly
        draws = np.empty((R, k + (k * (k - 1) // 2 if bartlett else dof * k)))
        chi2 = np.empty((R, k))
        shape = (dof - np.arange(k)) / 2.0  # χ²_{dof − i} = 2 Gamma((dof − i)/2)
        streams, rows_streams = _Streams(), []
        for r, state in enumerate(self.streams):
            rng = streams.at(state)
            rng.standard_normal(out=draws[r])
            if bartlett:
                if k == 1:
                    chi2[r, 0] = rng.standard_gamma(shape[0])
                else:
                    rng.standard_gamma(shape, out=chi2[r])
            rows_streams.append(streams.state())
        z = draws[:, :k]
        if not bartlett:
            return z, draws[:, k:].reshape(R, dof, k).transpose(0, 2, 1), None
        b = np.zeros((R, k * k))
        b[:, _strict_lower(k)] = draws[:, k:]
        b[:, :: k + 1] = np.sqrt(2.0 * chi2)
        return z, b.reshape(R, k, k), rows_streams

    def _draw_stats(self) -> GaussianStats:
        """Mean ``μ̂ + C z/√n`` and scatter ``(C B)(C B)ᵀ``, ``B`` the Bartlett factor of
        ``Wishart_k(n − 1, I)``; with ``n − 1 < k`` the scatter ``(C Gᵀ)(C Gᵀ)ᵀ``, ``G`` Gaussian."""
        model, n = self.model, self.size
        _, w, k = model.factor.shape
        z, b, rows_streams = self._whitened_draws()
        mean = model.mean + np.einsum("rdk,rk->rd", model.factor, z) / np.sqrt(n)
        lower = model.lower and rows_streams is not None
        if lower and k == w:  # C b, both lower-triangular
            factor = _lower_product(model.factor, b)
        else:
            factor = np.matmul(model.factor, b)  # (R, w, k or n − 1)
        if rows_streams is not None:
            self.rows_streams = rows_streams
        self.drawn, self.model = "stats", None  # the rows need only the statistics from here on
        return GaussianStats(float(n), mean, np.minimum(model.rank, n - 1), factor=factor, lower=lower)

    def fold_into(self, total: GaussianStats) -> GaussianStats | None:
        """``total + self`` without forming this source's statistics, when the source was drawn
        from the model fit on ``total`` itself (accumulate, and every workflow that weights all
        sources equally); None otherwise.

        The model is ``N(x̄, C Cᵀ)`` with ``S = D C Cᵀ`` the total's scatter (``D`` the fit's
        divisor), and this source's statistics are ``x̄ + C z/√n`` and ``(C b)(C b)ᵀ``
        (`_whitened_draws`, the same draws as `_draw_stats`). Chan's update then factors in the
        whitened coordinates:

        ``S + (C b)(C b)ᵀ + (N n/(N + n)) δδᵀ = C K (C K)ᵀ``,  ``K = chol(D I + b bᵀ + N/(N + n) z zᵀ)``,

        with ``δ = C z/√n``: the total arrives with its Cholesky factor ``C K``, so the fit needs
        no factorization and the new source needs no ``C b`` product. The source keeps its model
        and streams; its own statistics, if ever read, are drawn from the same draws.
        """
        model, n = self.model, self.size
        if not self.synthetic or self.drawn is not None or model is None or model.divisor is None:
            return None
        R, w, k = model.factor.shape
        fitted_on_total = model.mean is total.mean and model.count == total.count
        if not fitted_on_total or not model.lower or k != w or n - 1 < k:
            return None
        z, b, rows_streams = self._whitened_draws()
        self.drawn, self.rows_streams = "stats", rows_streams
        count = total.count + n
        factor = _lower_product(model.factor, _update_factor(b, z, total.count / count, model.divisor))  # (R, w, w), lower
        delta = np.einsum("rdk,rk->rd", model.factor, z) / np.sqrt(n)  # source mean − total mean
        rank = np.minimum(total.rank + np.minimum(model.rank, n - 1) + 1, w)
        return GaussianStats(count, total.mean + delta * (n / count), rank, factor=factor, lower=True)

    def _draw_rows(self) -> np.ndarray:
        """``n`` i.i.d. rows ``μ̂ + C z`` per replicate, ``z ~ N(0, I_k)``."""
        model, n = self.model, self.size
        R, w, k = model.factor.shape
        triangular = model.lower and k == w
        dtype = np.float32 if triangular and single_precision_suffices(model.factor) else np.float64
        in_place = triangular and k >= 16
        z = _kept_empty((R, n, k), dtype) if in_place else np.empty((R, n, k), dtype)
        streams = _Streams()
        if dtype == np.float64:
            fill = np.random.Generator.standard_normal
        elif n * k >= _BOX_MULLER_MIN:
            fill = box_muller_float32
        else:  # a few draws per replicate: Box–Muller's dozen numpy calls would cost more than the draws
            fill = functools.partial(np.random.Generator.standard_normal, dtype=np.float32)
        for r, state in enumerate(self.streams):
            fill(streams.at(state), out=z[r])
        factor = model.factor.astype(dtype, copy=False)
        if in_place:
            trmm = blas.strmm if dtype == np.float32 else blas.dtrmm
            for r in range(R):  # in place, (C zᵀ)ᵀ: a triangular product, half a general one's flops
                trmm(1.0, factor[r], z[r].T, side=0, lower=1, overwrite_b=1)
            deviations = z
        else:
            deviations = np.matmul(z, factor.transpose(0, 2, 1), out=_kept_empty((R, n, w), dtype))  # (R, n, w)
        # The mean is added where rows are read (float64), so that float32 rounds the spread only.
        self.drawn, self.row_center = "rows", model.mean
        return deviations

    def _conditional_rows(self) -> np.ndarray:
        """Rows with exactly the drawn statistics, from their conditional law:
        ``X = 1μ̄ᵀ + U (C B)ᵀ`` with ``U = Z_c L⁻ᵀ`` the Haar-distributed orthonormal factor of a
        centered standard normal ``Z`` (``Z_cᵀ Z_c = L Lᵀ``); with ``n − 1 < k``, ``X = 1μ̄ᵀ + V G Cᵀ``
        with ``V`` a Helmert basis of ``1⊥``."""
        stats, n = self.stats, self.size
        factor, mean = stats.factor, stats.mean  # (R, w, k), (R, w)
        R, w, k = factor.shape
        if self.rows_streams is None:  # n − 1 < k: the scatter factor is C Gᵀ, and Xc = V G Cᵀ
            rows = np.matmul(helmert(n), factor.transpose(0, 2, 1))  # (R, n, w)
        else:
            z = _kept_empty((R, n, k))
            streams = _Streams()
            for r, state in enumerate(self.rows_streams):
                streams.at(state).standard_normal(out=z[r])
            z -= z.mean(axis=1, keepdims=True)
            chol = np.linalg.cholesky(np.matmul(z.transpose(0, 2, 1), z))  # (R, k, k)
            if stats.lower and k == w:
                # F lower-triangular: Xcᵀ = (F L⁻¹) Zcᵀ, a triangular solve and an in-place triangular
                # product (half the flops of a general one, and no second (R, n, w) array).
                for r in range(R):
                    coefficients = blas.dtrsm(1.0, chol[r], factor[r], side=1, lower=1)  # F L⁻¹, lower
                    blas.dtrmm(1.0, coefficients, z[r].T, side=0, lower=1, overwrite_b=1)
                rows = z
            else:
                coefficients = np.linalg.solve(chol.transpose(0, 2, 1), factor.transpose(0, 2, 1))  # L⁻ᵀ Fᵀ, (R, k, w)
                rows = np.matmul(z, coefficients, out=_kept_empty((R, n, w)))
        rows += mean[:, None, :]
        return rows

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.synthetic:
            state["rows"] = state["row_center"] = None  # rebuilt from the model or the statistics and the streams on demand
            if self.drawn == "rows":
                state["_stats"] = None  # recomputed from the rebuilt rows
        return state


@dataclass
class GaussianModel:
    """Fitted ``N(mean, factor factorᵀ)`` per replicate, in working coordinates (see `GaussianData`).

    Attributes
    ----------
    mean : ndarray of shape (R, w)
    factor : ndarray of shape (R, w, k)
        ``Σ̂ = factor factorᵀ``.
    rank : ndarray of int, shape (R,)
        Rank of ``Σ̂``; ``d`` when it is positive definite.
    lower : bool
        ``factor`` is the (square, lower-triangular) Cholesky factor of ``Σ̂``.
    divisor, count : float or None
        ``D`` of the fit and the statistics' row count: the statistics fit on have scatter
        ``D · factor factorᵀ``, this count and mean ``mean`` (the same array, which no other
        statistics share), which lets `GaussianData.fold_into` update their total.
    """

    mean: np.ndarray
    factor: np.ndarray
    rank: np.ndarray
    lower: bool
    divisor: float | None = None  # D: the scatter fit on is D·factor factorᵀ
    count: float | None = None  # rows (weighted) fit on

    @property
    def covariance(self) -> np.ndarray:
        return np.matmul(self.factor, self.factor.transpose(0, 2, 1))


class GaussianTask(Task):
    Config = GaussianConfig
    primary_metric = "mean_sq_error"
    metric_labels = {
        "mean_sq_error": "squared error of the mean ‖μ̂ − μ‖² (units of x²)",
        "trace_ratio": "covariance trace ratio tr Σ̂ / tr Σ (1 = truth)",
        "det_ratio": "covariance determinant ratio det Σ̂ / det Σ (0 if singular)",
        "log_det_ratio": "log det Σ̂ − log det Σ (nats; −∞ if singular)",
        "kl": "KL(truth ‖ fit) (nats; ∞ if Σ̂ singular)",
        "nll": "expected NLL of real data under the fit, exact (nats per sample; ∞ if Σ̂ singular)",
    }

    def __init__(self, config: GaussianConfig):
        super().__init__(config)
        self._gather_buffer: np.ndarray | None = None

    @property
    def real_size(self) -> int:
        return self.config.T

    @property
    def synthetic_size(self) -> int:
        return self.config.synthetic_T

    @property
    def working_dim(self) -> int:
        """Coordinates the task works in: ``d``, or ``T − 1`` (the real data's affine hull) if ``T ≤ d``."""
        return min(self.config.d, self.config.T - 1)

    def sample_real(self, rngs) -> GaussianData:
        c = self.config
        x = seeding.standard_normal(rngs, (c.T, c.d))
        if c.sigma != 1.0:
            x *= c.sigma
        if c.T - 1 >= c.d:
            return GaussianData(c.T, row_stats(x), rows=x)
        # T ≤ d: every later sample stays in the real data's affine hull, origin + span(Q).
        origin = x.mean(axis=1)
        xc = x - origin[:, None, :]
        basis = np.linalg.qr(np.matmul(xc.transpose(0, 2, 1), helmert(c.T)))[0]  # (R, d, T − 1)
        u = np.matmul(xc, basis)  # (R, T, T − 1)
        return GaussianData(c.T, row_stats(u), rows=u, origin=origin, basis=basis)

    def synthesize(self, model: GaussianModel, inputs, n: int, rngs) -> GaussianData:
        # Nothing is drawn yet: the source keeps the model and a stream per replicate, and draws
        # its statistics or its rows when the workflow first reads one of them (GaussianData).
        words = [rng.bit_generator.random_raw(4) for rng in rngs]
        streams = [((int(a) << 64) | int(b), (int(c) << 64) | int(e) | 1) for a, b, c, e in words]
        return GaussianData(n, synthetic=True, model=model, streams=streams)

    def statistics(self, data: GaussianData) -> GaussianData:
        return data  # behaves as its statistics under + and *; drawn when the pool first sums it


    def fit(self, training: TrainingSet, rngs) -> GaussianModel:
        if training.is_weighted:
            stats = training.statistics()
            if isinstance(stats, GaussianData):  # a single source with weight 1
                stats = stats.stats
        else:
            stats = row_stats(self._gather(training), overwrite=True)
        D = _divisor(stats.count, self.config.variance)
        w = stats.mean.shape[1]
        if stats.factor is not None:
            factor, lower = stats.factor / np.sqrt(D), stats.lower
            return GaussianModel(stats.mean, factor, np.minimum(stats.rank, min(factor.shape[2], w)), lower, D, stats.count)
        factor, lower, rank = psd_factor(stats.scatter, int(stats.rank.max()))
        factor *= 1 / np.sqrt(D)  # the factor of S/D, without a scaled copy of S
        return GaussianModel(stats.mean, factor, np.minimum(rank, stats.rank), lower, D, stats.count)

    def _gather(self, training: TrainingSet) -> np.ndarray:
        """The drawn rows ``(R, n, d)``, gathered source by source from each source's own rows."""
        pool, rows = training.pool, training.mixture.rows
        R, n = rows.shape
        source = training.source_index().ravel().astype(np.int16 if len(pool.sources) < 2**15 else np.int64)
        local = training.local_rows().ravel()
        replicate = np.repeat(np.arange(R), n)
        order = np.argsort(source, kind="stable")  # radix sort: positions grouped by source
        bounds = np.searchsorted(source[order], np.arange(len(pool.sources) + 1))
        w = self.working_dim
        # Reused across generations: fresh pages for an (R·n, w) temporary every generation cost as
        # much as the arithmetic on large cells. The fit consumes (centers) it in place at once.
        if self._gather_buffer is None or self._gather_buffer.size < R * n * w:
            self._gather_buffer = np.empty(R * n * w)
        out = self._gather_buffer[: R * n * w].reshape(R * n, w)
        flat = replicate * pool.sizes[source] + local  # (R·n,) row within its source's (R·size) rows
        centered = []
        for j in np.flatnonzero(np.diff(bounds)):
            where = order[bounds[j] : bounds[j + 1]]
            data = pool.sources[j].data
            out[where] = np.take(data.kept_rows().reshape(-1, w), flat[where], axis=0)  # float32 or float64
            if data.row_center is not None:
                centered.append(j)
        if centered:
            # Rows drawn first are kept as deviations from their source's model mean: the means are
            # added for all rows at once, in float64, through a small reused buffer.
            table = np.zeros((len(pool.sources) * R, w))
            for j in centered:
                table[j * R : (j + 1) * R] = pool.sources[j].data.row_center
            index = source.astype(np.int64) * R + replicate
            step = min(R * n, max(1, (1 << 15) // w))
            chunk = np.empty((step, w))
            for start in range(0, R * n, step):
                stop = min(start + step, R * n)
                out[start:stop] += np.take(table, index[start:stop], axis=0, out=chunk[: stop - start], mode="clip")  # valid indices; "raise" would buffer
        return out.reshape(R, n, w)

    def verification_problem(self):
        return "gaussian synthesizes each source's sufficient statistics directly (rows only on demand); dropping rows is not supported"

    def evaluate(self, model: GaussianModel, real: GaussianData) -> dict[str, np.ndarray]:
        c = self.config
        d, s2 = c.d, c.sigma**2
        mean, factor = real.to_original(model.mean), model.factor  # truth: μ = 0, Σ = σ²I
        R = len(mean)
        logdet, inv_trace, quad = np.full(R, -np.inf), np.full(R, np.inf), np.full(R, np.inf)
        full = model.rank >= d  # never when the working coordinates are fewer than d
        if model.lower:
            diag = np.abs(np.diagonal(factor, axis1=1, axis2=2))
            full &= np.all(diag > 0, axis=1)  # a variance that underflowed to 0 is singular too
        if full.any():
            square = factor[full]  # (R', d, d)
            if model.lower:
                logdet[full] = 2 * np.sum(np.log(diag[full]), axis=1)
                inverse = triangular_inverse(square, overwrite=True)
            else:  # a pivoted factor, exactly singular in some replicates perhaps
                sign, half = np.linalg.slogdet(square)
                full[full] = sign != 0
                logdet[full] = 2 * half[sign != 0]
                inverse = np.linalg.inv(factor[full])
            inv_trace[full] = np.einsum("rij,rij->r", inverse, inverse)  # tr Σ̂⁻¹ = ‖F⁻¹‖²
            quad[full] = np.sum(np.einsum("rij,rj->ri", inverse, mean[full]) ** 2, axis=1)
        log_det_ratio = logdet - d * np.log(s2)
        with np.errstate(over="ignore"):
            det_ratio = np.exp(log_det_ratio)
        kl = np.where(full, 0.5 * (s2 * inv_trace + quad - d + np.where(full, log_det_ratio, 0.0)), np.inf)
        nll = np.where(full, 0.5 * (d * np.log(2 * np.pi) + np.where(full, logdet, 0.0) + s2 * inv_trace + quad), np.inf)
        return {
            "mean_sq_error": np.sum(mean**2, axis=1),
            "trace_ratio": np.einsum("rij,rij->r", factor, factor) / (d * s2),  # Q is orthonormal
            "det_ratio": det_ratio,
            "log_det_ratio": log_det_ratio,
            "kl": kl,
            "nll": nll,
        }

    def describe(self) -> str:
        c = self.config
        parts = [f"d={c.d}", f"T={c.T}"] + ([f"T0={c.T0}"] if c.T0 is not None else [])
        parts += [f"σ={c.sigma:g}", "MLE covariance (÷n)" if c.variance == "mle" else "unbiased covariance (÷(n−1))"]
        return "gaussian: " + ", ".join(parts)

    def theory(self, workflow: Workflow, generations: int) -> Theory:
        c = self.config
        d, T, T0, sigma, variance = c.d, c.T, c.synthetic_T, c.sigma, c.variance
        g = np.arange(generations + 1)
        derived = "derived in synthloop.theory.gaussian"
        if workflow.name == "replace":
            source = "Shumailov et al. 2023 §4.2; Kazdan et al. 2024 (" + derived + ")"
            curves = [
                TheoryCurve("mean_sq_error", theory.replace_mean_sq_error(g, d, T, sigma, T0, variance), "exact", source),
                TheoryCurve("trace_ratio", theory.replace_trace_ratio(g, T, T0, variance), "exact", source),
                TheoryCurve("det_ratio", theory.replace_det_ratio(g, d, T, T0, variance), "exact", derived),
                TheoryCurve("log_det_ratio", theory.replace_log_det_ratio(g, d, T, T0, variance), "exact", derived),
            ]
            kl = theory.replace_kl(g, d, T, T0, variance)
            if np.isfinite(kl).any():
                curves.append(TheoryCurve("kl", kl, "exact", derived))
                curves.append(TheoryCurve("nll", kl + theory.gaussian_entropy(d, sigma), "exact", derived))
            return Theory(curves)
        if workflow.name == "accumulate":
            source = "Kazdan et al. 2024 (plateau ≈ π²/6 · dσ²/T); exact form " + derived
            return Theory([
                TheoryCurve("mean_sq_error", theory.accumulate_mean_sq_error(g, d, T, sigma, T0, variance), "exact", source),
                TheoryCurve("trace_ratio", theory.accumulate_trace_ratio(g, T, T0, variance), "exact", source),
            ])
        if workflow.name == "accumulate-subsample":
            moments = theory.accumulate_subsample_moments(generations, d, T, sigma, T0, getattr(workflow, "budget", None), variance)
            source = "second-moment recursion " + derived
            return Theory([
                TheoryCurve("mean_sq_error", moments.mean_sq_error, "exact", source),
                TheoryCurve("trace_ratio", moments.trace_ratio, "exact", source),
            ])
        if workflow.name == "cardinality":  # the same `real` real rows every time: accumulate with T = real
            real = T if workflow.real is None else workflow.real
            if real < 2:
                return Theory(note="cardinality with a single real row: no theory (the first fit has no spread)")
            source = "accumulate with T = real rows, " + derived
            return Theory([
                TheoryCurve("mean_sq_error", theory.accumulate_mean_sq_error(g, d, real, sigma, T0, variance), "exact", source),
                TheoryCurve("trace_ratio", theory.accumulate_trace_ratio(g, real, T0, variance), "exact", source),
            ])
        if generations > 2000 and workflow.name in ("weighted", "real-fraction"):
            return Theory(note=f"the exact {workflow.name!r} recursion costs O(G³); it is limited to 2000 generations")
        if workflow.name == "growing":
            moments = theory.growing_moments(generations, d, T, sigma, T0, variance)
        elif workflow.name == "weighted" and workflow.budget is None:
            moments = theory.weighted_moments(generations, d, T, sigma, T0, workflow.real, workflow.decay, variance)
        elif workflow.name == "weighted" and workflow.real == 1 and workflow.decay == 1:  # uniform draw
            moments = theory.accumulate_subsample_moments(generations, d, T, sigma, T0, workflow.budget, variance)
        elif workflow.name == "real-fraction":
            moments = theory.real_fraction_moments(generations, d, T, sigma, T0, workflow.fraction, workflow.budget, variance)
        else:
            return Theory(note=f"no closed form for the {workflow.name!r} workflow"
                          + (" with a budget and unequal weights (draws ∝ weight without replacement)" if workflow.name == "weighted" else ""))
        return Theory([
            TheoryCurve("mean_sq_error", moments.mean_sq_error, "exact", "second-moment recursion " + derived),
            TheoryCurve("trace_ratio", moments.trace_ratio, "exact", "second-moment recursion " + derived),
        ])
