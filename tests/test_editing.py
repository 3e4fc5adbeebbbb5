"""Toxic-subspace projection (DeTox / ProFS): the algebra, pairs, toxicity wrapper, and a tiny Llama model."""

import json

import numpy as np
import pandas as pd
import pytest

from synthloop.editing import (
    ToxicSubspace,
    center,
    fit_toxic_subspace,
    preference_matrix,
    random_subspace,
    subspace_basis,
    top_direction,
)
from synthloop.preferences import PreferencePair, flip_labels, read_pairs, write_pairs
from synthloop.validation import ConfigError

WORDS = "the cat sat on a mat dog ran fast slow red blue bad word bitch".split()


def planted_embeddings(rng, n=200, d=12, layers=2):
    """Embeddings with a large shared mean, and dispreferred texts shifted along a planted direction."""
    mean = np.zeros(d)
    mean[0] = 20.0
    toxic = np.zeros(d)
    toxic[1] = 1.0
    preferred = mean + 0.3 * rng.standard_normal((layers, n, d))  # (L, N, D)
    dispreferred = mean + 0.3 * rng.standard_normal((layers, n, d)) + 3.0 * rng.uniform(0.5, 1.5, (layers, n, 1)) * toxic
    return preferred, dispreferred, mean / np.linalg.norm(mean), toxic


# --- numpy algebra --------------------------------------------------------------------------------


def test_preference_matrix_is_half_difference():
    p, d = np.array([[4.0, 2.0]]), np.array([[0.0, 2.0]])
    np.testing.assert_allclose(preference_matrix(p, d), [[2.0, 0.0]])
    with pytest.raises(ValueError, match="same shape"):
        preference_matrix(np.zeros((2, 3)), np.zeros((3, 3)))


def test_centering_removes_the_top_direction():
    rng = np.random.default_rng(0)
    preferred, dispreferred, mean, _ = planted_embeddings(rng)
    v = top_direction(preferred)  # (L, D)
    np.testing.assert_allclose(np.abs(v @ mean), 1.0, atol=1e-3)  # the shared mean direction
    assert (np.einsum("lnd,ld->ln", preferred, v) > 0).all()  # oriented towards the data
    T = center(preference_matrix(preferred, dispreferred), v)
    np.testing.assert_allclose(np.einsum("lnd,ld->ln", T, v), 0.0, atol=1e-10)
    np.testing.assert_allclose(center(T, v), T, atol=1e-12)  # a projection


def test_fit_recovers_a_planted_direction_on_the_dispreferred_side():
    rng = np.random.default_rng(1)
    preferred, dispreferred, mean, toxic = planted_embeddings(rng)
    subspace = fit_toxic_subspace(preferred, dispreferred, rank=1)
    assert subspace.layers == (0, 1) and subspace.basis.shape == (2, 12, 1) and subspace.n_pairs == 200
    cos = subspace.basis[:, :, 0] @ toxic  # (L,)
    assert (cos > 0.99).all()  # aligned and pointing towards the dispreferred texts
    assert (np.abs(subspace.basis[:, :, 0] @ mean) < 0.05).all()


def test_subspace_basis_is_orthonormal_and_ordered():
    rng = np.random.default_rng(2)
    basis, s = subspace_basis(rng.standard_normal((3, 40, 10)), 4)
    assert basis.shape == (3, 10, 4) and s.shape == (3, 4)
    np.testing.assert_allclose(np.swapaxes(basis, -1, -2) @ basis, np.broadcast_to(np.eye(4), (3, 4, 4)), atol=1e-10)
    assert (np.diff(s, axis=-1) <= 0).all()


@pytest.mark.parametrize("rank", [-1, 11, 2.5, True])
def test_rank_is_validated(rank):
    with pytest.raises(ConfigError, match=r"rank must be an integer in \[0, 10\]"):
        subspace_basis(np.ones((20, 10)), rank)


