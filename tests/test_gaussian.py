"""Gaussian fitting with sample synthesis: simulation vs exact theory, statistics vs rows, config errors.

Statistical checks compare replicate means with the theory within ``z · sem``, ``z`` from the
number of comparisons (``z_for``), so the whole file fails by chance with probability ~1e-3.
"""

import pickle

import numpy as np
import pandas as pd
import pytest
from conftest import mean_and_sem, z_for
from scipy import special, stats

import synthloop
from synthloop import ConfigError
from synthloop.pool import Mixture, Pool, Source, TrainingSet
from synthloop.seeding import replicate_generators
from synthloop.tasks.gaussian import (
    GaussianConfig,
    GaussianModel,
    GaussianTask,
    box_muller_float32,
    helmert,
    psd_factor,
    single_precision_suffices,
    triangular_inverse,
)
from synthloop.theory import gaussian as th


def gaussian(**overrides):
    """A small Gaussian experiment (d = 2, T = 20, 12 generations × 2000 replicates) with dotted-key overrides."""
    base = synthloop.Experiment.from_dict({"task": {"name": "gaussian", "d": 2, "T": 20}, "generations": 12, "replicates": 2000})
    return base.with_overrides(overrides)


OTHER_WORKFLOWS = ["accumulate", "accumulate-subsample", "growing", "weighted", "real-fraction", "cardinality", "subsample-8"]


@pytest.fixture(scope="module")
def mle_run():
    return synthloop.run(gaussian(workflows=[
        "replace", "accumulate", "accumulate-subsample", "growing",
        {"name": "weighted", "real": 2.0, "decay": 0.5},
        {"name": "real-fraction", "fraction": 0.3, "budget": 15},
        {"name": "cardinality", "real": 7},
        {"name": "weighted", "budget": 8, "label": "subsample-8"},
    ]))


@pytest.fixture(scope="module")
def unbiased_run():
    # T0 ≠ T and the unbiased divisor exercise every branch of the formulas
    return synthloop.run(gaussian(**{"task.d": 1, "task.T": 12, "task.T0": 6, "task.variance": "unbiased",
                                     "workflows": ["replace", "accumulate", "accumulate-subsample"]}))


def assert_matches(run, workflow, metric, checks):
    mean, sem, _ = mean_and_sem(run, workflow, metric)
    predicted = run.theory[(run.theory["workflow"] == workflow) & (run.theory["metric"] == metric)].sort_values("generation")["value"].to_numpy()
    assert len(predicted) == len(mean)
    z = np.abs(mean - predicted) / sem
    assert np.all(z < z_for(checks)), (workflow, metric, np.round(z, 2), mean, predicted)


# ----------------------------------------------------------------------------- theory: known values


def test_theory_known_values():
    # Spec §5 check: T = 100, t = 100 (g = 99) → 0.99^100 = 0.366
    assert th.replace_trace_ratio(99, T=100) == pytest.approx(0.99**100)
    assert round(float(th.replace_trace_ratio(99, T=100)), 3) == 0.366
    assert th.replace_trace_ratio([0, 5, 50], T=7, variance="unbiased") == pytest.approx([1, 1, 1])
    # Spec's sum form (σ²/T) Σ_{s=1}^{t} c^{s−1}, times d; and its closed form dσ²(1 − c^t)
    g = np.arange(30)
    c = 9 / 10
    spec = np.array([(4.0 / 10) * sum(c ** (s - 1) for s in range(1, t + 2)) for t in g])
    np.testing.assert_allclose(th.replace_mean_sq_error(g, d=1, T=10, sigma=2.0), spec)
    np.testing.assert_allclose(th.replace_mean_sq_error(g, d=3, T=10), 3 * (1 - c ** (g + 1)))
    # Shumailov: unbiased, Var σ̂_t²/σ⁴ = (1 + 2/(T − 1))^t − 1
    np.testing.assert_allclose(th.replace_trace_ratio_variance(g, d=1, T=100, variance="unbiased"), (1 + 2 / 99) ** (g + 1) - 1)
    # unbiased replace: the mean error grows linearly, dσ²(1/T + g/T0)
    np.testing.assert_allclose(th.replace_mean_sq_error(g, d=2, T=10, T0=5, variance="unbiased"), 2 * (1 / 10 + g / 5))
    # E log det of one Wishart(n, I_1) sample / n: ψ(n/2) + log(2/n); E det: Π (n − i)/D
    assert th.replace_log_det_ratio(0, d=1, T=11) == pytest.approx(float(np.log(2 / 11) + special.digamma(5)))
    assert th.replace_det_ratio(0, d=3, T=10) == pytest.approx(9 * 8 * 7 / 1000)
    assert th.replace_det_ratio(3, d=5, T=10, T0=4) == 0.0  # T0 − 1 < d: singular
    assert th.replace_log_det_ratio(3, d=5, T=10, T0=4) == -np.inf
    assert np.isnan(th.replace_kl(1, d=5, T=100, T0=7))  # T0 − 1 ≤ d + 1: E tr Σ̂⁻¹ = ∞
    # NLL = KL + entropy
    assert th.replace_nll(4, d=3, T=50, sigma=2.0) == pytest.approx(th.replace_kl(4, d=3, T=50) + th.gaussian_entropy(3, 2.0))


