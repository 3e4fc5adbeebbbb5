"""The conditional task (Feng et al.'s summarization with a verifier): data, ROUGE, selection, the loop."""

import json

import numpy as np
import pytest

import synthloop
from synthloop.experiment import Experiment
from synthloop.pairs import aclsum_available, load_pairs, read_pairs
from synthloop.rouge import rouge, rouge_available
from synthloop.validation import ConfigError
from synthloop.verifiers import Candidates, ModelVerifier, OracleVerifier, RandomVerifier, SelfVerifier

pytest.importorskip("torch", reason="torch is not installed (pip install 'synthloop[test]')")
pytest.importorskip("transformers", reason="transformers is not installed (pip install 'synthloop[test]')")
pytest.importorskip("peft", reason="peft is not installed (pip install 'synthloop[test]')")
needs_rouge = pytest.mark.skipif(not rouge_available(), reason="rouge-score is not installed (pip install 'synthloop[test]')")
needs_aclsum = pytest.mark.skipif(not aclsum_available(), reason="aclsum is not installed (pip install 'synthloop[test]')")

from test_hf import WORDS, tiny_model_dir  # noqa: E402


# ---- data ----------------------------------------------------------------------------------------
@needs_aclsum
def test_aclsum_splits_and_default_fields():
    for split, n in (("train", 100), ("val", 50), ("test", 100)):
        sources, targets = load_pairs("aclsum", split, "sentences.abstract", "summary.outcome")
        assert len(sources) == len(targets) == n
    sources, targets = load_pairs("aclsum", "train", "sentences.abstract", "summary.outcome")
    assert sources[0].startswith("In this paper , we explore correlation of dependency relation paths")
    assert targets[0].startswith("The proposed method outperforms state-of-the-art syntactic relation-based methods by up to 20%")
    _, approach = load_pairs("aclsum", "train", "sentences.abstract", "summary.approach")
    assert approach[0].startswith("They propose a statistical method")


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_jsonl_pairs_nested_keys_lists_and_blank_lines(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"doc": {"sents": ["A b.", "C d."]}, "sum": "x"}, "", {"doc": {"sents": "E."}, "sum": "y"}])
    assert read_pairs(path, "doc.sents", "sum") == (("A b. C d.", "E."), ("x", "y"))


@pytest.mark.parametrize("rows, match", [
    (['{"source": "a", "target": "b"}', "{not json"], r"p\.jsonl line 2 is not JSON"),
    ([{"source": "a"}], r"p\.jsonl line 1 has no key 'target' \(task\.target_key\); its keys: \['source'\]"),
    ([{"source": "a", "target": 3}], r"p\.jsonl line 1: task\.target_key 'target' is not text or a list of texts; got int 3"),
    (["[1, 2]"], r"p\.jsonl line 1 is not a JSON object; got list"),
    ([""], r"p\.jsonl holds no pairs"),
])
def test_jsonl_errors_name_the_file_line_and_key(tmp_path, rows, match):
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(ConfigError, match=r"task\.data: .*" + match):
        read_pairs(path, "source", "target")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"task\.data: .*nope\.jsonl does not exist"):
        read_pairs(tmp_path / "nope.jsonl", "source", "target")


# ---- ROUGE ---------------------------------------------------------------------------------------
@needs_rouge
def test_rouge_known_values():
    scores = rouge(["the cat is on the mat", "a b c", "x y", "", "cats running"],
                   ["the cat sat on the mat", "a b c", "z w", "a", "cat runs"])
    # 5 of 6 unigrams shared (P = R = 5/6); 3 of 5 bigrams; LCS 5 of 6 tokens
    np.testing.assert_allclose(scores["rouge1"], [5 / 6, 1, 0, 0, 1])
    np.testing.assert_allclose(scores["rouge2"], [3 / 5, 1, 0, 0, 1])  # stemmed: "cat run" both
    np.testing.assert_allclose(scores["rougeL"], [5 / 6, 1, 0, 0, 1])
    # precision 1/1 and recall 1/3: F = 2·1·(1/3)/(1 + 1/3) = 1/2
    np.testing.assert_allclose(rouge(["cat"], ["the cat sat"])["rouge1"], [0.5])
    np.testing.assert_allclose(rouge(["cats running"], ["cat runs"], stem=False)["rouge1"], [0.0])
    with pytest.raises(ValueError, match="same length; got 1 and 2"):
        rouge(["a"], ["a", "b"])


