"""The Gaussian-mixture task (Feng et al. 2024, §4): exact accuracy, the generator, verification in the loop."""

import numpy as np
import pytest
from conftest import mean_and_sem, z_for
from scipy.special import expit
from scipy.stats import norm

import synthloop
from synthloop import ConfigError
from synthloop.pool import Mixture, Pool, Source, TrainingSet
from synthloop.seeding import replicate_generators
from synthloop.tasks.logistic import fit_logistic
from synthloop.tasks.mixture import MixtureConfig, MixtureTask, mixture_accuracy
from synthloop.theory.verification import generator_error_rate, supervised_pruner_rates


def mixture(**overrides):
    base = {"task": {"name": "mixture", "d": 20, "N0": 100, "T0": 1000}, "generations": 1, "replicates": 100, "workflows": ["replace"]}
    for key, value in overrides.items():
        if key.startswith("task."):
            base["task"][key[5:]] = value
        else:
            base[key] = value
    return synthloop.Experiment().with_overrides(base)


def test_accuracy_formula_matches_monte_carlo():
    """P(sign(xᵀw) = y) = 1 − Φ(−τ√d cos∠(w, w*)) for x | y ~ N(yτw*, I/d)."""
    rng = np.random.default_rng(0)
    n, checks = 400_000, 3
    for d, tau, angle in [(10, 0.5, 1.0), (50, 0.15, 0.4), (3, 1.0, 2.0)]:
        w_star = np.zeros(d)
        w_star[0] = 1.0
        w = 3.7 * (np.cos(angle) * w_star + np.sin(angle) * np.eye(d)[1])  # not unit: the scale must not matter
        y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        x = y[:, None] * tau * w_star + rng.standard_normal((n, d)) / np.sqrt(d)
        measured = np.mean(np.sign(x @ w) == y)
        exact = float(mixture_accuracy(w, w_star, tau, d))
        assert abs(measured - exact) < z_for(checks) * np.sqrt(exact * (1 - exact) / n)


def test_ridge_logistic_without_intercept_is_stationary():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 300, 6))
    t = (rng.random((4, 300)) < expit(x @ np.array([1.0, -2, 0, 0, 0.5, 3]))).astype(float)
    a = np.full((4, 300), 1 / 300)
    w = fit_logistic(x, t, a, ridge=1e-2, intercept=False).coef_  # every coefficient penalized
    grad = np.einsum("rnd,rn->rd", x, a * (expit(np.einsum("rnd,rd->rn", x, w)) - t)) + 1e-2 * w
    assert np.abs(grad).max() < 1e-8


def _generation_one(config: MixtureConfig, replicates: int, seed: int = 0):
    task = MixtureTask(config)
    real = task.sample_real(replicate_generators(seed, replicates, "real"))
    rngs = replicate_generators(seed, replicates, "loop")
    pool = Pool([Source(0, real, task.real_size)])
    generator = task.fit(TrainingSet(pool, Mixture(weights=np.array([1.0]))), rngs)
    data = task.synthesize(generator, task.sample_inputs(real, config.T0, rngs), config.T0, rngs)
    return task, real, generator, data, rngs


def test_supervised_pruner_matches_theory_with_sign_labels():
    """With y′ = sign(xᵀw_gen) the task is the model of `supervised_pruner_rates` at ‖μ‖ = τ/√(1+τ²)
    (same standardized thresholds τ√d cos θ), with θ = ∠(w_gen, w_prune) per replicate."""
    config = MixtureConfig(d=20, tau=0.3, T0=20_000, theta_gen=1.0, theta_prune=0.5, label_beta=None)
    R = 40
    task, real, _, data, rngs = _generation_one(config, R)
    correct, score = task.correct(data, real), task.judge(data, real, rngs)
    theta = np.arccos(np.clip(np.einsum("rd,rd->r", real.w_gen, real.w_prune), -1, 1))
    mu = config.tau / np.sqrt(1 + config.tau**2)
    phi, psi, p = supervised_pruner_rates(1.0, 0.5, mu, config.d, theta=theta)
    assert np.allclose(p, generator_error_rate(1.0, mu, config.d))
    n_right, n_wrong = correct.sum(axis=1), (~correct).sum(axis=1)
    measured = {
        "p": (1 - correct.mean(axis=1), p, config.T0),
        "phi": ((score * correct).sum(axis=1) / n_right, phi, n_right),
        "psi": ((score * ~correct).sum(axis=1) / n_wrong, psi, n_wrong),
    }
    for name, (value, truth, n) in measured.items():
        # Pooled over replicates: mean of per-replicate rates, each binomial given its own θ.
        se = np.sqrt(np.sum(truth * (1 - truth) / n)) / R
        assert abs(value.mean() - np.mean(truth)) < z_for(3) * se, name
    assert np.mean(phi) > np.mean(psi)


