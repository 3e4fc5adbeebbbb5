"""Iterated logistic regression (Dey & Donoho 2024): Newton fit, workflows, CSV data and its errors."""

import numpy as np
import pytest
from conftest import mean_and_sem, z_for
from sklearn.linear_model import LogisticRegression

import synthloop
from synthloop.pool import Mixture, Pool, Source, TrainingSet
from synthloop.seeding import replicate_generators
from synthloop.tasks.logistic import LogisticConfig, LogisticTask, fit_logistic
from synthloop.validation import ConfigError


def test_newton_fit_matches_sklearn_unpenalized():
    rng = np.random.default_rng(0)
    n, d = 400, 4
    features = rng.normal(size=(n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-(features @ np.array([1.0, -0.5, 0.3, 0.0]) + 0.2)))).astype(float)
    x = np.concatenate([np.ones((n, 1)), features], axis=1)[None]
    model = fit_logistic(x, y[None], ridge=0.0)
    assert model.converged.all()
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(features, y)
    np.testing.assert_allclose(model.coef_[0], np.r_[reference.intercept_, reference.coef_[0]], rtol=1e-5, atol=1e-6)


def test_newton_fit_matches_sklearn_ridge_on_a_breast_cancer_replicate():
    task = LogisticTask(LogisticConfig(ridge=1e-3))
    real = task.sample_real(replicate_generators(0, 2, "real"))
    pool = Pool([Source(0, real, task.real_size, task.statistics(real))])
    model = task.fit(TrainingSet(pool, Mixture(weights=np.ones(1))), None)
    n = task.real_size
    assert n == 398 and task.n_test == 171
    reference = LogisticRegression(C=1 / (1e-3 * n), tol=1e-12, max_iter=100_000).fit(real.x[1, :, 1:], real.y[1])
    np.testing.assert_allclose(model.coef_[1], np.r_[reference.intercept_, reference.coef_[0]], rtol=1e-4, atol=1e-5)
    scores = task.evaluate(model, real)
    assert scores["test_log_loss"].shape == (2,) and np.all(scores["test_accuracy"] > 0.9)


def test_soft_label_statistics_equal_a_fit_on_the_stacked_rows():
    """Accumulate's soft-label fit equals the fit on every row of every source drawn explicitly."""
    task = LogisticTask(LogisticConfig(ridge=1e-3))
    rngs = replicate_generators(4, 3, "t")
    real = task.sample_real(rngs)
    pool = Pool([Source(0, real, task.real_size, task.statistics(real))])
    model = task.fit(TrainingSet(pool, Mixture(weights=np.ones(1))), rngs)
    for g in (1, 2):
        data = task.synthesize(model, task.sample_inputs(real, task.real_size, rngs), task.real_size, rngs)
        pool.add(Source(g, data, task.real_size, task.statistics(data)))
    weighted = task.fit(TrainingSet(pool, Mixture(weights=np.ones(3))), rngs)
    every_row = np.tile(np.arange(3 * task.real_size), (3, 1))
    drawn = task.fit(TrainingSet(pool, Mixture(rows=every_row)), rngs)
    np.testing.assert_allclose(weighted.coef_, drawn.coef_, rtol=1e-8, atol=1e-10)


def test_separable_unpenalized_fit_stays_finite():
    x = np.concatenate([np.ones((20, 1)), np.linspace(-1, 1, 20)[:, None]], axis=1)[None]
    y = (x[0, :, 1] > 0).astype(float)[None]
    model = fit_logistic(x, y, ridge=0.0, max_steps=30)
    assert np.all(np.isfinite(model.coef_)) and not model.converged[0]
    assert np.isfinite(fit_logistic(x, y, ridge=1e-4).coef_).all()


@pytest.fixture(scope="module")
def logistic_run():
    experiment = synthloop.Experiment().with_overrides({
        "task": {"name": "logistic"}, "generations": 25, "replicates": 60, "workflows": ["replace", "accumulate"],
    })
    return synthloop.run(experiment)


def test_replace_log_loss_grows_more_than_accumulate(logistic_run):
    _, _, rep = mean_and_sem(logistic_run, "replace", "test_log_loss")  # (G + 1, R)
    _, _, acc = mean_and_sem(logistic_run, "accumulate", "test_log_loss")
    np.testing.assert_array_equal(rep[0], acc[0])
    z = z_for(2)
    rise = rep[-1] - rep[0]
    assert rise.mean() > z * rise.std(ddof=1) / np.sqrt(len(rise))
    gap = (rep[-1] - rep[0]) - (acc[-1] - acc[0])  # paired over replicates
    assert gap.mean() > z * gap.std(ddof=1) / np.sqrt(len(gap))
    assert "no closed form" in logistic_run.theory_notes["replace"]