# ---- a tiny task ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random Llama and 24 word pairs whose target is the source's first three words."""
    root = tmp_path_factory.mktemp("conditional")
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(24):
        source = " ".join(rng.choice(WORDS, 10))
        rows.append({"source": source, "target": " ".join(source.split()[:3])})
    return {"model": str(tiny_model_dir(root / "tiny")), "data": str(write_jsonl(root / "pairs.jsonl", rows)), "root": root}


def tiny_experiment(tiny, verifier=None, **task):
    config = {"task": {"name": "conditional", "data": tiny["data"], "model": tiny["model"], "generator_fraction": 0.25, "test_size": 4,
                       "max_target_tokens": 4, "steps": 2, "batch_size": 4, "prompt": "{source} and", **task},
              "workflows": ["replace"], "generations": 1, "replicates": 2}
    if verifier is not None:
        config["verifier"] = verifier
    return Experiment.from_dict(config)


def test_config_errors_name_the_key(tiny, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"source": "a", "summary": "b"}])
    with pytest.raises(ConfigError, match=r"task\.data: .*bad\.jsonl line 1 has no key 'target' \(task\.target_key\)"):
        tiny_experiment(tiny, data=str(bad))
    with pytest.raises(ConfigError, match=r"task\.prompt must contain \{source\}; got 'summarize:'"):
        tiny_experiment(tiny, prompt="summarize:")
    with pytest.raises(ConfigError, match=r"task\.train_size must be at most the 20 training pairs available; got 21"):
        tiny_experiment(tiny, train_size=21)
    with pytest.raises(ConfigError, match=r"task\.generator_fraction leaves no pair for the generator or none to label: round\(0\.01 × 20\) = 0"):
        tiny_experiment(tiny, generator_fraction=0.01)
    with pytest.raises(ConfigError, match=r"task\.model: .*does not exist"):
        tiny_experiment(tiny, model=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"verifier\.name 'rlhf' needs the truth of synthetic rows"):
        tiny_experiment(tiny, verifier={"name": "rlhf"})
    with pytest.raises(ConfigError, match=r"workflows\[0\] \('growing'\) synthesizes up to 30 rows per generation, but only 15 training inputs are left"):
        Experiment.from_dict({**tiny_experiment(tiny).to_dict(), "workflows": ["growing"], "generations": 2})


def candidates(task, model, real, targets, references, rngs):
    from synthloop.tasks.conditional import Pairs

    n = len(targets)
    sources = np.array([real.unlabelled.source[0, :n]] * len(rngs), dtype=object)
    data = Pairs(source=sources, target=np.array([targets] * len(rngs), dtype=object), reference=np.array([references] * len(rngs), dtype=object))
    return Candidates(task, model, data, real, rngs, n, None)


