"""Iterated Gaussian KDE (Kazdan et al. 2024): density, sampler, bandwidth rules and the loop."""

import numpy as np
import pytest
from conftest import mean_and_sem, z_for
from scipy import stats

import synthloop
from synthloop.pool import Mixture, Pool, Source, TrainingSet
from synthloop.seeding import replicate_generators
from synthloop.tasks.kde import (
    KDEConfig,
    KDEData,
    KDETask,
    log_kernel_sums,
    rule_bandwidth,
)
from synthloop.validation import ConfigError


def _weighted_pool(task, rngs, shift=4.0):
    """Real rows plus a second source (the real rows shifted), so a weighted mixture is lopsided."""
    real = task.sample_real(rngs)
    pool = Pool([Source(0, real, task.real_size)])
    pool.add(Source(1, KDEData(x=real.x + shift), task.real_size))
    return real, pool


def _direct_log_density(points, centers, h, weights):
    """log Σ_i w_i N(t; c_i, h²I) / Σ w, one replicate, straight from the normal pdf."""
    dens = stats.norm.pdf(points[:, None, 0], centers[None, :, 0], h) * stats.norm.pdf(points[:, None, 1], centers[None, :, 1], h)
    return np.log(dens @ weights / weights.sum())


@pytest.mark.parametrize("bandwidth", [0.4, "scott"])
def test_weighted_density_is_the_mixture_formula(bandwidth):
    task = KDETask(KDEConfig(dataset="moons", T=40, test_size=30, bandwidth=bandwidth))
    rngs = replicate_generators(3, 3, "t")
    real, pool = _weighted_pool(task, rngs)
    model = task.fit(TrainingSet(pool, Mixture(weights=np.array([1.0, 3.0]))), rngs)
    weights = np.repeat([1.0, 3.0], 40)
    for r in range(3):
        centers = np.concatenate([real.x[r], real.x[r] + 4.0])
        expected = _direct_log_density(real.test[r], centers, model.h[r], weights)
        np.testing.assert_allclose(model.test_log_density[r], expected, rtol=1e-10, atol=1e-10)
    # The cached per-source kernel sums (fixed h) agree with a pass over every row.
    np.testing.assert_allclose(model.test_log_density, task.log_density(model, real.test), rtol=1e-10, atol=1e-10)
    nll = task.evaluate(model, real)["nll"]
    assert nll.shape == (3,) and np.all(np.isfinite(nll))


def test_sampling_reproduces_the_fitted_density():
    """Samples of a weighted KDE, scored under it, match its entropy computed by quadrature."""
    task = KDETask(KDEConfig(dataset="moons", T=30, bandwidth=0.3))
    R, n = 4, 20_000
    rngs = replicate_generators(7, R, "t")
    real, pool = _weighted_pool(task, rngs, shift=2.0)
    model = task.fit(TrainingSet(pool, Mixture(weights=np.array([1.0, 3.0]))), rngs)
    samples = task.synthesize(model, None, n, rngs).x  # (R, n, 2)
    nll = -task.log_density(model, samples)  # (R, n)
    mc, sem = nll.mean(axis=1), nll.std(axis=1, ddof=1) / np.sqrt(n)
    # Independent estimate: −∫ p̂ log p̂ on a grid fine against h (the integrand is smooth, so a
    # Riemann sum is accurate far beyond the Monte Carlo error).
    step = 0.3 / 8
    z = z_for(3 * R)
    for r in range(R):
        lo, hi = model.centers[r].min(axis=0) - 8 * 0.3, model.centers[r].max(axis=0) + 8 * 0.3
        gx, gy = np.arange(lo[0], hi[0], step), np.arange(lo[1], hi[1], step)
        grid = np.stack(np.meshgrid(gx, gy, indexing="ij"), axis=-1).reshape(1, -1, 2)
        single = type(model)(model.centers[r : r + 1], model.weights, model.h[r : r + 1], model.test_log_density[r : r + 1])
        log_p = task.log_density(single, grid)[0]
        mass = np.exp(log_p).sum() * step**2
        entropy = -(np.exp(log_p) * log_p).sum() * step**2
        assert abs(mass - 1) < 1e-6
        assert abs(mc[r] - entropy) < z * sem[r], (r, mc[r], entropy, sem[r])
        # The sampler honours the weights: mean of samples = weighted mean of the centres.
        mean = samples[r].mean(axis=0)
        expected = real.x[r].mean(axis=0) + 2.0 * 3 / 4
        spread = samples[r].std(axis=0, ddof=1) / np.sqrt(n)
        assert np.all(np.abs(mean - expected) < z * spread), (mean, expected)


@pytest.mark.parametrize("rule", ["scott", "silverman"])
@pytest.mark.parametrize("weighted", [False, True])
def test_bandwidth_rules_match_scipy(rule, weighted):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 60, 2)) * np.array([1.0, 3.0])
    weights = rng.uniform(0.5, 2.0, size=60) if weighted else None
    h = rule_bandwidth(x, rule, weights)
    for r in range(3):
        kde = stats.gaussian_kde(x[r].T, bw_method=rule, weights=weights)
        # isotropic kernel: h² = mean diagonal of scipy's kernel covariance (factor² × data covariance)
        np.testing.assert_allclose(h[r] ** 2, np.trace(kde.covariance) / 2, rtol=1e-12)
    n = 60 if weights is None else weights.sum() ** 2 / (weights**2).sum()
    factor = n ** (-1 / 6) if rule == "scott" else (n * 4 / 4) ** (-1 / 6)
    np.testing.assert_allclose(h[0] / np.sqrt(np.trace(np.cov(x[0].T, aweights=weights)) / 2), factor, rtol=1e-12)


