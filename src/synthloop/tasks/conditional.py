"""Conditional generation with a verifier: a language model summarizes, a verifier selects (Feng et al. 2024).

Feng et al.'s news-summarization experiment (their Figure 4), on data that installs offline:
(source, target) text pairs (:mod:`synthloop.pairs`; by default PyPI's ``aclsum``: the abstract
of an ACL paper → its one-sentence *outcome* summary) and a pretrained causal LM (SmolLM2-135M
by default, through :class:`synthloop.models.hf.CausalLM`).

* Generation 0 — the *generator*: a model fine-tuned from the base model (LoRA adapters, or
  all weights with ``lora_rank = 0``) on a share ``generator_fraction`` (12.5%) of the training
  pairs — the real source of the pool.
* Generation ``g ≥ 1``: the previous model labels the remaining training inputs (greedy or
  beam search); the verifier scores every label and the selection keeps a share
  (``verifier.selection = 'top'``, ``keep = 0.125, 0.25, 0.5``); a FRESH model is fine-tuned
  from the base model on what the workflow composes (``replace``: the kept labels only).
* ``labels = 'reference'`` gives every input its reference target instead (a perfect
  generator): with ``workflows = ['accumulate']`` and no verifier, generation 1 is trained on
  all real training pairs — the paper's "all real data" line.

Verifiers (:mod:`synthloop.verifiers`):

* ``oracle``: ROUGE-1 F of the label against the input's reference (:meth:`label_distance` is
  ``1 − ROUGE-1``; the task has no right/wrong truth, so the oracle ranks by it alone);
* ``self``: the generator's own mean log-likelihood per target token (``−log`` perplexity) of its
  label (:meth:`confidence`);
* ``model``: the same under a different model, ``judge_model`` — by default the base model
  without fine-tuning — a weak supervisor (:meth:`judge`);
* ``random``: a uniform draw.

Metrics per generation, on the first ``test_size`` test pairs (aclsum's test split): mean
ROUGE-1/2/L F of the model's greedy (or beam) summaries against the references
(:func:`synthloop.rouge.rouge`), the mean length of its summaries in words, its training loss,
and ``train_label_rouge1``: the mean ROUGE-1 of its training targets against the references (1
for real pairs) — how good the selected synthetic data are.

Prompts are ``prompt.format(source=…)`` with the source cut to its first ``max_source_tokens``
tokens; a training row is the prompt, a space, the target and EOS, and the loss is taken on the
target's tokens only (the prompt is the condition).

Cost sharing: the cells of a sweep over verifiers and rates share generation 0 (same seed,
same data), and their generators label the same inputs. The model fits, generations and scores
are deterministic functions of their inputs and seeds, so this module keeps their results in a
small in-process memo keyed by a digest of everything they depend on; a sweep run with
``--workers 1`` then fits the generator once rather than once per cell. The numbers are the
same with or without the memo (tested).

Models are kept as numpy state dicts of their adapters (:class:`ConditionalModel`, a few MB
per replicate with LoRA), so run checkpoints hold no torch objects.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..pairs import ACLSUM, load_pairs
from ..pool import TrainingSet
from ..validation import ConfigError, Integer, Real, user_path
from ..workflows import Workflow
from .base import Task, TaskConfig, Theory, require_torch

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
#: default keys of the source and target texts: aclsum's, and a user JSONL file's
DEFAULT_KEYS = {ACLSUM: ("sentences.abstract", "summary.outcome"), "file": ("source", "target")}


class ConditionalConfig(TaskConfig):
    """A summarization experiment with a verifier; see the module docstring."""

    name: Literal["conditional"] = "conditional"
    data: str = Field(default=ACLSUM, description="'aclsum' or a JSONL file of training pairs")
    test_data: str | None = Field(default=None, description="a JSONL file of test pairs; default: aclsum's test split, or test_size pairs held out of data")
    source_key: str | None = Field(default=None, description="dotted key of the source text; default 'sentences.abstract' (aclsum) or 'source'")
    target_key: str | None = Field(default=None, description="dotted key of the target text; default 'summary.outcome' (aclsum) or 'target'")
    train_size: Integer(2, 10_000_000) | None = Field(default=None, description="training pairs used (a random subset per replicate); default all")
    test_size: Integer(1, 10_000_000) | None = Field(default=None, description="test pairs evaluated; default all (a user file without test_data: a fifth)")
    generator_fraction: Real(0, 1, lo_open=True, hi_open=True) = Field(default=0.125, description="share of the training pairs the generator is fine-tuned on")
    labels: Literal["generator", "reference"] = Field(default="generator", description="who labels the remaining inputs: the model, or their references (all-real baseline)")
    prompt: str = Field(default="{source}\nSummary:", description="prompt template; {source} is the (truncated) source")
    max_source_tokens: Integer(1, 100_000) = 256
    max_target_tokens: Integer(1, 100_000) = 48
    decoding: Literal["greedy", "beam"] = "greedy"
    beams: Integer(2, 64) = 4
    # models
    model: str = Field(default=SMOLLM2, description="base model: 'smollm2', a .gguf file or a save_pretrained directory")
    judge_model: str | None = Field(default=None, description="the 'model' verifier's scorer; default: the base model, not fine-tuned")
    # fine-tuning
    lora_rank: Integer(0, 4096) = Field(default=8, description="LoRA rank; 0 fine-tunes all weights")
    lora_alpha: Real(0, lo_open=True) = 16.0
    epochs: Real(0, 100_000, lo_open=True) = 3.0
    steps: Integer(1, 10_000_000) | None = Field(default=None, description="optimizer steps per fit; default ceil(epochs · rows / batch_size)")
    batch_size: Integer(1, 100_000) = 8
    lr: Real(0, 1, lo_open=True) = 2e-4
    eval_batch: Integer(1, 100_000) = 16
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Integer(1, 1024) = 1

    @model_validator(mode="before")
    @classmethod
    def _default_keys(cls, data: Any):
        if isinstance(data, dict):
            kind = ACLSUM if data.get("data", ACLSUM) == ACLSUM else "file"
            source, target = DEFAULT_KEYS[kind]
            data = {**data, "source_key": data.get("source_key") or source, "target_key": data.get("target_key") or target}
        return data

    @field_validator("data", "test_data", mode="after")
    @classmethod
    def _data_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if value in (None, ACLSUM) else user_path(value, info.context)

    @field_validator("model", "judge_model", mode="after")
    @classmethod
    def _model_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value in (None, SMOLLM2):
            return value
        path = user_path(value, info.context)
        if not Path(path).exists():
            raise ConfigError(f"task.{info.field_name}: must be 'smollm2', a .gguf file or a save_pretrained directory; {path} does not exist")
        return path

    @model_validator(mode="after")
    def _sizes(self):
        if "{source}" not in self.prompt:
            raise ConfigError(f"task.prompt must contain {{source}}; got {self.prompt!r}")
        train, test = self.pairs("train"), self.pairs("test")  # one ConfigError line naming the file and key
        available = len(train[0]) - (self.n_test if self.holds_out else 0)
        if self.holds_out and available < 2:
            raise ConfigError(f"task.test_size must leave at least 2 training pairs of the {len(train[0])} in {self.data}; got {self.n_test}")
        if self.train_size is not None and self.train_size > available:
            raise ConfigError(f"task.train_size must be at most the {available} training pairs available; got {self.train_size}")
        if not self.holds_out and self.test_size is not None and self.test_size > len(test[0]):
            raise ConfigError(f"task.test_size must be at most the {len(test[0])} test pairs available; got {self.test_size}")
        n = self.n_train
        if not 1 <= self.n_generator <= n - 1:
            raise ConfigError(f"task.generator_fraction leaves no pair for the generator or none to label: "
                              f"round({self.generator_fraction:g} × {n}) = {self.n_generator}")
        return self

    @property
    def holds_out(self) -> bool:
        """True when the test pairs are held out of ``data`` (a user file without ``test_data``)."""
        return self.data != ACLSUM and self.test_data is None

    def pairs(self, split: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(sources, targets) of the training (``"train"``) or test (``"test"``) file."""
        if split == "test" and self.test_data is not None:
            return load_pairs(self.test_data, "test", self.source_key, self.target_key, what="task.test_data")
        if split == "test" and self.holds_out:
            return load_pairs(self.data, "train", self.source_key, self.target_key)
        return load_pairs(self.data, split, self.source_key, self.target_key)

    @property
    def n_train(self) -> int:
        """Training pairs per replicate (generator's + inputs to label)."""
        available = len(self.pairs("train")[0]) - (self.n_test if self.holds_out else 0)
        return self.train_size if self.train_size is not None else available

    @property
    def n_generator(self) -> int:
        return round(self.generator_fraction * self.n_train)

    @property
    def n_test(self) -> int:
        """Test pairs per replicate: ``test_size``, else every test pair (a fifth of ``data`` when held out of it)."""
        if self.test_size is not None:
            return self.test_size
        return max(1, len(self.pairs("train")[0]) // 5) if self.holds_out else len(self.pairs("test")[0])


@dataclass
class Pairs:
    """Rows of (source, target) text, replicates first, with each input's reference target."""

    source: np.ndarray  # (R, n) object: source texts
    target: np.ndarray  # (R, n) object: target texts (the model's labels in synthetic rows)
    reference: np.ndarray  # (R, n) object: the real target — hidden truth, never trained on in synthetic rows


@dataclass
class RealPairs(Pairs):
    """The generator's real pairs, the inputs left to label, and the test pairs."""

    unlabelled: Pairs | None = None  # (R, n_train − n_generator) inputs for generations ≥ 1
    test_source: np.ndarray | None = None  # (R, m) object
    test_target: np.ndarray | None = None  # (R, m) object


@dataclass
class ConditionalModel:
    """One fine-tuned model per replicate, as numpy state dicts, with what it was fit on.

    Attributes
    ----------
    states : list of dict of str to ndarray
        Per replicate, the LoRA adapters' weights (``lora_rank ≥ 1``) or all weights.
    keys : list of str
        Per replicate, a digest of everything the fit depended on (base model, settings, rows,
        seed): the model's identity in the memo.
    train_loss_ : ndarray of shape (R,)
        Mean training loss over the last fifth of the steps (nats per target token).
    train_label_rouge1_ : ndarray of shape (R,)
        Mean ROUGE-1 F of the training targets against their references.
    """

    states: list[dict[str, np.ndarray]]
    keys: list[str]
    train_loss_: np.ndarray
    train_label_rouge1_: np.ndarray


# ---- the memo: deterministic results shared by the cells of a sweep -----------------------------
class _Memo:
    """The ``size`` most recent results of deterministic computations, by digest."""

    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str, compute):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = compute()
        self.items[key] = value
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return value

    def clear(self) -> None:
        self.items.clear()