@needs_rouge
def test_each_verifier_selects_by_its_score(tiny):
    from synthloop.pool import Pool, Source, TrainingSet
    from synthloop.tasks.conditional import completion_logprobs
    from synthloop.workflows import Replace

    experiment = tiny_experiment(tiny, steps=30, lr=1e-2)
    task = experiment.build_task()
    rngs = [np.random.default_rng(s) for s in range(2)]
    real = task.sample_real(rngs)
    # the generator learns to answer "the cat sat" whatever the source
    real.target[:] = "the cat sat"
    pool = Pool([Source(0, real, task.real_size)])
    model = task.fit(TrainingSet(pool, Replace().compose(pool.sizes, 0, rngs)), rngs)

    references = ["red dog ran", "the cat sat", "red dog", "good day and", "a mat", "the cat sat"]
    targets = ["red dog ran", "the cat sat", "bad word", "good day", "the cat", "red dog ran fast"]
    c = candidates(task, model, real, targets, references, rngs)
    oracle = OracleVerifier(keep=0.5)
    scores = oracle.score(c)  # −(1 − ROUGE-1)
    np.testing.assert_allclose(scores[0], rouge(targets, references)["rouge1"] - 1)
    assert [list(row) for row in oracle.select(scores, rngs)] == [[0, 1, 3]] * 2  # ROUGE-1 1, 1, 0.8 ≫ 0, 0, 0.67

    confidence = SelfVerifier(keep=0.5).score(c)  # the generator's mean log-likelihood per target token
    assert confidence.shape == (2, 6) and np.all(confidence < 0)
    kept = SelfVerifier(keep=1 / 3).select(confidence, rngs)
    assert all(1 in row for row in kept)  # "the cat sat" is what the generator says: the lowest perplexity
    assert np.all(confidence[:, [1]] > confidence[:, [0, 2, 3, 5]])

    judged = ModelVerifier(keep=0.5).score(c)  # the base model's, not the generator's
    base = task._fresh()
    np.testing.assert_allclose(judged[0], completion_logprobs(base, task.prompts(c.data.source[0]), targets, 4), rtol=1e-5)
    assert not np.allclose(judged, confidence)
    np.testing.assert_array_equal(ModelVerifier(keep=0.5).select(judged, rngs)[0], np.sort(np.argsort(-judged[0], kind="stable")[:3]))

    # random keeps a uniform draw: every row about equally often
    draws = 4000
    counts = np.zeros(6)
    scores = RandomVerifier().score(c)[:1]  # (1, 6): all alike
    for seed in range(draws):
        counts[RandomVerifier(keep=0.5).select(scores, [np.random.default_rng(seed)])[0]] += 1
    np.testing.assert_allclose(counts / draws, 0.5, atol=4 * np.sqrt(0.25 / draws))


def test_completion_logprobs_match_a_direct_computation(tiny):
    import torch

    from synthloop.models.hf import CausalLM
    from synthloop.tasks.conditional import completion_logprobs

    lm = CausalLM.load(tiny["model"])
    got = completion_logprobs(lm, ["the cat", "a red dog ran fast"], ["sat on", "good"], max_target_tokens=8)
    tok = lm.tokenizer
    for value, prompt, target in zip(got, ["the cat", "a red dog ran fast"], ["sat on", "good"]):
        head, tail = tok(prompt)["input_ids"], tok(" " + target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([head + tail])
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=ids).logits[0, :-1], -1)
        expected = np.mean([float(logp[len(head) - 1 + i, t]) for i, t in enumerate(tail)])
        assert value == pytest.approx(expected, rel=1e-5)


