"""Language models pretrained on their own text (Gerstgrasser et al. 2024; Kazdan et al. 2025).

Generation 0 trains a small decoder-only transformer (:class:`~synthloop.nn.GPT`) from scratch on ``T`` characters of a real English corpus (:mod:`synthloop.corpora`).
Each later generation samples a corpus of the same size from the previous model — chunks of
``block`` characters, each continued from ``<bos>`` at temperature ``temperature`` — and the
workflow composes the next training set from the pool (replace, accumulate,
accumulate-subsample, real-fraction, …). Every generation trains a fresh model from scratch for
``epochs`` passes over its training set, so accumulating costs more per generation, as in the
papers.

Tokens: one per character (``tokenizer = "char"``, the corpus's characters), or byte-level BPE
(``tokenizer = "bpe"``) with ``vocab_size`` tokens trained on the whole corpus with the
``tokenizers`` library — like the papers' pretrained tokenizers, it is fixed before any model
sees data.

Data: each replicate cuts the tokenized corpus into non-overlapping chunks of ``block`` tokens
and permutes them at random into training rows and held-out REAL rows holding about ``T`` and
``test_size`` characters. A row is one chunk; the model sees ``<bos>`` then the chunk and is
scored on every token.

Metrics per generation, of the model trained at that generation:

- ``test_loss``: cross-entropy of the held-out real text, nats per character (summed over
  tokens, divided by the characters they decode to, so char and BPE models compare), and
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

import functools
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
from ..validation import ConfigError, Integer, Real, user_path
from ..workflows import Workflow
from .base import Task, TaskConfig, Theory, require_torch

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
    tokenizer: Literal["char", "bpe"] = "char"
    vocab_size: Integer(260, 1_000_000) = 512
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
        return user_path(value, info.context)

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
        if self.T // self.block + self.test_size // self.block > chunks:
            raise ConfigError(f"task.T + task.test_size must fit in the corpus {self.corpus!r}: {chunks * self.block} characters "
                              f"in chunks of {self.block}; got {self.T} + {self.test_size}")
        return self

    @property
    def train_rows(self) -> int:
        """Training chunks: ``T`` characters in chunks of ``block`` tokens."""
        return max(1, round(self.T / (self.block * encoded(self.corpus, self.tokenizer, self.vocab_size).chars_per_token)))

    @property
    def test_rows(self) -> int:
        return max(1, round(self.test_size / (self.block * encoded(self.corpus, self.tokenizer, self.vocab_size).chars_per_token)))


@dataclass(frozen=True)
class Codec:
    """A tokenizer as plain data: the characters (``"char"``) or the BPE model's JSON (``"bpe"``).

    Ids 0–3 are the special tokens of :data:`synthloop.nn.tokenizer.SPECIALS` (``<bos>`` = 1)."""

    kind: str
    spec: str  # the alphabet, or the tokenizers JSON

    @functools.cached_property
    def _impl(self):
        if self.kind == "char":
            from ..nn import CharTokenizer

            return CharTokenizer(self.spec)
        from tokenizers import Tokenizer

        return Tokenizer.from_str(self.spec)

    @property
    def vocab_size(self) -> int:
        return self._impl.vocab_size if self.kind == "char" else self._impl.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        if self.kind == "char":
            return np.asarray(self._impl.encode(text), dtype=np.int32)
        # line by line in parallel: encoding one 4 MB string is 3× slower
        return np.fromiter((i for e in self._impl.encode_batch(text.splitlines(keepends=True)) for i in e.ids), dtype=np.int32)

    def decode(self, ids: np.ndarray) -> str:
        if self.kind == "char":
            return self._impl.decode(ids)
        return self._impl.decode([int(i) for i in ids])

    def __getstate__(self):
        return {"kind": self.kind, "spec": self.spec}

    def __setstate__(self, state):
        object.__setattr__(self, "kind", state["kind"])
        object.__setattr__(self, "spec", state["spec"])


@dataclass(frozen=True)
class Encoded:
    codec: Codec
    ids: np.ndarray  # (N,) int32, the whole corpus
    chars_per_token: float


@functools.lru_cache(maxsize=4)
def encoded(corpus: str, tokenizer: str, vocab_size: int) -> Encoded:
    """The corpus tokenized (and the BPE tokenizer trained), cached per process."""
    from ..nn.tokenizer import SPECIALS

    text = load_corpus(corpus)
    if tokenizer == "char":
        codec = Codec("char", "".join(sorted(set(text))))
    else:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        bpe.train_from_iterator([text], trainer)
        codec = Codec("bpe", bpe.to_str())
    ids = codec.encode(text)
    return Encoded(codec, ids, len(text) / len(ids))


@dataclass
class TextData:
    """Chunks of text as token ids, replicates first."""

    tokens: np.ndarray  # (R, n, block) int32 token ids


@dataclass
class RealTextData(TextData):
    """The real training chunks, the held-out real chunks, the alphabet and the real vocabulary."""

    test: np.ndarray | None = None  # (R, m, block) int32
    codec: Codec | None = None
    test_chars: np.ndarray | None = None  # (R,) characters the held-out chunks decode to
    vocabulary: frozenset[str] = frozenset()  # words of the real training text of replicate 0


@dataclass
class TextModel:
    """One trained transformer per replicate, as numpy state dicts, with its held-out metrics.

    Attributes
    ----------
    states : list of dict of str to ndarray
        Per replicate, the GPT's ``state_dict`` as numpy arrays.
    codec : Codec
        The tokenizer.
    metrics_ : dict of str to ndarray of shape (R,)
        Test loss, perplexity and sample diversity, computed at fit time.
    sample_ : str
        The start of replicate 0's evaluation samples, to read.
    """

    states: list[dict[str, np.ndarray]]
    codec: Codec
    metrics_: dict[str, np.ndarray]
    sample_: str


class TextTask(Task):
    """Small language models (character or BPE tokens) pretrained on real text, then on their own samples."""

    Config = TextConfig
    primary_metric = "test_loss"
    metric_labels = {
        "test_loss": "cross-entropy of held-out real text (nats per character)",
        "perplexity": "perplexity of held-out real text (per character)",
        "train_loss": "training loss over the last fifth of training (nats per token)",
        "distinct_1": "distinct words / words in samples",
        "distinct_2": "distinct word bigrams / bigrams in samples",
        "distinct_3": "distinct word trigrams / trigrams in samples",
        "vocabulary": "distinct words in samples",
        "real_words": "share of sampled words found in the real training text",
    }

    def __init__(self, config: TextConfig):
        super().__init__(config)
        require_torch(config.name, config.device)

    @property
    def real_size(self) -> int:
        return self.config.train_rows

    # ---- the model ----------------------------------------------------------------------
    def _network(self, codec: Codec, state: dict | None = None, generator=None):
        import torch

        from ..nn import GPT, GPTConfig

        c = self.config
        if generator is None:  # the weights come from ``state``; never touch torch's global generator
            generator = torch.Generator().manual_seed(0)
        config = GPTConfig(vocab_size=codec.vocab_size, block_size=c.block + 1, n_layer=c.layers,
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
        """Total cross-entropy (nats) of ``network`` on chunks ``tokens`` (m, block)."""
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
        return total

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
        c = self.config
        corpus = encoded(c.corpus, c.tokenizer, c.vocab_size)
        chunks = len(corpus.ids) // c.block
        n_train, n_test = c.train_rows, c.test_rows
        if n_train + n_test > chunks:
            raise ConfigError(f"task.T + task.test_size must fit in the corpus {c.corpus!r}: {chunks} chunks of {c.block} tokens; "
                              f"got {n_train} + {n_test}")
        ids = corpus.ids[: chunks * c.block].reshape(chunks, c.block)
        train, test = [], []
        for rng in rngs:
            order = rng.permutation(chunks)
            train.append(ids[order[:n_train]])
            test.append(ids[order[n_train : n_train + n_test]])
        test_chars = np.array([sum(len(corpus.codec.decode(row)) for row in rows) for rows in test])
        vocabulary = frozenset(words("\n".join(corpus.codec.decode(row) for row in train[0])))
        return RealTextData(tokens=np.stack(train), test=np.stack(test), codec=corpus.codec, test_chars=test_chars, vocabulary=vocabulary)

    def synthesize(self, model: TextModel, inputs, n: int, rngs) -> TextData:
        from ..nn import torch_generator

        with self._threads():
            out = np.stack([self.sample(self._network(model.codec, model.states[r]), n, torch_generator(rng))
                            for r, rng in enumerate(rngs)])
        return TextData(tokens=out)

    def fit(self, training: TrainingSet, rngs) -> TextModel:
        with self._threads():
            return self._fit(training, rngs)

    def _fit(self, training: TrainingSet, rngs) -> TextModel:
        import torch

        from ..nn import Batch, Trainer, torch_generator

        c = self.config
        real: RealTextData = training.pool.real.data
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
            network = self._network(real.codec, generator=generator)
            trainer = Trainer(network, self._train_config(len(rows)), generator)
            result = trainer.fit(Batch(rows, torch.ones((len(rows), c.block), dtype=torch.bool)))
            log.info("replicate %d: %d chunks, %d steps, train loss %.4f, %.0f tokens/s", r, len(rows), result.steps, result.loss, result.tokens_per_s)
            loss = self.cross_entropy(network, real.test[r]) / real.test_chars[r]
            samples = self.sample(network, real.test.shape[1], generator)
            text = "\n".join(real.codec.decode(row) for row in samples)
            scores = {"test_loss": loss, "perplexity": math.exp(loss), "train_loss": result.loss, **diversity(text, real.vocabulary)}
            if r == 0:
                sample_text = text[:2000]
            states.append({k: v.detach().cpu().float().numpy() for k, v in network.state_dict().items()})
            metrics.append(scores)
        return TextModel(states, real.codec, {k: np.array([s[k] for s in metrics]) for k in metrics[0]}, sample_text)

    def evaluate(self, model: TextModel, real: RealTextData) -> dict[str, np.ndarray]:
        return dict(model.metrics_)

    def theory(self, workflow: Workflow, generations: int) -> Theory:
        return Theory(note="no closed form for iterated language-model pretraining (simulations only)")

    def describe(self) -> str:
        c = self.config
        corpus = c.corpus if c.corpus in CORPORA else Path(c.corpus).name
        tokens = "characters" if c.tokenizer == "char" else f"byte-level BPE tokens (vocabulary {c.vocab_size})"
        return (f"text: {corpus}, T={c.T:,} characters in chunks of {c.block} {tokens}, {c.test_size:,} held-out, "
                f"GPT {c.layers}×{c.width} ({c.heads} heads, {c.pos}), {c.epochs:g} epochs (AdamW, lr={c.lr:g}, batch {c.batch_size}), "
                f"sampled at temperature {c.temperature:g}")
