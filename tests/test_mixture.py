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
        ({"curve_sizes": [100, 10]}, r"^task.curve_sizes must be a non-empty increasing list of integers; got \[100, 10\]$"),
        ({"curve_sizes": [10, 5000]}, r"^task.curve_sizes must not exceed T0=2000 \(rows synthesized per generation\); got 5000$"),
        ({"curve_sizes": [0]}, r"^task.curve_sizes\[0\] must be an integer in \[1, 10000000\]; got 0$"),
        ({"curve_flip_rates": [0.5, 0.2]}, r"^task.curve_flip_rates must be a non-empty increasing list of probabilities; got \[0.5, 0.2\]$"),
        ({"curve_flip_rates": [1.5]}, r"^task.curve_flip_rates\[0\] must be a number in \[0, 1\]; got 1.5$"),
        ({"curve_flip_rates": [0.5], "curve_rlhf": [[0, 0]]}, r"^task.curve_rlhf must not hold \(0, 0\): that pruner keeps nothing$"),
        ({"curve_generator_angles": [2.0, 1.0]}, r"^task.curve_generator_angles must be a non-empty increasing list of angles; got \[2.0, 1.0\]$"),
        ({"curve_sizes": [10], "curve_flip_rates": [0.5]}, r"^task.curve_sizes cannot be combined with curve_flip_rates or curve_generator_angles"),
    ],
)
def test_config_errors(task, message):
    with pytest.raises(ConfigError, match=message):
        synthloop.Experiment().with_overrides({"task": {"name": "mixture", **task}})


# --- Figure 3: selection curves; Figure 2: breakdown curves ----------------------------------------


def test_selection_curves_order_oracle_pruners_random_against_clean():
    """Figure 3 at small scale (soft labels, β = 5, as the paper's sigmoid of the unnormalized OLS
    score): random selection plateaus far above the clean-data curve; the oracle and the
    π/12 pruner reach it, the π/6 pruner comes within 10%."""
    run = synthloop.run(mixture(**{"task.d": 50, "task.N0": 200, "task.T0": 2000, "task.label_beta": 5.0,
                                   "task.curve_sizes": [30, 300, 1000], "replicates": 20}))
    frame = run.summary_frame().query("generation == 1").set_index("metric")
    assert {"clean@30", "oracle@1000", "random@300", "pruner 15°@1000", "pruner 30°@1000"} <= set(frame.index)
    big = {name: frame.loc[f"{name}@1000"] for name in ("clean", "oracle", "random", "pruner 15°", "pruner 30°")}
    gap = lambda a, b: a["mean"] - b["mean"] - (a["ci95"] + b["ci95"])  # noqa: E731  (positive: a clearly above b)
    assert gap(big["random"], big["clean"]) > 0
    for name, within in (("oracle", 0.03), ("pruner 15°", 0.03), ("pruner 30°", 0.1)):
        assert gap(big["random"], big[name]) > 0
        assert abs(big[name]["mean"] - big["clean"]["mean"]) < within * big["clean"]["mean"] + big[name]["ci95"] + big["clean"]["ci95"]
    assert frame.loc["clean@30", "mean"] > frame.loc["clean@1000", "mean"] > 1.0  # relative to the Bayes error
    assert run.figure() is not None  # the run's figure is the curve figure


def test_oracle_selection_matches_training_on_clean_data():
    """Labels flipped independently of x: the oracle pruner (φ, ψ) = (1, 0) at p = 0.3 keeps a
    uniform 70% of the inputs with their true labels — clean data of that size. Its accuracy
    matches φ = 0.7, ψ = 0 at p = 0 (the same amount of clean data) within sampling error."""
    run = synthloop.run(mixture(**{"task.T0": 600, "task.curve_flip_rates": [0.0, 0.3], "task.curve_rlhf": [[1.0, 0.0], [0.7, 0.0]], "replicates": 200}))
    _, _, oracle = mean_and_sem(run, "replace", metric="φ=1, ψ=0@0.3")
    _, _, clean = mean_and_sem(run, "replace", metric="φ=0.7, ψ=0@0")
    difference = oracle[-1] - clean[-1]  # (R,): paired by replicate (same inputs, different draws)
    assert abs(difference.mean()) < z_for(1) * difference.std(ddof=1) / np.sqrt(len(difference))
    _, _, full = mean_and_sem(run, "replace", metric="φ=1, ψ=0@0")
    assert (full[-1] - clean[-1]).mean() > 0  # and keeping everything (no error to drop) is better still


