"""The eigenvalue task (Feng et al. 2024 §5): number encodings, the tolerance rule, label
selection by the oracle, a tiny generator saved and loaded by a later run, config errors.
Tiny models, seconds each."""

import importlib.util

import numpy as np
import pytest

import synthloop
from synthloop.nn.tokenizer import SPECIALS
from synthloop.validation import ConfigError
from synthloop.verifiers import Candidates, OracleVerifier, SelfVerifier

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the synthloop[nn] extra (torch)")

TINY = {"size": 3, "layers": 1, "width": 32, "heads": 2, "steps": 20, "batch": 16, "lr": 3e-3, "warmup": 2,
        "test_size": 24, "synthetic_size": 12, "device": "cpu"}


def experiment(generations: int = 1, verifier: dict | None = None, **task):
    config = {"task": {"name": "eigenvalues", **TINY, **task}, "workflows": ["replace"], "generations": generations, "replicates": 1, "seed": 3}
    if verifier is not None:
        config["verifier"] = verifier
    return synthloop.Experiment.from_dict(config)


# ---- numbers ------------------------------------------------------------------------------


@pytest.fixture(params=["p1000", "fp15"])
def codec(request):
    from synthloop.nn.numbers import NumberCodec

    return NumberCodec(request.param)


def test_p1000_tokens_of_known_numbers():
    from synthloop.nn.numbers import NumberCodec

    codec = NumberCodec("p1000")
    words = codec.words(codec.encode(np.array([[2.3, -0.05, 0.0, -0.0, 999.5, 3.14159e-7]])))[0]
    assert words == ["+", "230", "E-2", "-", "500", "E-4", "+", "0", "E0", "+", "0", "E0", "+", "100", "E1", "+", "314", "E-9"]
    assert codec.vocab_size == len(SPECIALS) + 2 + 1000 + 201


def test_round_trip_to_three_significant_digits(codec):
    rng = np.random.default_rng(0)
    lo, hi = (-90, 90) if codec.encoding == "p1000" else (-5, 9)  # inside the exponent range
    x = rng.choice([-1.0, 1.0], (200, 7)) * 10.0 ** rng.uniform(lo, hi, (200, 7))
    x[0, :3] = [0.0, 1.0, -1.0]
    back = codec.decode(codec.encode(x))
    assert back.shape == x.shape and np.isfinite(back).all()
    nonzero = x != 0
    np.testing.assert_array_less(np.abs(back - x)[nonzero] / np.abs(x)[nonzero], 0.005 + 1e-12)  # half a unit of the third digit
    assert np.all(np.sign(back) == np.sign(x))
    np.testing.assert_array_equal(codec.decode(codec.encode(back)), back)  # already rounded: exact


def test_rounding_carries_into_the_exponent_and_extreme_exponents_saturate():
    from synthloop.nn.numbers import NumberCodec

    codec = NumberCodec("p1000")
    np.testing.assert_array_equal(codec.decode(codec.encode(np.array([[9999.0, 0.09996, 1234.0, -0.001236]]))),
                                  [[1e4, 0.1, 1230.0, -0.00124]])
    out = codec.decode(codec.encode(np.array([[1e-300, -1e300, 5e-98, 9e-99, 5e102, 2e103]])))
    np.testing.assert_allclose(out, [[0.0, -999e100, 5e-98, 0.0, 5e102, 999e100]])  # 100 E-100 … 999 E100
    fp15 = NumberCodec("fp15")
    np.testing.assert_allclose(fp15.decode(fp15.encode(np.array([[1e-20, 12.34, 1e20]]))), [[0.0, 12.3, 999e7]])


def test_malformed_numbers_decode_to_nan(codec):
    ids = codec.encode(np.array([[1.5, -2.0]]))
    eos = SPECIALS.index("<eos>")
    if codec.encoding == "p1000":
        swapped = ids.copy()
        swapped[0, [0, 1]] = swapped[0, [1, 0]]  # mantissa where the sign belongs
        small = ids.copy()
        small[0, 4] = codec.encode(np.array([[0.0]]))[0, 1] + 42  # mantissa 42: not a three-digit mantissa
        out = codec.decode(np.concatenate([swapped, small]))
        assert np.isnan(out[0, 0]) and out[0, 1] == -2.0
        assert out[1, 0] == 1.5 and np.isnan(out[1, 1])
    early = ids.copy()
    early[0, -1] = eos  # a special token inside a number
    out = codec.decode(early)
    assert out[0, 0] == 1.5 and np.isnan(out[0, 1])
    assert np.isnan(codec.decode(ids[:, :1], count=2)[0, 1])  # missing tokens
    with pytest.raises(ValueError, match="NaN or infinite"):
        codec.encode(np.array([[np.nan]]))


def test_unknown_encoding_is_refused():
    from synthloop.nn.numbers import NumberCodec

    with pytest.raises(ValueError, match="encoding must be one of"):
        NumberCodec("p10")


