"""A LLaMA-style decoder-only transformer in one readable file (nanoGPT's layout).

Pre-norm blocks of RMSNorm → causal self-attention → RMSNorm → SwiGLU MLP, no biases, tied
input/output embeddings. Positions are encoded by one of

- ``"nope"``: none at all — the causal mask alone tells tokens apart; what Lee et al. (2025) use
  for length generalization,
- ``"learned"``: an absolute position embedding (cannot go beyond ``block_size``),
- ``"rope"``: rotary embeddings on queries and keys.

Every forward pass takes per-row position ids and a key-padding mask, so that left-padded
prompts of different lengths decode together; :class:`KVCache` holds the keys and values of
earlier positions so each decoding step costs one token per row.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

PositionalEncoding = Literal["nope", "learned", "rope"]


@dataclass
class GPTConfig:
    """Shape of the transformer.

    Attributes
    ----------
    vocab_size : int
    block_size : int
        Longest sequence for learned positions and the RoPE table (NoPE has no limit but memory).
    n_layer, n_head, n_embd : int
        Layers, attention heads and width (``n_embd`` divisible by ``n_head``).
    mlp_ratio : float
        Hidden units of the SwiGLU MLP per unit of width (LLaMA-style: 1536 = 4 × 384).
    pos : {"nope", "learned", "rope"}
    rope_base : float
    """

    vocab_size: int
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    mlp_ratio: float = 4.0
    pos: PositionalEncoding = "nope"
    rope_base: float = 10_000.0

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd must be divisible by n_head; got n_embd={self.n_embd}, n_head={self.n_head}")
        if self.pos not in ("nope", "learned", "rope"):
            raise ValueError(f"pos must be one of 'nope', 'learned', 'rope'; got {self.pos!r}")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rope needs an even head size; got {self.n_embd // self.n_head}")

    @property
    def mlp_hidden(self) -> int:
        return int(round(self.mlp_ratio * self.n_embd))

    def to_dict(self) -> dict:
        return asdict(self)


class KVCache:
    """Keys and values of every layer for a batch of rows, preallocated to ``max_len`` positions.

    ``keys[l]`` and ``values[l]`` have shape ``(B, H, hd, max_len)`` — transposed, position
    last: a decoding step's attention then reads each head's ``hd`` rows of ``length``
    contiguous numbers, which took 70% of the time of reading ``length`` rows of ``hd``, the
    step's writes included (docs/benchmarks.md). ``length`` positions are filled (the rest is uninitialized memory,
    never read). ``valid`` (B, max_len) marks real (non-padding) key positions.
    """

    def __init__(self, config: GPTConfig, batch: int, max_len: int, device, dtype):
        hd = config.n_embd // config.n_head
        shape = (batch, config.n_head, hd, max_len)
        # Zero-filling this took a tenth of a prefill; attention only reads ``[:length]``. One
        # buffer rather than one per layer: malloc then keeps its pages for the next call
        # instead of returning them, and refaulting them cost a seventh of a decode.
        kv = torch.empty((2, config.n_layer, *shape), device=device, dtype=dtype)
        self.keys = [kv[0, layer] for layer in range(config.n_layer)]  # (B, H, hd, max_len) each
        self.values = [kv[1, layer] for layer in range(config.n_layer)]
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.length = 0
        self.padded = False  # whether any filled key is padding; while not, no mask is needed

    def rows(self, start: int, stop: int) -> KVCache:
        """A view of rows ``start:stop`` sharing this cache's memory (what is written through it
        lands here); the caller sets ``length`` and ``padded`` here afterwards."""
        view = object.__new__(KVCache)
        view.keys = [k[start:stop] for k in self.keys]
        view.values = [v[start:stop] for v in self.values]
        view.valid = self.valid[start:stop]
        view.length, view.padded = self.length, self.padded
        return view

    @property
    def max_len(self) -> int:
        return self.valid.shape[1]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (B',) in that order — beam search's re-ranking of beams."""
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]
        self.valid = self.valid.index_select(0, index)
        self.padded = self.padded and not bool(self.valid[:, : self.length].all())


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_tables(config: GPTConfig, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, shape (block_size, hd): both halves of a row hold the same angles,
    and the first half of ``sin`` is negated (see :func:`apply_rope`)."""
    hd = config.n_embd // config.n_head
    inv_freq = 1.0 / config.rope_base ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32) / hd)
    angles = torch.outer(torch.arange(config.block_size, device=device, dtype=torch.float32), inv_freq)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the channel pairs (i, i + hd/2) of ``x`` (B, H, T, hd) by the angles of each row's
    positions: ``[x1 cos - x2 sin, x2 cos + x1 sin]``, computed as ``x cos + [x2, x1] sin`` with
    the tables of :func:`rope_tables`, (B, 1, T, hd) here — three arithmetic kernels instead of six."""
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    return torch.cat([x2, x1], dim=-1).mul_(sin).add_(xf * cos).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, mask, rope, cache: KVCache | None, layer: int, last_only: bool = False):
        B, T, C = x.shape
        H = self.n_head
        qkv = self.qkv(x).view(B, T, 3 * H, C // H).transpose(1, 2)  # (B, 3H, T, hd)
        q, k, v = qkv.split(H, dim=1)  # (B, H, T, hd)
        if last_only:  # every key, but only the last query (see GPT.forward)
            q = q[:, :, -1:]
            mask = None if mask is None else mask[:, :, -1:]
            if rope is not None:
                cos, sin = rope
                q, k = apply_rope(q, cos[:, :, -1:], sin[:, :, -1:]), apply_rope(k, cos, sin)
        elif rope is not None:  # queries and keys at the same positions: rotated together
            q, k = apply_rope(qkv[:, : 2 * H], *rope).split(H, dim=1)
        k_t, v_t = k.transpose(-1, -2), v.transpose(-1, -2)  # (B, H, hd, T)
        if cache is not None:
            start = cache.length
            cache.keys[layer][..., start : start + T] = k_t
            cache.values[layer][..., start : start + T] = v_t
            k_t, v_t = cache.keys[layer][..., : start + T], cache.values[layer][..., : start + T]  # (B, H, hd, S)
            if start:  # earlier keys too (with an empty cache, k and v are already all of them)
                k, v = k_t.transpose(-1, -2), v_t.transpose(-1, -2)  # (B, H, S, hd)
        T = q.shape[2]
        if T == 1:
            # One new token per row (decoding): two small batched matmuls take about half the
            # time of the fused kernel at these sizes; scaling q costs 1/S of scaling the scores.
            # Both read the transposed cache along its rows, and y comes out in (B, 1, C) order.
            att = torch.matmul(q * (1.0 / math.sqrt(C // self.n_head)), k_t)  # (B, H, 1, S)
            if mask is not None:
                att = att.masked_fill_(~mask, float("-inf"))
            y = torch.matmul(v_t, att.softmax(dim=-1).transpose(-1, -2))  # (B, H, hd, 1)
            return self.proj(y.view(B, 1, C))
        # Without a mask the queries are the whole causal sequence (S == T); see GPT.forward.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)  # mask (B, 1, T, S)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    """SwiGLU: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.gate = nn.Linear(config.n_embd, config.mlp_hidden, bias=False)
        self.up = nn.Linear(config.n_embd, config.mlp_hidden, bias=False)
        self.down = nn.Linear(config.mlp_hidden, config.n_embd, bias=False)

    def forward(self, x):
        if torch.is_grad_enabled():
            return self.down(F.silu(self.gate(x)) * self.up(x))
        # Decoding: in place, no new (B, T, hidden) buffers — fresh large buffers cost page faults.
        return self.down(F.silu(self.gate(x), inplace=True).mul_(self.up(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.norm1 = RMSNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.norm2 = RMSNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, mask, rope, cache, layer, last_only: bool = False):
        y = self.attn(self.norm1(x), mask, rope, cache, layer, last_only)
        x = (x[:, -1:] if last_only else x) + y  # not in place: under autocast y is bf16, x float32
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    """The decoder. ``forward(idx)`` returns logits (B, T, V); see :meth:`forward` for padding
    and the cache."""

    def __init__(self, config: GPTConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_embed = nn.Embedding(config.block_size, config.n_embd) if config.pos == "learned" else None
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied
        if config.pos == "rope":
            cos, sin = rope_tables(config, "cpu")
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """GPT-2 initialization (N(0, 0.02), residual projections scaled by 1/sqrt(2 L)),
        drawn from ``generator`` so that a seed fixes the model."""
        std_out = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if p.ndim == 1:
                p.fill_(1.0)  # RMSNorm gains
            else:
                std = std_out if name.endswith(("proj.weight", "down.weight")) else 0.02
                p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * std)

    def num_parameters(self, embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if not embeddings:
            n -= self.embed.weight.numel() + (self.pos_embed.weight.numel() if self.pos_embed is not None else 0)
        return n

    def forward(self, idx: torch.Tensor, positions: torch.Tensor | None = None, valid: torch.Tensor | None = None,
                cache: KVCache | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, V) for tokens ``idx`` (B, T); (B, 1, V) of the last column with ``last_only``.

        Parameters
        ----------
        positions : (B, T) long, optional
            Position of each token (default ``cache.length + arange(T)``); left-padded rows pass
            their own, so that padding shifts nothing.
        valid : (B, T) bool, optional
            False at padding tokens, which no query may attend to. Without it and without a
            cache, attention is plain causal (training on right-padded rows).
        cache : KVCache, optional
            Keys and values of the earlier positions; filled with these ``T`` and advanced.
        last_only : bool
            Only the last column's logits (a prefill before decoding): the last block then
            computes keys and values for every position but the rest for the last one only,
            about a quarter less work for a 3-layer model.
        """
        B, T = idx.shape
        start = 0 if cache is None else cache.length
        if positions is None:
            positions = torch.arange(start, start + T, device=idx.device).expand(B, T)
        x = self.embed(idx)  # (B, T, C)
        if self.pos_embed is not None:
            if int(positions.max()) >= self.config.block_size:
                raise ValueError(f"sequence position {int(positions.max())} exceeds block_size {self.config.block_size} of learned positions")
            x = x + self.pos_embed(positions)
        rope = None
        if self.config.pos == "rope":
            if int(positions.max()) >= self.config.block_size:
                raise ValueError(f"sequence position {int(positions.max())} exceeds block_size {self.config.block_size} of the RoPE table")
            rope = (self.rope_cos[positions][:, None], self.rope_sin[positions][:, None])  # (B, 1, T, hd)
        mask = None
        if valid is not None or cache is not None:
            if valid is None:
                valid = torch.ones(B, T, dtype=torch.bool, device=idx.device)
            padded = not bool(valid.all())
            if cache is not None:
                cache.valid[:, start : start + T] = valid
                keys_valid = cache.valid[:, : start + T]  # (B, S)
                # A flag instead of a check of every key at every decoding step.
                padded = cache.padded = cache.padded or padded
            else:
                keys_valid = valid
            # With no padding among the keys, plain causal attention is exact and takes the fast
            # kernel: the whole prompt (start == 0) or one new token per row (T == 1).
            if padded or not (start == 0 or T == 1):
                S = start + T
                q_pos = torch.arange(start, S, device=idx.device)
                k_pos = torch.arange(S, device=idx.device)
                causal = k_pos[None, :] <= q_pos[:, None]  # (T, S)
                own = k_pos[None, :] == q_pos[:, None]  # a padding query attends to itself, never to nothing
                mask = (causal & keys_valid[:, None, :]) | own  # (B, T, S)
                mask = mask[:, None]  # (B, 1, T, S)
        for layer, block in enumerate(self.blocks):
            x = block(x, mask, rope, cache, layer, last_only and layer == len(self.blocks) - 1)
        if cache is not None:
            cache.length = start + T
        return self.head(self.norm(x))