# ---- the loop --------------------------------------------------------------------------------------
@needs_rouge
def test_generation_0_to_1_end_to_end_and_the_memo_changes_nothing(tiny, tmp_path):
    from synthloop.tasks import conditional

    runs = {}
    for name in ("oracle", "self", "model", "random"):
        runs[name] = synthloop.run(tiny_experiment(tiny, verifier={"name": name, "keep": 0.5}), out=tmp_path / name, figure=False)
    oracle = runs["oracle"]
    assert oracle.status == "finished"
    m = oracle.metrics.pivot_table(index=["generation", "replicate"], columns="metric", values="value")
    assert set(m.index.get_level_values("generation")) == {0, 1}
    assert {"rouge1", "rouge2", "rougeL", "summary_words", "train_loss", "train_label_rouge1"} <= set(m.columns)
    assert m.loc[0, "train_label_rouge1"].eq(1).all()  # the generator trains on real pairs
    assert (m.loc[1, "verifier_kept_fraction"] == 8 / 15).all()  # round(0.5 × 15) of the 15 labelled inputs
    kept = {name: run.metrics.query("generation == 1 and metric == 'train_label_rouge1'")["value"].mean() for name, run in runs.items()}
    assert kept["oracle"] >= max(kept.values())  # the oracle keeps the labels closest to the references
    # every cell refits the same generator: identical generation 0
    zero = {name: run.metrics.query("generation == 0").sort_values(["metric", "replicate"])["value"].to_numpy() for name, run in runs.items()}
    for name in zero:
        np.testing.assert_array_equal(zero[name], zero["oracle"])
    # the same numbers with an empty memo
    conditional.MEMO.clear()
    again = synthloop.run(tiny_experiment(tiny, verifier={"name": "oracle", "keep": 0.5}), figure=False)
    np.testing.assert_allclose(again.metrics.sort_values(["generation", "metric", "replicate"])["value"],
                               oracle.metrics.sort_values(["generation", "metric", "replicate"])["value"], rtol=1e-6)


@needs_rouge
def test_all_real_baseline_and_the_selection_figure(tiny, tmp_path):
    from synthloop.compare import load_runs
    from synthloop.selection_report import selection_figure, selection_summary, selection_table
    from synthloop.sweep import sweep

    base = tiny_experiment(tiny, verifier={"name": "oracle", "keep": 0.5})
    sweep(base, ["verifier.name=oracle,random", "verifier.keep=0.25,0.5"], out=tmp_path / "sweep", workers=1)
    real = synthloop.run(Experiment.from_dict({**tiny_experiment(tiny, labels="reference").to_dict(), "workflows": ["accumulate"]}),
                         out=tmp_path / "real", figure=False)
    assert real.generations.query("generation == 1")["kept"].iloc[0] == 15
    real_metrics = real.metrics.pivot_table(index=["generation", "replicate"], columns="metric", values="value")
    assert real_metrics.loc[1, "train_label_rouge1"].eq(1).all()  # all 20 real pairs

    comparison = load_runs([tmp_path / "sweep", tmp_path / "real"])
    summary = selection_summary(comparison.metrics, "rouge1")
    assert set(summary["line"]) == {"oracle", "random", "generator", "all real"}
    assert summary.loc[summary["line"] == "generator", "n"].item() == 2  # each replicate once, not once per cell
    table = selection_table(summary)
    assert list(table.columns) == ["keep=0.25", "keep=0.5", "generator", "all real"] and list(table.index) == ["oracle", "random"]
    fig = selection_figure(summary, ylabel="ROUGE-1", title="t", caption="c")
    assert len(fig.axes[0].lines) >= 4
    with pytest.raises(ValueError, match="no values of metric 'bleu'"):
        selection_summary(comparison.metrics, "bleu")


@needs_aclsum
@pytest.mark.parametrize("preset", ["feng-summarization-cpu", "feng-summarization-all-real-cpu", "feng-summarization-paper"])
def test_presets_validate(preset):
    experiment = synthloop.load_experiment(preset)
    assert experiment.task.name == "conditional" and experiment.generations == 1


@needs_rouge
def test_resume_through_the_checkpoint_gives_the_numbers_of_an_uninterrupted_run(tiny, tmp_path):
    from synthloop.tasks import conditional

    def experiment(generations):
        return Experiment.from_dict({**tiny_experiment(tiny, verifier={"name": "self", "keep": 0.5}).to_dict(), "generations": generations})

    whole = synthloop.run(experiment(2), figure=False)
    synthloop.run(experiment(1), out=tmp_path / "run", figure=False)
    conditional.MEMO.clear()  # the resumed run rebuilds its model from the checkpoint's numpy adapters
    resumed = synthloop.run(experiment(2), out=tmp_path / "run", figure=False)
    np.testing.assert_allclose(resumed.metrics.value.to_numpy(), whole.metrics.value.to_numpy(), rtol=1e-6)
