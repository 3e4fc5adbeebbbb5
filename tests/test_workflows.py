"""Workflows as mixtures: equivalences, lineage, the Dey & Donoho recursion, the pool."""

import numpy as np
import pandas as pd
import pytest
from conftest import mean_and_sem, regression, theory_values, z_for

import synthloop
from synthloop import ConfigError
from synthloop.pool import Mixture, Pool, Source, TrainingSet
from synthloop.theory.workflows import (
    mixture_error_coefficients,
    mixture_risk,
    mixture_risk_ratio,
)


def test_mixture_recursion_known_values():
    ratio = mixture_risk_ratio(np.tril(np.ones((100, 100))))
    assert ratio[9] == pytest.approx(1.5498, abs=1e-4)
    assert ratio[99] == pytest.approx(1.6350, abs=1e-4)
    np.testing.assert_allclose(mixture_risk_ratio(np.eye(6)), np.arange(1, 7))
    # Unnormalized rows are shares: scaling a row changes nothing.
    np.testing.assert_allclose(mixture_error_coefficients([[2, 0], [3, 3]]), [[1, 0], [1, 0.5]])
    with pytest.raises(ValueError, match="lower-triangular"):
        mixture_risk([[1, 1], [0, 1]], 1.0)
    with pytest.raises(ValueError, match="positive weight"):
        mixture_risk([[1, 0], [0, 0]], 1.0)


@pytest.mark.parametrize("design", ["fixed", "random"])
@pytest.mark.parametrize(
    "workflow, weighted",
    [
        ("replace", {"name": "weighted", "real": 0.0, "decay": 0.0, "label": "replace"}),
        ("accumulate", {"name": "weighted", "real": 1.0, "decay": 1.0, "label": "accumulate"}),
        ("accumulate-subsample", {"name": "weighted", "budget": 30, "label": "accumulate-subsample"}),
    ],
)
def test_classic_workflows_are_weighted_special_cases(design, workflow, weighted):
    base = regression(**{"task.design": design, "generations": 5, "replicates": 6})
    classic = synthloop.run(base.with_overrides({"workflows": [workflow]})).metrics
    as_weights = synthloop.run(base.with_overrides({"workflows": [weighted]})).metrics
    pd.testing.assert_frame_equal(classic, as_weights)


def test_weighted_decay_matches_mixture_theory():
    workflow = {"name": "weighted", "real": 2.0, "decay": 0.5}
    run = synthloop.run(regression(**{"generations": 12, "replicates": 1500, "workflows": [workflow]}))
    mean, sem, _ = mean_and_sem(run, "weighted")
    predicted = theory_values(run, "weighted")
    assert len(predicted) == 13
    assert np.all(np.abs(mean - predicted) < z_for(len(mean)) * sem)
    # Heavier real weight and fading old data: far below replace's (g+1)·E_0.
    assert predicted[-1] < 0.3 * 13 * predicted[0]


def test_real_fraction_and_cardinality_lineage():
    experiment = regression(**{
        "generations": 6, "replicates": 5,
        "workflows": [{"name": "real-fraction", "fraction": 0.25, "budget": 20}, {"name": "cardinality", "real": 10}],
    })
    run = synthloop.run(experiment)
    lineage = run.generations.set_index(["workflow", "generation"])
    fraction = lineage.loc["real-fraction"]
    np.testing.assert_allclose(fraction["train_rows"], 20)
    np.testing.assert_allclose(fraction.loc[1:, "real_fraction"], 0.25)
    cardinality = lineage.loc["cardinality"]
    assert [row[0] for row in cardinality["lineage"]] == [10.0] * 7
    np.testing.assert_allclose(cardinality["train_rows"], 10 + 30 * np.arange(7))
    assert np.isfinite(run.metrics["value"]).all()


@pytest.mark.parametrize(
    "workflow, message",
    [
        ({"name": "real-fraction", "fraction": 0.2, "budget": 100}, r"workflows\[0\].budget leaves 80 synthetic rows per training set, more than the 50"),
        ({"name": "real-fraction", "fraction": 1.5}, r"workflows\[0\].fraction must be a number in \[0, 1\]; got 1.5"),
        ({"name": "cardinality", "real": 101}, r"workflows\[0\].real must be an integer in \[1, 100\]"),
        ({"name": "weighted", "decay": -1}, r"workflows\[0\].decay must be a number ≥ 0; got -1"),
        ({"name": "weighted", "budget": 500}, r"workflows\[0\].budget must be an integer in \[1, 100\]"),
    ],
)
def test_workflow_size_errors(workflow, message):
    with pytest.raises(ConfigError, match=message):
        synthloop.Experiment.from_dict({"task": {"design": "random", "T0": 50}, "workflows": [workflow]})


def _pool(sizes):
    sources = []
    for g, n in enumerate(sizes):
        data = type("Data", (), {})()
        data.v = np.arange(n)[None, :] + 100 * g + np.zeros((2, 1))  # (R=2, n)
        sources.append(Source(g, data, n, np.array([float(n)])))
    return Pool(sources)


def test_pool_statistics_fast_paths_and_rows():
    pool = _pool([3, 2, 2])
    np.testing.assert_allclose(pool.statistics(np.array([1.0, 1.0, 1.0])), [7.0])
    np.testing.assert_allclose(pool.statistics(np.array([0.0, 0.0, 2.0])), [4.0])
    np.testing.assert_allclose(pool.statistics(np.array([1.0, 0.5, 0.0])), [4.0])
    rows = np.array([[0, 4, 6], [1, 2, 3]])
    training = TrainingSet(pool, Mixture(rows=rows))
    np.testing.assert_array_equal(training.rows("v"), [[0, 101, 201], [1, 2, 100]])
    np.testing.assert_array_equal(training.source_index(), [[0, 1, 2], [0, 0, 1]])
    np.testing.assert_array_equal(training.local_rows(), [[0, 1, 1], [1, 2, 0]])
    np.testing.assert_allclose(training.composition(), [1.5, 1.0, 0.5])
    weighted = TrainingSet(pool, Mixture(weights=np.array([1.0, 0.0, 2.0])))
    np.testing.assert_array_equal(weighted.rows("v")[0], [0, 1, 2, 200, 201])
    np.testing.assert_array_equal(weighted.row_weights(), [1, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="exactly one of weights and rows"):
        Mixture()


def test_pool_forgets_only_what_no_mixture_reads():
    pool = _pool([3, 2, 2])
    pool.forget(keep_history=True, keep_rows=False)  # statistics suffice: rows go, statistics stay
    assert pool.sources[0].data is not None and pool.sources[1].data is None
    np.testing.assert_allclose(pool.statistics(np.ones(3)), [7.0])
    with pytest.raises(ValueError, match="released"):
        pool.stacked("v")
    pool = _pool([3, 2, 2])
    pool.forget(keep_history=False, keep_rows=True)
    assert pool.sources[2].statistics is None and pool.sources[0].data is not None
    np.testing.assert_array_equal(pool.sizes, [3, 2, 2])  # provenance stays


def test_accumulate_keeps_only_the_running_total():
    pool = _pool([3, 2, 2])
    pool.forget(keep_history=True, keep_rows=False, keep_source_statistics=False)
    assert all(s.statistics is None for s in pool.sources[1:])
    assert pool.sources[0].statistics is not None
    np.testing.assert_allclose(pool.statistics(np.ones(3)), [7.0])
    with pytest.raises(ValueError, match="source 1 has no statistics"):
        pool.statistics(np.array([1.0, 0.5, 0.0]))
