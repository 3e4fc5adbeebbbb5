"""Language models pretrained on their own text (Gerstgrasser et al. 2024; Kazdan et al. 2025).

Generation 0 trains a small decoder-only transformer (:class:`~synthloop.nn.GPT`, one token per
character) from scratch on ``T`` characters of a real English corpus (:mod:`synthloop.corpora`).
Each later generation samples a corpus of the same size from the previous model — chunks of
``block`` characters, each continued from ``<bos>`` at temperature ``temperature`` — and the
workflow composes the next training set from the pool (replace, accumulate,
accumulate-subsample, real-fraction, …). Every generation trains a fresh model from scratch for
``epochs`` passes over its training set, so accumulating costs more per generation, as in the
papers.

Data: each replicate cuts the corpus into non-overlapping chunks of ``block`` characters and
permutes them at random into ``T / block`` training rows and ``test_size / block`` held-out
REAL rows. A row is one chunk; the model sees ``<bos>`` then the chunk and is scored on every
character.

Metrics per generation, of the model trained at that generation:

- ``test_loss``: cross-entropy of the held-out real text, nats per character, and
  ``perplexity`` = exp(test_loss);
- of ``test_size`` characters sampled from the model: ``distinct_1``, ``distinct_2``,
  ``distinct_3`` (distinct word n-grams / word n-grams; Li et al. 2016), ``vocabulary`` (distinct
  words) and ``real_words`` (share of sampled words that occur in the real training text).

Models are kept as numpy state dicts (:class:`TextModel`), so run checkpoints hold no torch
objects; torch is imported only when a model is trained or sampled. Rows drawn with
non-uniform weights (``weighted``/``real-fraction`` workflows) are resampled with probability
proportional to their weight into a training set of the same size.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import ValidationInfo, field_validator, model_validator

from ..corpora import CORPORA, load_corpus
from ..pool import TrainingSet
from ..validation import ConfigError, Integer, Real
from ..workflows import Workflow
from .base import Task, TaskConfig, Theory

log = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


def words(text: str) -> list[str]:
    """Lower-cased words of ``text``: runs of letters, with inner apostrophes (``thou'rt``)."""
    return _WORD.findall(text.lower())


def distinct_n(tokens: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of a token sequence.

    Parameters
    ----------
    tokens : list of str
    n : int
        n-gram order (≥ 1).

    Returns
    -------
    float
        ``|{distinct n-grams}| / (len(tokens) − n + 1)``; NaN when there is no n-gram.

    Notes
    -----
    ``distinct-n = |set(ngrams)| / |ngrams|`` (1 when no n-gram repeats; → 0 as the text
    repeats itself). Comparable only between texts of similar length: it falls with length.

    References
    ----------
    Li et al. (2016), "A diversity-promoting objective function for neural conversation models",
    Section 4.2 (distinct-1, distinct-2).

    Examples
    --------
    >>> distinct_n("the cat saw the cat".split(), 1), distinct_n("the cat saw the cat".split(), 2)
    (0.6, 0.75)
    """
    if n < 1:
        raise ValueError(f"n must be at least 1; got {n}")
    total = len(tokens) - n + 1
    if total <= 0:
        return float("nan")
    return len(set(zip(*(tokens[i:] for i in range(n))))) / total


def diversity(text: str, reference: set[str] | frozenset[str] = frozenset()) -> dict[str, float]:
    """``distinct_1..3``, ``vocabulary`` and (with a reference vocabulary) ``real_words`` of ``text``."""
    w = words(text)
    out = {f"distinct_{n}": distinct_n(w, n) for n in (1, 2, 3)}
    out["vocabulary"] = float(len(set(w)))
    if reference:
        out["real_words"] = float(np.mean([x in reference for x in w])) if w else float("nan")
    return out


class TextConfig(TaskConfig):
    """A pretraining-collapse experiment on real text; see the module docstring."""

    name: Literal["text"] = "text"
    corpus: str = "bible"
    T: Integer(1, 1_000_000_000) = 100_000
    test_size: Integer(1, 1_000_000_000) = 20_000
    block: Integer(2, 100_000) = 64
    # model
    layers: Integer(1, 128) = 2
    width: Integer(8, 16384) = 64
    heads: Integer(1, 256) = 4
    mlp_ratio: Real(0, 64, lo_open=True) = 4.0
    pos: Literal["nope", "learned", "rope"] = "rope"
    # training
    epochs: Real(0, 100_000, lo_open=True) = 2.0
    batch_size: Integer(1, 1_000_000) = 32
    lr: Real(0, 1, lo_open=True) = 3e-3
    lr_schedule: Literal["wsd", "cosine", "constant"] = "cosine"
    warmup: Integer(0, 10_000_000) = 20
    weight_decay: Real(0, 10) = 0.1
    # sampling
    temperature: Real(0, 100, lo_open=True) = 1.0
    sample_batch: Integer(1, 1_000_000) = 1024
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Integer(1, 1024) = 1

    @field_validator("corpus", mode="after")
    @classmethod
    def _resolve(cls, value: str, info: ValidationInfo) -> str:
        if value in CORPORA:
            return value
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = Path((info.context or {}).get("base_dir") or Path.cwd()) / path
        return str(path.resolve())

    @model_validator(mode="after")
    def _sizes(self):
        if self.width % self.heads:
            raise ConfigError(f"task.width must be divisible by task.heads = {self.heads}; got {self.width}")
        if self.pos == "rope" and (self.width // self.heads) % 2:
            raise ConfigError(f"task.pos = 'rope' needs an even head size (task.width / task.heads); got {self.width // self.heads}")
        for key in ("T", "test_size"):
            if getattr(self, key) < self.block:
                raise ConfigError(f"task.{key} must be at least task.block = {self.block} characters; got {getattr(self, key)}")
        chunks = len(load_corpus(self.corpus)) // self.block  # one ConfigError line naming the corpus
        if self.train_rows + self.test_rows > chunks:
            raise ConfigError(f"task.T + task.test_size must fit in the corpus {self.corpus!r}: {chunks * self.block} characters "
                              f"in chunks of {self.block}; got {self.T} + {self.test_size}")
        return self

    @property
    def train_rows(self) -> int:
        return self.T // self.block

    @property
    def test_rows(self) -> int:
        return self.test_size // self.block


@dataclass
class TextData:
    """Chunks of text as token ids, replicates first."""

    tokens: np.ndarray  # (R, n, block) int32, ids of the CharTokenizer of ``alphabet``


@dataclass
class RealTextData(TextData):
    """The real training chunks, the held-out real chunks, the alphabet and the real vocabulary."""

    test: np.ndarray | None = None  # (R, m, block) int32
    alphabet: str = ""
    vocabulary: frozenset[str] = frozenset()  # words of the real training text of replicate 0


@dataclass
class TextModel:
    """One trained transformer per replicate, as numpy state dicts, with its held-out metrics.

    Attributes
    ----------
    states : list of dict of str to ndarray
        Per replicate, the GPT's ``state_dict`` as numpy arrays.
    alphabet : str
        Characters of the tokenizer.
    metrics_ : dict of str to ndarray of shape (R,)
        Test loss, perplexity and sample diversity, computed at fit time.
    sample_ : str
        The start of replicate 0's evaluation samples, to read.
    """

    states: list[dict[str, np.ndarray]]
    alphabet: str
    metrics_: dict[str, np.ndarray]
    sample_: str


class TextTask(Task):
    """Small character-level language models retrained on their own samples."""

    Config = TextConfig
    primary_metric = "test_loss"
    metric_labels = {
        "test_loss": "cross-entropy of held-out real text (nats per character)",
        "perplexity": "perplexity of held-out real text (per character)",
        "train_loss": "training loss at the end of training (nats per character)",
        "distinct_1": "distinct words / words in samples",
        "distinct_2": "distinct word bigrams / bigrams in samples",
        "distinct_3": "distinct word trigrams / trigrams in samples",
        "vocabulary": "distinct words in samples",
        "real_words": "share of sampled words found in the real training text",
    }

    def __init__(self, config: TextConfig):
        super().__init__(config)
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise ConfigError("task 'text' needs PyTorch, which is not installed: pip install 'synthloop[nn]'")
        if config.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("task.device = 'cuda', but torch sees no CUDA device; use 'auto' or 'cpu'")

    @property
    def real_size(self) -> int:
        return self.config.train_rows

    # ---- the model ----------------------------------------------------------------------
    def _network(self, alphabet: str, state: dict | None = None, generator=None):
        import torch

        from ..nn import GPT, CharTokenizer, GPTConfig

        c = self.config
        if generator is None:  # the weights come from ``state``; never touch torch's global generator
            generator = torch.Generator().manual_seed(0)
        config = GPTConfig(vocab_size=CharTokenizer(alphabet).vocab_size, block_size=c.block + 1, n_layer=c.layers,
                           n_head=c.heads, n_embd=c.width, mlp_ratio=c.mlp_ratio, pos=c.pos)
        network = GPT(config, generator)
        if state is not None:
            network.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        device = c.device if c.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        return network.to(device)

    def _train_config(self, rows: int):
        from ..nn import TrainConfig

        c = self.config
        steps = max(1, math.ceil(c.epochs * rows / c.batch_size))
        return TrainConfig(steps=steps, batch_size=c.batch_size, lr=c.lr, schedule=c.lr_schedule, warmup=min(c.warmup, steps // 10),
                           min_lr_ratio=0.1, weight_decay=c.weight_decay, device=c.device, log_every=max(1, steps // 5))

    @staticmethod
    def _with_bos(tokens: np.ndarray):
        """``<bos>`` then each chunk: (n, block + 1) long tensor; bos id of CharTokenizer is 1."""
        import torch

        out = torch.ones((tokens.shape[0], tokens.shape[1] + 1), dtype=torch.long)
        out[:, 1:] = torch.from_numpy(tokens.astype(np.int64))
        return out

    def cross_entropy(self, network, tokens: np.ndarray, batch: int = 256) -> float:
        """Mean cross-entropy (nats per character) of ``network`` on chunks ``tokens`` (m, block)."""
        import torch
        import torch.nn.functional as F

        device = next(network.parameters()).device
        network.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(tokens), batch):
                x = self._with_bos(tokens[start : start + batch]).to(device)  # (b, block + 1)
                logits = network(x[:, :-1]).float()  # (b, block, V)
                total += float(F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="sum"))
        return total / tokens.size

    def sample(self, network, n: int, generator) -> np.ndarray:
        """``n`` chunks (n, block) int32 sampled from ``<bos>`` at ``temperature``, never a special token."""
        import torch

        from ..nn import KVCache
        from ..nn.tokenizer import SPECIALS

        c = self.config
        device = next(network.parameters()).device
        network.eval()
        out = np.empty((n, c.block), dtype=np.int32)
        with torch.no_grad():
            for start in range(0, n, c.sample_batch):
                b = min(c.sample_batch, n - start)
                cache = KVCache(network.config, b, c.block, device, next(network.parameters()).dtype)
                token = torch.ones((b, 1), dtype=torch.long, device=device)  # <bos>
                for t in range(c.block):
                    logits = network(token, cache=cache)[:, -1].float()  # (b, V)
                    logits[:, : len(SPECIALS)] = float("-inf")
                    probs = torch.softmax(logits / c.temperature, dim=-1).cpu()
                    token = torch.multinomial(probs, 1, generator=generator).to(device)  # (b, 1)
                    out[start : start + b, t] = token[:, 0].cpu().numpy()
        return out

    # ---- the Task protocol ----------------------------------------------------------------
    def _threads(self):
        from ..nn.images import cpu_threads

        return cpu_threads(self.config.threads)

    def sample_real(self, rngs) -> RealTextData:
        from ..nn import CharTokenizer

        c = self.config
        text = load_corpus(c.corpus)
        alphabet = "".join(sorted(set(text)))
        tok = CharTokenizer(alphabet)
        chunks = len(text) // c.block
        ids = np.asarray(tok.encode(text[: chunks * c.block]), dtype=np.int32).reshape(chunks, c.block)
        train, test = [], []
        for rng in rngs:
            order = rng.permutation(chunks)
            train.append(ids[order[: c.train_rows]])
            test.append(ids[order[c.train_rows : c.train_rows + c.test_rows]])
        vocabulary = frozenset(words(" ".join(tok.decode(row) for row in train[0])))
        return RealTextData(tokens=np.stack(train), test=np.stack(test), alphabet=alphabet, vocabulary=vocabulary)

    def synthesize(self, model: TextModel, inputs, n: int, rngs) -> TextData:
        from ..nn import torch_generator

        with self._threads():
            out = np.stack([self.sample(self._network(model.alphabet, model.states[r]), n, torch_generator(rng))
                            for r, rng in enumerate(rngs)])
        return TextData(tokens=out)

    def fit(self, training: TrainingSet, rngs) -> TextModel:
        with self._threads():
            return self._fit(training, rngs)

    def _fit(self, training: TrainingSet, rngs) -> TextModel:
        import torch

        from ..nn import Batch, CharTokenizer, Trainer, torch_generator

        c = self.config
        real: RealTextData = training.pool.real.data
        tok = CharTokenizer(real.alphabet)
        tokens = training.rows("tokens")  # (R, n, block)
        weights = None
        if training.is_weighted:
            w = training.row_weights()  # (n,)
            if not np.all(w == w[0]):
                weights = torch.as_tensor(w / w.sum(), dtype=torch.float64)
        states, metrics, sample_text = [], [], ""
        for r, rng in enumerate(rngs):
            generator = torch_generator(rng)
            rows = self._with_bos(tokens[r])  # (n, block + 1)
            if weights is not None:
                rows = rows[torch.multinomial(weights, len(rows), replacement=True, generator=generator)]
            network = self._network(real.alphabet, generator=generator)
            trainer = Trainer(network, self._train_config(len(rows)), generator)
            result = trainer.fit(Batch(rows, torch.ones((len(rows), c.block), dtype=torch.bool)))
            log.info("replicate %d: %d chunks, %d steps, train loss %.4f, %.0f tokens/s", r, len(rows), result.steps, result.loss, result.tokens_per_s)
            loss = self.cross_entropy(network, real.test[r])
            samples = self.sample(network, real.test.shape[1], generator)
            text = "\n".join(tok.decode(row) for row in samples)
            scores = {"test_loss": loss, "perplexity": math.exp(loss), "train_loss": result.loss, **diversity(text, real.vocabulary)}
            if r == 0:
                sample_text = text[:2000]
            states.append({k: v.detach().cpu().float().numpy() for k, v in network.state_dict().items()})
            metrics.append(scores)
        return TextModel(states, real.alphabet, {k: np.array([s[k] for s in metrics]) for k in metrics[0]}, sample_text)

    def evaluate(self, model: TextModel, real: RealTextData) -> dict[str, np.ndarray]:
        return dict(model.metrics_)

    def theory(self, workflow: Workflow, generations: int) -> Theory:
        return Theory(note="no closed form for iterated language-model pretraining (simulations only)")

    def describe(self) -> str:
        c = self.config
        corpus = c.corpus if c.corpus in CORPORA else Path(c.corpus).name
        return (f"text: {corpus}, T={c.T:,} characters in chunks of {c.block}, {c.test_size:,} held-out, "
                f"GPT {c.layers}×{c.width} ({c.heads} heads, {c.pos}), {c.epochs:g} epochs (AdamW, lr={c.lr:g}, batch {c.batch_size}), "
                f"sampled at temperature {c.temperature:g}")
