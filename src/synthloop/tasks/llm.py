"""A pretrained language model fine-tuned on its own outputs (Shumailov et al. 2024; Kazdan et al. 2025).

Generation 0 fine-tunes a pretrained causal LM (SmolLM2-135M-Instruct by default, or any local
transformers model, :mod:`synthloop.models.hf`) on ``texts`` passages of real text of
``seq_len`` tokens each (the King James Bible by default, :mod:`synthloop.corpora`). Each later
generation samples a corpus of the same token count from the previous generation's model —
for each passage, ``seq_len`` new tokens continuing its first ``prompt_tokens`` tokens (a real
prompt), at temperature ``temperature`` over the whole vocabulary by default — and the workflow
composes the next training set from the pool (replace, accumulate, real-fraction: Shumailov's
variant that keeps 10% of the real data, …). A synthetic passage is the continuation only.

``init = "base"`` starts every generation's fine-tuning from the pretrained model, as Shumailov
et al. and Kazdan et al. do; ``init = "previous"`` continues from the previous generation's
weights. ``finetune = "lora"`` trains LoRA adapters (rank ``lora_rank``) and merges them;
``"full"`` trains every weight. AdamW at a constant learning rate, ``epochs`` passes.

Toxicity in the loop (DeTox issue, experiment 3):

- ``toxic_share`` of each generation's synthetic passages are decoded with a logit bias of
  ``steer_strength`` on the single-token words of ``better-profanity``'s list that the
  ``alt-profanity-check`` classifier itself flags (the steering of :mod:`synthloop.detox`);
- filtering is data selection by the experiment's ``verifier``: ``name = "model"`` keeps the
  passages this task's judge (:meth:`LLMTask.judge`, ``1 −`` the classifier's probability of
  being offensive) scores highest; the classifier's verdict is also the task's truth
  (:meth:`LLMTask.correct`), so every run with a verifier records the synthetic data's toxicity
  (``verifier_p`` = share of flagged passages) and ``rlhf`` can model a noisy filter;
- ``edit = true`` applies the DeTox edit (:mod:`synthloop.editing`) after every fit: preference
  pairs are built from the just-fitted model (:func:`synthloop.preferences.build_pairs`: plain vs
  steered continuations of ``edit_pairs`` real prompts), the rank-``edit_rank`` toxic subspace of
  blocks ``edit_layers`` is projected out of their MLP output weights, and the edited model is the
  generation's model (it samples the next generation's data).

Metrics per generation, of the model fitted (and edited) at that generation:

- ``perplexity`` of held-out REAL passages (per token) and ``test_loss`` = its log (nats/token);
  ``train_loss`` (last fifth of the fine-tuning steps);
- of ``eval_samples`` continuations of held-out real prompts (plain decoding): ``distinct_1..3``,
  ``vocabulary`` and ``real_words`` (:func:`synthloop.tasks.text.diversity`), ``toxicity`` (share
  flagged by ``alt-profanity-check`` at ``threshold``) and ``toxicity_prob`` (mean probability).

Checkpoints stay small: a model is kept as the recipe that rebuilds it from the pretrained
weights — per generation the LoRA adapters (float32, ~10 MB for SmolLM2 at rank 8 on all
projections) and the edit's subspace (a few KB); with ``finetune = "full"``, one float16 delta
from the pretrained weights (270 MB for SmolLM2, overwritten every generation; the model in
use is rebuilt from that delta, so a resumed run gives the same numbers).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import ValidationInfo, field_validator, model_validator

from ..corpora import CORPORA, load_corpus
from ..pool import TrainingSet
from ..validation import ConfigError, Integer, Real, user_path
from ..workflows import Workflow
from .base import Task, TaskConfig, Theory, require_torch
from .text import diversity, words

log = logging.getLogger(__name__)

LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LLMConfig(TaskConfig):
    """A pretrained LM fine-tuned on its own outputs; see the module docstring."""

    name: Literal["llm"] = "llm"
    model: str = "smollm2"
    corpus: str = "bible"
    texts: Integer(1, 10_000_000) = 64
    test_texts: Integer(1, 10_000_000) = 32
    seq_len: Integer(4, 8192) = 64
    prompt_tokens: Integer(1, 8192) = 8
    # fine-tuning
    init: Literal["base", "previous"] = "base"
    finetune: Literal["lora", "full"] = "lora"
    lora_rank: Integer(1, 4096) = 8
    lora_alpha: Real(0, 1e6, lo_open=True) = 16.0
    lora_targets: list[str] = list(LLAMA_PROJECTIONS)
    epochs: Real(0, 100_000, lo_open=True) = 1.0
    batch_size: Integer(1, 1_000_000) = 8
    lr: Real(0, 1, lo_open=True) = 1e-4
    weight_decay: Real(0, 10) = 0.0
    # sampling
    temperature: Real(0, 100, lo_open=True) = 1.0
    top_k: Integer(0, 10_000_000) = 0
    top_p: Real(0, 1, lo_open=True) = 1.0
    sample_batch: Integer(1, 100_000) = 32
    eval_samples: Integer(1, 100_000) = 32
    # toxicity in the loop
    toxic_share: Real(0, 1) = 0.0
    steer_strength: Real(0, 100) = 5.0
    threshold: Real(0, 1, lo_open=True, hi_open=True) = 0.5
    edit: bool = False
    edit_pairs: Integer(2, 100_000) = 32
    edit_rank: Integer(1, 64) = 2
    edit_layers: tuple[Integer(0, 10_000), Integer(0, 10_000)] | None = None
    edit_tokens: Integer(1, 1024) = 16
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Integer(1, 1024) = 1

    @field_validator("corpus", mode="after")
    @classmethod
    def _resolve_corpus(cls, value: str, info: ValidationInfo) -> str:
        return value if value in CORPORA else user_path(value, info.context)

    @field_validator("model", mode="after")
    @classmethod
    def _resolve_model(cls, value: str, info: ValidationInfo) -> str:
        return value if value == "smollm2" else user_path(value, info.context)

    @field_validator("lora_targets")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one linear layer, e.g. ['q_proj', 'v_proj']")
        return value

    @model_validator(mode="after")
    def _sizes(self):
        if self.prompt_tokens >= self.seq_len:
            raise ConfigError(f"task.prompt_tokens must be smaller than task.seq_len = {self.seq_len}; got {self.prompt_tokens}")
        if self.edit_layers is not None and self.edit_layers[0] > self.edit_layers[1]:
            raise ConfigError(f"task.edit_layers must be [first, last] blocks with first ≤ last; got {list(self.edit_layers)}")
        load_corpus(self.corpus)  # one ConfigError line naming a missing corpus
        return self


@dataclass
class LLMText:
    """Passages of text, replicates first."""

    texts: np.ndarray  # (R, n) object: str
    steered: np.ndarray  # (R, n) bool: decoded with the toxic logit bias


@dataclass
class RealLLMText(LLMText):
    """The real training passages, held-out real passages and the prompts the task draws on."""

    prompts: np.ndarray | None = None  # (R, n) object: the first prompt_tokens tokens of each training passage
    test: np.ndarray | None = None  # (R, m) object: held-out real passages
    eval_prompts: np.ndarray | None = None  # (R, e) object: prompts of held-out passages
    vocabulary: frozenset[str] = frozenset()  # words of the real training text of replicate 0


@dataclass
class LLMModel:
    """One fine-tuned LM per replicate, as the steps that rebuild it from the pretrained weights.

    Attributes
    ----------
    steps : list of list of dict
        Per replicate, applied in order: ``{"kind": "lora", "state", "rank", "alpha", "targets"}``
        (adapters merged into the weights), ``{"kind": "edit", "layers", "basis"}`` (a DeTox
        projection) or ``{"kind": "delta", "state"}`` (float16 difference from the pretrained
        weights, full fine-tuning).
    metrics_ : dict of str to ndarray of shape (R,)
        Computed at fit time.
    sample_ : str
        A few of replicate 0's evaluation samples, to read.
    """

    steps: list[list[dict]]
    metrics_: dict[str, np.ndarray]
    sample_: str = ""


@functools.lru_cache(maxsize=2)
def _chunks(model: str, corpus: str, seq_len: int, tokenizer) -> np.ndarray:
    """The corpus tokenized by the model's tokenizer, cut into chunks of ``seq_len`` tokens, (N, seq_len)."""
    text = load_corpus(corpus)
    lines = text.splitlines(keepends=True)
    ids = [i for chunk in tokenizer(lines, add_special_tokens=False)["input_ids"] for i in chunk]
    n = len(ids) // seq_len
    return np.asarray(ids[: n * seq_len], dtype=np.int64).reshape(n, seq_len)