def test_two_derivations_of_accumulate_agree():
    """Martingale + Chan (closed form) vs the pairwise second-moment recursion with every row."""
    G = 60
    g = np.arange(G + 1)
    for T, T0, variance in [(10, 10, "mle"), (7, 3, "unbiased"), (30, 50, "mle")]:
        everything = th.accumulate_subsample_moments(G, d=3, T=T, sigma=1.5, T0=T0, budget=10**9, variance=variance)
        np.testing.assert_allclose(everything.mean_sq_error, th.accumulate_mean_sq_error(g, d=3, T=T, sigma=1.5, T0=T0, variance=variance), rtol=1e-10)
        np.testing.assert_allclose(everything.trace_ratio, th.accumulate_trace_ratio(g, T=T, T0=T0, variance=variance), rtol=1e-10)
    # the Gamma-function closed form of the trace ratio equals the plain product
    T, T0 = 9, 4
    N = T + np.arange(1, 41) * T0
    for variance, D in [("mle", N), ("unbiased", N - 1)]:
        product = (T - 1) / (T if variance == "mle" else T - 1) * np.concatenate([[1], np.cumprod(1 - T0 / (N * D))])
        np.testing.assert_allclose(th.accumulate_trace_ratio(np.arange(41), T=T, T0=T0, variance=variance), product, rtol=1e-12)


def test_general_mixture_recursion_reduces_to_the_special_cases():
    G, g = 30, np.arange(31)
    every = th.weighted_moments(G, d=2, T=9, T0=5, real=1.0, decay=1.0, variance="unbiased")
    np.testing.assert_allclose(every.mean_sq_error, th.accumulate_mean_sq_error(g, d=2, T=9, T0=5, variance="unbiased"), rtol=1e-10)
    np.testing.assert_allclose(every.trace_ratio, th.accumulate_trace_ratio(g, T=9, T0=5, variance="unbiased"), rtol=1e-10)
    newest = th.weighted_moments(G, d=2, T=9, T0=5, real=0.0, decay=0.0)
    np.testing.assert_allclose(newest.mean_sq_error, th.replace_mean_sq_error(g, d=2, T=9, T0=5), rtol=1e-10)
    np.testing.assert_allclose(newest.trace_ratio, th.replace_trace_ratio(g, T=9, T0=5), rtol=1e-10)
    # real-fraction with fraction f and budget b = uniform draws from two groups; f = 1: real rows only
    only_real = th.real_fraction_moments(G, d=1, T=20, fraction=1.0, budget=12)
    np.testing.assert_allclose(only_real.mean_sq_error, 1 / 12, rtol=1e-10)  # 12 of 20 i.i.d. rows are i.i.d.
    np.testing.assert_allclose(only_real.trace_ratio, 11 / 12, rtol=1e-10)
    with pytest.raises(ValueError, match="at most 2000"):
        th.weighted_moments(2001, d=1, T=10)