MEMO = _Memo(64)


def digest(*parts: Any) -> str:
    """A stable hex digest of JSON-able ``parts``."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@functools.lru_cache(maxsize=2)
def _base_lm(source: str, device: str):
    from ..models.hf import CausalLM

    return CausalLM.load(source, device=device)


# ---- helpers on top of CausalLM: completion-only fine-tuning and completion log-likelihoods ------
def completion_batch(tokenizer, prompts: list[str], targets: list[str], max_target_tokens: int):
    """Right-padded ``prompt + " " + target + EOS`` rows: ``(ids, mask, target_mask)``, each (B, T).

    ``target_mask`` marks the positions whose token belongs to the target (EOS included): the
    tokens a completion-only loss or a completion log-likelihood sums over."""
    import torch

    from ..models.hf import right_padded

    eos = tokenizer.eos_token_id
    rows, starts = [], []
    for prompt, target in zip(prompts, targets):
        head = tokenizer(prompt)["input_ids"]
        tail = tokenizer(" " + target, add_special_tokens=False)["input_ids"][:max_target_tokens] + [eos]
        rows.append(head + tail)
        starts.append(len(head))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    ids, mask = right_padded(rows, pad)  # (B, T)
    positions = torch.arange(ids.shape[1])[None, :]  # (1, T)
    target_mask = (positions >= torch.tensor(starts)[:, None]) & mask.bool()  # (B, T)
    return ids, mask, target_mask


def completion_logprobs(lm, prompts: list[str], targets: list[str], max_target_tokens: int, batch_size: int = 16) -> np.ndarray:
    """Mean log-likelihood per target token (EOS included) of each target given its prompt, (n,):
    ``Σ_t log p(y_t | prompt, y_<t) / |y|`` — minus the log of the target's perplexity."""
    import torch

    device = next(lm.model.parameters()).device
    out = np.empty(len(prompts))
    lm.model.eval()
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            ids, mask, target = completion_batch(lm.tokenizer, prompts[start:start + batch_size], targets[start:start + batch_size], max_target_tokens)
            ids, mask, target = ids.to(device), mask.to(device), target.to(device)
            logp = torch.log_softmax(lm.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
            token = logp.gather(-1, ids[:, 1:, None])[..., 0] * target[:, 1:]  # (B, T-1): predicted target tokens only
            out[start:start + len(token)] = (token.sum(1) / target[:, 1:].sum(1)).cpu().numpy()
    return out


def fine_tune_completions(lm, prompts: list[str], targets: list[str], generator, *, steps: int, batch_size: int, lr: float,
                          max_target_tokens: int) -> float:
    """AdamW on the trainable weights of ``lm`` with the loss on target tokens only; returns the
    mean loss over the last fifth of the steps (nats per target token). Rows are drawn in a new
    random order (``generator``) every epoch; dropout stays off (``CausalLM.fine_tune``'s reasons)."""
    import torch

    device = next(lm.model.parameters()).device
    parameters = [p for p in lm.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    lm.model.eval()
    losses, order = [], []
    for _ in range(steps):
        if len(order) < batch_size:
            order += torch.randperm(len(prompts), generator=generator).tolist()
        batch, order = order[:batch_size], order[batch_size:]
        ids, mask, target = completion_batch(lm.tokenizer, [prompts[i] for i in batch], [targets[i] for i in batch], max_target_tokens)
        ids, mask, target = ids.to(device), mask.to(device), target.to(device)
        with torch.enable_grad():
            logits = lm.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (B, T-1, V)
            keep = target[:, 1:]  # (B, T-1)
            loss = torch.nn.functional.cross_entropy(logits[keep], ids[:, 1:][keep])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
    optimizer.zero_grad(set_to_none=True)
    return float(np.mean(losses[-max(1, steps // 5):]))


class ConditionalTask(Task):
    """A pretrained LM fine-tuned to summarize, labelling inputs for a fresh model through a verifier."""

    Config = ConditionalConfig
    primary_metric = "rouge1"
    metric_labels = {
        "rouge1": "ROUGE-1 F of test summaries",
        "rouge2": "ROUGE-2 F of test summaries",
        "rougeL": "ROUGE-L F of test summaries",
        "summary_words": "words per test summary",
        "train_loss": "training loss over the last fifth of training (nats per target token)",
        "train_label_rouge1": "ROUGE-1 F of the training targets against their references",
    }

    def __init__(self, config: ConditionalConfig):
        super().__init__(config)
        require_torch(config.name, config.device)

    # ---- sizes ------------------------------------------------------------------------------
    @property
    def real_size(self) -> int:
        return self.config.n_generator

    @property
    def synthetic_size(self) -> int:
        return self.config.n_train - self.config.n_generator

    def synthetic_capacity(self) -> tuple[int, str] | None:
        n = self.synthetic_size
        return n, f"only {n} training inputs are left to label (task.n_train − the generator's {self.config.n_generator} pairs)"

    # ---- models -----------------------------------------------------------------------------
    @property
    def _device(self) -> str:
        import torch

        return self.config.device if self.config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")

    def _threads(self):
        from ..nn.images import cpu_threads

        return cpu_threads(self.config.threads)

    def _fresh(self):
        """A copy of the base model, for one fit."""
        from ..models.hf import CausalLM

        base = _base_lm(self.config.model, self._device)
        return CausalLM(copy.deepcopy(base.model), base.tokenizer, base.source)

    def _lora(self):
        from ..models.hf import LoRA

        return LoRA(rank=self.config.lora_rank, alpha=self.config.lora_alpha)

    def _network(self, state: dict[str, np.ndarray]):
        """The fine-tuned model of one replicate, rebuilt from its state."""
        import torch

        lm = self._fresh()
        if self.config.lora_rank:
            lm.add_lora(self._lora(), torch.Generator().manual_seed(0))  # initial values are overwritten
            lm.load_lora_state(state)
        else:
            lm.model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
        return lm

    @functools.cached_property
    def _tokenizer(self):
        return _base_lm(self.config.model, self._device).tokenizer

    def prompts(self, sources) -> list[str]:
        """The prompts of ``sources``: the template around each source's first ``max_source_tokens`` tokens."""
        tok, c = self._tokenizer, self.config
        out = []
        for source in sources:
            ids = tok(source, add_special_tokens=False)["input_ids"]
            text = source if len(ids) <= c.max_source_tokens else tok.decode(ids[: c.max_source_tokens])
            out.append(c.prompt.format(source=text))
        return out

    def _settings(self) -> dict:
        """What a fit depends on besides its rows and seed."""
        c = self.config
        return {k: getattr(c, k) for k in ("model", "prompt", "max_source_tokens", "max_target_tokens", "lora_rank", "lora_alpha",
                                            "epochs", "steps", "batch_size", "lr")} | {"device": self._device}

    def _fit_one(self, sources, targets, seed: int) -> tuple[dict[str, np.ndarray], float, str]:
        import torch

        c = self.config
        sources, targets = [str(s) for s in sources], [str(t) for t in targets]
        key = digest("fit", self._settings(), sources, targets, seed)

        def compute():
            generator = torch.Generator().manual_seed(seed)
            lm = self._fresh()
            if c.lora_rank:
                lm.add_lora(self._lora(), generator)
            steps = c.steps if c.steps is not None else max(1, math.ceil(c.epochs * len(sources) / c.batch_size))
            start = time.perf_counter()
            loss = fine_tune_completions(lm, self.prompts(sources), targets, generator, steps=steps, batch_size=c.batch_size,
                                         lr=c.lr, max_target_tokens=c.max_target_tokens)
            state = lm.lora_state() if c.lora_rank else {k: v.detach().cpu().float().numpy() for k, v in lm.model.state_dict().items()}
            log.info("fine-tuned on %d pairs: %d steps, loss %.4f, %.1f s", len(sources), steps, loss, time.perf_counter() - start)
            return state, loss

        state, loss = MEMO.get(key, compute)
        return state, loss, key

    def _summaries(self, model: ConditionalModel, r: int, sources) -> list[str]:
        """Replicate ``r``'s summaries of ``sources`` (greedy, or the most likely of ``beams`` beams)."""
        c = self.config
        sources = [str(s) for s in sources]
        key = digest("generate", model.keys[r], c.decoding, c.beams, c.max_target_tokens, c.eval_batch, sources)

        def compute():
            import torch

            start = time.perf_counter()
            lm = self._network(model.states[r])
            prompts = self.prompts(sources)
            if c.decoding == "beam":
                beams = lm.beams(prompts, k=c.beams, max_new_tokens=c.max_target_tokens, batch_size=c.eval_batch)
                return [cands[0].text.strip() for cands in beams]
            # top_p → 0 keeps only the most likely token: greedy, on CausalLM's KV-cache loop (the generator is never drawn from)
            texts = [text.strip() for text in lm.generate(prompts, torch.Generator().manual_seed(0), max_new_tokens=c.max_target_tokens,
                                                          top_p=1e-9, batch_size=c.eval_batch)]
            log.info("summarized %d sources in %.1f s", len(texts), time.perf_counter() - start)
            return texts

        return MEMO.get(key, compute)

    def _scores(self, lm_key: str, build, sources, targets) -> np.ndarray:
        """Mean log-likelihood per target token of ``targets`` under the model ``build()`` makes (memoized by ``lm_key``)."""
        c = self.config
        sources, targets = [str(s) for s in sources], [str(t) for t in targets]
        key = digest("score", lm_key, c.prompt, c.max_source_tokens, c.max_target_tokens, sources, targets)
        return MEMO.get(key, lambda: completion_logprobs(build(), self.prompts(sources), targets, c.max_target_tokens, c.eval_batch))

    # ---- the Task protocol ----------------------------------------------------------------------
    def sample_real(self, rngs) -> RealPairs:
        c = self.config
        sources, targets = (np.array(x, dtype=object) for x in c.pairs("train"))
        if not c.holds_out:
            test_s, test_t = (np.array(x, dtype=object)[: c.n_test] for x in c.pairs("test"))
        n, m = c.n_train, c.n_generator
        rows = {"source": [], "target": [], "rest": [], "test": []}
        for rng in rngs:
            order = rng.permutation(len(sources))
            if c.holds_out:
                rows["test"].append(order[: c.n_test])
                order = order[c.n_test:]
            rows["source"].append(order[:m])
            rows["rest"].append(order[m:n])
        generator = np.stack(rows["source"])  # (R, m)
        rest = np.stack(rows["rest"])  # (R, n − m)
        if c.holds_out:
            test = np.stack(rows["test"])  # (R, t)
            test_source, test_target = sources[test], targets[test]
        else:
            test_source, test_target = np.broadcast_to(test_s, (len(rngs), len(test_s))), np.broadcast_to(test_t, (len(rngs), len(test_t)))
        unlabelled = Pairs(source=sources[rest], target=np.full(rest.shape, "", dtype=object), reference=targets[rest])
        return RealPairs(source=sources[generator], target=targets[generator], reference=targets[generator], unlabelled=unlabelled,
                         test_source=np.array(test_source), test_target=np.array(test_target))

    def sample_inputs(self, real: RealPairs, n: int, rngs) -> Pairs:
        rest = real.unlabelled
        return Pairs(source=rest.source[:, :n], target=rest.target[:, :n], reference=rest.reference[:, :n])

    def synthesize(self, model: ConditionalModel, inputs: Pairs, n: int, rngs) -> Pairs:
        if self.config.labels == "reference":
            return Pairs(source=inputs.source, target=inputs.reference.copy(), reference=inputs.reference)
        with self._threads():
            target = np.array([self._summaries(model, r, inputs.source[r]) for r in range(len(rngs))], dtype=object).reshape(inputs.source.shape)
        return Pairs(source=inputs.source, target=target, reference=inputs.reference)

    def label_distance(self, data: Pairs, real: RealPairs) -> np.ndarray:
        from ..rouge import rouge

        return np.stack([1.0 - rouge(list(t), list(ref))["rouge1"] for t, ref in zip(data.target, data.reference)])  # (R, n)

    def confidence(self, model: ConditionalModel, data: Pairs) -> np.ndarray:
        with self._threads():
            return np.stack([self._scores(model.keys[r], lambda r=r: self._network(model.states[r]), data.source[r], data.target[r])
                             for r in range(len(model.keys))])  # (R, n)

    def judge(self, data: Pairs, real: RealPairs, rngs) -> np.ndarray:
        c = self.config
        source = c.judge_model or c.model
        from ..models.hf import CausalLM

        def build():
            if source == c.model:
                return self._fresh()
            return CausalLM.load(source, device=self._device)

        with self._threads():
            return np.stack([self._scores(digest("judge", source), build, data.source[r], data.target[r]) for r in range(data.source.shape[0])])

    def fit(self, training: TrainingSet, rngs) -> ConditionalModel:
        from ..rouge import rouge

        source, target, reference = (training.rows(k) for k in ("source", "target", "reference"))  # each (R, n)
        states, keys, losses, label_rouge = [], [], [], []
        with self._threads():
            for r, rng in enumerate(rngs):
                seed = int(rng.integers(2**63 - 1))
                rows = np.arange(source.shape[1])
                if training.is_weighted:
                    w = training.row_weights()  # (n,)
                    if not np.all(w == w[0]):
                        rows = rng.choice(len(w), size=len(w), p=w / w.sum())
                state, loss, key = self._fit_one(source[r, rows], target[r, rows], seed)
                states.append(state)
                keys.append(key)
                losses.append(loss)
                label_rouge.append(rouge(list(target[r, rows]), list(reference[r, rows]))["rouge1"].mean())
        return ConditionalModel(states, keys, np.array(losses), np.array(label_rouge))

    def evaluate(self, model: ConditionalModel, real: RealPairs) -> dict[str, np.ndarray]:
        from ..rouge import rouge

        metrics = []
        with self._threads():
            for r in range(len(model.states)):
                summaries = self._summaries(model, r, real.test_source[r])
                scores = rouge(summaries, list(real.test_target[r]))
                metrics.append({k: float(v.mean()) for k, v in scores.items()} | {"summary_words": float(np.mean([len(s.split()) for s in summaries]))})
        out = {k: np.array([m[k] for m in metrics]) for k in metrics[0]}
        return out | {"train_loss": model.train_loss_, "train_label_rouge1": model.train_label_rouge1_}

    def theory(self, workflow: Workflow, generations: int) -> Theory:
        return Theory(note="no closed form for a fine-tuned language model's summaries (measurements only)")

    def describe(self) -> str:
        c = self.config
        data = c.data if c.data == ACLSUM else Path(c.data).name
        model = c.model if c.model == SMOLLM2 else Path(c.model).name
        tuning = f"LoRA rank {c.lora_rank}" if c.lora_rank else "all weights"
        steps = f"{c.steps} steps" if c.steps is not None else f"{c.epochs:g} epochs"
        return (f"conditional: {data} {c.source_key} → {c.target_key}, {c.n_train} training pairs ({c.n_generator} for the generator), "
                f"{c.n_test} test pairs, {model} fine-tuned ({tuning}, {steps}, lr={c.lr:g}, batch {c.batch_size}), "
                f"sources ≤ {c.max_source_tokens} tokens, {c.decoding} summaries ≤ {c.max_target_tokens} tokens"
                + (", reference labels (all-real baseline)" if c.labels == "reference" else ""))