def test_layers_are_validated():
    rng = np.random.default_rng(3)
    preferred, dispreferred, _, _ = planted_embeddings(rng, layers=2)
    with pytest.raises(ConfigError, match=r"layers must be in \[0, 1\] \(the model has 2 blocks\); got \[5\]"):
        fit_toxic_subspace(preferred, dispreferred, layers=[0, 5])


def test_random_subspace_is_orthonormal():
    subspace = random_subspace(8, 3, [1, 2], np.random.default_rng(4))
    assert subspace.kind == "random" and subspace.basis.shape == (2, 8, 3)
    np.testing.assert_allclose(subspace.basis[0].T @ subspace.basis[0], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(subspace.projector(1) @ subspace.projector(1), subspace.projector(1), atol=1e-12)


# --- pairs (no model) ----------------------------------------------------------------------------


def make_pairs(n=10):
    return [PreferencePair(preferred=f"good {i}", dispreferred=f"bad {i}", prompt=str(i), source={"corpus": "test"}) for i in range(n)]


def test_flip_labels_swaps_the_requested_fraction():
    pairs = make_pairs(10)
    flipped = flip_labels(pairs, 0.3, np.random.default_rng(0))
    swapped = [p for p in flipped if p.flipped]
    assert len(swapped) == 3
    assert all(p.preferred.startswith("bad") and p.dispreferred.startswith("good") for p in swapped)
    assert all(p.preferred.startswith("good") for p in flipped if not p.flipped)
    assert all(not p.flipped for p in pairs)  # the input is untouched
    assert [p.flipped for p in flip_labels(pairs, 0.3, np.random.default_rng(0))] == [p.flipped for p in flipped]
    assert all(p.flipped for p in flip_labels(pairs, 1.0, np.random.default_rng(0)))
    with pytest.raises(ConfigError, match=r"flip fraction must be a number in \[0, 1\]; got 1.5"):
        flip_labels(pairs, 1.5, np.random.default_rng(0))


def test_pairs_jsonl_round_trip(tmp_path):
    pairs = make_pairs(4)
    path = write_pairs(pairs, tmp_path / "pairs.jsonl")
    assert read_pairs(path) == pairs


def test_user_pairs_with_only_the_two_texts(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"preferred": "a kind reply", "dispreferred": "a rude reply"}\n\n')
    (pair,) = read_pairs(path)
    assert pair.prompt == "" and pair.dispreferred == "a rude reply"


@pytest.mark.parametrize("line, message", [
    ('{"preferred": "x"', r"line 2 is not JSON"),
    ('["x", "y"]', r"line 2 is not a JSON object; got list"),
    ('{"preferred": "x"}', r"line 2: 'dispreferred' must be a non-empty string; got None"),
    ('{"preferred": 3, "dispreferred": "y"}', r"line 2: 'preferred' must be a non-empty string; got 3"),
])
def test_malformed_pairs_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"preferred": "a", "dispreferred": "b"}) + "\n" + line + "\n")
    with pytest.raises(ConfigError, match=r"bad\.jsonl " + message):
        read_pairs(path)


def test_missing_or_empty_pairs_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_pairs(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="holds no pair"):
        read_pairs(tmp_path / "empty.jsonl")


# --- toxicity ------------------------------------------------------------------------------------


def test_toxicity_wrapper_flags_insults_not_kind_words():
    pytest.importorskip("profanity_check", reason="alt-profanity-check is not installed (pip install 'synthloop[test]')")
    from synthloop.toxicity import profanity_words, toxicity, toxicity_probability

    kind = ["what a lovely morning", "thank you for the help", "the cat sat on the mat"]
    rude = ["shut up you fucking idiot", "you are a stupid bitch", "this is bullshit, asshole"]
    p = toxicity_probability(kind + rude)
    assert (p[:3] < 0.5).all() and (p[3:] >= 0.5).all()
    score = toxicity(kind + rude)
    assert score.flagged == 0.5 and score.n == 6 and score.mean_probability == pytest.approx(p.mean())
    assert "bitch" in profanity_words()
    with pytest.raises(ConfigError, match=r"threshold must be a number in \(0, 1\); got 1"):
        toxicity(kind, threshold=1)