@pytest.mark.parametrize("N", [1000, 8000])
def test_simulated_transition_sits_at_the_predicted_breakdown_point(N):
    """(φ, ψ) = (0.9, 0.3): p* = 0.75. At p* the kept labels are independent of the class, so the
    accuracy is 1/2 on average; at p*∓(t) (Theorem D.3) the kept labels have margin ±t, and with
    t = 4/(τ√(κN)) (κN kept rows; signal tτ against noise 1/√(κN)) the fit lands clearly on the
    side the theory predicts — a transition window around the predicted p* that shrinks like 1/√N."""
    from synthloop.theory.verification import breakdown_interval, breakdown_point, kept_fraction

    phi, psi, tau = 0.9, 0.3, 0.5
    star = float(breakdown_point(phi, psi))
    t = 4 / (tau * np.sqrt(kept_fraction(star, phi, psi) * N))
    lower, upper = (float(v) for v in breakdown_interval(phi, psi, t))
    run = synthloop.run(mixture(**{"task.tau": tau, "task.T0": N, "task.curve_flip_rates": [lower, star, upper],
                                   "task.curve_rlhf": [[phi, psi]], "replicates": 30}))
    bayes = 1 - norm.cdf(-tau * np.sqrt(20))
    accuracy = {p: mean_and_sem(run, "replace", metric=f"φ=0.9, ψ=0.3@{p:g}") for p in (lower, star, upper)}
    assert accuracy[lower][0][-1] > 0.5 + 0.6 * (bayes - 0.5)
    assert accuracy[upper][0][-1] < 0.5 - 0.6 * (bayes - 0.5)
    mean, sem, _ = accuracy[star]
    assert abs(mean[-1] - 0.5) < z_for(1) * sem[-1]
    assert upper - lower < 2 * t  # p*± = p* ∓ t·p*(1 − p*)·2 + O(t²): the window shrinks like 1/√N
    theory = run.theory.set_index(["metric", "generation"])["value"]
    assert theory[(f"φ=0.9, ψ=0.3@{lower:g}", 1)] == pytest.approx(bayes)
    assert theory[(f"φ=0.9, ψ=0.3@{upper:g}", 1)] == pytest.approx(1 - bayes)
    assert np.isnan(theory[(f"φ=0.9, ψ=0.3@{star:g}", 1)])  # the statement does not cover p = p*
    assert set(run.theory["kind"]) == {"asymptotic"}
    assert MixtureTask(run.experiment.task).curve_marks() == {"φ=0.9, ψ=0.3": pytest.approx(0.75)}


def test_supervised_pruner_transition_sits_where_p_meets_its_breakdown_point():
    """Figure 5: a generator at angle θ_gen labels sign(xᵀw_gen), a coplanar pruner keeps the labels
    it agrees with. The measured accuracy crosses 1/2 where p(θ_gen) = p*(θ_gen) from the
    Appendix D.6 rates (within 0.01 in p), though its errors depend on x."""
    angles = [0.9, 2.0, 2.6, 2.85, 2.95, 3.0, 3.05, 3.1, 3.14]
    run = synthloop.run(mixture(**{"task.tau": 0.5, "task.T0": 5000, "task.curve_generator_angles": angles, "replicates": 10}))
    task = MixtureTask(run.experiment.task)
    p = task._generator_errors()
    for name, mark in task.curve_marks().items():
        accuracy = np.array([mean_and_sem(run, "replace", metric=f"{name}@{value:.6g}")[0][-1] for value in p])
        assert accuracy[0] > 0.95 and accuracy[-1] < 0.5
        i = np.flatnonzero((accuracy[:-1] >= 0.5) & (accuracy[1:] < 0.5))[0]
        crossing = p[i] + (p[i + 1] - p[i]) * (accuracy[i] - 0.5) / (accuracy[i] - accuracy[i + 1])
        assert abs(crossing - mark) < 0.01, (name, crossing, mark)
    theory = run.theory[run.theory["generation"] == 1]
    assert set(theory["kind"]) == {"asymptotic"} and len(theory) == 2 * len(angles)
