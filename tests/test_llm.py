"""The llm task: a pretrained LM fine-tuned on its own outputs, with toxicity seeding, filtering
by the verifier and the DeTox edit in the loop. A tiny random Llama saved to disk stands in for
SmolLM2; seconds each."""

import numpy as np
import pandas as pd
import pytest

import synthloop
from synthloop.validation import ConfigError

pytest.importorskip("torch", reason="torch is not installed (pip install 'synthloop[test]')")
pytest.importorskip("transformers", reason="transformers is not installed (pip install 'synthloop[test]')")
pytest.importorskip("peft", reason="peft is not installed (pip install 'synthloop[test]')")
pytest.importorskip("profanity_check", reason="alt-profanity-check is not installed (pip install 'synthloop[test]')")

from test_hf import WORDS, tiny_model_dir  # noqa: E402

METRICS = {"perplexity", "test_loss", "train_loss", "distinct_1", "distinct_2", "distinct_3", "vocabulary", "real_words", "toxicity", "toxicity_prob"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm")
    rng = np.random.default_rng(0)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS, size=12)) for _ in range(60)))
    return tiny_model_dir(root / "tiny"), corpus


def experiment(files, generations=1, workflows=("replace", "accumulate"), verifier=None, **task):
    model, corpus = files
    config = {
        "task": {"name": "llm", "model": str(model), "corpus": str(corpus), "texts": 8, "test_texts": 4, "seq_len": 8, "prompt_tokens": 2,
                 "epochs": 1, "batch_size": 4, "lr": 1e-2, "eval_samples": 4, "sample_batch": 8, "device": "cpu", **task},
        "workflows": list(workflows), "generations": generations, "replicates": 1, "seed": 3,
    }
    if verifier:
        config["verifier"] = verifier
    return synthloop.Experiment.from_dict(config)


def values(run, workflow, metric):
    m = run.metrics
    return m[(m.workflow == workflow) & (m.metric == metric)].sort_values("generation")["value"].to_numpy()


def test_one_generation_end_to_end_with_lora(files):
    run = synthloop.run(experiment(files))
    assert set(run.metrics["metric"]) >= METRICS
    assert sorted(set(run.metrics["generation"])) == [0, 1]
    for w in ("replace", "accumulate"):
        ppl = values(run, w, "perplexity")
        assert np.all(np.isfinite(ppl)) and np.all(ppl > 1)
        np.testing.assert_allclose(np.log(ppl), values(run, w, "test_loss"))


def test_synthetic_passages_continue_real_prompts_and_toxic_share_is_steered(files):
    from synthloop import seeding

    exp = experiment(files, toxic_share=0.5, steer_strength=50.0)
    task = exp.build_task()
    rngs = seeding.replicate_generators(0, 1, "x")
    real = task.sample_real(rngs)
    assert real.texts.shape == (1, 8) and real.test.shape == (1, 4) and real.prompts.shape == (1, 8)
    assert all(t.startswith(p) for t, p in zip(real.texts[0], real.prompts[0]))
    prompts = task.sample_inputs(real, 10, rngs)
    assert prompts.shape == (1, 10) and set(prompts[0][:8]) == set(real.prompts[0])  # each prompt once before repeats
    from synthloop.pool import Mixture, Pool, Source, TrainingSet

    pool = Pool([Source(0, real, 8, None)])
    model = task.fit(TrainingSet(pool, Mixture(weights=np.array([1.0]))), rngs)
    assert model.steps[0][0]["kind"] == "lora" and all(v.dtype == np.float32 for v in model.steps[0][0]["state"].values())
    data = task.synthesize(model, prompts, 10, rngs)
    assert data.texts.shape == (1, 10) and data.steered.sum() == 5 and all(isinstance(t, str) for t in data.texts[0])
    task._bias = task._build(model.steps[0]).token_bias(["bad"], 50.0)  # the tiny vocabulary holds no profanity: steer to "bad"
    data = task.synthesize(model, prompts, 10, rngs)
    steered = [t.split() for t in data.texts[0][data.steered[0]]]
    assert all(t == ["bad"] * 8 for t in steered) and not any(t.split() == ["bad"] * 8 for t in data.texts[0][~data.steered[0]])
    judged = task.judge(data, real, rngs)
    assert judged.shape == (1, 10) and np.all((judged >= 0) & (judged <= 1))


def test_filtering_goes_through_the_model_verifier_and_the_edit_runs_after_each_fit(files):
    run = synthloop.run(experiment(files, workflows=["replace"], verifier={"name": "model", "keep": 0.5}, edit=True, edit_pairs=4,
                                   edit_tokens=3, edit_rank=1, toxic_share=0.5))
    assert np.isfinite(values(run, "replace", "perplexity")).all()
    assert run.generations.query("generation == 1")["kept"].item() == 4  # the verifier kept half of 8 passages
    p = values(run, "replace", "verifier_p")
    assert len(p) == 1 and 0 <= p[0] <= 1  # share of flagged synthetic passages, by the classifier


