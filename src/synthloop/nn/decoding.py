"""Decoding with the KV cache: greedy, temperature sampling and beam search, batched.

Prompts arrive left-padded (``CharTokenizer.prompt_batch``) so every row's next token sits in
the last column; each row's positions count only its real tokens, so padding changes nothing.
After one pass over the prompts (prefill), each step feeds one token per row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import GPT, KVCache


# Tokens per prefill pass. Rows are independent, so the prompts go through the model a block of
# rows at a time: a block's activations then stay in the CPU's caches, which made a 256 × 24-token
# prefill a third faster on one core than one pass over all rows (docs/benchmarks.md).
PREFILL_TOKENS = 2048


def _prefill(model: GPT, tokens: torch.Tensor, valid: torch.Tensor, max_new: int) -> tuple[KVCache, torch.Tensor, torch.Tensor]:
    B, T = tokens.shape
    dtype = next(model.parameters()).dtype
    cache = KVCache(model.config, B, T + max_new, tokens.device, dtype)
    positions = (valid.long().cumsum(1) - 1).clamp(min=0)  # (B, T)
    rows = B if tokens.is_cuda else max(1, PREFILL_TOKENS // T)
    logits, padded = [], False
    for start in range(0, B, rows):
        stop = start + rows
        block = cache.rows(start, stop)
        logits.append(model(tokens[start:stop], positions=positions[start:stop], valid=valid[start:stop],
                            cache=block, last_only=True)[:, -1])  # (rows, V)
        padded |= block.padded
    cache.length, cache.padded = T, padded
    return cache, torch.cat(logits).float(), positions[:, -1] + 1  # next position per row (B,)


@torch.no_grad()
def generate(model: GPT, tokens: torch.Tensor, valid: torch.Tensor, max_new: int, eos: int,
             temperature: float = 0.0, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Continue left-padded prompts by up to ``max_new`` tokens.

    Parameters
    ----------
    tokens, valid : (B, T)
        Left-padded prompts and their validity mask.
    temperature : float
        0 decodes greedily; otherwise tokens are sampled from ``softmax(logits / temperature)``
        with ``generator``.

    Returns
    -------
    out : LongTensor of shape (B, max_new)
        New tokens; after a row's ``eos`` the row repeats ``eos``.
    logprob : FloatTensor of shape (B,)
        Log-probability of each row's continuation up to and including its ``eos``.
    """
    was_training = model.training
    model.eval()
    B = tokens.shape[0]
    cache, logits, position = _prefill(model, tokens, valid, max_new)
    out = torch.full((B, max_new), eos, dtype=torch.long, device=tokens.device)
    logprob = torch.zeros(B, device=tokens.device)
    done = torch.zeros(B, dtype=torch.bool, device=tokens.device)
    ones = torch.ones(B, 1, dtype=torch.bool, device=tokens.device)
    for step in range(max_new):
        logp = F.log_softmax(logits, dim=-1)  # (B, V)
        if temperature > 0:
            probs = F.softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(tokens.device)
        else:
            nxt = logits.argmax(dim=-1)
        nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
        logprob += torch.where(done, 0.0, logp.gather(1, nxt[:, None]).squeeze(1))
        out[:, step] = nxt
        done |= nxt == eos
        if bool(done.all()) or step == max_new - 1:
            break
        logits = model(nxt[:, None], positions=position[:, None], valid=ones, cache=cache)[:, -1].float()
        position = position + 1
    model.train(was_training)
    return out, logprob


@torch.no_grad()
def beam_search(model: GPT, tokens: torch.Tensor, valid: torch.Tensor, max_new: int, eos: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most probable continuations of each prompt found by beam search.

    Returns
    -------
    out : LongTensor of shape (B, k, max_new)
        Candidates, best first; finished ones are padded with ``eos``.
    logprob : FloatTensor of shape (B, k)
        Each candidate's total log-probability (sorted, descending).

    Notes
    -----
    All ``B·k`` beams decode as one batch; after each step the cache rows are reordered to
    follow the surviving beams. A finished beam keeps its score and extends only by ``eos``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    was_training = model.training
    model.eval()
    B, device = tokens.shape[0], tokens.device
    beams_tokens = tokens.repeat_interleave(k, dim=0)  # (B k, T)
    beams_valid = valid.repeat_interleave(k, dim=0)
    cache, logits, position = _prefill(model, beams_tokens, beams_valid, max_new)
    V = logits.shape[-1]
    score = torch.full((B, k), float("-inf"), device=device)
    score[:, 0] = 0.0  # identical beams at the start: only one may expand
    out = torch.full((B, k, max_new), eos, dtype=torch.long, device=device)
    done = torch.zeros(B, k, dtype=torch.bool, device=device)
    ones = torch.ones(B * k, 1, dtype=torch.bool, device=device)
    eos_only = torch.full((V,), float("-inf"), device=device)
    eos_only[eos] = 0.0
    for step in range(max_new):
        logp = F.log_softmax(logits, dim=-1).view(B, k, V)
        logp = torch.where(done[..., None], eos_only, logp)
        total = (score[..., None] + logp).view(B, k * V)
        score, flat = total.topk(k, dim=1)  # (B, k)
        parent, nxt = flat // V, flat % V
        out = out.gather(1, parent[..., None].expand(B, k, max_new)).clone()
        out[:, :, step] = nxt
        done = done.gather(1, parent) | (nxt == eos)
        if bool(done.all()) or step == max_new - 1:
            break
        rows = (parent + torch.arange(B, device=device)[:, None] * k).view(-1)  # (B k,)
        cache.reorder(rows)
        position = position[rows]
        logits = model(nxt.view(-1, 1), positions=position[:, None], valid=ones, cache=cache)[:, -1].float()
        position = position + 1
    model.train(was_training)
    return out, score