def test_accumulate_plateau_is_dey_donoho_local_limit():
    g = np.arange(100)
    basel = np.cumsum(1 / np.arange(1, 101) ** 2)  # Σ_{k ≤ g+1} 1/k²
    T = 10**7
    np.testing.assert_allclose(th.accumulate_mean_sq_error(g, d=1, T=T) * T, basel, rtol=1e-6)
    # finite T: bounded by π²/6 · dσ²/T (the covariance shrinks a little), and close to it
    finite = th.accumulate_mean_sq_error(g, d=4, T=100)
    assert np.all(finite <= np.pi**2 / 6 * 4 / 100) and finite[-1] > 0.98 * basel[-1] * 4 / 100


@pytest.mark.parametrize("variance", ["mle", "unbiased"])
def test_mle_conserves_the_second_moment(variance):
    """With the MLE, E‖μ̂_g − μ‖² + E tr Σ̂_g = dσ² under every workflow (the fit's second moment
    about μ is the training rows', and sampling preserves it in expectation)."""
    G, d, T, s = 40, 3, 10, 1.3
    g = np.arange(G + 1)
    curves = [
        (th.replace_mean_sq_error(g, d, T, s, variance=variance), th.replace_trace_ratio(g, T, variance=variance)),
        (th.accumulate_mean_sq_error(g, d, T, s, variance=variance), th.accumulate_trace_ratio(g, T, variance=variance)),
        th.accumulate_subsample_moments(G, d, T, s, budget=7, variance=variance),
        th.growing_moments(G, d, T, s, T0=4, variance=variance),
    ]
    for error, ratio in curves:
        total = error + d * s**2 * ratio
        if variance == "mle":
            np.testing.assert_allclose(total, d * s**2, rtol=1e-12)
        else:
            assert np.all(total >= d * s**2 - 1e-12)  # the unbiased fit inflates it


def test_published_numbers_fit_generation_index_minus_one():
    """Spec §2 (d = 1, σ² = 1, 100 seeds): the paper's generation t is synthloop's g = t − 1."""
    paper = np.array([1, 10, 50, 100])
    published = {
        ("replace", 10): [0.108, 0.541, 0.941, 0.926],
        ("replace", 100): [0.0087, 0.094, 0.339, 0.584],
        ("accumulate", 10): [0.101, 0.145, 0.160, 0.158],
        ("accumulate", 100): [0.0089, 0.0151, 0.0155, 0.0160],
    }
    for (workflow, T), values in published.items():
        f = th.replace_mean_sq_error if workflow == "replace" else th.accumulate_mean_sq_error
        predicted = f(paper - 1, d=1, T=T)
        se = np.sqrt(2) * predicted / 10  # a squared Gaussian: sd ≥ √2 × mean; 100 seeds
        assert np.all(np.abs(values - predicted) < 3 * se), (workflow, T, predicted)
    trace = th.replace_trace_ratio(paper - 1, T=10)
    se = np.sqrt(th.replace_trace_ratio_variance(paper - 1, d=1, T=10)) / 10
    assert np.all(np.abs([0.964, 0.301, 0.003, 0.000] - trace) < 3 * se + 1e-3)
    # read as g = t instead, generation 1's trace ratio would be 0.81, 3.7 standard errors off
    assert abs(0.964 - th.replace_trace_ratio(1, T=10)) > 3 * se[0]


# ----------------------------------------------------------------------------- simulation vs theory


def test_replace_matches_theory(mle_run):
    metrics = ["mean_sq_error", "trace_ratio", "log_det_ratio", "det_ratio"]
    for metric in metrics:
        assert_matches(mle_run, "replace", metric, 13 * len(metrics))


def test_kl_and_nll_match_theory():
    run = synthloop.run(gaussian(**{"task.T": 100, "task.sigma": 0.5, "generations": 10, "replicates": 1000, "workflows": ["replace"]}))
    for metric in ("kl", "nll"):
        assert_matches(run, "replace", metric, 22)


@pytest.mark.parametrize("workflow", OTHER_WORKFLOWS)
def test_other_workflows_match_theory(mle_run, workflow):
    for metric in ("mean_sq_error", "trace_ratio"):
        assert_matches(mle_run, workflow, metric, 13 * 2 * len(OTHER_WORKFLOWS))


