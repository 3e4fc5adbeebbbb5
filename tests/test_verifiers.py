"""Verifiers: the verifier-quality tool (estimates, intervals, CSV errors) and verifiers inside the loop."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import mean_and_sem, z_for
from typer.testing import CliRunner

import synthloop
from synthloop import ConfigError
from synthloop.cli import app
from synthloop.verifiers import (
    verifier_quality,
    verifier_quality_from_csv,
    wilson_interval,
)


def _audit(n, p, phi, psi, seed=0):
    rng = np.random.default_rng(seed)
    correct = rng.random(n) >= p
    kept = np.where(correct, rng.random(n) < phi, rng.random(n) < psi)
    return correct, kept


def test_estimates_recover_the_pruner():
    correct, kept = _audit(20_000, p=0.3, phi=0.9, psi=0.3)
    quality = verifier_quality(correct, kept)
    for value, truth, n in [(quality.p, 0.3, 20_000), (quality.phi, 0.9, 14_000), (quality.psi, 0.3, 6_000)]:
        assert abs(value.estimate - truth) < z_for(4) * np.sqrt(truth * (1 - truth) / n)
        assert value.lower < value.estimate < value.upper
    # Delta method for p* = φ/(φ+ψ) at φ = 0.9, ψ = 0.3.
    se = np.hypot(0.3 / 1.2**2 * np.sqrt(0.9 * 0.1 / 14_000), 0.9 / 1.2**2 * np.sqrt(0.3 * 0.7 / 6_000))
    assert abs(quality.p_star.estimate - 0.75) < z_for(4) * se
    assert quality.p_star.lower < quality.p_star.estimate < quality.p_star.upper
    assert quality.pruned_error.estimate == pytest.approx(0.3 * quality.psi.estimate / (0.3 * quality.psi.estimate + 0.7 * quality.phi.estimate), rel=0.05)
    assert quality.verdict.startswith("p < p*")


def test_verdicts_and_undefined_cases():
    bad = verifier_quality(*_audit(5000, p=0.6, phi=0.5, psi=0.9, seed=1))  # p* = 0.36 < p
    assert bad.verdict.startswith("p > p*")
    small = verifier_quality(*_audit(20, p=0.45, phi=0.6, psi=0.5, seed=2))
    assert small.verdict.startswith("p ≈ p*")
    all_correct = verifier_quality(np.ones(10, bool), np.ones(10, bool))
    assert np.isnan(all_correct.p_star.estimate) and np.isnan(all_correct.psi.estimate)
    with pytest.raises(ValueError, match="same length"):
        verifier_quality([True, False], [True])


def test_bootstrap_intervals_cover_and_match_binomial_widths():
    """Percentile bootstrap (multinomial resampling of the four cells): the 95% interval of p*
    covers the true 0.75 about 95% of the time over independent audits, and the interval of φ is
    as wide as the binomial standard error says."""
    audits, covered = 300, 0
    for seed in range(audits):
        quality = verifier_quality(*_audit(600, p=0.3, phi=0.9, psi=0.3, seed=100 + seed), bootstrap=1000, seed=seed)
        covered += quality.p_star.lower <= 0.75 <= quality.p_star.upper
    # Percentile intervals undercover slightly at this size: allow 2 points beyond sampling error.
    assert abs(covered / audits - 0.95) < z_for(1) * np.sqrt(0.95 * 0.05 / audits) + 0.02
    quality = verifier_quality(*_audit(20_000, p=0.3, phi=0.9, psi=0.3, seed=7), bootstrap=4000)
    width = 2 * 1.96 * np.sqrt(0.9 * 0.1 / quality.n_correct)
    assert quality.phi.upper - quality.phi.lower == pytest.approx(width, rel=0.1)
    assert quality.margin.estimate == pytest.approx(quality.p_star.estimate - quality.p.estimate)
    again = verifier_quality(*_audit(20_000, p=0.3, phi=0.9, psi=0.3, seed=7), bootstrap=4000)
    assert again == quality  # seeded
    wilson = verifier_quality(*_audit(20_000, p=0.3, phi=0.9, psi=0.3, seed=7), bootstrap=0)
    assert wilson.method.startswith("Wilson") and wilson.phi.estimate == quality.phi.estimate
    with pytest.raises(ValueError, match=r"bootstrap must be an integer in \[0, 1000000\]; got -1"):
        verifier_quality([True], [True], bootstrap=-1)


@pytest.mark.parametrize("phi, psi, p, classes, verdict", [(0.9, 0.3, 0.3, 2, "p < p*"), (0.5, 0.6, 0.6, 10, "p > p*"), (0.95, 0.05, 0.1, 3, "p < p*")])
def test_csv_tool_recovers_known_rates(tmp_path, phi, psi, p, classes, verdict):
    """A CSV of multi-class labels generated with known p, φ, ψ: the tool's JSON estimates lie
    within a tolerance set by the audit's size, and p* = φ/(φ+ψ) within its delta-method error."""
    rng = np.random.default_rng(classes)
    n = 4000
    true = rng.integers(0, classes, n)
    wrong = rng.random(n) < p
    generated = np.where(wrong, (true + rng.integers(1, classes, n)) % classes, true)  # a different class
    kept = np.where(wrong, rng.random(n) < psi, rng.random(n) < phi)
    path = tmp_path / "audit.csv"
    pd.DataFrame({"true": true, "generated": generated, "kept": kept.astype(int)}).to_csv(path, index=False)
    result = CliRunner().invoke(app, ["verifier-quality", str(path), "--json", "--bootstrap", "500"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    z = z_for(4)
    n_wrong, n_right = p * n, (1 - p) * n
    assert abs(out["p"]["estimate"] - p) < z * np.sqrt(p * (1 - p) / n)
    assert abs(out["phi"]["estimate"] - phi) < z * np.sqrt(phi * (1 - phi) / n_right)
    assert abs(out["psi"]["estimate"] - psi) < z * np.sqrt(psi * (1 - psi) / n_wrong)
    star = phi / (phi + psi)
    se = np.hypot(psi / (phi + psi) ** 2 * np.sqrt(phi * (1 - phi) / n_right), phi / (phi + psi) ** 2 * np.sqrt(psi * (1 - psi) / n_wrong))
    assert abs(out["p_star"]["estimate"] - star) < z * se
    assert out["p_star"]["lower"] < out["p_star"]["estimate"] < out["p_star"]["upper"]
    assert out["verdict"].startswith(verdict)  # |p − p*| ≥ 0.15, many standard errors


def test_csv_tool_figure_and_undefined_values_in_json(tmp_path):
    path = tmp_path / "audit.csv"
    path.write_text("true,generated,kept\na,a,1\nb,b,0\nc,c,1\n")  # no wrong label: ψ and p* undefined
    figure = tmp_path / "out" / "quality.png"
    result = CliRunner().invoke(app, ["verifier-quality", str(path), "--json", "--figure", str(figure)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["psi"]["estimate"] is None and out["p_star"]["estimate"] is None and out["p"]["estimate"] == 0
    assert figure.stat().st_size > 1000
    bad = CliRunner().invoke(app, ["verifier-quality", str(path), "--figure", str(tmp_path / "q.txt")])
    assert bad.exit_code == 2 and "--figure must end in .png, .svg or .pdf; got" in bad.output


def test_wilson_interval_coverage():
    """Empirical coverage of the 95% interval is close to 95% (binomial tolerance over trials)."""
    rng = np.random.default_rng(3)
    trials, p = 4000, 0.2
    hits = sum(wilson_interval(int(k), 50, 0.95).lower <= p <= wilson_interval(int(k), 50, 0.95).upper for k in rng.binomial(50, p, size=trials))
    assert abs(hits / trials - 0.95) < z_for(1) * np.sqrt(0.95 * 0.05 / trials) + 0.01  # Wilson is near-exact


def test_csv_tool(tmp_path):
    correct, kept = _audit(400, p=0.2, phi=0.95, psi=0.2, seed=4)
    path = tmp_path / "audit.csv"
    path.write_text("correct,kept\n" + "\n".join(f"{'yes' if c else 'no'},{int(k)}" for c, k in zip(correct, kept)) + "\n")
    result = CliRunner().invoke(app, ["verifier-quality", str(path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["n"] == 400 and payload["verdict"].startswith("p < p*")
    assert payload["phi"]["estimate"] == pytest.approx(np.mean(kept[correct]))
    table = CliRunner().invoke(app, ["verifier-quality", str(path)])
    assert "breakdown point" in table.output
    labels = tmp_path / "labels.csv"
    labels.write_text("pred,gold,accepted\ncat,cat,1\ndog,cat,0\ndog,dog,1\ncat,dog,1\nbird,bird,0\n")
    quality = verifier_quality_from_csv(labels, generated="pred", true="gold", kept="accepted")
    assert (quality.n, quality.n_correct, quality.n_kept) == (5, 3, 3)
    numeric = tmp_path / "numeric.csv"  # 1 and 1.0 are the same label; kept from a score
    numeric.write_text("true,generated,score\n1,1.0,0.9\n2,1,0.2\n0,0,0.7\n")
    quality = verifier_quality_from_csv(numeric, score="score", threshold=0.5)
    assert (quality.n_correct, quality.n_kept, quality.phi.estimate, quality.psi.estimate) == (2, 2, 1.0, 0.0)


@pytest.mark.parametrize(
    "content, options, message",
    [
        ("correct,kept\n1,1\n", {"kept": "keep"}, r"audit.csv: no column 'keep'; columns: correct, kept"),
        ("correct,kept\n1,maybe\n", {}, r"audit.csv: column 'kept' must hold booleans .* row 2 holds 'maybe'"),
        ("correct,kept\n", {}, r"audit.csv: no rows"),
        ("", {}, r"audit.csv: empty file \(expected a header row"),
        ("true,kept\na,1\n", {}, r"audit.csv: no column 'generated'; columns: true, kept$"),
        ("true,generated,kept\ncat,dog,1\ndog,cat,0\n", {}, r"audit.csv: labels never match: column 'generated' never equals column 'true' in 2 rows \(e.g. 'dog' vs 'cat'\)"),
        ("true,generated,score\na,a,high\n", {"score": "score", "threshold": 0.5}, r"audit.csv: column 'score' must hold numbers; row 2 holds 'high'$"),
        ("true,generated,score\na,a,1\n", {"score": "score"}, r"^--score and --threshold go together"),
    ],
)
def test_csv_errors_name_file_and_column(tmp_path, content, options, message):
    path = tmp_path / "audit.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        verifier_quality_from_csv(path, **options)


def test_missing_file_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["verifier-quality", str(tmp_path / "nope.csv")])
    assert result.exit_code == 2 and "nope.csv: no such file" in result.output


# --- verifiers inside the loop ----------------------------------------------------------------



def verified(verifier, **extra):
    base = {"task.design": "random", "task.d": 5, "task.T": 40, "generations": 8, "replicates": 400, "workflows": ["replace"], "verifier": verifier}
    return synthloop.Experiment().with_overrides({**base, **extra})


def test_rlhf_pruner_rates_are_recorded():
    run = synthloop.run(verified({"name": "rlhf", "keep": 1.0, "phi": 0.9, "psi": 0.3}))
    frame = run.summary_frame().set_index(["generation", "metric"])["mean"]
    # keep = 1 keeps every row, so measure the pruner on passing rows through a smaller keep below.
    assert frame[(3, "verifier_phi")] == pytest.approx(1.0) and frame[(3, "verifier_psi")] == pytest.approx(1.0)
    run = synthloop.run(verified({"name": "rlhf", "keep": 0.5, "phi": 0.9, "psi": 0.3}))
    m, sem, _ = mean_and_sem(run, "replace", metric="verifier_p_star")  # generations 1..8
    # About 71% of rows pass; keeping 50% scales φ and ψ alike, so p* = φ/(φ+ψ) stays 0.75.
    assert np.all(np.abs(m - 0.75) < z_for(len(m)) * sem)
    kept = run.generations.query("generation > 0")
    assert (kept["kept"] == 20).all() and (kept["synthesized"] == 40).all()


def test_oracle_verification_prevents_collapse_and_random_does_not():
    oracle = synthloop.run(verified({"name": "oracle", "keep": 0.5}))
    control = synthloop.run(verified({"name": "random", "keep": 0.5}))
    o, o_sem, _ = mean_and_sem(oracle, "replace")
    c, c_sem, _ = mean_and_sem(control, "replace")
    assert c[-1] - o[-1] > z_for(1) * np.hypot(o_sem[-1], c_sem[-1])
    assert o[-1] < 2 * o[0]  # bounded, while the control grows about linearly
    assert c[-1] > 4 * c[0]
    kept_error, _, _ = mean_and_sem(oracle, "replace", metric="verifier_kept_error")
    assert np.all(kept_error < 0.01)  # wrong labels are kept only when fewer than half are right


def test_no_verifier_leaves_numbers_unchanged_and_random_keeps_its_share():
    plain = synthloop.run(verified(None)).metrics
    assert set(plain["metric"]) == {"excess_risk"}
    control = synthloop.run(verified({"name": "random", "keep": 0.25}))
    phi, sem, _ = mean_and_sem(control, "replace", metric="verifier_phi")
    assert np.all(np.abs(phi - 0.25) < z_for(len(phi)) * sem + 1e-9)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"verifier": {"name": "oracle"}, "task.design": "fixed"}, r"^verifier cannot filter this task: task.design='fixed' relabels"),
        ({"verifier": {"name": "oracle", "keep": 0}}, r"^verifier.keep must be a number in \(0, 1\]; got 0$"),
        ({"verifier": {"name": "rlhf", "phi": 1.5}}, r"^verifier.phi must be a number in \[0, 1\]; got 1.5$"),
        ({"verifier": {"name": "judge"}}, r"^verifier.name must be one of 'random', 'oracle', 'rlhf', 'model', 'self'; got 'judge'$"),
        ({"verifier": {"name": "model"}}, r"^verifier.name 'model' needs a judge model, which task 'regression' does not define$"),
        ({"task": {"name": "kde"}, "verifier": {"name": "oracle"}}, r"^verifier.name 'oracle' needs the truth of synthetic rows, which task 'kde'"),
        ({"task": {"name": "gaussian"}, "verifier": {"name": "random"}}, r"^verifier cannot filter this task: gaussian synthesizes"),
        ({"task": {"name": "logistic"}, "verifier": {"name": "random"}}, r"^verifier cannot filter this task: logistic relabels"),
    ],
)
def test_verifier_config_errors(overrides, message):
    data = {"task": {"design": "random"}, **{k: v for k, v in overrides.items() if "." not in k}}  # task may be replaced
    if "task.design" in overrides:
        data["task"] = {"design": overrides["task.design"]}
    with pytest.raises(ConfigError, match=message):
        synthloop.Experiment.from_dict(data)


def test_verified_run_resumes_to_identical_numbers(tmp_path):
    experiment = verified({"name": "rlhf", "keep": 0.5, "phi": 0.8, "psi": 0.4}, replicates=20, workflows=["replace", "accumulate-subsample"])
    reference = synthloop.run(experiment).metrics

    def stop(workflow, record):
        if workflow == "accumulate-subsample" and record.generation == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synthloop.run(experiment, out=tmp_path / "run", on_generation=stop)
    pd.testing.assert_frame_equal(synthloop.run(experiment, out=tmp_path / "run").metrics, reference)


def test_no_unverified_theory_is_drawn_under_a_verifier():
    run = synthloop.run(verified({"name": "oracle", "keep": 0.5}, generations=2, replicates=3))
    assert run.theory.empty
    assert run.theory_notes["replace"] == "no theory under a verifier (oracle, keep=0.5)"


def test_self_verifier_keeps_the_generators_confident_rows():
    """Self-selection keeps high-margin rows: its kept labels are mostly right, but it cannot see
    the generator's own systematic errors, so it beats random selection without matching the oracle."""
    base = {"task": {"name": "mixture", "d": 20, "N0": 100, "T0": 600}, "generations": 1, "replicates": 200, "workflows": ["replace"]}
    runs = {name: synthloop.run(synthloop.Experiment.from_dict({**base, "verifier": {"name": name, "keep": 0.5}})) for name in ("self", "random", "oracle")}
    kept_error = {name: mean_and_sem(run, "replace", metric="verifier_kept_error") for name, run in runs.items()}
    (s, s_sem, _), (r, r_sem, _), (o, _, _) = kept_error["self"], kept_error["random"], kept_error["oracle"]
    assert r[-1] - s[-1] > z_for(2) * np.hypot(s_sem[-1], r_sem[-1])
    assert o[-1] < s[-1]
    with pytest.raises(ConfigError, match=r"^verifier.name 'self' needs the model's confidence, which task 'regression' does not define$"):
        synthloop.Experiment.from_dict({"task": {"design": "random"}, "verifier": {"name": "self"}})


# --- selection rules ----------------------------------------------------------------------------


def _rngs(R, seed=0):
    return [np.random.default_rng([seed, r]) for r in range(R)]


def test_selection_rules_pick_the_documented_rows():
    from synthloop.verifiers import RandomVerifier

    scores = np.array([[0.1, 0.9, 0.5, 0.7, 0.2, 0.8], [0.6, 0.0, 0.95, 0.3, 0.4, 0.1]])  # (R=2, n=6)
    top = RandomVerifier(keep=0.5).select(scores, _rngs(2))
    np.testing.assert_array_equal(top, [[1, 3, 5], [0, 2, 4]])
    # Threshold 0.5: 4 rows pass in replicate 0, 2 in replicate 1; both keep 2, all passing.
    kept = RandomVerifier(selection="threshold", threshold=0.5).select(scores, _rngs(2))
    assert kept.shape == (2, 2)
    assert np.all(np.take_along_axis(scores, kept, axis=1) >= 0.5)
    np.testing.assert_array_equal(kept[1], [0, 2])
    # Best of k=3: inputs are rows (0,1,2) and (3,4,5); the best candidate of each.
    best = RandomVerifier(selection="best-of-k", k=3).select(scores, _rngs(2))
    np.testing.assert_array_equal(best, [[1, 5], [2, 4]])
    everything = RandomVerifier(selection="all").select(scores, _rngs(2))
    np.testing.assert_array_equal(everything, np.tile(np.arange(6), (2, 1)))


def test_threshold_draws_uniformly_among_passing_rows_and_ties_break_at_random():
    from synthloop.verifiers import RandomVerifier

    R, n = 4000, 10
    scores = np.zeros((R, n))
    scores[:, :5] = 1.0
    scores[0, :] = 1.0  # replicate 0: all pass, the others 5 — every replicate keeps 5
    kept = RandomVerifier(selection="threshold", threshold=1.0).select(scores, _rngs(R))
    share = np.bincount(kept[0], minlength=n) / 5  # replicate 0 only: 5 of 10
    assert kept.shape == (R, 5) and np.all(kept[1:] < 5)
    chosen = np.stack([np.bincount(kept[r], minlength=n) for r in range(1, R)])
    np.testing.assert_array_equal(chosen[:, :5], 1)
    # Equal scores in best-of-k: each candidate is chosen with probability 1/k.
    best = RandomVerifier(selection="best-of-k", k=4).select(np.zeros((R, 8)), _rngs(R, seed=1))  # (R, 2)
    freq = np.bincount((best % 4).ravel(), minlength=4) / best.size
    assert np.all(np.abs(freq - 0.25) < z_for(4) * np.sqrt(0.25 * 0.75 / best.size))
    assert share.sum() == pytest.approx(1.0)


def test_oracle_label_selection_picks_the_closest_candidate_in_regression():
    """Best of 4 by the oracle keeps one label per input, the closest to xᵀw*: its error falls far
    below a single candidate's, and the iterated fit stays near the real-data fit, while the
    same number of unselected labels (selection='all' on one candidate) collapses."""
    best = synthloop.run(verified({"name": "oracle", "selection": "best-of-k", "k": 4}))
    plain = synthloop.run(verified({"name": "oracle", "selection": "all"}))
    frame = best.summary_frame().set_index(["generation", "metric"])["mean"]
    assert frame[(3, "verifier_candidates")] == 4 and frame[(3, "verifier_kept_fraction")] == pytest.approx(0.25)
    assert (best.generations.query("generation > 0")["kept"] == 40).all()
    p, _, _ = mean_and_sem(best, "replace", metric="verifier_p")
    kept_error, _, _ = mean_and_sem(best, "replace", metric="verifier_kept_error")
    assert np.all(kept_error[1:] < p[1:] ** 2)  # about p⁴ if the candidates' errors were independent
    b, b_sem, _ = mean_and_sem(best, "replace")
    a, a_sem, _ = mean_and_sem(plain, "replace")
    assert a[-1] - b[-1] > z_for(1) * np.hypot(a_sem[-1], b_sem[-1])
    assert b[-1] < b[0]  # closest of 4 noisy labels is less noisy than the real labels


def test_threshold_selection_is_the_papers_pruner():
    """rlhf(φ=0.9, ψ=0.3) with threshold 0.5 keeps exactly the rows that pass (subsampled alike
    across replicates), so the measured p* is φ/(φ+ψ) = 0.75 and the kept share near
    (1−p)φ + pψ, less the smallest replicate's shortfall."""
    run = synthloop.run(verified({"name": "rlhf", "selection": "threshold", "threshold": 0.5, "phi": 0.9, "psi": 0.3}))
    m, sem, _ = mean_and_sem(run, "replace", metric="verifier_p_star")
    assert np.all(np.abs(m[1:] - 0.75) < z_for(len(m) - 1) * sem[1:])
    p, _, _ = mean_and_sem(run, "replace", metric="verifier_p")
    kept, _, _ = mean_and_sem(run, "replace", metric="verifier_kept_fraction")
    assert np.all(kept[1:] <= (1 - p[1:]) * 0.9 + p[1:] * 0.3)
    assert run.theory_notes["replace"] == "no theory under a verifier (rlhf, score ≥ 0.5)"


@pytest.mark.parametrize(
    "verifier, message",
    [
        ({"name": "oracle", "selection": "threshold"}, r"^verifier.threshold must be a number when verifier.selection='threshold'; got none$"),
        ({"name": "oracle", "threshold": 0.5}, r"^verifier.threshold applies only to selection='threshold'; got threshold=0.5 with selection='top'$"),
        ({"name": "oracle", "selection": "threshold", "threshold": float("inf")}, r"^verifier.threshold must be a number finite; got inf$"),
        ({"name": "oracle", "selection": "best-of-k"}, r"^verifier.k must be an integer in \[2, 64\] when verifier.selection='best-of-k'; got 1$"),
        ({"name": "oracle", "selection": "best-of-k", "k": 65}, r"^verifier.k must be an integer in \[1, 64\]; got 65$"),
        ({"name": "oracle", "k": 3}, r"^verifier.k applies only to selection='best-of-k'; got k=3 with selection='top'$"),
        ({"name": "oracle", "selection": "all", "keep": 0.5}, r"^verifier.keep applies only to selection='top'; got keep=0.5 with selection='all'$"),
        ({"name": "oracle", "selection": "best"}, r"^verifier.selection must be one of 'top', 'threshold', 'best-of-k' or 'all'; got 'best'$"),
    ],
)
def test_selection_config_errors(verifier, message):
    with pytest.raises(ConfigError, match=message):
        synthloop.Experiment.from_dict({"task": {"design": "random"}, "verifier": verifier})


def test_label_selection_needs_candidates():
    with pytest.raises(ConfigError, match=r"^verifier.selection 'best-of-k' needs several candidate labels per input, which task 'kde' does not synthesize$"):
        synthloop.Experiment.from_dict({"task": {"name": "kde"}, "verifier": {"name": "random", "selection": "best-of-k", "k": 2}})
