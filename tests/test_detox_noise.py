"""Experiment 2 of the DeTox issue: label flipping, the DPO wrapper, and the edit-vs-DPO runner on a tiny model."""

import copy

import numpy as np
import pandas as pd
import pytest
from test_editing import WORDS, tiny  # noqa: F401  (the tiny Llama fixture)

from synthloop.preferences import PreferencePair, flip_labels
from synthloop.validation import ConfigError


def make_pairs(n):
    return [PreferencePair(preferred=f"good {i}", dispreferred=f"bad {i}", prompt=str(i)) for i in range(n)]


@pytest.mark.parametrize("n, rate, expected", [(10, 0.0, 0), (10, 0.1, 1), (10, 0.25, 2), (7, 0.5, 4), (200, 0.3, 60), (3, 1.0, 3), (0, 0.4, 0)])
def test_flip_labels_flips_exactly_round_rate_times_n(n, rate, expected):
    pairs = make_pairs(n)
    flipped = flip_labels(pairs, rate, np.random.default_rng(3))
    assert sum(p.flipped for p in flipped) == expected == round(rate * n)
    for before, after in zip(pairs, flipped):
        assert (after.preferred, after.dispreferred) == ((before.dispreferred, before.preferred) if after.flipped else (before.preferred, before.dispreferred))
    assert [p.flipped for p in flip_labels(pairs, rate, np.random.default_rng(3))] == [p.flipped for p in flipped]  # seeded


def test_flip_labels_choice_depends_on_the_seed_and_flipping_back_restores():
    pairs = make_pairs(50)
    a = [p.flipped for p in flip_labels(pairs, 0.5, np.random.default_rng(0))]
    b = [p.flipped for p in flip_labels(pairs, 0.5, np.random.default_rng(1))]
    assert a != b
    twice = flip_labels(flip_labels(pairs, 1.0, np.random.default_rng(0)), 1.0, np.random.default_rng(0))
    assert [(p.preferred, p.flipped) for p in twice] == [(p.preferred, False) for p in pairs]
    with pytest.raises(ConfigError, match=r"flip fraction must be a number in \[0, 1\]; got -0.1"):
        flip_labels(pairs, -0.1, np.random.default_rng(0))


def test_swap_flipped_exchanges_the_flipped_columns():
    from synthloop.detox_noise import swap_flipped

    P, D = np.zeros((2, 3, 4)), np.ones((2, 3, 4))  # (L, N, D)
    p, d = swap_flipped(P, D, [False, True, False])
    assert p[:, 1].min() == 1 and d[:, 1].max() == 0 and p[:, [0, 2]].max() == 0 and d[:, [0, 2]].min() == 1


def test_split_prompt():
    from synthloop.dpo import split_prompt

    assert split_prompt("the cat sat", "the cat ran", "the") == ("the", " cat sat", " cat ran")
    assert split_prompt("the cat sat", "the cat ran") == ("the cat", " sat", " ran")
    assert split_prompt("the category", "the cat") == ("the", " category", " cat")
    assert split_prompt("abc", "xyz") == ("", "abc", "xyz")


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_dpo_runs_on_a_handful_of_pairs_and_changes_the_weights(tiny, lora_rank):  # noqa: F811
    import torch

    pytest.importorskip("trl", reason="trl is not installed (pip install 'synthloop[test]')")
    from synthloop.dpo import dpo_finetune

    model, tokenizer = copy.deepcopy(tiny[0]), tiny[1]
    pairs = [PreferencePair("the cat sat on a mat", "the cat bad word bitch", prompt="the cat") for _ in range(4)]
    state = torch.get_rng_state()
    trained, result = dpo_finetune(model, tokenizer, pairs, batch_size=2, lora_rank=lora_rank, learning_rate=1e-2, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's global generator is left alone
    assert result.steps == 2 and len(result.losses) == 2 and result.losses[0] == pytest.approx(np.log(2), abs=1e-4)
    assert result.losses[-1] < result.losses[0] and result.seconds > 0
    assert type(trained).__name__ == "LlamaForCausalLM" and not trained.training  # LoRA merged back: a plain model
    assert set(trained.state_dict()) == set(tiny[0].state_dict())
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, tiny[0].state_dict()[k])]
    assert any("mlp" in k for k in changed) and any("self_attn" in k for k in changed)
    again, _ = dpo_finetune(copy.deepcopy(tiny[0]), tokenizer, pairs, batch_size=2, lora_rank=lora_rank, learning_rate=1e-2, seed=0)
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)  # seeded


@pytest.mark.parametrize("kwargs, message", [
    ({"pairs": []}, "DPO needs at least one preference pair; got none"),
    ({"beta": 0}, r"beta must be a number in \(0, 100\]; got 0"),
    ({"batch_size": 0}, r"batch_size must be an integer in \[1, 4096\]; got 0"),
    ({"lora_rank": -1}, r"lora_rank must be an integer in \[0, 1024\]; got -1"),
    ({"epochs": 1.5}, r"epochs must be an integer in \[1, 100\]; got 1.5"),
])
def test_dpo_arguments_are_validated(kwargs, message):
    from synthloop.dpo import dpo_finetune

    args = {"pairs": make_pairs(2), **kwargs}
    pairs = args.pop("pairs")
    with pytest.raises(ConfigError, match=message):
        dpo_finetune(None, None, pairs, **args)