@pytest.mark.parametrize("workflow", ["replace", "accumulate", "accumulate-subsample"])
def test_unbiased_and_different_synthetic_size_match_theory(unbiased_run, workflow):
    for metric in ("mean_sq_error", "trace_ratio"):
        assert_matches(unbiased_run, workflow, metric, 13 * 2 * 3)


def test_shumailov_variance_of_the_unbiased_variance(unbiased_run):
    """Var of σ̂²/σ² under replace vs the exact formula (T0 ≠ T), with the sample variance's SE."""
    _, _, values = mean_and_sem(unbiased_run, "replace", "trace_ratio")  # (G + 1, R)
    g = np.arange(values.shape[0])
    predicted = th.replace_trace_ratio_variance(g, d=1, T=12, T0=6, variance="unbiased")
    centered = values - values.mean(axis=1, keepdims=True)
    var = (centered**2).mean(axis=1)
    se = np.sqrt(((centered**2 - var[:, None]) ** 2).mean(axis=1) / values.shape[1])
    # Later the values (products of g + 1 scaled χ²) are so heavy-tailed that the sample's own
    # fourth moment underestimates the SE of their variance: over 8 seeds × 2000 replicates the
    # spread of the g = 5 estimate was 3.5× the SE one sample reports.
    early = g <= 4
    assert np.all(np.abs(var - predicted)[early] < z_for(5) * se[early]), (var, predicted)


def test_accumulate_stays_bounded_while_replace_collapses(mle_run):
    mean, sem, _ = mean_and_sem(mle_run, "accumulate", "mean_sq_error")
    z = z_for(len(mean))
    bound = np.pi**2 / 6 * 2 / 20  # π²/6 · dσ²/T
    assert np.all(mean < bound + z * sem)
    replace, _, _ = mean_and_sem(mle_run, "replace", "mean_sq_error")
    assert replace[-1] > 4 * mean[-1]
    ratio, _, _ = mean_and_sem(mle_run, "replace", "trace_ratio")
    kept, _, _ = mean_and_sem(mle_run, "accumulate", "trace_ratio")
    assert ratio[-1] < 0.6 and kept[-1] > 0.9


def test_singular_fits_when_T_at_most_d():
    """T ≤ d: every sample stays in the real data's affine hull; metrics are those of a singular fit."""
    run = synthloop.run(gaussian(**{"task.d": 6, "task.T": 5, "generations": 8, "replicates": 1500}))
    for workflow in ("replace", "accumulate", "accumulate-subsample"):
        for metric in ("mean_sq_error", "trace_ratio"):
            assert_matches(run, workflow, metric, 9 * 6)
        values = run.metrics[run.metrics["workflow"] == workflow]
        assert np.all(values[values["metric"] == "kl"]["value"] == np.inf)
        assert np.all(values[values["metric"] == "nll"]["value"] == np.inf)
        assert np.all(values[values["metric"] == "det_ratio"]["value"] == 0)
    assert run.theory[run.theory["metric"] == "kl"].empty


# ----------------------------------------------------------------------------- statistics vs rows


def _pool_after(task, generations, rngs, fit_rows=False):
    """Grow a pool by accumulating, fitting from statistics; return it and the models."""
    real = task.sample_real(rngs)
    pool = Pool([Source(0, real, task.real_size, task.statistics(real))])
    models = [task.fit(TrainingSet(pool, Mixture(weights=np.ones(1))), rngs)]
    for g in range(1, generations + 1):
        n = task.synthetic_size
        data = task.synthesize(models[-1], None, n, rngs)
        pool.add(Source(g, data, n, task.statistics(data)))
        models.append(task.fit(TrainingSet(pool, Mixture(weights=np.ones(g + 1))), rngs))
    return pool, models