class LLMTask(Task):
    """A pretrained causal LM (SmolLM2 by default) fine-tuned on real text, then on its own samples."""

    Config = LLMConfig
    primary_metric = "perplexity"
    fine_tunes = True
    metric_labels = {
        "perplexity": "perplexity of held-out real text (per token)",
        "test_loss": "cross-entropy of held-out real text (nats per token)",
        "train_loss": "fine-tuning loss over the last fifth of the steps (nats per token)",
        "distinct_1": "distinct words / words in samples",
        "distinct_2": "distinct word bigrams / bigrams in samples",
        "distinct_3": "distinct word trigrams / trigrams in samples",
        "vocabulary": "distinct words in samples",
        "real_words": "share of sampled words found in the real training text",
        "toxicity": "share of samples flagged offensive (alt-profanity-check)",
        "toxicity_prob": "mean probability that a sample is offensive",
    }

    def __init__(self, config: LLMConfig):
        super().__init__(config)
        require_torch(config.name, config.device)
        self._lm = None
        self._base_state = None
        self._bias = None

    def __getstate__(self):
        return {"config": self.config}

    def __setstate__(self, state):
        self.__init__(state["config"])

    @property
    def real_size(self) -> int:
        return self.config.texts

    # ---- the model ----------------------------------------------------------------------------
    def _threads(self):
        if self.config.device == "cuda" or self._device() == "cuda":
            return contextlib.nullcontext()
        from ..nn.images import cpu_threads

        return cpu_threads(self.config.threads)

    def _device(self) -> str:
        if self.config.device != "auto":
            return self.config.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _pretrained(self):
        """The loaded model (cached per process) with its pretrained weights restored."""
        import torch

        from ..models.hf import CausalLM

        if self._lm is None:
            self._lm = CausalLM.load(self.config.model, device=self._device())
            self._base_state = {k: v.detach().clone() for k, v in self._lm.model.state_dict().items()}
        else:
            self._lm.merge_lora()
            with torch.no_grad():
                for k, v in self._lm.model.state_dict().items():
                    v.copy_(self._base_state[k])
        return self._lm

    def _build(self, steps: list[dict]):
        """The pretrained model with ``steps`` applied (see :class:`LLMModel`)."""
        import torch

        from ..editing import ToxicSubspace, edit_model
        from ..models.hf import LoRA

        lm = self._pretrained()
        for step in steps:
            if step["kind"] == "lora":
                lm.add_lora(LoRA(rank=step["rank"], alpha=step["alpha"], targets=tuple(step["targets"])), torch.Generator())
                lm.load_lora_state(step["state"]).merge_lora()
            elif step["kind"] == "delta":
                with torch.no_grad():
                    for k, v in lm.model.state_dict().items():
                        if k in step["state"]:
                            v.copy_(self._base_state[k] + torch.from_numpy(step["state"][k]).to(v.device, v.dtype))
            else:
                edit_model(lm.model, ToxicSubspace(layers=tuple(step["layers"]), basis=step["basis"], singular_values=np.full((len(step["layers"]), step["basis"].shape[-1]), np.nan)))
        return lm

    def _steer_bias(self, lm) -> dict[int, float]:
        """The logit bias towards offensive words (those the classifier itself flags), cached."""
        if self._bias is None:
            from ..toxicity import profanity_words, toxicity_probability

            candidates = profanity_words()
            offensive = [w for w, p in zip(candidates, toxicity_probability(candidates)) if p >= self.config.threshold]
            self._bias = lm.token_bias(offensive, self.config.steer_strength)
        return self._bias

    def _edit_layers(self, blocks: int) -> tuple[int, int]:
        c = self.config
        if c.edit_layers is not None:
            if c.edit_layers[1] >= blocks:
                raise ConfigError(f"task.edit_layers must lie in [0, {blocks - 1}] (the model has {blocks} blocks); got {list(c.edit_layers)}")
            return c.edit_layers
        # SmolLM2: blocks 12-25, the range the edit experiment found safe (docs/benchmarks.md)
        lo = min(int(0.4 * blocks), blocks - 1)
        return lo, max(lo, blocks - 5)

    # ---- the Task protocol ----------------------------------------------------------------------
    def sample_real(self, rngs) -> RealLLMText:
        c = self.config
        with self._threads():
            lm = self._pretrained()
        chunks = _chunks(c.model, c.corpus, c.seq_len, lm.tokenizer)
        if c.texts + c.test_texts > len(chunks):
            raise ConfigError(f"task.texts + task.test_texts must fit in the corpus {c.corpus!r}: {len(chunks)} passages of "
                              f"{c.seq_len} tokens; got {c.texts} + {c.test_texts}")
        decode = lambda rows: np.array([lm.tokenizer.decode(r.tolist()) for r in rows], dtype=object)  # noqa: E731
        train, prompts, test, evals = [], [], [], []
        for rng in rngs:
            order = rng.permutation(len(chunks))
            rows, held = chunks[order[: c.texts]], chunks[order[c.texts : c.texts + c.test_texts]]
            train.append(decode(rows))
            prompts.append(decode(rows[:, : c.prompt_tokens]))
            test.append(decode(held))
            evals.append(decode(held[np.arange(c.eval_samples) % len(held), : c.prompt_tokens]))
        R = len(rngs)
        return RealLLMText(texts=np.stack(train), steered=np.zeros((R, c.texts), dtype=bool), prompts=np.stack(prompts),
                           test=np.stack(test), eval_prompts=np.stack(evals), vocabulary=frozenset(words(" ".join(train[0]))))

    def sample_inputs(self, real: RealLLMText, n: int, rngs) -> np.ndarray:
        """Prompts for ``n`` synthetic passages: the real training passages' prompts, each once
        (in random order) before any repeats, (R, n) object."""
        out = []
        for r, rng in enumerate(rngs):
            k = real.prompts.shape[1]
            index = np.concatenate([rng.permutation(k) for _ in range(math.ceil(n / k))])[:n]
            out.append(real.prompts[r][index])
        return np.stack(out)

    def synthesize(self, model: LLMModel, inputs: np.ndarray, n: int, rngs) -> LLMText:
        from ..nn.trainer import torch_generator

        c = self.config
        texts, steered = [], []
        with self._threads():
            for r, rng in enumerate(rngs):
                lm = self._build(model.steps[r])
                generator = torch_generator(rng)
                toxic = np.zeros(n, dtype=bool)
                toxic[rng.permutation(n)[: round(c.toxic_share * n)]] = True
                prompts = list(inputs[r])
                out = np.empty(n, dtype=object)
                kwargs = dict(max_new_tokens=c.seq_len, temperature=c.temperature, top_k=c.top_k, top_p=c.top_p, batch_size=c.sample_batch)
                plain = np.flatnonzero(~toxic)
                out[plain] = lm.generate([prompts[i] for i in plain], generator, **kwargs) if len(plain) else []
                if toxic.any():
                    bias = self._steer_bias(lm)
                    out[toxic] = lm.generate([prompts[i] for i in np.flatnonzero(toxic)], generator, bias=bias, **kwargs)
                texts.append(out)
                steered.append(toxic)
        return LLMText(texts=np.stack(texts), steered=np.stack(steered))

    def judge(self, data: LLMText, real, rngs) -> np.ndarray:
        """``1 −`` the probability that each passage is offensive (``alt-profanity-check``), (R, n):
        the ``model`` verifier keeps the least offensive passages first."""
        from ..toxicity import toxicity_probability

        R, n = data.texts.shape
        return 1.0 - toxicity_probability([str(t) for t in data.texts.ravel()]).reshape(R, n)

    def correct(self, data: LLMText, real) -> np.ndarray:
        """Whether each passage is clean: not flagged offensive by the classifier at ``threshold``,
        (R, n) bool. The classifier is the only toxicity truth available offline, so the
        verification metrics of a run (``verifier_p`` = share of flagged synthetic passages,
        ``verifier_kept_error`` = share flagged among those kept) measure the synthetic data's
        toxicity by the same classifier the ``model`` verifier filters with."""
        from ..toxicity import toxicity_probability

        R, n = data.texts.shape
        return toxicity_probability([str(t) for t in data.texts.ravel()]).reshape(R, n) < self.config.threshold

    def fit(self, training: TrainingSet, rngs, init: LLMModel | None = None) -> LLMModel:
        with self._threads():
            return self._fit(training, rngs, init)

    def _fit(self, training: TrainingSet, rngs, init: LLMModel | None) -> LLMModel:
        import torch

        from ..models.hf import LoRA
        from ..nn.trainer import torch_generator

        c = self.config
        real: RealLLMText = training.pool.real.data
        rows = training.rows("texts")  # (R, n) object
        weights = training.row_weights() if training.is_weighted else None
        steps, metrics, sample_text = [], [], ""
        for r, rng in enumerate(rngs):
            generator = torch_generator(rng)
            previous = init.steps[r] if (init is not None and c.init == "previous") else []
            lm = self._build(previous)
            texts = [str(t) for t in rows[r]]
            if weights is not None and not np.all(weights == weights[0]):
                p = torch.as_tensor(weights / weights.sum(), dtype=torch.float64)
                texts = [texts[i] for i in torch.multinomial(p, len(texts), replacement=True, generator=generator).tolist()]
            lora = LoRA(rank=c.lora_rank, alpha=c.lora_alpha, targets=tuple(c.lora_targets)) if c.finetune == "lora" else None
            result = lm.fine_tune(texts, generator, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, weight_decay=c.weight_decay,
                                  max_length=c.seq_len, lora=lora)
            new = list(previous)
            if lora is not None:
                new.append({"kind": "lora", "state": lm.lora_state(), "rank": lora.rank, "alpha": lora.alpha, "targets": list(lora.targets)})
                lm.merge_lora()
            if c.edit:
                new.append(self._edit(lm, real.prompts[r], generator))
            if lora is None:
                new = [self._delta(lm)]
            steps.append(new)
            scores = self._evaluate(lm, real, r, generator)
            scores["train_loss"] = result.loss
            if r == 0:
                sample_text = "\n".join(scores.pop("_samples")[:8])
            else:
                scores.pop("_samples")
            metrics.append(scores)
            log.info("replicate %d: %d texts, %d steps, loss %.3f → %.3f, perplexity %.2f, %.1f examples/s", r, len(texts),
                     result.steps, result.first_loss, result.loss, scores["perplexity"], result.examples_per_s)
        return LLMModel(steps, {k: np.array([s[k] for s in metrics]) for k in metrics[0]}, sample_text)

    def _delta(self, lm) -> dict:
        """The fine-tuned weights as a float16 difference from the pretrained ones; the model is
        set to exactly what that difference rebuilds, so a resumed run continues identically."""
        import torch

        state = {}
        with torch.no_grad():
            for k, v in lm.model.state_dict().items():
                if not v.is_floating_point():
                    continue
                d = (v - self._base_state[k]).to(torch.float16)
                v.copy_(self._base_state[k] + d.to(v.dtype))
                state[k] = d.cpu().numpy()
        return {"kind": "delta", "state": state}

    def _edit(self, lm, prompts: np.ndarray, generator) -> dict:
        """Fit the toxic subspace from pairs built by the model itself and project it out."""
        from ..editing import edit_model, fit_toxic_subspace, mean_hidden_states, mlp_output_projections
        from ..preferences import build_pairs

        c = self.config
        prompts = [str(p) for p in prompts[np.arange(c.edit_pairs) % len(prompts)]]
        pairs = build_pairs(lm.model, lm.tokenizer, prompts, generator, self._steer_bias(lm), max_new_tokens=c.edit_tokens,
                            batch_size=c.sample_batch)
        lo, hi = self._edit_layers(len(mlp_output_projections(lm.model)))
        preferred = mean_hidden_states(lm.model, lm.tokenizer, [p.preferred for p in pairs])  # (L, N, D)
        dispreferred = mean_hidden_states(lm.model, lm.tokenizer, [p.dispreferred for p in pairs])
        subspace = fit_toxic_subspace(preferred, dispreferred, rank=c.edit_rank, layers=range(lo, hi + 1))
        edit_model(lm.model, subspace)
        return {"kind": "edit", "layers": list(subspace.layers), "basis": subspace.basis}

    def _evaluate(self, lm, real: RealLLMText, r: int, generator) -> dict:
        from ..toxicity import toxicity_probability

        c = self.config
        scores = lm.score([str(t) for t in real.test[r]], max_length=c.seq_len)
        samples = lm.generate([str(p) for p in real.eval_prompts[r]], generator, max_new_tokens=c.seq_len, temperature=c.temperature,
                              top_k=c.top_k, top_p=c.top_p, batch_size=c.sample_batch)
        p = toxicity_probability(samples)
        return {"perplexity": scores.perplexity, "test_loss": math.log(scores.perplexity), **diversity("\n".join(samples), real.vocabulary),
                "toxicity": float((p >= c.threshold).mean()), "toxicity_prob": float(p.mean()), "_samples": samples}

    def evaluate(self, model: LLMModel, real: RealLLMText) -> dict[str, np.ndarray]:
        return dict(model.metrics_)

    def theory(self, workflow: Workflow, generations: int) -> Theory:
        return Theory(note="no closed form for fine-tuning a pretrained language model on its own outputs (simulations only)")

    def describe(self) -> str:
        from pathlib import Path

        c = self.config
        model = c.model if c.model == "smollm2" else Path(c.model).name
        corpus = c.corpus if c.corpus in CORPORA else Path(c.corpus).name
        tune = f"LoRA rank {c.lora_rank}" if c.finetune == "lora" else "full fine-tuning"
        extra = ""
        if c.toxic_share:
            extra += f", {c.toxic_share:.0%} of samples steered towards profanity (strength {c.steer_strength:g})"
        if c.edit:
            extra += f", DeTox edit after each fit (rank {c.edit_rank}, {c.edit_pairs} pairs)"
        return (f"llm: {model} fine-tuned ({tune}, init={c.init}, {c.epochs:g} epochs, lr={c.lr:g}, batch {c.batch_size}) on {c.texts} "
                f"{corpus} passages of {c.seq_len} tokens, {c.test_texts} held out; samples continue {c.prompt_tokens}-token real prompts "
                f"at temperature {c.temperature:g}{extra}")
