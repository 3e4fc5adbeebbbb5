"""The neural core: tokenizer, masking, model with KV cache, decoding, trainer checkpoints."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from synthloop.nn import decoding  # noqa: E402
from synthloop.nn import GPT, CharTokenizer, GPTConfig, KVCache, TrainConfig, Trainer, beam_search, generate  # noqa: E402
from synthloop.nn.trainer import learning_rate  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models gain nothing from threads, and spinning threads crawl on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tokenizer_round_trips():
    tok = CharTokenizer("0123456789+=,")
    for text in ["", "0", "12+34", "9,8,7"]:
        assert tok.decode(tok.encode(text)) == text
        ids, head = tok.encode_example(text, text[::-1])
        assert tok.decode(ids[head:]) == text[::-1]
        assert tok.decode(tok.encode_prompt(text)) == text
    with pytest.raises(ValueError, match="character 'x' is not in the alphabet"):
        tok.encode("1x")
    with pytest.raises(ValueError, match="repeated characters"):
        CharTokenizer("00")


def test_loss_mask_covers_the_answer_and_eos_only():
    tok = CharTokenizer("0123456789")
    batch = tok.batch(["12", "3"], ["21", "3"])
    # row 0: <bos> 1 2 <sep> 2 1 <eos> ; row 1: <bos> 3 <sep> 3 <eos> <pad> <pad>
    assert batch.tokens.shape == (2, 7)
    targets = batch.tokens[:, 1:]
    assert [tok.decode(t[m].tolist()) for t, m in zip(targets, batch.loss_mask)] == ["21", "3"]
    assert targets[batch.loss_mask].tolist().count(tok.eos) == 2
    assert not batch.loss_mask[1, -2:].any()  # padding carries no loss
    assert batch.loss_mask.sum().item() == 3 + 2


def test_left_padded_prompts():
    tok = CharTokenizer("0123456789")
    tokens, valid = tok.prompt_batch(["1", "123"])
    assert tokens.shape == (2, 5) and valid.sum(1).tolist() == [3, 5]
    assert tokens[0, :2].tolist() == [tok.pad, tok.pad]


def test_batches_match_the_per_example_encoding():
    """The vectorized ``batch``/``prompt_batch`` agree with ``encode_example``/``encode_prompt``
    row by row, with empty strings and a non-ASCII alphabet; a stray character names itself."""
    tok = CharTokenizer("0123456789+é")
    prompts, answers = ["12+3", "", "é9", "4"], ["51", "7", "", "é4é"]
    batch = tok.batch(prompts, answers)
    for row, (p, a) in enumerate(zip(prompts, answers)):
        ids, head = tok.encode_example(p, a)
        assert batch.tokens[row, : len(ids)].tolist() == ids
        assert (batch.tokens[row, len(ids) :] == tok.pad).all()
        assert batch.loss_mask[row].nonzero().flatten().tolist() == list(range(head - 1, len(ids) - 1))
    tokens, valid = tok.prompt_batch(prompts)
    for row, p in enumerate(prompts):
        ids = tok.encode_prompt(p)
        assert tokens[row, -len(ids) :].tolist() == ids and valid[row].sum().item() == len(ids)
    with pytest.raises(ValueError, match="character 'x' is not in the alphabet"):
        tok.batch(["1"], ["2x"])
    with pytest.raises(ValueError, match="one answer per prompt; got 2 prompts and 1 answers"):
        tok.batch(["1", "2"], ["3"])


def test_rope_inf_is_llamas_rope_theta_inf():
    """``rope_base = inf`` turns each head's first pair by 1 radian per token and leaves every
    other pair still -- what LLaMA's ``rope_theta = inf`` does (Lee et al.'s code calls it NoPE)."""
    import math

    from synthloop.nn.model import rope_tables

    cos, sin = rope_tables(GPTConfig(vocab_size=8, n_embd=16, n_head=2, pos="rope", rope_base=math.inf, block_size=6), "cpu")
    positions = torch.arange(6, dtype=torch.float32)
    turning = [0, 4]  # head size 8: channel 0 and its rotation partner 4 (rotate-half layout)
    assert torch.allclose(cos[:, turning], positions.cos()[:, None].expand(6, 2))
    assert torch.allclose(sin[:, turning].abs(), positions.sin().abs()[:, None].expand(6, 2))
    still = [c for c in range(8) if c not in turning]
    assert (cos[:, still] == 1).all() and (sin[:, still] == 0).all()


@pytest.mark.parametrize("pos", ["nope", "learned", "rope"])
def test_kv_cache_and_padding_match_a_full_forward(pos):
    g = torch.Generator().manual_seed(0)
    model = GPT(GPTConfig(vocab_size=12, block_size=16, n_layer=2, n_head=2, n_embd=16, pos=pos), g).eval()
    seq = torch.randint(4, 12, (1, 7), generator=g)
    full = model(seq)  # (1, 7, V)
    # the same sequence left-padded by 3 and fed through the cache in two pieces
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), seq], 1)
    valid = torch.tensor([[False] * 3 + [True] * 7])
    positions = (valid.long().cumsum(1) - 1).clamp(min=0)
    cache = KVCache(model.config, 1, 10, "cpu", torch.float32)
    first = model(padded[:, :6], positions=positions[:, :6], valid=valid[:, :6], cache=cache)
    rest = model(padded[:, 6:], positions=positions[:, 6:], valid=valid[:, 6:], cache=cache)
    torch.testing.assert_close(torch.cat([first, rest], 1)[:, 3:], full, atol=1e-5, rtol=1e-4)


def test_rope_rotates_channel_pairs_and_depends_on_relative_position_only():
    from synthloop.nn.model import apply_rope, rope_tables

    config = GPTConfig(vocab_size=12, block_size=16, n_head=2, n_embd=16, pos="rope")
    cos, sin = rope_tables(config, "cpu")  # (16, 8)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 1, 16, 8, generator=g)  # (B=1, H=1, T=16, hd=8) each
    rotated = apply_rope(q, cos[None, None], sin[None, None])
    # channel i and i + hd/2 turn by position * base^(-2i/hd)
    angle = torch.arange(16.0)[:, None] * 10_000.0 ** (-torch.arange(0, 8, 2) / 8)  # (T, 4)
    x1, x2 = q[0, 0].chunk(2, -1)
    expected = torch.cat([x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()], -1)
    torch.testing.assert_close(rotated[0, 0], expected, atol=1e-5, rtol=1e-5)
    # the attention score of a query at i and a key at j depends on i - j alone
    k_rot = apply_rope(k[:, :, :1].expand(1, 1, 16, 8), cos[None, None], sin[None, None])[0, 0]  # one key at every position
    q_rot = apply_rope(q[:, :, :1].expand(1, 1, 16, 8), cos[None, None], sin[None, None])[0, 0]  # one query
    scores = (q_rot[:, None] * k_rot[None]).sum(-1)  # (i, j)
    torch.testing.assert_close(scores[5, 2], scores[12, 9])
    torch.testing.assert_close(scores[3, 3], scores[10, 10])
    assert not torch.allclose(scores[5, 2], scores[5, 3])


def test_residual_stream_stays_float32_under_bf16_autocast():
    # the trainer's CUDA path runs in bf16 autocast; in-place residual adds into the bf16 outputs
    # of the linear layers would silently turn the whole residual stream into bf16
    model = GPT(GPTConfig(vocab_size=12, block_size=16, n_layer=2, n_head=2, n_embd=16, pos="rope"), torch.Generator().manual_seed(0))
    dtypes = []
    for block in model.blocks:
        block.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randint(0, 12, (2, 8)))
    assert dtypes == [torch.float32, torch.float32]


def test_config_validation():
    with pytest.raises(ValueError, match="n_embd must be divisible by n_head"):
        GPTConfig(vocab_size=5, n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="pos must be one of"):
        GPTConfig(vocab_size=5, pos="alibi")


def test_learning_rate_schedules():
    wsd = TrainConfig(steps=100, lr=1.0, warmup=10, decay_fraction=0.2)
    lrs = [learning_rate(s, wsd) for s in range(100)]
    assert lrs[9] == 1.0 and lrs[79] == 1.0 and lrs[99] == pytest.approx(0.05)
    cos = TrainConfig(steps=100, lr=1.0, warmup=0, schedule="cosine")
    assert learning_rate(50, cos) == pytest.approx(0.5) and learning_rate(99, cos) < 1e-3


def _copy_data(rng, n, max_len):
    lengths = rng.integers(1, max_len + 1, n)
    prompts = ["".join(map(str, rng.integers(0, 10, k))) for k in lengths]
    return prompts


@pytest.fixture(scope="module")
def copy_model():
    """A tiny model trained to copy digit strings of length 1..4 (about 2 s on one core)."""
    rng = np.random.default_rng(0)
    tok = CharTokenizer("0123456789")
    prompts = _copy_data(rng, 4000, 4)
    g = torch.Generator().manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=64), g)
    trainer = Trainer(model, TrainConfig(steps=400, batch_size=64, lr=3e-3, warmup=30, device="cpu"), g)
    trainer.fit(tok.batch(prompts, prompts))
    return tok, model, trainer


def test_tiny_model_learns_copy_up_to_length_4(copy_model):
    tok, model, _ = copy_model
    prompts = _copy_data(np.random.default_rng(1), 300, 4)
    tokens, valid = tok.prompt_batch(prompts)
    out, _ = generate(model, tokens, valid, 6, tok.eos)
    accuracy = np.mean([tok.decode(o) == p for o, p in zip(out.tolist(), prompts)])
    assert accuracy >= 0.95


def test_beam_search_top_beam_is_the_greedy_answer(copy_model):
    tok, model, _ = copy_model
    prompts = _copy_data(np.random.default_rng(2), 50, 4)
    tokens, valid = tok.prompt_batch(prompts)
    greedy, greedy_logprob = generate(model, tokens, valid, 6, tok.eos)
    beams, logprob = beam_search(model, tokens, valid, 6, tok.eos, k=4)
    assert beams.shape == (50, 4, 6) and logprob.shape == (50, 4)
    confident = greedy_logprob > np.log(0.9)  # the greedy answer holds most of the mass
    assert confident.float().mean() > 0.8
    assert torch.equal(beams[confident, 0], greedy[confident])
    torch.testing.assert_close(logprob[confident, 0], greedy_logprob[confident], atol=1e-4, rtol=1e-4)
    assert torch.all(logprob[:, :-1] >= logprob[:, 1:])  # best first
    assert len({tuple(b) for b in beams[0].tolist()}) == 4  # distinct candidates


def test_sampling_is_reproducible_and_temperature_zero_is_greedy(copy_model):
    tok, model, _ = copy_model
    tokens, valid = tok.prompt_batch(["123", "4"])
    a, _ = generate(model, tokens, valid, 5, tok.eos, temperature=2.0, generator=torch.Generator().manual_seed(3))
    b, _ = generate(model, tokens, valid, 5, tok.eos, temperature=2.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    greedy, _ = generate(model, tokens, valid, 5, tok.eos)
    assert [tok.decode(o) for o in greedy.tolist()] == ["123", "4"]


def test_checkpoint_resume_reproduces_training(tmp_path):
    tok = CharTokenizer("0123456789")
    prompts = _copy_data(np.random.default_rng(0), 200, 3)
    data = tok.batch(prompts, prompts)
    config = TrainConfig(steps=20, batch_size=16, lr=1e-3, warmup=5, device="cpu", log_every=5)

    def fresh():
        g = torch.Generator().manual_seed(7)
        return Trainer(GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16), g), config, g)

    straight = fresh()
    straight.fit(data)
    first = fresh()
    first.fit(data, until=10)
    first.save(tmp_path / "ckpt.pt")
    resumed = fresh()
    resumed.load(tmp_path / "ckpt.pt")  # weights_only=True inside
    assert resumed.step == 10
    resumed.fit(data)
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)


def test_evaluation_hooks_run_every_log_every_steps():
    tok = CharTokenizer("0123456789")
    prompts = _copy_data(np.random.default_rng(0), 50, 3)
    g = torch.Generator().manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16), g)
    seen = []
    trainer = Trainer(model, TrainConfig(steps=12, batch_size=8, warmup=2, device="cpu", log_every=5), g,
                      hooks=[lambda step, t: seen.append((step, t.model.training))])
    result = trainer.fit(tok.batch(prompts, prompts))
    assert seen == [(5, True), (10, True), (12, True)]
    assert [s for s, _ in result.history] == [5, 10, 12] and result.tokens > 0


def test_cli_training_bar_follows_the_trainer():
    import logging

    from rich.progress import Progress

    from synthloop.cli import training_progress

    tok = CharTokenizer("0123456789")
    prompts = _copy_data(np.random.default_rng(0), 50, 3)
    g = torch.Generator().manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16), g)
    trainer = Trainer(model, TrainConfig(steps=12, batch_size=8, warmup=2, device="cpu", log_every=5), g)
    logger = logging.getLogger("synthloop.nn.trainer")
    before = (logger.level, logger.propagate, len(logger.handlers))
    with Progress(disable=True) as progress, training_progress(progress):
        assert not progress.tasks  # no bar until a network trains
        result = trainer.fit(tok.batch(prompts, prompts))
    (bar,) = progress.tasks
    assert bar.completed == bar.total == 12
    assert f"loss {result.loss:.4f}" in bar.description and "tokens/s" in bar.description
    assert (logger.level, logger.propagate, len(logger.handlers)) == before


@pytest.mark.parametrize("pos", ["nope", "rope"])
def test_cached_greedy_decoding_matches_full_forwards(pos, monkeypatch):
    # Prefill in blocks of 2 rows (the CPU path), left padding, then one token per step: the same
    # tokens and log-probabilities as recomputing every sequence from scratch without a cache.
    monkeypatch.setattr(decoding, "PREFILL_TOKENS", 12)
    g = torch.Generator().manual_seed(0)
    tok = CharTokenizer("0123456789")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16, pos=pos), g).eval()
    prompts = ["12", "3456", "7", "890123", "45"]
    tokens, valid = tok.prompt_batch(prompts)
    out, logprob = generate(model, tokens, valid, 5, eos=-1)  # eos never emitted: 5 tokens per row
    for i, prompt in enumerate(prompts):
        seq, total = tokens[i][valid[i]][None], 0.0  # (1, t) without the padding
        for step in range(5):
            with torch.no_grad():
                logits = model(seq)[0, -1]
            nxt = int(logits.argmax())
            total += float(torch.log_softmax(logits, -1)[nxt])
            assert nxt == int(out[i, step])
            seq = torch.cat([seq, torch.tensor([[nxt]])], 1)
        assert abs(total - float(logprob[i])) < 1e-5
