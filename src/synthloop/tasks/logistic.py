"""Iterated logistic regression with resampled labels (Dey & Donoho 2024).

Data: scikit-learn's bundled Wisconsin breast-cancer table (569 rows, 30 features; label 1 =
benign), or any CSV file with numeric feature columns and a two-class ``label`` column
(``data = "path/to/file.csv"``, ``label = "column"``). Each replicate splits the rows at random
into train and test (70/30 by default), stratified by class so both classes appear on both
sides and every replicate has the same sizes (for breast cancer 398/171, the sizes of
scikit-learn's unstratified ``train_test_split``). Features are standardized with the training
split's mean and standard deviation (a constant column is left centred, not scaled), and an
intercept column is prepended.

Loop (fixed design, as in the paper): generation 0 fits the real training labels; generation
``g ≥ 1`` relabels the *same* training inputs with ``y ~ Bernoulli(p̂_{g-1}(x))`` drawn from the
previous fit. The workflow then mixes the label sets: since the log-likelihood is linear in the
labels, a mixture with weights ``w_j`` over label vectors ``y_j`` is the fit on the *soft* labels
``Σ_j w_j y_j / Σ_j w_j`` — additive statistics, so accumulate costs the same per generation as
replace. A row-subsampled mixture is the fit with per-row counts and mean labels.

Fit: penalized maximum likelihood,
``min_θ (1/N) Σ_rows [log(1 + e^{xᵀθ}) − y xᵀθ] + (λ/2)‖β‖²``, with ``θ = (intercept, β)``,
the intercept unpenalized and ``N`` the training set's rows — scikit-learn's
``LogisticRegression(C = 1/(λN))``. It is solved by batched Newton steps (IRLS) over replicates
with a backtracking line search, until the Newton decrement falls below 1e-12 (then one more full
step). The paper's fit is unpenalized, but standardized breast-cancer training splits are
linearly separable (every replicate we drew), where the unpenalized MLE does not exist
(``‖θ‖ → ∞``, test log-loss ≈ 6.9 after 100 Newton steps). The default ``ridge = 1e-4`` keeps
the fit finite while staying close to unpenalized (``C ≈ 25`` for 398 rows; scikit-learn's
default ``C = 1`` is ``ridge ≈ 2.5e-3``). With ``ridge = 0`` a separable replicate stops after
``max_newton_steps`` with a large finite ``θ``.

Metrics on the real test split: ``test_log_loss`` (mean cross-entropy, nats) and
``test_accuracy``. The paper's "generation 1" is generation 0 here.

CSV paths are taken relative to the directory of the preset that names them when the config
loader passes it (``ValidationInfo.context["base_dir"]``), otherwise relative to the current
directory, and recorded as absolute paths so a saved config reloads anywhere. Every problem with
a CSV file is one :class:`~synthloop.validation.ConfigError` line naming the file and column.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import ValidationInfo, field_validator, model_validator
from scipy.special import expit

from ..pool import TrainingSet
from ..validation import ConfigError, Integer, Real, user_path
from ..workflows import Workflow
from .base import Task, TaskConfig, Theory

BUILTIN = "breast-cancer"
MIN_ROWS = 10


class LogisticConfig(TaskConfig):
    name: Literal["logistic"] = "logistic"
    data: str = BUILTIN
    label: str | None = None
    test_fraction: Real(0, 1, lo_open=True, hi_open=True) = 0.3
    ridge: Real(0) = 1e-4
    max_newton_steps: Integer(1, 10_000) = 100

    @field_validator("data", mode="after")
    @classmethod
    def _resolve(cls, value: str, info: ValidationInfo) -> str:
        if value == BUILTIN:
            return value
        return user_path(value, info.context)

    @model_validator(mode="after")
    def _readable(self):
        if self.data == BUILTIN:
            if self.label is not None:
                raise ConfigError(f"task.label names a CSV column; it does not apply to task.data = {BUILTIN!r}; got {self.label!r}")
        else:
            if self.label is None:
                raise ConfigError(f"task.label is required with task.data = {self.data!r}: name the CSV column that holds the two classes")
            load_table(self.data, self.label)  # raises a one-line ConfigError
        return self


@dataclass(frozen=True)
class Table:
    """Features and 0/1 labels of a data set, before any split."""

    x: np.ndarray  # (N, d)
    y: np.ndarray  # (N,) in {0, 1}
    classes: tuple[str, str]  # label values mapped to 0 and 1
    features: tuple[str, ...]
    source: str


def load_table(data: str, label: str | None) -> Table:
    """The breast-cancer table or a CSV file, validated; CSV reads are cached by file version."""
    if data == BUILTIN:
        return _breast_cancer()
    path = Path(data)
    if not path.is_file():
        raise ConfigError(f"task.data: {path} does not exist (give 'breast-cancer' or a CSV file)")
    stat = path.stat()
    return _read_csv(str(path), label, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1)
def _breast_cancer() -> Table:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return Table(
        np.asarray(bunch.data, float), np.asarray(bunch.target, float),
        tuple(str(c) for c in bunch.target_names), tuple(bunch.feature_names), "scikit-learn breast cancer",
    )


@functools.lru_cache(maxsize=16)
def _read_csv(path: str, label: str, mtime_ns: int, size: int) -> Table:
    import pandas as pd

    where = f"task.data: {path}"
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as error:  # pandas raises several types for malformed files
        raise ConfigError(f"{where}: cannot be read as CSV: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    columns = [str(c) for c in frame.columns]
    if label not in columns:
        raise ConfigError(f"{where}: no label column {label!r} (task.label); columns: {', '.join(columns)}")
    features = [c for c in columns if c != label]
    if not features:
        raise ConfigError(f"{where}: no feature columns besides the label column {label!r}")
    if len(frame) < MIN_ROWS:
        raise ConfigError(f"{where}: {len(frame)} data rows; at least {MIN_ROWS} are needed for a train/test split")
    x = np.empty((len(frame), len(features)))
    for k, column in enumerate(features):
        raw = frame[column].str.strip()
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            i = int(bad[0])
            what = "an empty cell" if raw.iloc[i] == "" else f"the non-numeric value {raw.iloc[i]!r}"
            raise ConfigError(f"{where}: column {column!r} has {what} in data row {i + 1} (line {i + 2}); feature columns must be numeric")
        x[:, k] = values
    raw = frame[label].str.strip()
    if (raw == "").any():
        i = int(np.flatnonzero((raw == "").to_numpy())[0])
        raise ConfigError(f"{where}: label column {label!r} has an empty cell in data row {i + 1} (line {i + 2})")
    values = sorted(set(raw))
    numeric = pd.to_numeric(pd.Series(values), errors="coerce")
    if numeric.notna().all():  # numeric labels: order them as numbers, so 0/1 stay 0/1
        values = [v for _, v in sorted(zip(numeric, values))]
    if len(values) == 1:
        raise ConfigError(f"{where}: label column {label!r} has only one class ({values[0]!r}); logistic regression needs two")
    if len(values) > 2:
        shown = ", ".join(repr(v) for v in values[:5]) + (", …" if len(values) > 5 else "")
        raise ConfigError(f"{where}: label column {label!r} has {len(values)} classes ({shown}); logistic regression needs exactly two")
    y = (raw == values[1]).to_numpy(dtype=float)
    for value, count in zip(values, (int((y == 0).sum()), int((y == 1).sum()))):
        if count < 2:
            raise ConfigError(f"{where}: label column {label!r} has {count} row of class {value!r}; each class needs at least 2 rows for a stratified split")
    return Table(x, y, (values[0], values[1]), tuple(features), path)


@dataclass
class LabelData:
    """One label vector for the fixed training design; the real source also carries the design and test split."""

    y: np.ndarray  # (R, n) in {0, 1}


@dataclass
class RealLogisticData(LabelData):
    x: np.ndarray | None = None  # (R, n, p): intercept column, then standardized features
    x_test: np.ndarray | None = None  # (R, m, p)
    y_test: np.ndarray | None = None  # (R, m)


@dataclass
class SoftLabels:
    """Additive statistics of label vectors on a shared design: their weighted sum and total weight."""

    y: np.ndarray  # (R, n)
    weight: float

    def __add__(self, other):
        return SoftLabels(self.y + other.y, self.weight + other.weight)

    def __mul__(self, c: float):
        return SoftLabels(self.y * c, self.weight * c)


@dataclass
class LogisticModel:
    coef_: np.ndarray  # (R, p): intercept first
    newton_steps: int = 0
    converged: np.ndarray | None = None  # (R,) bool


def _penalized_loss(z, targets, weights, theta, penalty):
    """``Σ_i a_i [log(1 + e^{z_i}) − t_i z_i] + ½ Σ_j λ_j θ_j²`` per replicate."""
    loss = np.logaddexp(0.0, z) - targets * z
    return (weights * loss).sum(axis=1) + 0.5 * (penalty * theta**2).sum(axis=1)


def fit_logistic(x: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None, ridge: float = 0.0,
                 max_steps: int = 100, tol: float = 1e-12, intercept: bool = True) -> LogisticModel:
    """Penalized logistic regression per replicate by batched Newton steps with backtracking.

    Minimizes ``Σ_i a_i [log(1 + e^{z_i}) − t_i z_i] + (λ/2)‖θ_{1:}‖²``, ``z = Xθ``, over
    ``x`` (R, n, p) whose first column is the (unpenalized) intercept — or ``(λ/2)‖θ‖²`` when
    ``intercept`` is False — soft ``targets`` (R, n) in [0, 1] and row weights ``a`` (R, n)
    (None: ``1/n``). Each step solves
    ``(XᵀDX + λP) s = g`` for all replicates still moving, then halves ``s`` until the Armijo
    condition holds (``z`` moves along ``Xs``, so a trial costs no matrix product). A replicate
    stops, after one last full step, when its Newton decrement ``gᵀs`` falls below ``tol``; or
    when no descent is possible at machine precision; or after ``max_steps``.
    """
    R, n, p = x.shape
    a = np.full((R, n), 1.0 / n) if weights is None else weights
    xt = np.ascontiguousarray(x.transpose(0, 2, 1))  # (R, p, n): contiguous operands keep matmul on BLAS
    penalty = np.full(p, ridge)
    if intercept:
        penalty[0] = 0.0
    regularizer = np.diag(penalty) + 1e-12 * np.eye(p)  # the jitter keeps a separable, unpenalized fit solvable
    theta = np.zeros((R, p))
    z = np.zeros((R, n))
    value = _penalized_loss(z, targets, a, theta, penalty)
    active, converged = np.ones(R, bool), np.zeros(R, bool)
    steps = 0
    while active.any() and steps < max_steps:
        steps += 1
        ids = np.flatnonzero(active)
        every = len(ids) == R
        xa, xta = (x, xt) if every else (x[ids], xt[ids])
        ta, aa, th, za = targets[ids], a[ids], theta[ids], z[ids]
        mu = expit(za)
        grad = np.matmul(xta, (aa * (mu - ta))[..., None])[..., 0] + penalty * th
        hess = np.matmul(xta * (aa * mu * (1.0 - mu))[:, None, :], xa) + regularizer
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        dz = np.matmul(xa, step[..., None])[..., 0]
        decrement = np.einsum("rp,rp->r", grad, step)
        done = decrement < tol
        scale = np.ones(len(ids))
        new = value[ids].copy()
        pending = ~done
        for _ in range(50):
            if not pending.any():
                break
            k = np.flatnonzero(pending)
            f = _penalized_loss(za[k] - scale[k, None] * dz[k], ta[k], aa[k], th[k] - scale[k, None] * step[k], penalty)
            ok = f <= value[ids[k]] - 1e-4 * scale[k] * decrement[k]
            new[k[ok]] = f[ok]
            scale[k[~ok]] *= 0.5
            pending[k[ok]] = False
        moved = ~pending  # still pending: no descent at machine precision; stop there
        theta[ids[moved]] = th[moved] - scale[moved, None] * step[moved]
        z[ids[moved]] = za[moved] - scale[moved, None] * dz[moved]
        value[ids[moved]] = new[moved]
        converged[ids[done]] = True
        active[ids[done | pending]] = False
    return LogisticModel(coef_=theta, newton_steps=steps, converged=converged)


def _split_sizes(y: np.ndarray, test_fraction: float) -> tuple[int, int]:
    """Test rows per class (class 0, class 1): ``round(fraction × count)``, at least 1, leaving at least 1."""
    counts = [int((y == 0).sum()), int((y == 1).sum())]
    return tuple(min(c - 1, max(1, int(round(test_fraction * c)))) for c in counts)


class LogisticTask(Task):
    Config = LogisticConfig
    primary_metric = "test_log_loss"
    metric_labels = {
        "test_log_loss": "test log-loss on the real test split (nats)",
        "test_accuracy": "test accuracy on the real test split",
    }

    def __init__(self, config: LogisticConfig):
        super().__init__(config)
        self.table = load_table(config.data, config.label)
        self.test_per_class = _split_sizes(self.table.y, config.test_fraction)
        self.n_test = sum(self.test_per_class)
        self.n_train = len(self.table.y) - self.n_test

    @property
    def real_size(self) -> int:
        return self.n_train

    def synthetic_capacity(self):
        return self.n_train, f"the logistic task relabels its {self.n_train} real training inputs (fixed design)"

    def sample_real(self, rngs) -> RealLogisticData:
        table = self.table
        R = len(rngs)
        members = [np.flatnonzero(table.y == k) for k in (0, 1)]
        train_idx = np.empty((R, self.n_train), dtype=np.int64)
        test_idx = np.empty((R, self.n_test), dtype=np.int64)
        for r, rng in enumerate(rngs):
            picks = [rng.permutation(m) for m in members]
            test = np.concatenate([pick[:k] for pick, k in zip(picks, self.test_per_class)])
            train = np.concatenate([pick[k:] for pick, k in zip(picks, self.test_per_class)])
            train_idx[r], test_idx[r] = rng.permutation(train), np.sort(test)
        x_train, x_test = table.x[train_idx], table.x[test_idx]  # (R, n, d), (R, m, d)
        mean = x_train.mean(axis=1, keepdims=True)
        std = x_train.std(axis=1, keepdims=True)
        std = np.where(std > 0, std, 1.0)

        def design(x):
            return np.concatenate([np.ones(x.shape[:2] + (1,)), (x - mean) / std], axis=2)

        return RealLogisticData(y=table.y[train_idx], x=design(x_train), x_test=design(x_test), y_test=table.y[test_idx])

    def sample_inputs(self, real: RealLogisticData, n: int, rngs) -> np.ndarray:
        return real.x[:, :n]

    def synthesize(self, model: LogisticModel, inputs: np.ndarray, n: int, rngs) -> LabelData:
        prob = expit(np.einsum("rnp,rp->rn", inputs, model.coef_))  # (R, n)
        y = np.empty_like(prob)
        for r, rng in enumerate(rngs):
            y[r] = rng.random(n) < prob[r]
        return LabelData(y=y)

    def statistics(self, data: LabelData) -> SoftLabels:
        return SoftLabels(data.y, 1.0)

    def fit(self, training: TrainingSet, rngs) -> LogisticModel:
        c = self.config
        real: RealLogisticData = training.pool.real.data
        R, n = real.y.shape
        if training.is_weighted:
            stats = training.statistics()
            return fit_logistic(real.x, stats.y / stats.weight, None, c.ridge, c.max_newton_steps)
        # Rows drawn from several label sets of one design: counts and mean labels per design row.
        flat = (np.arange(R)[:, None] * n + training.local_rows()).ravel()
        counts = np.bincount(flat, minlength=R * n).reshape(R, n).astype(float)
        sums = np.bincount(flat, weights=training.rows("y").ravel(), minlength=R * n).reshape(R, n)
        targets = sums / np.maximum(counts, 1.0)
        return fit_logistic(real.x, targets, counts / counts.sum(axis=1, keepdims=True), c.ridge, c.max_newton_steps)

    def verification_problem(self):
        return "logistic relabels the same training inputs every generation (a fixed design); dropping rows is not supported"

    def evaluate(self, model: LogisticModel, real: RealLogisticData) -> dict[str, np.ndarray]:
        z = np.einsum("rmp,rp->rm", real.x_test, model.coef_)
        log_loss = (np.logaddexp(0.0, z) - real.y_test * z).mean(axis=1)
        accuracy = ((z > 0) == (real.y_test > 0.5)).mean(axis=1)
        return {"test_log_loss": log_loss, "test_accuracy": accuracy}

    def theory(self, workflow: Workflow, generations: int) -> Theory:
        # Dey & Donoho's local limit predicts the ratio of excess risks (k under replace, Σ 1/i² →
        # π²/6 under accumulate), but not the test log-loss, whose irreducible part is unknown.
        return Theory(note="no closed form for the test log-loss (Dey & Donoho predict excess-risk ratios only)")

    def describe(self) -> str:
        c, table = self.config, self.table
        source = BUILTIN if c.data == BUILTIN else f"{Path(c.data).name} (label {c.label!r})"
        penalty = "unpenalized" if c.ridge == 0 else f"ridge λ={c.ridge:g}"
        return (f"logistic: {source}, {table.x.shape[1]} features, {self.n_train} train / {self.n_test} test rows, "
                f"fixed design relabelled by Bernoulli(p̂), {penalty}")
