"""Simulation vs theory for iterated regression, with tolerances from the replicate count."""

import numpy as np
import pytest
from conftest import mean_and_sem, regression, theory_values, z_for

import synthloop


@pytest.fixture(scope="module")
def fixed_run():
    experiment = regression(**{"generations": 20, "replicates": 1000})
    return synthloop.run(experiment)


@pytest.fixture(scope="module")
def random_run():
    experiment = regression(**{"task.design": "random", "generations": 12, "replicates": 1000, "workflows": ["replace", "accumulate", "growing"]})
    return synthloop.run(experiment)


@pytest.mark.parametrize("run_name", ["fixed_run", "random_run"])
def test_replace_matches_linear_growth(run_name, request):
    run = request.getfixturevalue(run_name)
    mean, sem, values = mean_and_sem(run, "replace")
    predicted = theory_values(run, "replace")
    d, T = 5, 30
    np.testing.assert_allclose(predicted, d / (T - d - 1) * np.arange(1, len(mean) + 1))
    z = z_for(len(mean))
    assert np.all(np.abs(mean - predicted) < z * sem), (mean, predicted, sem)
    # Slope over generations: fit one slope per replicate, compare their mean with σ²d/(T−d−1).
    g = np.arange(len(mean))
    slopes = np.polyfit(g, values, 1)[0]  # (R,)
    slope_sem = slopes.std(ddof=1) / np.sqrt(len(slopes))
    assert abs(slopes.mean() - d / (T - d - 1)) < z_for(1) * slope_sem


def test_accumulate_fixed_design_exact_and_bounded(fixed_run):
    mean, sem, _ = mean_and_sem(fixed_run, "accumulate")
    exact = theory_values(fixed_run, "accumulate")
    bound = theory_values(fixed_run, "accumulate", kind="bound")
    z = z_for(len(mean))
    assert np.all(np.abs(mean - exact) < z * sem)
    assert np.all(mean < bound + z * sem)
    np.testing.assert_allclose(bound, np.pi**2 / 6 * 5 / 24)
    # Flattens: the last five generations move less than the sampling error, while replace grows.
    late = mean[-5:]
    assert late.max() - late.min() < 2 * z * sem[-5:].max()
    replace, _, _ = mean_and_sem(fixed_run, "replace")
    assert replace[-1] > 5 * mean[-1]


def test_subsample_between_accumulate_and_replace(fixed_run):
    acc, acc_sem, acc_values = mean_and_sem(fixed_run, "accumulate")
    sub, sub_sem, sub_values = mean_and_sem(fixed_run, "accumulate-subsample")
    rep, rep_sem, _ = mean_and_sem(fixed_run, "replace")
    z = z_for(3)
    # Same replicates start from the same real data: compare paired differences late in the run.
    diff = sub_values[-5:].mean(axis=0) - acc_values[-5:].mean(axis=0)
    assert diff.mean() > z * diff.std(ddof=1) / np.sqrt(len(diff))
    assert rep[-1] - sub[-1] > z * np.hypot(rep_sem[-1], sub_sem[-1])
    # It settles: its late values do not keep growing like replace.
    assert abs(sub[-1] - sub[-6]) < z * np.hypot(sub_sem[-1], sub_sem[-6]) * 2


def test_accumulate_random_design_below_bound_and_matches_theory(random_run):
    mean, sem, _ = mean_and_sem(random_run, "accumulate")
    exact = theory_values(random_run, "accumulate")
    bound = theory_values(random_run, "accumulate", kind="bound")
    z = z_for(len(mean))
    assert np.all(mean < bound + z * sem)
    assert np.all(np.abs(mean - exact) < z * sem)


def test_growing_matches_harmonic_theory(random_run):
    mean, sem, _ = mean_and_sem(random_run, "growing")
    exact = theory_values(random_run, "growing")
    assert np.all(np.abs(mean - exact) < z_for(len(mean)) * sem)
    sizes = random_run.generations.query("workflow == 'growing'")["synthesized"].to_numpy()
    np.testing.assert_array_equal(sizes, 30 * np.arange(len(sizes)))


@pytest.mark.parametrize("design", ["fixed", "random"])
def test_ridge_reduces_to_ols(design):
    experiment = regression(**{"task.design": design, "generations": 4, "replicates": 20})
    ols = synthloop.run(experiment).metrics
    ridge = synthloop.run(experiment.with_overrides({"task.ridge": 1e-12})).metrics
    np.testing.assert_allclose(ridge["value"], ols["value"], rtol=1e-6)
    clearly_ridge = synthloop.run(experiment.with_overrides({"task.ridge": 1.0})).metrics
    assert not np.allclose(clearly_ridge["value"], ols["value"], rtol=1e-3)


def test_underparametrized_min_norm_runs_without_theory():
    experiment = regression(**{"task.d": 20, "task.T": 10, "generations": 3, "replicates": 10})
    run = synthloop.run(experiment)
    assert np.isfinite(run.metrics["value"]).all()
    assert run.theory.empty
    assert "T ≤ d + 1" in run.theory_notes["replace"]


def test_fixed_design_subsample_fit_equals_pinv_on_selected_rows():
    """The counts-based fixed-design fit equals pinv on the explicitly gathered rows."""
    from synthloop.pool import Mixture, Pool, Source, TrainingSet
    from synthloop.seeding import replicate_generators
    from synthloop.tasks.regression import RegressionConfig, RegressionTask

    task = RegressionTask(RegressionConfig(d=4, T=12))
    rngs = replicate_generators(1, 3, "t")
    real = task.sample_real(rngs)
    pool = Pool([Source(0, real, 12, task.statistics(real))])
    model = task.fit(TrainingSet(pool, Mixture(weights=np.ones(1))), rngs)
    for g in (1, 2):
        data = task.synthesize(model, task.sample_inputs(real, 12, rngs), 12, rngs)
        pool.add(Source(g, data, 12, task.statistics(data)))
    rows = np.stack([np.sort(rng.choice(36, 7, replace=False)) for rng in rngs])  # fewer rows than... any d
    fitted = task.fit(TrainingSet(pool, Mixture(rows=rows)), rngs).coef_
    y_all = np.concatenate([s.data.y for s in pool.sources], axis=1)
    for r in range(3):
        x = real.x[r][rows[r] % 12]
        np.testing.assert_allclose(fitted[r], np.linalg.pinv(x) @ y_all[r, rows[r]], atol=1e-8)