def test_subsample_and_weights_run():
    experiment = synthloop.Experiment().with_overrides({
        "task": {"name": "logistic"}, "generations": 3, "replicates": 4,
    })
    run = synthloop.run(experiment)
    assert np.isfinite(run.metrics["value"]).all()
    with pytest.raises(ConfigError, match=r"workflows\[0\].*relabels its 398 real training inputs"):
        experiment.with_overrides({"workflows": ["growing"]})


def _write_csv(path, rows=60, seed=0, label_values=("no", "yes")):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    label = np.where(a + 0.5 * b + rng.normal(size=rows) > 0, label_values[1], label_values[0])
    lines = ["a,b,outcome"] + [f"{x:.6f},{y:.6f},{c}" for x, y, c in zip(a, b, label)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _experiment(path, label="outcome"):
    return synthloop.Experiment().with_overrides({"task": {"name": "logistic", "data": str(path), "label": label}})


def test_csv_missing_label_column(tmp_path):
    path = _write_csv(tmp_path / "d.csv")
    with pytest.raises(ConfigError, match=r"^task\.data: .*d\.csv: no label column 'target' \(task\.label\); columns: a, b, outcome$"):
        _experiment(path, label="target")


def test_csv_non_numeric_cell_names_column_and_row(tmp_path):
    path = _write_csv(tmp_path / "d.csv")
    lines = path.read_text().splitlines()
    lines[4] = "0.1,abc,yes"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"^task\.data: .*d\.csv: column 'b' has the non-numeric value 'abc' in data row 4 \(line 5\)"):
        _experiment(path)


def test_csv_empty_cell(tmp_path):
    path = _write_csv(tmp_path / "d.csv")
    lines = path.read_text().splitlines()
    lines[2] = ",0.5,no"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"d\.csv: column 'a' has an empty cell in data row 2 \(line 3\)"):
        _experiment(path)


def test_csv_one_class(tmp_path):
    path = _write_csv(tmp_path / "d.csv", label_values=("yes", "yes"))
    with pytest.raises(ConfigError, match=r"d\.csv: label column 'outcome' has only one class \('yes'\); logistic regression needs two"):
        _experiment(path)


def test_csv_three_classes(tmp_path):
    path = _write_csv(tmp_path / "d.csv")
    path.write_text(path.read_text().replace(",yes\n", ",maybe\n", 3))
    with pytest.raises(ConfigError, match=r"label column 'outcome' has 3 classes \('maybe', 'no', 'yes'\)"):
        _experiment(path)


def test_csv_too_few_rows(tmp_path):
    path = _write_csv(tmp_path / "d.csv", rows=6)
    with pytest.raises(ConfigError, match=r"d\.csv: 6 data rows; at least 10 are needed"):
        _experiment(path)


def test_csv_missing_file_and_label(tmp_path):
    with pytest.raises(ConfigError, match=r"task\.data: .*nope\.csv does not exist"):
        _experiment(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match=r"task\.label is required"):
        synthloop.Experiment().with_overrides({"task": {"name": "logistic", "data": str(_write_csv(tmp_path / "d.csv"))}})
    with pytest.raises(ConfigError, match=r"task\.label names a CSV column"):
        synthloop.Experiment().with_overrides({"task": {"name": "logistic", "label": "y"}})


def test_user_csv_runs_end_to_end(tmp_path, monkeypatch):
    _write_csv(tmp_path / "mine.csv", rows=200)
    (tmp_path / "exp.toml").write_text(
        'generations = 5\nreplicates = 8\nworkflows = ["replace", "accumulate"]\n\n'
        '[task]\nname = "logistic"\ndata = "mine.csv"\nlabel = "outcome"\n'
    )
    monkeypatch.chdir(tmp_path)  # relative CSV paths resolve against the preset's directory or the CWD
    run = synthloop.run(tmp_path / "exp.toml", out=tmp_path / "run")
    assert run.experiment.task.data == str((tmp_path / "mine.csv").resolve())  # recorded absolute
    values = run.metrics.pivot_table(index="metric", values="value", aggfunc="mean")["value"]
    assert 0.5 < values["test_accuracy"] <= 1 and 0 < values["test_log_loss"] < 1
    assert (tmp_path / "run" / "figure.png").exists()
    # The run directory's config reloads from anywhere.
    monkeypatch.chdir("/")
    assert synthloop.load(tmp_path / "run").experiment.task.data == run.experiment.task.data
    assert "mine.csv (label 'outcome')" in run.experiment.build_task().describe()


def test_interrupted_run_resumes_to_identical_numbers(tmp_path):
    experiment = synthloop.Experiment().with_overrides({"task": {"name": "logistic"}, "generations": 5, "replicates": 3})
    reference = synthloop.run(experiment).metrics

    def stop(workflow, record):
        if workflow == "accumulate-subsample" and record.generation == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synthloop.run(experiment, out=tmp_path / "run", on_generation=stop)
    resumed = synthloop.run(experiment, out=tmp_path / "run")
    np.testing.assert_array_equal(resumed.metrics["value"].to_numpy(), reference["value"].to_numpy())
