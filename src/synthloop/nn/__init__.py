"""Small decoder-only transformers for synthloop's neural tasks (needs the ``nn`` extra: torch).

One concept per module, nanoGPT-style: :mod:`.model` (the transformer and its KV cache),
:mod:`.tokenizer` (characters, special tokens, padding and the answer-only loss mask),
:mod:`.trainer` (AdamW, learning-rate schedules, clipping, evaluation hooks, checkpoints) and
:mod:`.decoding` (greedy, sampling and beam search, batched, with the cache). Nothing outside
``synthloop.nn`` and the neural tasks imports torch, so the core package works without it.
:mod:`.images` holds the image models (VAE, DDPM denoiser, digit classifier) of the ``vae`` and
``diffusion`` tasks.
"""

from __future__ import annotations

from .decoding import beam_search, generate
from .model import GPT, GPTConfig, KVCache
from .tokenizer import Batch, CharTokenizer
from .trainer import TrainConfig, Trainer, torch_generator

__all__ = [
    "GPT", "GPTConfig", "KVCache", "CharTokenizer", "Batch", "TrainConfig", "Trainer",
    "torch_generator", "generate", "beam_search",
]
