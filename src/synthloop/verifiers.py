"""Verifiers and selection: how good is a verifier, measured on the user's own data.

Inside the generation loop a verifier scores each synthetic row and a *selection rule* decides
what enters the pool (``verifier.selection``):

* ``top`` (data selection, the default) keeps the share ``keep`` of the rows with the highest
  scores per replicate (ties broken at random);
* ``threshold`` (data selection) keeps the rows whose score is at least ``threshold``;
* ``best-of-k`` (label selection) has the task synthesize ``k`` candidate labels per input and
  keeps, per input, the candidate with the highest score (ties at random);
* ``all`` keeps every row (the verifier only measures).

Every replicate's pool stays rectangular, so the loop stays vectorized: under ``threshold`` each
replicate keeps as many rows as the replicate with the fewest passing rows, drawn at random among
its own passing rows — a random subsample of the passing rows, which scales φ and ψ alike and
leaves ``p*`` unchanged. ``oracle`` scores rows by the task's ground truth (in label selection it
picks the candidate closest to the truth where the task measures a distance), ``rlhf`` passes a
correct row with probability ``φ`` and a wrong one with probability ``ψ`` (the paper's
parametrized pruner), ``random`` scores every row alike; where the task knows the truth, every
generation records the empirical ``p``, ``φ``, ``ψ`` and ``p*`` of what the selection did.

A verifier that filters synthetic data helps only if it keeps correct examples more readily than
wrong ones. Feng et al. (2024) summarize a verifier by ``φ = P(keep | label correct)`` and
``ψ = P(keep | label wrong)``: training on the kept data recovers the truth as the data grow when
the generator's error rate ``p`` is below the breakdown point ``p* = 1/(1 + ψ/φ)``, and fails
above it. :func:`verifier_quality` estimates all of these, with confidence intervals, from
examples whose correctness is known (a labelled audit sample) and the verifier's verdicts on
them; ``synthloop verifier-quality FILE.csv`` runs it on a CSV file.

"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Union

import numpy as np
from pydantic import Field, model_validator
from scipy import stats

from .theory import verification
from .validation import ConfigError, Integer, Real, StrictModel


@dataclass
class Candidates:
    """One generation's synthetic rows, and what a verifier may ask about them.

    Attributes
    ----------
    n : int
        Rows per replicate: inputs × candidates per input.
    correct : ndarray of shape (R, n) or None
        The task's truth (``Task.correct``), where it defines one.
    k : int
        Candidates per input; row ``i·k + j`` is candidate ``j`` of input ``i``.
    """

    task: object
    model: object
    data: object
    real: object
    rngs: list
    n: int
    correct: np.ndarray | None
    k: int = 1

    def distance(self) -> np.ndarray | None:
        """How far each row's label is from the truth, (R, n), or None where the task has no such measure."""
        distance = self.task.label_distance(self.data, self.real)
        return None if distance is None else np.asarray(distance, dtype=float)

    def judge(self) -> np.ndarray:
        """The task's second model's scores, (R, n)."""
        return np.asarray(self.task.judge(self.data, self.real, self.rngs), dtype=float)

    def confidence(self) -> np.ndarray:
        """The generating model's own confidence in each row, (R, n)."""
        return np.asarray(self.task.confidence(self.model, self.data), dtype=float)