# --- a tiny Llama model --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """A randomly initialized 3-block Llama and a word-level tokenizer, built without any download."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'synthloop[test]')")
    pytest.importorskip("transformers", reason="transformers is not installed (pip install 'synthloop[test]')")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = ["<pad>", "<eos>", "<unk>"] + WORDS
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    tokenizer.padding_side = "left"
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, eos_token_id=1, bos_token_id=1,
    )
    torch.manual_seed(0)  # the fixture's model only; every draw in the code under test takes a generator
    model = LlamaForCausalLM(config).eval()
    return model, tokenizer


def fresh(tiny):
    import copy

    return copy.deepcopy(tiny[0]), tiny[1]


def test_edited_mlp_outputs_have_no_component_in_the_subspace(tiny):
    import torch

    model, _ = fresh(tiny)
    subspace = random_subspace(16, 2, [0, 2], np.random.default_rng(0))
    untouched = model.model.layers[1].mlp.down_proj.weight.clone()
    from synthloop.editing import edit_model

    edit_model(model, subspace)
    x = torch.randn(5, 7, 16, generator=torch.Generator().manual_seed(0))  # (B, T, D)
    for i, layer in enumerate(subspace.layers):
        V = torch.from_numpy(subspace.basis[i]).float()  # (D, k)
        out = model.model.layers[layer].mlp(x)  # (B, T, D)
        assert out.abs().max() > 1e-3
        torch.testing.assert_close(out @ V, torch.zeros(5, 7, 2), atol=1e-5, rtol=0)
    assert torch.equal(model.model.layers[1].mlp.down_proj.weight, untouched)
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, tiny[0].model.layers[0].mlp.up_proj.weight)  # MLP input untouched
    assert torch.equal(model.model.layers[0].self_attn.o_proj.weight, tiny[0].model.layers[0].self_attn.o_proj.weight)


def test_rank_zero_is_the_identity_and_editing_twice_changes_nothing(tiny):
    import torch

    from synthloop.editing import edit_model, mean_hidden_states

    model, tokenizer = fresh(tiny)
    texts = ["the cat sat on a mat", "bad word bad word", "a red dog ran fast"]
    E = mean_hidden_states(model, tokenizer, texts)  # (L, N, D)
    zero = fit_toxic_subspace(E, E[:, ::-1], rank=0)
    edit_model(model, zero)
    for a, b in zip(model.parameters(), tiny[0].parameters()):
        assert torch.equal(a, b)
    subspace = fit_toxic_subspace(E, E[:, ::-1], rank=2, layers=[1, 2])
    edit_model(model, subspace)
    once = [p.detach().clone() for p in model.parameters()]
    assert not torch.equal(once[0], once[0] + 1) and any(not torch.equal(a, b) for a, b in zip(once, tiny[0].parameters()))
    edit_model(model, subspace)
    for a, b in zip(model.parameters(), once):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_mean_hidden_states_ignore_padding(tiny):
    from synthloop.editing import mean_hidden_states

    model, tokenizer = tiny
    alone = mean_hidden_states(model, tokenizer, ["the cat sat"])
    batched = mean_hidden_states(model, tokenizer, ["a red dog ran fast on the mat", "the cat sat"])
    assert batched.shape == (3, 2, 16)
    np.testing.assert_allclose(batched[:, 1], alone[:, 0], atol=1e-5)


def test_only_llama_family_models_can_be_edited():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'synthloop[test]')")
    from synthloop.editing import edit_model

    with pytest.raises(TypeError, match=r"cannot edit Linear: the edit needs a Llama-family causal LM with model\.model\.layers\[i\]\.mlp\.down_proj"):
        edit_model(torch.nn.Linear(4, 4), random_subspace(4, 1, [0], np.random.default_rng(0)))


