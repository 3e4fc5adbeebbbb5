"""The toxic-subspace edit on synthloop's own transformer (synthloop.nn.model.GPT)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'synthloop[test]')")

from synthloop.editing import (  # noqa: E402
    block_hidden_states,
    direction_tokens,
    edit_model,
    fit_toxic_subspace,
    mean_hidden_states,
    mlp_output_projections,
    random_subspace,
)
from synthloop.nn.model import GPT, GPTConfig  # noqa: E402
from synthloop.nn.tokenizer import CharTokenizer  # noqa: E402

TEXTS = ["the cat sat on a mat", "bad word bad word", "a red dog ran fast", "blue cat", "slow dog on the mat"]


@pytest.fixture()
def gpt():
    tokenizer = CharTokenizer("abcdefghijklmnopqrstuvwxyz ")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=3, n_head=2, n_embd=16, pos="rope")
    return GPT(config, generator=torch.Generator().manual_seed(0)).eval(), tokenizer


def fitted(model, tokenizer, rank=2, layers=(0, 2)):
    E = mean_hidden_states(model, tokenizer, TEXTS)  # (L, N, D)
    return fit_toxic_subspace(E, E[:, ::-1], rank=rank, layers=layers)


def test_hidden_states_are_the_blocks_outputs_and_ignore_padding(gpt):
    model, tokenizer = gpt
    assert len(mlp_output_projections(model)) == 3
    ids = torch.tensor([tokenizer.encode("the cat")])
    hidden = block_hidden_states(model, ids, torch.ones_like(ids))  # (L, B, T, D)
    x = model.embed(ids)
    for layer, block in enumerate(model.blocks):
        positions = torch.arange(ids.shape[1])[None]
        rope = (model.rope_cos[positions][:, None], model.rope_sin[positions][:, None])
        x = block(x, None, rope, None, layer)
        torch.testing.assert_close(hidden[layer], x)
    alone = mean_hidden_states(model, tokenizer, ["the cat"])
    batched = mean_hidden_states(model, tokenizer, ["a red dog ran fast on the mat", "the cat"])
    assert batched.shape == (3, 2, 16)
    np.testing.assert_allclose(batched[:, 1], alone[:, 0], atol=1e-5)
    assert not model.blocks[0]._forward_hooks  # the hooks are removed


def test_edited_mlp_outputs_have_no_component_in_the_subspace(gpt):
    model, tokenizer = gpt
    subspace = fitted(model, tokenizer)
    untouched = model.blocks[1].mlp.down.weight.clone()
    up, attn = model.blocks[0].mlp.up.weight.clone(), model.blocks[0].attn.proj.weight.clone()
    edit_model(model, subspace)
    x = torch.randn(4, 6, 16, generator=torch.Generator().manual_seed(1))  # (B, T, D)
    for i, layer in enumerate(subspace.layers):
        V = torch.from_numpy(subspace.basis[i]).float()  # (D, k)
        with torch.no_grad():
            out = model.blocks[layer].mlp(x)  # (B, T, D)
        scale = float(out.abs().max())  # GPT-2 initialization makes MLP outputs small
        assert scale > 0 and float((x @ V).abs().max()) > 1.0
        assert float((out @ V).abs().max()) < 1e-5 * scale
    assert torch.equal(model.blocks[1].mlp.down.weight, untouched)
    assert torch.equal(model.blocks[0].mlp.up.weight, up) and torch.equal(model.blocks[0].attn.proj.weight, attn)


def test_rank_zero_is_the_identity_and_editing_twice_changes_nothing(gpt):
    model, tokenizer = gpt
    before = [p.detach().clone() for p in model.parameters()]
    edit_model(model, fitted(model, tokenizer, rank=0, layers=(0, 1, 2)))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))
    subspace = fitted(model, tokenizer, rank=2, layers=(1, 2))
    edit_model(model, subspace)
    once = [p.detach().clone() for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(once, before))
    edit_model(model, subspace)
    for a, b in zip(model.parameters(), once):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_save_and_reload_of_an_edited_gpt_gives_the_same_outputs(gpt, tmp_path):
    model, tokenizer = gpt
    ids = torch.tensor([tokenizer.encode("the bad cat sat")])
    with torch.no_grad():
        original = model(ids).clone()
    edit_model(model, random_subspace(16, 3, [0, 1, 2], np.random.default_rng(5)))
    torch.save({"config": model.config.to_dict(), "model": model.state_dict()}, tmp_path / "edited.pt")
    state = torch.load(tmp_path / "edited.pt", weights_only=True)
    reloaded = GPT(GPTConfig(**state["config"])).eval()
    reloaded.load_state_dict(state["model"])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids), model(ids), atol=1e-6, rtol=1e-6)
        assert not torch.allclose(original, model(ids), atol=1e-4)


def test_direction_tokens_of_the_gpt(gpt):
    model, tokenizer = gpt
    subspace = fitted(model, tokenizer, rank=1, layers=(2,))
    table = direction_tokens(model, tokenizer, subspace, top=3)
    assert list(table.columns) == ["layer", "direction", "rank", "token", "score"] and len(table) == 3
    scores = (model.head.weight.detach() * model.norm.weight.detach()) @ torch.from_numpy(subspace.basis[0][:, 0]).float()
    assert table["score"].iloc[0] == pytest.approx(float(scores.max()), rel=1e-5)


def test_a_model_of_another_kind_is_refused():
    with pytest.raises(TypeError, match=r"cannot edit Sequential: .* or synthloop's own transformer \(synthloop\.nn\.model\.GPT\)"):
        edit_model(torch.nn.Sequential(torch.nn.Linear(4, 4)), random_subspace(4, 1, [0], np.random.default_rng(0)))