@pytest.mark.parametrize("d, T, T0", [(3, 12, 12), (4, 20, 3), (6, 4, 4)])
def test_statistics_fit_equals_a_fit_on_the_concatenated_rows(d, T, T0):
    task = GaussianTask(GaussianConfig(d=d, T=T, T0=T0))
    rngs = replicate_generators(3, 4, "rows")
    pool, models = _pool_after(task, 6, rngs)
    real = pool.real.data
    rows = real.to_original(np.concatenate([s.data.x for s in pool.sources], axis=1))  # (R, N, d)
    model = models[-1]
    location = real.to_original(model.mean)
    covariance = model.covariance
    if real.basis is not None:  # T ≤ d: back from the working coordinates, Q Σ̂ Qᵀ
        covariance = np.matmul(np.matmul(real.basis, covariance), real.basis.transpose(0, 2, 1))
    for r in range(4):
        np.testing.assert_allclose(location[r], rows[r].mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(covariance[r], np.cov(rows[r], rowvar=False, bias=True), atol=1e-12)
    # every materialized source has exactly the statistics it was drawn with
    for source in pool.sources[1:]:
        x, s = source.data.x, source.data.stats
        np.testing.assert_allclose(x.mean(axis=1), s.mean, atol=1e-12)
        xc = x - x.mean(axis=1, keepdims=True)
        np.testing.assert_allclose(np.matmul(xc.transpose(0, 2, 1), xc), s.scatter, atol=1e-10)
    # a row-drawn training set: the fit equals the fit of the drawn rows
    flat = np.stack([np.sort(rng.choice(int(pool.sizes.sum()), 9, replace=False)) for rng in rngs])
    drawn = task.fit(TrainingSet(pool, Mixture(rows=flat)), rngs)
    working = np.concatenate([s.data.x for s in pool.sources], axis=1)
    for r in range(4):
        chosen = working[r, flat[r]]
        np.testing.assert_allclose(drawn.mean[r], chosen.mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(drawn.covariance[r], np.atleast_2d(np.cov(chosen, rowvar=False, bias=True)), atol=1e-12)


@pytest.mark.parametrize("d", [3, 60])  # batched numpy and per-replicate LAPACK factor updates
def test_accumulate_folds_a_source_drawn_from_the_total_in_whitened_coordinates(d):
    """The running total's update through the model's whitened coordinates equals Chan's update
    with the source's own statistics, which stay drawable (the same draws) afterwards."""
    task = GaussianTask(GaussianConfig(d=d, T=d + 8))
    rngs = replicate_generators(4, 3, "fold")
    pool, models = _pool_after(task, 2, rngs)
    total = pool.total
    data = task.synthesize(models[-1], None, task.synthetic_size, rngs)
    twin = pickle.loads(pickle.dumps(data))
    folded = total + data
    assert folded.lower and folded._scatter is None  # the fast path: a Cholesky factor, no scatter
    generic = total + twin.stats  # the source's statistics, then Chan's update
    np.testing.assert_allclose(folded.mean, generic.mean, rtol=0, atol=1e-13)
    scale = np.abs(generic.scatter).max()
    np.testing.assert_allclose(folded.scatter, generic.scatter, rtol=0, atol=1e-13 * scale)
    np.testing.assert_array_equal(folded.rank, generic.rank)
    np.testing.assert_array_equal(data.stats.scatter, twin.stats.scatter)  # drawn later, same draws
    # statistics the model was not fit on (here: twice the total) take the generic update
    other = task.synthesize(models[-1], None, task.synthetic_size, rngs)
    assert other.fold_into(total * 2.0) is None and other.fold_into(total) is not None


def test_weighted_mixture_of_statistics_equals_weighted_rows():
    task = GaussianTask(GaussianConfig(d=3, T=15))
    rngs = replicate_generators(5, 3, "w")
    pool, _ = _pool_after(task, 3, rngs)
    weights = np.array([2.0, 0.0, 0.5, 1.0])
    model = task.fit(TrainingSet(pool, Mixture(weights=weights)), rngs)
    for r in range(3):
        x = np.concatenate([s.data.x[r] for s in pool.sources])
        w = np.repeat(weights, pool.sizes)
        mean = w @ x / w.sum()
        np.testing.assert_allclose(model.mean[r], mean, atol=1e-12)
        np.testing.assert_allclose(model.covariance[r], ((x - mean).T * w) @ (x - mean) / w.sum(), atol=1e-12)


@pytest.mark.parametrize("n, k", [(6, 3), (3, 4)])  # Bartlett + conditional rows; fewer rows than the rank
def test_materialized_rows_are_iid_draws_from_the_model(n, k):
    """Rows drawn via (statistics, seeds) are i.i.d. N(μ̂, Σ̂): check row 0 and the pairs across replicates."""
    R = 4000
    task = GaussianTask(GaussianConfig(d=k, T=max(n, k + 1)))
    A = np.array([[2.0, 0.3, 0, 0], [0.3, 1.0, 0.2, 0], [0, 0.2, 0.5, 0], [0, 0, 0, 1.5]])[:k, :k]
    model_factor = np.broadcast_to(np.linalg.cholesky(A), (R, k, k)).copy()
    mean = np.broadcast_to(np.arange(1.0, k + 1), (R, k)).copy()
    data = task.synthesize(GaussianModel(mean, model_factor, np.full(R, k), True), None, n, replicate_generators(9, R, "iid"))
    x = data.x  # (R, n, k)
    z = np.linalg.solve(np.linalg.cholesky(A), (x - mean[:, None, :]).transpose(0, 2, 1)).transpose(0, 2, 1)  # whitened
    checks = 2 * (k + k * (k + 1) // 2) + 2 * k
    for i in (0, n - 1):
        zi = z[:, i]  # one row per replicate: should be N(0, I)
        assert np.all(np.abs(zi.mean(axis=0)) < z_for(checks) / np.sqrt(R))
        cov = np.cov(zi, rowvar=False)
        assert np.all(np.abs(cov - np.eye(k)) < z_for(checks) * np.sqrt((1 + np.eye(k)) / R)), cov
        for j in range(k):
            assert stats.kstest(zi[:, j], "norm").pvalue > 1e-3 / checks
    # two different rows are independent
    cross = (z[:, 0, :, None] * z[:, 1, None, :]).mean(axis=0)
    assert np.all(np.abs(cross) < z_for(k * k) / np.sqrt(R))


def test_pickled_source_rebuilds_identical_rows():
    task = GaussianTask(GaussianConfig(d=3, T=10))
    pool, _ = _pool_after(task, 2, replicate_generators(1, 3, "p"))
    for source in pool.sources[1:]:
        rows = source.data.x.copy()
        restored = pickle.loads(pickle.dumps(source.data))
        assert restored.rows is None
        np.testing.assert_array_equal(restored.x, rows)


def test_source_read_rows_first_pickles_and_rebuilds_identically():
    """A source whose rows are read first (row-drawing workflows) draws them directly; its
    statistics then come from the rows, and a pickle rebuilds both bit for bit."""
    task = GaussianTask(GaussianConfig(d=3, T=10))
    rngs = replicate_generators(2, 3, "r")
    pool, models = _pool_after(task, 1, rngs)
    data = task.synthesize(models[-1], None, 7, rngs)
    rows = data.x.copy()
    assert data.drawn == "rows"
    restored = pickle.loads(pickle.dumps(data))
    assert restored.rows is None and restored._stats is None
    np.testing.assert_array_equal(restored.x, rows)
    np.testing.assert_array_equal(restored.stats.mean, rows.mean(axis=1))
    np.testing.assert_allclose(restored.stats.scatter, data.stats.scatter, rtol=0, atol=0)


def test_box_muller_draws_are_standard_normal():
    """Several blocks and an odd size: the draws pass a KS test against N(0, 1), the cosine and sine
    halves of a block are uncorrelated, and the same stream gives the same draws."""
    out = np.empty(2 * 2**15 * 3 + 7, np.float32)
    z = box_muller_float32(np.random.default_rng(5), out)
    assert z is out and np.all(np.isfinite(z))
    assert stats.kstest(z, "norm").pvalue > 1e-4
    half = 2**15
    assert abs(np.corrcoef(z[:half], z[half : 2 * half])[0, 1]) < 5 / np.sqrt(half)
    np.testing.assert_array_equal(box_muller_float32(np.random.default_rng(5), np.empty_like(out)), z)


@pytest.mark.parametrize("k", [5, 50])  # exact batched condition numbers; LAPACK dtrcon estimates
def test_single_precision_guard(k):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 40 * k, k))
    well = np.linalg.cholesky(np.matmul(x.transpose(0, 2, 1), x) / (40 * k))  # (3, k, k), condition ~1.5
    assert single_precision_suffices(well)
    ill = well.copy()
    ill[1, k - 1, k - 1] = 1e-9  # condition ~1e9: float32 rounding would swamp the smallest direction
    assert not single_precision_suffices(ill)
    assert not single_precision_suffices(well * 1e-35)  # below float32's normal range
    bad = well.copy()
    bad[2, 0, 0] = np.nan
    assert not single_precision_suffices(bad)


def test_rows_drawn_first_keep_float32_deviations_from_the_mean():
    """Rows read first keep ``C z`` in float32 and their model mean apart, so float32 rounds the spread
    only: with a mean of 1e9 and unit spread (which float32 rows would lose entirely) the rows'
    covariance is still the model's, within sampling error."""
    R, n, k = 4, 4000, 3
    mean = np.full((R, k), 1e9)
    model = GaussianModel(mean, np.broadcast_to(np.eye(k), (R, k, k)).copy(), np.full(R, k), True, n, n)
    task = GaussianTask(GaussianConfig(d=k, T=n))
    data = task.synthesize(model, None, n, replicate_generators(1, R, "rows"))
    kept = data.kept_rows()
    assert kept.dtype == np.float32 and data.row_center is mean
    x = data.x
    assert x.dtype == np.float64
    np.testing.assert_allclose(x - mean[:, None, :], kept, rtol=0, atol=1e-6)  # float64 spacing at 1e9
    covariance = np.matmul((x - x.mean(axis=1, keepdims=True)).transpose(0, 2, 1), x - x.mean(axis=1, keepdims=True)) / n
    np.testing.assert_allclose(covariance, np.broadcast_to(np.eye(k), (R, k, k)), atol=5 * np.sqrt(2 / n))
    # an ill-conditioned model keeps float64 rows
    model.factor[:, k - 1, k - 1] = 1e-9
    data = task.synthesize(model, None, n, replicate_generators(1, R, "rows"))
    assert data.kept_rows().dtype == np.float64


def test_subsample_run_resumes_to_identical_numbers(tmp_path):
    experiment = gaussian(**{"generations": 6, "replicates": 20, "workflows": ["accumulate-subsample", "replace", "accumulate"]})
    full = synthloop.run(experiment).metrics
    out = tmp_path / "run"
    synthloop.run(experiment.with_overrides({"generations": 3}), out=out)
    resumed = synthloop.run(experiment, out=out).metrics
    np.testing.assert_array_equal(resumed["value"].to_numpy(), full["value"].to_numpy())


# ----------------------------------------------------------------------------- closed-form NLL


def test_exact_nll_equals_monte_carlo_nll():
    """The closed-form expected NLL equals the mean −log p̂(x) over fresh real test points."""
    task = GaussianTask(GaussianConfig(d=3, T=25, sigma=0.7))
    rngs = replicate_generators(2, 5, "nll")
    pool, models = _pool_after(task, 4, rngs)
    model = models[-1]
    scores = task.evaluate(model, pool.real.data)
    test = 0.7 * np.random.default_rng(0).standard_normal((200_000, 3))
    for r in range(5):
        logp = stats.multivariate_normal(model.mean[r], model.covariance[r]).logpdf(test)
        mc, se = -logp.mean(), logp.std() / np.sqrt(len(test))
        assert abs(scores["nll"][r] - mc) < 4 * se, (scores["nll"][r], mc, se)
        # and KL = NLL − entropy of the truth
        assert scores["kl"][r] == pytest.approx(scores["nll"][r] - th.gaussian_entropy(3, 0.7))
    cov = model.covariance
    np.testing.assert_allclose(scores["trace_ratio"], np.trace(cov, axis1=1, axis2=2) / (3 * 0.49))
    np.testing.assert_allclose(scores["det_ratio"], np.linalg.det(cov) / 0.49**3)


# ----------------------------------------------------------------------------- numerics


def test_factor_helpers():
    rng = np.random.default_rng(0)
    v = helmert(7)
    np.testing.assert_allclose(v.T @ v, np.eye(6), atol=1e-14)
    np.testing.assert_allclose(v.sum(axis=0), 0, atol=1e-14)
    g = rng.standard_normal((3, 8, 3))
    singular = np.matmul(g, g.transpose(0, 2, 1))  # rank 3 in 8 dimensions
    factor, lower, rank = psd_factor(singular, 8)
    assert not lower and np.all(rank == 3)
    np.testing.assert_allclose(np.matmul(factor, factor.transpose(0, 2, 1)), singular, atol=1e-12)
    lower_tri = np.linalg.cholesky(np.eye(20) + np.einsum("rij,rkj->rik", h := rng.standard_normal((2, 20, 20)), h))
    np.testing.assert_allclose(triangular_inverse(lower_tri), np.linalg.inv(lower_tri), atol=1e-10)
    inverted = lower_tri.copy()
    assert triangular_inverse(inverted, overwrite=True) is inverted
    np.testing.assert_allclose(inverted, np.linalg.inv(lower_tri), atol=1e-10)


def test_long_replace_collapse_stays_finite():
    """Centered statistics: the variance can fall by 300 orders of magnitude without cancellation."""
    run = synthloop.run(gaussian(**{"task.d": 1, "task.T": 3, "generations": 400, "replicates": 3, "workflows": ["replace"]}))
    ratio = run.metrics[run.metrics["metric"] == "trace_ratio"]["value"].to_numpy()
    assert np.all(ratio >= 0) and np.all(np.isfinite(run.metrics[run.metrics["metric"] == "mean_sq_error"]["value"]))
    assert ratio[-3:].max() < 1e-30


# ----------------------------------------------------------------------------- config and theory coverage


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"task.sigma": -1}, r"^task.sigma must be a number > 0; got -1$"),
        ({"task.sigma": 0}, r"^task.sigma must be a number > 0; got 0$"),
        ({"task.T": 1}, r"^task.T must be an integer in \[2, 10000000\]; got 1$"),
        ({"task.T0": 1}, r"^task.T0 must be an integer in \[2, 10000000\]; got 1$"),
        ({"task.d": 0}, r"^task.d must be an integer in \[1, 10000\]; got 0$"),
        ({"task.variance": "biased"}, r"^task.variance must be one of 'mle' or 'unbiased'; got 'biased'$"),
        ({"task.covariance": 2}, r"^task.covariance is not a known key; known keys: T, T0, d, name, sigma, variance$"),
        ({"report.metric": "excess_risk"}, r"^report.metric must be one of \['det_ratio', 'kl', 'log_det_ratio', 'mean_sq_error', 'nll', 'trace_ratio'\]"),
    ],
)
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        gaussian(**overrides)