class Verifier(StrictModel, ABC):
    """Scores synthetic rows; ``selection`` decides which of them are kept (see the module docstring)."""

    needs_truth: ClassVar[bool] = False
    #: True when, without a right/wrong truth, the task's label distance alone can stand in for it
    ranks_by_distance: ClassVar[bool] = False
    needs_judge: ClassVar[bool] = False
    needs_confidence: ClassVar[bool] = False

    name: str
    selection: Literal["top", "threshold", "best-of-k", "all"] = Field(
        default="top", description="top share, score threshold, best of k candidates per input, or all"
    )
    keep: Real(0, 1, lo_open=True) = Field(default=1.0, description="selection='top': share of synthesized rows kept per replicate")
    threshold: Real() | None = Field(default=None, description="selection='threshold': keep rows whose score is at least this")
    k: Integer(1, 64) = Field(default=1, description="selection='best-of-k': candidate labels synthesized per input")

    @model_validator(mode="after")
    def _selection_parameters(self):
        # Each parameter belongs to one rule: a value set for another rule is a mistake, not a no-op.
        if self.selection == "threshold" and self.threshold is None:
            raise ConfigError("verifier.threshold must be a number when verifier.selection='threshold'; got none")
        if self.selection != "threshold" and self.threshold is not None:
            raise ConfigError(f"verifier.threshold applies only to selection='threshold'; got threshold={self.threshold:g} with selection={self.selection!r}")
        if self.selection == "best-of-k" and self.k < 2:
            raise ConfigError(f"verifier.k must be an integer in [2, 64] when verifier.selection='best-of-k'; got {self.k}")
        if self.selection != "best-of-k" and self.k != 1:
            raise ConfigError(f"verifier.k applies only to selection='best-of-k'; got k={self.k} with selection={self.selection!r}")
        if self.selection != "top" and self.keep != 1:
            raise ConfigError(f"verifier.keep applies only to selection='top'; got keep={self.keep:g} with selection={self.selection!r}")
        return self

    @property
    def candidates(self) -> int:
        """Candidate labels the task synthesizes per input (1 except under best-of-k)."""
        return self.k if self.selection == "best-of-k" else 1

    def kept_size(self, n: int) -> int:
        """Rows kept per replicate out of ``n`` inputs (an upper bound under ``threshold``)."""
        return max(1, round(self.keep * n)) if self.selection == "top" else n

    def describe(self) -> str:
        """The verifier and its selection rule, for captions and notes."""
        rule = {"top": f"keep={self.keep:g}", "threshold": f"score ≥ {self.threshold:g}" if self.threshold is not None else "",
                "best-of-k": f"best of {self.k}", "all": "keep all"}[self.selection]
        return f"{self.name}, {rule}"

    @abstractmethod
    def score(self, candidates: Candidates) -> np.ndarray:
        """Scores of the candidate rows, shape (R, n); higher is kept first."""

    def select(self, scores: np.ndarray, rngs) -> np.ndarray:
        """Indices of the kept rows, shape (R, m), in row order.

        ``top``: ``m = max(1, round(keep · n))``; ``threshold``: ``m`` = the fewest rows passing in
        any replicate (at least 1; a replicate where nothing passes takes its best rows);
        ``best-of-k``: ``m = n / k``, one row per input; ``all``: ``m = n``.
        """
        R, n = scores.shape
        jitter = np.stack([rng.random(n) for rng in rngs])  # (R, n): ties broken at random
        if self.selection == "all":
            return np.broadcast_to(np.arange(n), (R, n)).copy()
        if self.selection == "best-of-k":
            k = self.k
            order = np.lexsort((jitter.reshape(R, n // k, k), -scores.reshape(R, n // k, k)), axis=-1)  # (R, n/k, k)
            return np.arange(0, n, k) + order[..., 0]
        if self.selection == "threshold":
            passing = scores >= self.threshold  # (R, n)
            m = max(1, int(passing.sum(axis=1).min()))
            # Passing rows first, in random order: a uniform draw of m of them per replicate.
            order = np.lexsort((jitter, ~passing), axis=1)[:, :m]
            fallback = np.lexsort((jitter, -scores), axis=1)[:, :m]
            order = np.where(passing.sum(axis=1, keepdims=True) >= m, order, fallback)
            return np.sort(order, axis=1)
        m = max(1, round(self.keep * n))
        order = np.lexsort((jitter, -scores), axis=1)[:, :m]
        return np.sort(order, axis=1)


class RandomVerifier(Verifier):
    """Keeps rows at random: the control every verifier must beat (φ = ψ = keep)."""

    name: Literal["random"] = "random"

    def score(self, candidates):
        return np.zeros((len(candidates.rngs), candidates.n))


class OracleVerifier(Verifier):
    """Keeps correct rows first (ground truth; real-valued labels use the task's tolerance).

    Scores are 1 for a correct row and 0 for a wrong one. Among ``k`` candidates of one input
    (label selection) it picks the candidate closest to the truth where the task measures a
    distance (``Task.label_distance``): the score adds ``1/(2(1 + distance))``, which keeps every
    correct candidate above every wrong one and orders each group by closeness — the paper's
    "oracle-best of the beam". A task whose labels are never simply right or wrong but have a
    distance to the truth (``conditional``: 1 − ROUGE-1 against the reference) is scored by
    ``−distance`` alone, for every ``k``."""

    needs_truth: ClassVar[bool] = True
    ranks_by_distance: ClassVar[bool] = True
    name: Literal["oracle"] = "oracle"

    def score(self, candidates):
        if candidates.correct is None:
            return -candidates.distance()
        score = candidates.correct.astype(float)
        distance = candidates.distance() if candidates.k > 1 else None
        return score if distance is None else score + 0.5 / (1.0 + distance)


class RLHFVerifier(Verifier):
    """Feng et al.'s parametrized pruner: a correct row passes with probability ``phi``, a wrong
    one with probability ``psi``; passing rows are kept first."""

    needs_truth: ClassVar[bool] = True
    name: Literal["rlhf"] = "rlhf"
    phi: Real(0, 1) = Field(default=1.0, description="P(pass | correct)")
    psi: Real(0, 1) = Field(default=0.0, description="P(pass | wrong)")

    def score(self, candidates):
        draws = np.stack([rng.random(candidates.n) for rng in candidates.rngs])  # (R, n)
        return (draws < np.where(candidates.correct, self.phi, self.psi)).astype(float)


class ModelVerifier(Verifier):
    """A second model's judgement — a weak supervisor the task defines (``Task.judge``), e.g. the
    paper's linear pruner at a given angle to the truth; rows it scores higher are kept first."""

    needs_judge: ClassVar[bool] = True
    name: Literal["model"] = "model"

    def score(self, candidates):
        return candidates.judge()


class SelfVerifier(Verifier):
    """The generator's own confidence in its rows (``Task.confidence``). Self-selection drops some
    wrong labels but keeps the generator's own bias: in ``mixture`` (d=20, N0=100, keep 0.5) the
    kept rows' error falls from 0.31 (random) to 0.21, yet downstream accuracy only moves from
    0.691 to 0.697 (oracle 0.715) — Feng et al.'s point that a model cannot verify itself."""

    needs_confidence: ClassVar[bool] = True
    name: Literal["self"] = "self"

    def score(self, candidates):
        return candidates.confidence()


VERIFIER_CLASSES = (RandomVerifier, OracleVerifier, RLHFVerifier, ModelVerifier, SelfVerifier)
VerifierConfig = Annotated[Union[VERIFIER_CLASSES], Field(discriminator="name")]
VERIFIERS = {cls.model_fields["name"].default: cls for cls in VERIFIER_CLASSES}


def selection_metrics(kept: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per replicate: the share of synthesized rows kept and the candidates per input, each (R,)."""
    return {"verifier_kept_fraction": kept.mean(axis=1), "verifier_candidates": np.full(kept.shape[0], float(k))}


def verification_metrics(correct: np.ndarray, kept: np.ndarray) -> dict[str, np.ndarray]:
    """Per replicate: the generator's error ``p``, the verifier's ``φ``, ``ψ`` and ``p*``, and the
    error of the kept rows — each (R,), NaN where undefined (e.g. no wrong row to judge ψ on).
    Under label selection the rows are all candidates, so ``p`` is the error of one candidate."""
    wrong = ~correct
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = (kept & correct).sum(axis=1) / correct.sum(axis=1)
        psi = (kept & wrong).sum(axis=1) / wrong.sum(axis=1)
        p_star = phi / (phi + psi)
        kept_error = (kept & wrong).sum(axis=1) / kept.sum(axis=1)
    return {
        "verifier_p": wrong.mean(axis=1),
        "verifier_phi": phi,
        "verifier_psi": psi,
        "verifier_p_star": p_star,
        "verifier_kept_error": kept_error,
    }


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval."""

    estimate: float
    lower: float
    upper: float


@dataclass(frozen=True)
class VerifierQuality:
    """What a verifier does to a generator's data, estimated from an audit sample.

    Attributes
    ----------
    n, n_correct, n_kept : int
        Examples audited, examples whose label is correct, examples the verifier kept.
    p : Interval
        The generator's error rate ``P(label wrong)``.
    phi, psi : Interval
        ``P(keep | correct)`` and ``P(keep | wrong)``.
    kept_fraction : Interval
        ``P(keep)``.
    p_star : Interval
        Breakdown point ``φ/(φ + ψ)``.
    pruned_error : Interval
        Error rate of the kept examples, ``pψ/(pψ + (1 − p)φ)``.
    margin : Interval
        ``p* − p``: positive when the generator is below the breakdown point. The verdict reads it.
    level : float
        Confidence level of the intervals.
    method : str
        How the intervals were computed: percentile bootstrap (the default) or Wilson.
    """

    n: int
    n_correct: int
    n_kept: int
    p: Interval
    phi: Interval
    psi: Interval
    kept_fraction: Interval
    p_star: Interval
    pruned_error: Interval
    margin: Interval
    level: float
    method: str

    @property
    def verdict(self) -> str:
        """Whether the generator's error rate is clearly below or above the breakdown point."""
        if self.margin.lower > 0:
            return "p < p*: the kept data are mostly correct — verification should let training on them improve"
        if self.margin.upper < 0:
            return "p > p*: the kept data are mostly wrong — training on them will collapse however much is kept"
        return "p ≈ p*: the audit cannot tell on which side of the breakdown point the generator is; audit more examples"

    def to_dict(self) -> dict:
        """Plain data for JSON: undefined numbers (NaN) become None."""
        def clean(value):
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return None if isinstance(value, float) and not np.isfinite(value) else value
        return clean({**asdict(self), "verdict": self.verdict})


def wilson_interval(successes: int, trials: int, level: float) -> Interval:
    """Wilson score interval of a binomial proportion (NaN for zero trials)."""
    if trials == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    z = stats.norm.ppf(0.5 + level / 2)
    share = successes / trials
    centre = (share + z**2 / (2 * trials)) / (1 + z**2 / trials)
    half = z * np.sqrt(share * (1 - share) / trials + z**2 / (4 * trials**2)) / (1 + z**2 / trials)
    return Interval(share, max(0.0, centre - half), min(1.0, centre + half))


def _rates(cells: np.ndarray) -> dict[str, np.ndarray]:
    """Every quantity of an audit from its cell counts ``(…, 4)``: correct & kept, correct &
    dropped, wrong & kept, wrong & dropped. NaN where a quantity is undefined."""
    ck, cd, wk, wd = np.moveaxis(np.asarray(cells, dtype=float), -1, 0)
    n = ck + cd + wk + wd
    with np.errstate(invalid="ignore", divide="ignore"):
        phi, psi = ck / (ck + cd), wk / (wk + wd)
        p = (wk + wd) / n
        p_star = phi / (phi + psi)
        return {"p": p, "phi": phi, "psi": psi, "kept_fraction": (ck + wk) / n, "p_star": p_star,
                "pruned_error": wk / (ck + wk), "margin": p_star - p}


def verifier_quality(correct, kept, level: float = 0.95, bootstrap: int = 2000, seed: int = 0) -> VerifierQuality:
    """Estimate ``p``, ``φ``, ``ψ``, ``p*`` and the kept data's error from audited examples.

    Parameters
    ----------
    correct : array_like of bool, shape (n,)
        Whether each example's synthetic label is correct (from ground truth or a human audit).
    kept : array_like of bool, shape (n,)
        Whether the verifier kept it.
    level : float
        Confidence level of the intervals, in (0, 1).
    bootstrap : int
        Bootstrap resamples for percentile intervals (default 2000); 0 gives Wilson intervals
        instead (``p*`` then from the φ and ψ intervals, each at level ``1 − α/2``).
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    VerifierQuality

    Notes
    -----
    A bootstrap resample of ``n`` audited examples is a multinomial draw of ``n`` over the four
    cells (correct or wrong) × (kept or dropped) with the observed cell shares, so ``B``
    resamples cost ``O(B)``, whatever ``n``. Resamples in which a quantity is undefined (no
    wrong example to estimate ``ψ`` on) are left out of that quantity's interval. The verdict
    reads the interval of ``p* − p`` from the same resamples, so it accounts for their
    correlation. Percentile intervals are too narrow when a cell holds a handful of examples (a
    count of 0 gives a zero-width interval); the Wilson intervals (``bootstrap=0``) are not.
    """
    correct, kept = np.asarray(correct, dtype=bool), np.asarray(kept, dtype=bool)
    if correct.shape != kept.shape or correct.ndim != 1:
        raise ValueError(f"correct and kept must be 1-D of the same length; got {correct.shape} and {kept.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or not 0 <= bootstrap <= 1_000_000:
        raise ValueError(f"bootstrap must be an integer in [0, 1000000]; got {bootstrap!r}")
    cells = np.array([(correct & kept).sum(), (correct & ~kept).sum(), (~correct & kept).sum(), (~correct & ~kept).sum()])
    n, n_correct = len(correct), int(cells[:2].sum())
    estimate = {key: float(value) for key, value in _rates(cells).items()}
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        draws = _rates(rng.multinomial(n, cells / max(n, 1), size=bootstrap))  # each (B,)
        alpha = 1 - level
        intervals = {}
        for key, value in estimate.items():
            values = draws[key][np.isfinite(draws[key])]
            if np.isnan(value) or len(values) == 0:
                intervals[key] = Interval(value, float("nan"), float("nan"))
            else:
                lower, upper = np.quantile(values, [alpha / 2, 1 - alpha / 2])
                intervals[key] = Interval(value, float(lower), float(upper))
        method = f"percentile bootstrap, {bootstrap} resamples, seed {seed}"
    else:
        half = 1 - (1 - level) / 2  # φ and ψ each at 1 − α/2: their joint coverage is at least 1 − α
        phi = wilson_interval(int(cells[0]), n_correct, half)
        psi = wilson_interval(int(cells[2]), n - n_correct, half)
        p = wilson_interval(n - n_correct, n, level)
        nan = float("nan")
        both = 0 < n_correct < n  # φ and ψ both estimable
        p_star = Interval(
            *(float(verification.breakdown_point(f, s)) for f, s in ((phi.estimate, psi.estimate), (phi.lower, psi.upper), (phi.upper, psi.lower)))
        ) if both else Interval(nan, nan, nan)
        pruned = Interval(estimate["pruned_error"], nan, nan)
        margin = Interval(estimate["margin"], p_star.lower - p.upper, p_star.upper - p.lower)
        intervals = {"p": p, "phi": phi, "psi": psi, "kept_fraction": wilson_interval(int(cells[0] + cells[2]), n, level),
                     "p_star": p_star, "pruned_error": pruned, "margin": margin}
        method = "Wilson; p* from the joint φ, ψ intervals"
    return VerifierQuality(n=n, n_correct=n_correct, n_kept=int(cells[0] + cells[2]), level=level, method=method, **intervals)


def verifier_quality_figure(quality: VerifierQuality, title: str | None = None):
    """The kept data's error ``p′`` against the generator's error ``p`` for the estimated ``(φ, ψ)``.

    The band spans the curves of the pessimistic and optimistic ends of the intervals of φ and ψ;
    the breakdown point ``p*`` (where ``p′ = 1/2``) is drawn with its interval, and the audited
    generator's ``p`` with its interval. A pure function of ``quality``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.8), layout="constrained")
    grid = np.linspace(0, 1, 201)

    def curve(phi, psi):
        with np.errstate(invalid="ignore", divide="ignore"):
            return grid * psi / (grid * psi + (1 - grid) * phi)

    phi, psi = quality.phi, quality.psi
    ax.plot(grid, grid, color="0.6", lw=1, ls=":", label="no verifier (p′ = p)")
    if np.isfinite(phi.estimate) and np.isfinite(psi.estimate):
        ax.plot(grid, curve(phi.estimate, psi.estimate), color="#1f77b4", label=f"kept error p′ (φ={phi.estimate:.3g}, ψ={psi.estimate:.3g})")
        if np.isfinite([phi.lower, phi.upper, psi.lower, psi.upper]).all():
            ax.fill_between(grid, curve(phi.upper, psi.lower), curve(phi.lower, psi.upper), color="#1f77b4", alpha=0.2, lw=0)
    ax.axhline(0.5, color="0.3", lw=0.8, ls="--")
    star = quality.p_star
    if np.isfinite(star.estimate):
        ax.axvline(star.estimate, color="#d62728", lw=1.2, label=f"breakdown p* = {star.estimate:.3g}")
        if np.isfinite([star.lower, star.upper]).all():
            ax.axvspan(star.lower, star.upper, color="#d62728", alpha=0.12, lw=0)
    p = quality.p
    ax.axvline(p.estimate, color="#2ca02c", lw=1.2, label=f"audited generator p = {p.estimate:.3g}")
    if np.isfinite([p.lower, p.upper]).all():
        ax.axvspan(p.lower, p.upper, color="#2ca02c", alpha=0.12, lw=0)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="generator error p = P(label wrong)", ylabel="error of the kept data p′")
    ax.set_title(title or f"verifier quality ({quality.n} audited; {quality.level:.0%} intervals)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.annotate("p′ = 1/2: kept labels carry no signal", (0.99, 0.51), ha="right", va="bottom", fontsize=7, color="0.3")
    return fig


_TRUE = {"1", "true", "yes", "y", "t", "keep", "kept", "correct"}
_FALSE = {"0", "false", "no", "n", "f", "drop", "dropped", "wrong", "incorrect"}


def _column(frame, column: str, path: Path):
    if column not in frame.columns:
        raise ConfigError(f"{path}: no column {column!r}; columns: {', '.join(map(str, frame.columns))}")
    return frame[column]


def _boolean_column(frame, column: str, path: Path) -> np.ndarray:
    values = _column(frame, column, path).astype(str).str.strip().str.lower()
    bad = ~values.isin(_TRUE | _FALSE)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ConfigError(
            f"{path}: column {column!r} must hold booleans (1/0, true/false, yes/no); "
            f"row {row + 2} holds {frame[column].iloc[row]!r}"
        )
    return values.isin(_TRUE).to_numpy()


def _numbers(frame, column: str, path: Path) -> np.ndarray:
    import pandas as pd

    text = _column(frame, column, path).str.strip()
    values = pd.to_numeric(text, errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"{path}: column {column!r} must hold numbers; row {row + 2} holds {frame[column].iloc[row]!r}")
    return values.to_numpy(dtype=float)


def _labels_match(frame, true: str, generated: str, path: Path) -> np.ndarray:
    """Whether each generated label equals the true one: as numbers when both columns hold
    numbers (so ``1`` matches ``1.0``), else as stripped text. Multi-class labels reduce to
    correct vs wrong, Feng et al.'s symmetric reduction."""
    import pandas as pd

    a, b = _column(frame, true, path).str.strip(), _column(frame, generated, path).str.strip()
    x, y = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
    match = (x == y).to_numpy() if not (x.isna().any() or y.isna().any()) else (a == b).to_numpy()
    if not match.any():
        raise ConfigError(
            f"{path}: labels never match: column {generated!r} never equals column {true!r} in {len(frame)} rows "
            f"(e.g. {b.iloc[0]!r} vs {a.iloc[0]!r}); check that both use the same label format"
        )
    return match


def verifier_quality_from_csv(
    path: str | Path,
    true: str = "true",
    generated: str = "generated",
    kept: str = "kept",
    correct: str | None = None,
    score: str | None = None,
    threshold: float | None = None,
    level: float = 0.95,
    bootstrap: int = 2000,
    seed: int = 0,
) -> VerifierQuality:
    """:func:`verifier_quality` on a CSV file with one audited synthetic example per row.

    Correctness comes from a ``true`` and a ``generated`` label column compared for equality
    (any number of classes), or from a boolean ``correct`` column (given by name, or used when
    the file has no ``true``/``generated`` columns but has ``correct``). The verifier's verdict
    comes from a boolean ``kept`` column, or from a numeric ``score`` column and ``threshold``
    (kept when ``score ≥ threshold``). Every malformed file raises :class:`ConfigError` with one
    line naming the file and the problem.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{path}: empty file (expected a header row and one row per audited example)") from None
    except Exception as error:
        raise ConfigError(f"{path}: not a readable CSV file ({str(error).splitlines()[0]})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise ConfigError(f"{path}: no rows")
    if (score is None) != (threshold is None):
        raise ConfigError("--score and --threshold go together: give both, or a --kept column")
    if correct is None and not {true, generated} <= set(frame.columns) and "correct" in frame.columns:
        correct = "correct"
    is_correct = _boolean_column(frame, correct, path) if correct is not None else _labels_match(frame, true, generated, path)
    is_kept = _numbers(frame, score, path) >= threshold if score is not None else _boolean_column(frame, kept, path)
    return verifier_quality(is_correct, is_kept, level, bootstrap, seed)