def test_generator_theory_and_defaults():
    run = synthloop.run(mixture(**{"task.theta_gen": 1.2, "verifier": {"name": "oracle", "keep": 0.5}}))
    m, _, values = mean_and_sem(run, "replace", metric="accuracy")
    exact = 1 - norm.cdf(-0.15 * np.sqrt(20) * np.cos(1.2))
    assert np.allclose(values[0], exact)  # a generator at angle θ_gen has exactly this accuracy
    theory = MixtureTask(MixtureConfig(d=20, theta_gen=1.2)).theory(run.experiment.workflows[0], 1)
    assert theory.curves[0].values[0] == pytest.approx(exact) and np.isnan(theory.curves[0].values[1])
    bayes, _, _ = mean_and_sem(run, "replace", metric="bayes_accuracy")
    assert np.allclose(bayes, 1 - norm.cdf(-0.15 * np.sqrt(20)))
    assert m[1] > m[0]  # the oracle's labels are all correct: the downstream fit beats a poor generator


def test_oracle_beats_random_and_pruner_ranks_correct_rows_first():
    """Same real data and synthetic inputs (same streams): paired differences per replicate."""
    runs = {name: synthloop.run(mixture(verifier={"name": name, "keep": 0.5})) for name in ("oracle", "random", "model")}
    acc = {name: mean_and_sem(run, "replace", metric="accuracy")[2] for name, run in runs.items()}
    assert np.allclose(acc["oracle"][0], acc["random"][0])  # one generator for all
    # Not oracle vs model: the pruner's kept labels lean towards w_prune (π/6 from w*), which at
    # these sizes can help the downstream fit as much as or more than the oracle's correct labels.
    for better, worse in [("oracle", "random"), ("model", "random")]:
        diff = acc[better][1] - acc[worse][1]
        assert diff.mean() > z_for(2) * diff.std(ddof=1) / np.sqrt(len(diff)), (better, worse)
    phi, _, _ = mean_and_sem(runs["model"], "replace", metric="verifier_phi")
    psi, _, _ = mean_and_sem(runs["model"], "replace", metric="verifier_psi")
    assert phi[-1] > psi[-1]
    oracle_psi, _, _ = mean_and_sem(runs["oracle"], "replace", metric="verifier_psi")
    assert oracle_psi[-1] == 0.0  # the oracle keeps no wrong label while correct ones remain


def test_accumulate_mixes_real_and_synthetic_rows():
    run = synthloop.run(mixture(workflows=["replace", "accumulate"], generations=2, replicates=20))
    m, _, _ = mean_and_sem(run, "accumulate", metric="accuracy")
    assert np.all((m > 0.5) & (m < 1))


@pytest.mark.parametrize(
    "task, message",
    [
        ({"theta_prune": 4}, r"task.theta_prune must be a number in \[0, 3.14"),
        ({"d": 0}, r"task.d must be an integer in \[1, 10000\]"),
        ({"label_beta": 0}, r"task.label_beta must be a number > 0"),
        ({"tau": -1}, r"task.tau must be a number > 0"),
        ({"d": 1, "theta_gen": 1.0}, r"needs d ≥ 2"),
    ],
)
def test_config_errors(task, message):
    with pytest.raises(ConfigError, match=message):
        synthloop.Experiment().with_overrides({"task": {"name": "mixture", **task}})