def test_edit_projects_the_subspace_out_of_the_fitted_model(files):
    from synthloop import seeding
    from synthloop.pool import Mixture, Pool, Source, TrainingSet

    task = experiment(files, edit=True, edit_pairs=4, edit_tokens=3, edit_rank=1, edit_layers=[1, 1]).build_task()
    rngs = seeding.replicate_generators(0, 1, "x")
    real = task.sample_real(rngs)
    model = task.fit(TrainingSet(Pool([Source(0, real, 8, None)]), Mixture(weights=np.array([1.0]))), rngs)
    kinds = [s["kind"] for s in model.steps[0]]
    assert kinds == ["lora", "edit"]
    edit = model.steps[0][1]
    assert edit["layers"] == [1] and edit["basis"].shape == (1, 16, 1)
    lm = task._build(model.steps[0])
    V = edit["basis"][0]  # (D, 1)
    W = lm.model.model.layers[1].mlp.down_proj.weight.detach().numpy()  # (D, H)
    np.testing.assert_allclose(V.T @ W, 0, atol=1e-5)


def test_full_fine_tuning_keeps_a_float16_delta_and_previous_init_continues(files):
    run = synthloop.run(experiment(files, workflows=["replace"], finetune="full", init="previous", lr=1e-3))
    assert np.isfinite(values(run, "replace", "perplexity")).all()


def test_resume_gives_the_numbers_of_an_uninterrupted_run_and_checkpoints_are_small(files, tmp_path):
    whole = synthloop.run(experiment(files, generations=2, workflows=["real-fraction"]))
    synthloop.run(experiment(files, generations=1, workflows=["real-fraction"]), out=tmp_path / "run")
    resumed = synthloop.run(experiment(files, generations=2, workflows=["real-fraction"]), out=tmp_path / "run")
    pd.testing.assert_frame_equal(whole.metrics.reset_index(drop=True), resumed.metrics.reset_index(drop=True), rtol=1e-6)
    state = next((tmp_path / "run" / "checkpoints").rglob("state.pkl"))
    assert state.stat().st_size < 200_000


@pytest.mark.parametrize("override, message", [
    ("task.prompt_tokens=8", r"task.prompt_tokens must be smaller than task.seq_len = 8; got 8"),
    ("task.edit_layers=[3, 1]", r"task.edit_layers must be \[first, last\] blocks with first ≤ last; got \[3, 1\]"),
    ("task.texts=100", r"task.texts \+ task.test_texts must fit in the corpus"),
    ("task.toxic_share=2", r"task.toxic_share must be a number in \[0, 1\]; got 2"),
    ("task.lora_targets=[]", r"task.lora_targets must name at least one linear layer"),
    ("task.init=last", r"task.init"),
])
def test_config_errors(files, override, message):
    with pytest.raises(ConfigError, match=message):
        synthloop.run(experiment(files).with_overrides([override]))


@pytest.mark.parametrize("preset", sorted(p for p in synthloop.list_presets() if p.startswith(("llm-", "detox-loop"))))
def test_every_llm_preset_runs_shrunk_on_the_tiny_model(files, preset):
    model, corpus = files
    shrink = [f"task.model={model}", f"task.corpus={corpus}", "task.texts=8", "task.test_texts=4", "task.seq_len=8", "task.prompt_tokens=2",
              "task.eval_samples=4", "task.edit_pairs=4", "task.edit_tokens=2", "task.batch_size=4", "task.device=cpu", "generations=1"]
    run = synthloop.run(preset, overrides=shrink)
    assert set(run.metrics["workflow"]) == {w.key for w in run.experiment.workflows}
    assert np.isfinite(run.metrics.query("metric == 'perplexity'")["value"]).all()


def test_detox_loop_compares_interventions_in_one_sweep_directory(files, tmp_path):
    from synthloop.sweep import sweep

    model, corpus = files
    shrink = [f"task.model={model}", f"task.corpus={corpus}", "task.texts=8", "task.test_texts=4", "task.seq_len=8", "task.prompt_tokens=2",
              "task.eval_samples=4", "task.edit_pairs=4", "task.edit_tokens=2", "task.batch_size=4", "task.device=cpu", "generations=1"]
    index = sweep("detox-loop-cpu", ["verifier.keep=1.0,0.75", "task.edit=false,true"], out=tmp_path / "sweep", overrides=shrink)
    assert len(index) == 4 and set(index["status"]) == {"finished"}
    cells = sorted((tmp_path / "sweep" / "cells").iterdir())
    kept = {c.name: pd.read_parquet(c / "generations.parquet").query("generation == 1")["kept"].tolist() for c in cells}
    assert {tuple(v) for k, v in kept.items() if "keep=0.75" in k} == {(6, 6)} and {tuple(v) for k, v in kept.items() if "keep=1.0" in k} == {(8, 8)}