def test_width_mismatch_is_an_error(tiny):
    from synthloop.editing import edit_model

    model, _ = fresh(tiny)
    with pytest.raises(ValueError, match="width 8 but the model's residual stream has width 16"):
        edit_model(model, random_subspace(8, 1, [0], np.random.default_rng(0)))


def test_save_and_reload_of_an_edited_model_gives_the_same_outputs(tiny, tmp_path):
    import torch

    from synthloop.editing import edit_model
    from synthloop.models.hf import load_causal_lm, save_causal_lm

    model, tokenizer = fresh(tiny)
    edit_model(model, random_subspace(16, 3, [0, 1, 2], np.random.default_rng(5)))
    save_causal_lm(model, tokenizer, tmp_path / "edited")
    reloaded, retok = load_causal_lm(tmp_path / "edited")
    ids = torch.tensor([tokenizer("the cat sat on a bad mat")["input_ids"]])
    assert retok("the cat sat on a bad mat")["input_ids"] == ids[0].tolist()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(tiny[0](ids).logits, model(ids).logits, atol=1e-4)


def test_load_errors_name_the_path(tmp_path):
    pytest.importorskip("transformers", reason="transformers is not installed (pip install 'synthloop[test]')")
    from synthloop.models.hf import load_causal_lm

    with pytest.raises(ConfigError, match="does not exist"):
        load_causal_lm(tmp_path / "nowhere")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"model file must be a \.gguf file"):
        load_causal_lm(tmp_path / "weights.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="cannot load a causal LM from"):
        load_causal_lm(tmp_path / "empty")


def test_direction_tokens_reads_a_direction_through_the_unembedding(tiny):
    import torch

    from synthloop.editing import direction_tokens

    model, tokenizer = fresh(tiny)
    with torch.no_grad():
        model.model.norm.weight.fill_(1.0)
    target = tokenizer.convert_tokens_to_ids("bad")
    v = model.get_output_embeddings().weight[target].detach().double().numpy()
    other = np.eye(16)[0] - v * v[0] / (v @ v)
    basis = np.stack([v / np.linalg.norm(v), other / np.linalg.norm(other)], axis=1)[None]  # (1, D, 2), orthonormal
    frame = direction_tokens(model, tokenizer, ToxicSubspace(layers=(2,), basis=basis, singular_values=np.ones((1, 2))), top=3)
    assert list(frame.columns) == ["layer", "direction", "rank", "token", "score"] and len(frame) == 6
    assert frame.query("direction == 0 and rank == 0")["token"].item() == "bad"


def test_sampling_is_reproducible_and_steerable(tiny):
    import torch

    from synthloop.models.hf import sample, token_bias

    model, tokenizer = tiny
    prompts = ["the cat", "a red dog ran"]
    one = sample(model, tokenizer, prompts, torch.Generator().manual_seed(0), max_new_tokens=6)
    two = sample(model, tokenizer, prompts, torch.Generator().manual_seed(0), max_new_tokens=6)
    assert one == two and len(one) == 2
    bias = token_bias(tokenizer, ["bad", "no such word"], 50.0)
    assert list(bias) == [tokenizer.convert_tokens_to_ids("bad")]
    steered = sample(model, tokenizer, prompts, torch.Generator().manual_seed(0), max_new_tokens=6, bias=bias)
    assert all(text.split() == ["bad"] * 6 for text in steered)


def test_pairs_from_a_model_keep_the_prompt_and_provenance(tiny):
    import torch

    from synthloop.models.hf import token_bias
    from synthloop.preferences import build_pairs

    model, tokenizer = tiny
    pairs = build_pairs(model, tokenizer, ["the cat", "a dog"], torch.Generator().manual_seed(1), token_bias(tokenizer, ["bad"], 50.0),
                        max_new_tokens=4, source={"model": "tiny", "seed": 1})
    assert [p.prompt for p in pairs] == ["the cat", "a dog"]
    assert all(p.preferred.startswith(p.prompt) and p.dispreferred == p.prompt + " bad bad bad bad" for p in pairs)
    assert pairs[0].source == {"model": "tiny", "seed": 1}


def test_perplexity_of_a_model(tiny):
    from synthloop.models.hf import perplexity

    model, tokenizer = tiny
    ppl = perplexity(model, tokenizer, ["the cat sat on a mat", "a dog ran"])
    assert 1 < ppl < 10 * len(tokenizer)  # a random model is near uniform over the vocabulary
    with pytest.raises(ValueError, match="at least one text of two or more tokens"):
        perplexity(model, tokenizer, ["cat"])


# --- the edit experiment (synthloop edit) --------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ("ranks=[-1]", r"ranks\[0\] must be an integer in \[0, 64\]; got -1"),
    ("layer_ranges=[[5, 2]]", r"layer_ranges must be \[first, last\] blocks with first ≤ last; got \[5, 2\]"),
    ("n_pairs=[]", r"n_pairs"),
    ("flip_fraction=2", r"flip_fraction must be a number in \[0, 1\]; got 2"),
    ("colour=3", r"colour is not a known key"),
])
def test_edit_experiment_config_is_validated(override, message):
    from synthloop.detox import EditExperiment

    with pytest.raises(ConfigError, match=message):
        EditExperiment.load(None, [override])