def test_rule_bandwidth_is_recomputed_on_each_training_set():
    task = KDETask(KDEConfig(dataset="blobs", T=50, bandwidth="silverman"))
    rngs = replicate_generators(1, 2, "t")
    real = task.sample_real(rngs)
    model = task.fit(TrainingSet(Pool([Source(0, real, 50)]), Mixture(weights=np.ones(1))), rngs)
    np.testing.assert_allclose(model.h, rule_bandwidth(real.x, "silverman"))
    np.testing.assert_allclose(model.test_log_density, task.log_density(model, real.test))


def test_log_kernel_sums_blocks_and_tiny_bandwidth():
    rng = np.random.default_rng(1)
    points, centers = rng.normal(size=(3, 70, 2)), rng.normal(size=(3, 90, 2))
    h = np.array([0.5, 1.0, 0.01])  # 0.01: every exp underflows without the log-sum-exp shift
    full = log_kernel_sums(points, centers, h)
    sq = ((points[:, :, None, :] - centers[:, None, :, :]) ** 2).sum(-1)
    from scipy.special import logsumexp

    np.testing.assert_allclose(full, logsumexp(-sq / (2 * h[:, None, None] ** 2), axis=2), rtol=1e-9)
    import synthloop.tasks.kde as kde

    old, kde._BLOCK = kde._BLOCK, 500  # force blocks over replicates and points
    try:
        np.testing.assert_allclose(log_kernel_sums(points, centers, h), full, rtol=1e-12)
    finally:
        kde._BLOCK = old


def test_datasets_are_2d_and_train_test_share_a_distribution():
    for dataset in ["blobs", "moons", "circles", "swiss-roll"]:
        task = KDETask(KDEConfig(dataset=dataset, T=89))
        real = task.sample_real(replicate_generators(0, 2, "real"))
        assert real.x.shape == (2, 89, 2) and real.test.shape == (2, 500, 2)
        assert not np.allclose(real.x[0], real.x[1])  # replicates draw their own seeds
        # Same distribution: train and test means agree within a few standard errors.
        both = np.concatenate([real.x[0], real.test[0]])
        se = both.std(axis=0) * np.sqrt(1 / 89 + 1 / 500)
        assert np.all(np.abs(real.x[0].mean(axis=0) - real.test[0].mean(axis=0)) < 5 * se), dataset


@pytest.fixture(scope="module")
def kde_run():
    experiment = synthloop.Experiment().with_overrides({
        "task": {"name": "kde", "dataset": "moons"}, "generations": 15, "replicates": 60,
        "workflows": ["replace", "accumulate", "accumulate-subsample"],
    })
    return synthloop.run(experiment)


def test_replace_degrades_and_accumulate_degrades_less(kde_run):
    _, _, rep = mean_and_sem(kde_run, "replace", "nll")  # (G + 1, R)
    _, _, acc = mean_and_sem(kde_run, "accumulate", "nll")
    np.testing.assert_array_equal(rep[0], acc[0])  # same real data, same generation 0
    z = z_for(2)
    rise_rep, rise_acc = rep[-1] - rep[0], acc[-1] - acc[0]
    assert rise_rep.mean() > z * rise_rep.std(ddof=1) / np.sqrt(len(rise_rep))
    gap = rise_rep - rise_acc  # paired over replicates
    assert gap.mean() > z * gap.std(ddof=1) / np.sqrt(len(gap))
    assert rise_acc.mean() < 0.5 * rise_rep.mean()


def test_run_records_theory_note_and_lineage(kde_run):
    assert kde_run.theory.empty
    assert "no closed form" in kde_run.theory_notes["accumulate"]
    sizes = kde_run.generations.query("workflow == 'accumulate-subsample'")["synthesized"].to_numpy()
    np.testing.assert_array_equal(sizes, 89 * (np.arange(len(sizes)) > 0))


@pytest.mark.parametrize("value, message", [
    (-1, r"task\.bandwidth must be a number > 0 or one of \('scott', 'silverman'\); got -1"),
    ("wide", r"task\.bandwidth must be a number > 0 or one of"),
])
def test_bad_bandwidth_is_one_line(value, message):
    with pytest.raises(ConfigError, match=message):
        synthloop.Experiment().with_overrides({"task": {"name": "kde", "bandwidth": value}})


def test_rule_bandwidth_runs_end_to_end():
    experiment = synthloop.Experiment().with_overrides({
        "task": {"name": "kde", "dataset": "circles", "bandwidth": "scott", "T0": 40}, "generations": 4, "replicates": 5,
    })
    run = synthloop.run(experiment)
    assert np.isfinite(run.metrics["value"]).all()
    assert "scott" in experiment.build_task().describe()


def test_interrupted_run_resumes_to_identical_numbers(tmp_path):
    """Checkpoints hold what the KDE needs (its rows under replace, the cached kernel sums)."""
    experiment = synthloop.Experiment().with_overrides({"task": {"name": "kde", "dataset": "blobs", "T": 30}, "generations": 6, "replicates": 4})
    reference = synthloop.run(experiment).metrics

    def stop(workflow, record):
        if workflow == "accumulate" and record.generation == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synthloop.run(experiment, out=tmp_path / "run", on_generation=stop)
    resumed = synthloop.run(experiment, out=tmp_path / "run")
    np.testing.assert_array_equal(resumed.metrics["value"].to_numpy(), reference["value"].to_numpy())