@pytest.mark.parametrize("override, message", [
    ("flip_rates=[0.1, 1.5]", r"flip_rates\[1\] must be a number in \[0, 1\]; got 1.5"),
    ("methods=['edit', 'rlhf']", r"methods must name methods among edit, dpo; got \['rlhf'\]"),
    ("layers=[5, 2]", r"layers must be \[first, last\] blocks with first ≤ last; got \[5, 2\]"),
    ("dpo_beta=0", r"dpo_beta must be a number in \(0, 100\]; got 0"),
    ("n_pairs=0", r"n_pairs must be an integer in \[1, 100000\]; got 0"),
    ("colour=3", r"colour is not a known key"),
])
def test_noisy_labels_config_is_validated(override, message):
    from synthloop.detox_noise import NoisyLabelsExperiment

    with pytest.raises(ConfigError, match=message):
        NoisyLabelsExperiment.load(None, [override])


def test_noisy_labels_runs_resumes_and_refuses_another_config(tiny, tmp_path):  # noqa: F811
    pytest.importorskip("profanity_check", reason="alt-profanity-check is not installed (pip install 'synthloop[test]')")
    pytest.importorskip("trl", reason="trl is not installed (pip install 'synthloop[test]')")
    from synthloop.detox_noise import NoisyLabelsExperiment, noise_figure, noise_table, run_noisy_labels
    from synthloop.models.hf import save_causal_lm

    model, tokenizer = tiny
    save_causal_lm(model, tokenizer, tmp_path / "tiny")
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS[:-1], size=8)) for _ in range(40)))
    config = NoisyLabelsExperiment.load(None, [
        f"model={tmp_path / 'tiny'}", f"corpus={corpus}", "n_pairs=4", "flip_rates=[0, 0.5]", "rank=1", "layers=[1, 2]",
        "eval_prompts=3", "held_out_texts=3", "max_new_tokens=3", "prompt_words=3", "dpo_batch_size=2", "lora_rank=2",
    ])
    out = run_noisy_labels(config, tmp_path / "run")
    metrics = pd.read_parquet(out / "metrics.parquet")
    table = noise_table(metrics)
    assert list(zip(table["method"], table["flip_rate"])) == [("base", 0.0), ("edit", 0.0), ("edit", 0.5), ("dpo", 0.0), ("dpo", 0.5)]
    assert list(table["flipped"].iloc[1:]) == [0, 2, 0, 2]
    assert (table["seconds"].iloc[1:] > 0).all() and table["perplexity"].notna().all()
    assert set(metrics["metric"]) >= {"toxicity_steered", "toxicity_plain", "toxic_mass", "perplexity", "seconds", "dpo_final_loss"}
    assert (out / "figure.png").exists() and (out / "pairs.jsonl").exists()
    noise_figure(metrics)
    before = (out / "metrics.parquet").stat().st_mtime_ns
    run_noisy_labels(config, tmp_path / "run")  # finished conditions are not run again
    assert (out / "metrics.parquet").stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match="holds a different experiment"):
        run_noisy_labels(config.model_copy(update={"seed": 1}), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"layers must lie in \[0, 2\] \(the model has 3 blocks\); got \[1, 7\]"):
        run_noisy_labels(config.model_copy(update={"layers": (1, 7)}), tmp_path / "other")


def test_cli_names_the_bad_key(tmp_path):
    from typer.testing import CliRunner

    from synthloop.cli import app

    result = CliRunner().invoke(app, ["edit-noise", "--set", "flip_rates=[2]", "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "flip_rates[0] must be a number in [0, 1]; got 2" in result.output
    assert not (tmp_path / "run").exists()


def test_the_fitted_subspace_does_not_depend_on_flipped_labels():
    from test_editing import planted_embeddings

    from synthloop.detox_noise import swap_flipped
    from synthloop.editing import fit_toxic_subspace

    rng = np.random.default_rng(0)
    preferred, dispreferred, _, toxic = planted_embeddings(rng)  # (L, N, D)
    flipped = rng.permutation(preferred.shape[1]) < preferred.shape[1] // 2  # half the labels
    P0 = [fit_toxic_subspace(preferred, dispreferred, rank=2, centering=False).projector(i) for i in range(2)]
    P1 = [fit_toxic_subspace(*swap_flipped(preferred, dispreferred, flipped), rank=2, centering=False).projector(i) for i in range(2)]
    for a, b in zip(P0, P1):
        np.testing.assert_allclose(a, b, atol=1e-10)  # a flipped pair only negates its row of T
    centered = fit_toxic_subspace(*swap_flipped(preferred, dispreferred, flipped), rank=1)
    assert abs(centered.basis[0, :, 0] @ toxic) > 0.99  # with centering: still the planted direction


def test_a_gguf_marked_model_loses_the_marker_only(tiny):  # noqa: F811
    from synthloop.dpo import _drop_gguf_marker

    class GgufHfQuantizer:  # what transformers leaves on a model read from a .gguf file (already float32)
        pass

    model = copy.deepcopy(tiny[0])
    model.hf_quantizer = GgufHfQuantizer()
    model.config.quantization_config = {"quant_method": "gguf"}
    _drop_gguf_marker(model)
    assert model.hf_quantizer is None and not getattr(model, "is_quantized", False) and getattr(model.config, "quantization_config", None) is None
    other = copy.deepcopy(tiny[0])
    other.hf_quantizer = object()  # a real quantizer is left for the Trainer to judge
    _drop_gguf_marker(other)
    assert other.hf_quantizer is not None