def test_edit_experiment_config_file(tmp_path):
    from synthloop.detox import EditExperiment

    path = tmp_path / "edit.toml"
    path.write_text('ranks = [1, 3]\ncorpus = "bible"\n')
    config = EditExperiment.load(path, ["seed=7"])
    assert config.ranks == [1, 3] and config.corpus == "bible" and config.seed == 7 and config.n_pairs == [50, 200]
    with pytest.raises(ConfigError, match="no such file"):
        EditExperiment.load(tmp_path / "none.toml")


def test_edit_experiment_runs_resumes_and_refuses_another_config(tiny, tmp_path):
    from synthloop.detox import EditExperiment, edit_figure, results_table, run_edit_experiment
    from synthloop.models.hf import save_causal_lm

    pytest.importorskip("profanity_check", reason="alt-profanity-check is not installed (pip install 'synthloop[test]')")
    model, tokenizer = tiny
    save_causal_lm(model, tokenizer, tmp_path / "tiny")
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS[:-1], size=8)) for _ in range(40)))
    config = EditExperiment.load(None, [
        f"model={tmp_path / 'tiny'}", f"corpus={corpus}", "n_pairs=[3, 6]", "ranks=[1]", "layer_ranges=[[1, 2]]",
        "eval_prompts=3", "held_out_texts=3", "max_new_tokens=3", "prompt_words=3", "save_model=true",
    ])
    out = run_edit_experiment(config, tmp_path / "run")
    metrics = pd.read_parquet(out / "metrics.parquet")
    table = results_table(metrics)
    assert list(table["condition"]) == ["base", "edit", "edit", "random"] and list(table["n_pairs"]) == [0, 3, 6, 0]
    assert set(metrics["metric"]) >= {"toxicity_steered", "toxicity_plain", "toxic_mass", "perplexity", "fit_seconds"}
    assert len(read_pairs(out / "pairs.jsonl")) == 6 and (out / "edited-model" / "config.json").exists()
    assert len(pd.read_csv(out / "directions.csv")) == 2 * 1 * 10
    edit_figure(metrics)
    before = (out / "metrics.parquet").stat().st_mtime_ns
    run_edit_experiment(config, tmp_path / "run")  # finished conditions are not run again
    assert (out / "metrics.parquet").stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match="holds a different experiment"):
        run_edit_experiment(config.model_copy(update={"seed": 1}), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"layer_ranges must lie in \[0, 2\] \(the model has 3 blocks\); got \[1, 7\]"):
        run_edit_experiment(config.model_copy(update={"layer_ranges": [(1, 7)]}), tmp_path / "other")