# ---- the tolerance rule and selection ---------------------------------------------------------


def test_tolerance_rule_on_hand_made_cases():
    from synthloop.tasks.eigenvalues import EigenData, EigenvaluesTask, relative_error

    truth = np.array([[10.0, 5.0, -5.0]])  # Σ|v| = 20
    predicted = np.array([[10.0, 5.0, -5.3], [10.0, 5.0, -5.5], [10.2, 5.0, -5.19], [np.nan, 5.0, -5.0]])
    np.testing.assert_allclose(relative_error(truth, predicted), [0.015, 0.025, 0.0195, np.inf])
    task = EigenvaluesTask(synthloop.Experiment.from_dict({"task": {"name": "eigenvalues", "tolerance": 0.02}}).task)
    data = EigenData(np.zeros((1, 4, 3, 3)), np.zeros((1, 4, 10), np.int32), predicted[None], np.repeat(truth, 4, 0)[None], np.zeros((1, 4)))
    np.testing.assert_array_equal(task.correct(data, None), [[True, False, True, False]])
    exact = EigenData(data.matrices, data.answers, np.array([[[10.0, 5.0, -5.4]]]), truth[None], np.zeros((1, 1)))
    assert not task.correct(exact, None)[0, 0]  # 0.02 is not below 0.02: the rule is strict


def test_label_selection_picks_the_oracle_best_candidate():
    """Best of k = 3 by the oracle: the closest candidate wins even when none is correct, a
    malformed one never does; the self verifier takes the highest mean log-probability."""
    from synthloop.tasks.eigenvalues import EigenData, EigenvaluesTask

    task = EigenvaluesTask(synthloop.Experiment.from_dict({"task": {"name": "eigenvalues", "size": 2}}).task)
    truth = np.array([[4.0, -1.0]] * 9)  # 3 inputs × 3 candidates
    labels = np.array([[4.0, -1.3], [4.0, -1.05], [4.02, -1.0],  # errors 6%, 1%, 0.4%: the last is closest
                       [4.5, -1.0], [4.0, -1.6], [np.nan, -1.0],  # 10%, 12%, malformed: none correct, the first closest
                       [np.nan, 0.0], [4.0, -1.01], [4.2, -1.0]])  # malformed, 0.2%, 4%
    logprob = np.array([[-0.1, -0.5, -0.9, -0.2, -0.1, -0.05, -0.3, -0.4, -0.01]])
    data = EigenData(np.zeros((1, 9, 2, 2)), np.zeros((1, 9, 7), np.int32), labels[None], truth[None], logprob)
    rngs = [np.random.default_rng(0)]
    correct = task.correct(data, None)
    np.testing.assert_array_equal(correct[0], [False, True, True, False, False, False, False, True, False])
    candidates = Candidates(task, None, data, None, rngs, 9, correct, k=3)
    oracle = OracleVerifier(selection="best-of-k", k=3)
    np.testing.assert_array_equal(oracle.select(oracle.score(candidates), rngs), [[2, 3, 7]])
    own = SelfVerifier(selection="best-of-k", k=3)
    np.testing.assert_array_equal(own.select(own.score(candidates), rngs), [[0, 5, 8]])


# ---- the loop -------------------------------------------------------------------------------


def test_tiny_generator_then_label_selection_end_to_end(tmp_path):
    """Generation 0 trains online and is saved; a second run loads it as its generator (same
    test metrics at generation 0), labels fresh matrices by beam search and keeps the
    oracle-best candidate; the loop records the verifier statistics."""
    first = synthloop.run(experiment(generations=0), out=tmp_path / "gen", figure=False)
    g0 = first.metrics.set_index("metric").value
    assert {"accuracy_5pct", "accuracy_2pct", "accuracy_1pct", "accuracy_0.5pct", "test_loss", "malformed"} <= set(g0.index)
    assert g0["test_loss"] < np.log(1207)  # learnt something: below a uniform guess over the vocabulary

    second = synthloop.run(experiment(generations=1, verifier={"name": "oracle", "selection": "best-of-k", "k": 3},
                                      generator=str(tmp_path / "gen"), beams=[2, 4], retrain_steps=5, init="previous"),
                           out=tmp_path / "select", figure=False)
    m = second.metrics
    at0 = m[m.generation == 0].set_index("metric").value
    for key in ("accuracy_5pct", "test_loss", "malformed"):
        assert at0[key] == pytest.approx(g0[key])  # the same model on the same test matrices
    for k in (2, 4):
        for tau in ("5pct", "2pct", "1pct", "0.5pct"):
            assert at0[f"beam_oracle_{tau}@{k}"] >= at0[f"beam_perplexity_{tau}@{k}"]  # the oracle sees the truth
    at1 = m[m.generation == 1].set_index("metric").value
    assert at1["verifier_candidates"] == 3
    assert at1["verifier_kept_fraction"] == pytest.approx(1 / 3)
    assert {"verifier_p", "verifier_phi", "verifier_psi", "verifier_p_star"} <= set(at1.index)
    assert int(second.generations.query("generation == 1")["kept"].iloc[0]) == 12  # one label per input