def test_theory_notes_for_workflows_without_a_closed_form():
    workflows = ["replace", {"name": "weighted", "decay": 0.5, "budget": 10}]
    run = synthloop.run(gaussian(**{"generations": 2, "replicates": 5, "workflows": workflows}))
    assert "unequal weights" in run.theory_notes["weighted"]
    assert set(run.theory[run.theory["workflow"] == "replace"]["metric"]) == {"mean_sq_error", "trace_ratio", "det_ratio", "log_det_ratio", "kl", "nll"}
    assert np.all(np.isfinite(run.metrics["value"]))


@pytest.mark.parametrize(
    "workflow, weighted",
    [
        ("replace", {"name": "weighted", "real": 0.0, "decay": 0.0, "label": "replace"}),
        ("accumulate", {"name": "weighted", "real": 1.0, "decay": 1.0, "label": "accumulate"}),
        ("accumulate-subsample", {"name": "weighted", "budget": 20, "label": "accumulate-subsample"}),
    ],
)
def test_classic_workflows_are_weighted_special_cases(workflow, weighted):
    """Same numbers whether a classic workflow is named or written as Dey & Donoho weights."""
    base = gaussian(**{"task.d": 3, "generations": 5, "replicates": 6})
    classic = synthloop.run(base.with_overrides({"workflows": [workflow]})).metrics
    as_weights = synthloop.run(base.with_overrides({"workflows": [weighted]})).metrics
    pd.testing.assert_frame_equal(classic, as_weights)