def test_self_selection_and_fixed_real_data_run():
    run = synthloop.run(experiment(generations=1, verifier={"name": "self", "keep": 0.5}, real_size=64, retrain_steps=4),
                        figure=False)
    at1 = run.metrics[run.metrics.generation == 1].set_index("metric").value
    assert at1["verifier_kept_fraction"] == 0.5
    assert np.isfinite(at1["accuracy_2pct"])


def test_vectorized_data_are_symmetric_with_descending_eigenvalues():
    from synthloop.tasks.eigenvalues import eigenvalues, sample_matrices

    m = sample_matrices(50, 4, 10.0, np.random.default_rng(0))
    np.testing.assert_array_equal(m, np.swapaxes(m, 1, 2))
    assert np.abs(m).max() <= 10
    v = eigenvalues(m)
    assert np.all(np.diff(v, axis=1) <= 0)
    np.testing.assert_allclose(v.sum(axis=1), np.trace(m, axis1=1, axis2=2))


# ---- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("task, message", [
    ({"width": 30, "heads": 4}, r"task.width must be divisible by task.heads = 4; got 30"),
    ({"beams": [5, 5]}, r"task.beams must not repeat a beam size; got \[5, 5\]"),
    ({"encoding": "p10"}, r"task.encoding"),
    ({"tolerance": 0}, r"task.tolerance"),
    ({"size": 1}, r"task.size"),
])
def test_config_errors_name_the_key(task, message):
    with pytest.raises(ConfigError, match=message):
        synthloop.Experiment.from_dict({"task": {"name": "eigenvalues", **task}})


def test_generator_and_init_paths_are_checked(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=r"task.generator: .*nowhere does not exist"):
        experiment(generator=str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"task.init: .*empty is not a run directory with a checkpoint"):
        experiment(init=str(tmp_path / "empty"))
    synthloop.run(experiment(generations=0, steps=2), out=tmp_path / "gen", figure=False)
    with pytest.raises(ConfigError, match=r"task.generator: .*state.pkl holds a model with width = 32, but task.width = 64"):
        experiment(generator=str(tmp_path / "gen"), width=64)
    with pytest.raises(ConfigError, match=r"task.init: .*state.pkl holds a model with size = 3, but task.size = 4"):
        experiment(init=str(tmp_path / "gen"), size=4)
    experiment(init=str(tmp_path / "gen"), width=64)  # a model of another shape may be fine-tuned
    synthloop.run(experiment(generations=1, steps=2, retrain_steps=2), out=tmp_path / "later", figure=False)
    with pytest.raises(ConfigError, match=r"task.generator: .*holds the model of generation 1; a generator is the generation-0 model"):
        experiment(generator=str(tmp_path / "later"))
    (tmp_path / "text").mkdir()
    synthloop.run(synthloop.Experiment.from_dict({"task": {"name": "text", "T": 256, "test_size": 64, "block": 16, "width": 16,
                                                           "layers": 1, "heads": 2, "epochs": 1, "device": "cpu"},
                                                  "generations": 0, "replicates": 1, "workflows": ["replace"]}), out=tmp_path / "text", figure=False)
    with pytest.raises(ConfigError, match=r"task.generator: .*holds no model of the eigenvalues task"):
        experiment(generator=str(tmp_path / "text"))


def test_generator_replicates_must_match(tmp_path):
    synthloop.run(experiment(generations=0, steps=2).with_overrides({"replicates": 2}), out=tmp_path / "gen", figure=False)
    with pytest.raises(ConfigError, match=r"task.generator: .*holds 2 replicates' models; this run has 3"):
        synthloop.run(experiment(generations=0, generator=str(tmp_path / "gen")).with_overrides({"replicates": 3}), figure=False)


SHRINK = ["task.size=2", "task.layers=1", "task.width=16", "task.heads=2", "task.steps=3", "task.batch=8", "task.warmup=1",
          "task.real_size=0", "task.test_size=6", "task.device=cpu"]


@pytest.mark.parametrize("preset", sorted(p for p in synthloop.list_presets() if p.startswith(("feng-eigen-generator-", "feng-eigen-beams-"))))
def test_every_eigenvalue_preset_runs_shrunk(preset):
    experiment = synthloop.load_experiment(preset)
    assert experiment.generations == 0 and experiment.task.name == "eigenvalues"
    run = synthloop.run(preset, overrides=SHRINK, figure=False)
    metrics = set(run.metrics.metric)
    assert "accuracy_2pct" in metrics
    assert ("beam_oracle_2pct@50" in metrics) == ("beams" in preset)
