"""Eigenvalues of symmetric matrices with a transformer (Charton 2022; Feng et al. 2024, §5).

A decoder-only transformer (:class:`~synthloop.nn.GPT`, learned positions) reads the upper
triangle of an ``size × size`` symmetric matrix with entries ``U[−entry_range, entry_range]``
and writes its eigenvalues in descending order, every number as tokens of
:mod:`synthloop.nn.numbers` (P1000 by default: sign, mantissa, exponent)::

    <bos> a11 a12 … a1n a22 … ann <sep> λ1 λ2 … λn <eos>

The loss covers the answer tokens and ``<eos>`` only. A prediction ``p`` of the eigenvalues
``v`` is **correct at tolerance τ** when ``Σ|v_i − p_i| < τ Σ|v_i|`` (relative L1 error below τ);
a malformed answer (a token out of place) is wrong at every τ.

Generation 0 — the *generator* — trains from scratch, or is loaded from a finished run
(``generator = "runs/…"``) so that several experiments share one expensive model. With
``real_size = 0`` (the default) it trains **online**: every block of 100 steps draws fresh
matrices (a batch samples with replacement within its block), so the generator never sees a
matrix twice in expectation; ``real_size > 0`` trains on that many fixed matrices instead.

Each later generation labels ``synthetic_size`` fresh matrices with the previous generation's
model — greedy decoding, or beam search with ``k`` candidates under the loop's label selection
(``verifier.selection = "best-of-k"``) — and trains on what the workflow composes: a fresh
model (``init = "scratch"``), the previous model fine-tuned (``"previous"``), or another run's
model fine-tuned (a run directory, Feng et al.'s Table 4). Training rows are the model's own
answer tokens, malformed ones included: an unfiltered synthetic set is exactly what the model
wrote.

Verifiers: ``oracle`` keeps correct labels (``tolerance``, default 2%) and, among beam
candidates, picks the one closest to the truth (:meth:`EigenvaluesTask.label_distance`,
the relative L1 error); ``self`` keeps the labels of highest **mean log-probability per answer
token** (lowest perplexity; ``<eos>`` included), the paper's self-selection.

Metrics per generation, on ``test_size`` fresh matrices of the real stream (the same for every
workflow and for a run that loads this run's generator with the same seed): greedy accuracy at
τ = 5, 2, 1, 0.5% (``accuracy_5pct`` …), the share of malformed answers, and the cross-entropy
of the true answers (``test_loss``, nats per answer token). With ``beams = [5, 10, …]`` each
beam size ``k`` adds Feng et al.'s Table 1 as curves over ``k``: ``beam_oracle_2pct@k`` (the
oracle picks the best of the ``k`` candidates) and ``beam_perplexity_2pct@k`` (the candidate of
lowest perplexity is taken), likewise for 5, 1 and 0.5%.

Models are plain data (numpy state dicts, :class:`EigenModel`), so run checkpoints hold no
torch objects and a later run reads them through synthloop's restricted unpickler.

References
----------
Charton (2022), "Linear algebra with transformers", TMLR. Feng, Dohmatob, Yang, Charton, Kempe
(2024), "Beyond model collapse: scaling up with synthesized data requires verification", §5,
Tables 1–4.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..pool import TrainingSet
from ..validation import ConfigError, Integer, Real, user_path
from ..workflows import Workflow
from .base import Task, TaskConfig, Theory, require_torch

log = logging.getLogger(__name__)

TOLERANCES = (0.05, 0.02, 0.01, 0.005)  # the paper's τ = 5, 2, 1, 0.5%
ONLINE_BLOCK = 100  # online training draws fresh matrices every this many steps
SHAPE_KEYS = ("size", "encoding", "inputs", "layers", "width", "heads", "mlp_ratio")
DATA_KEYS = ("size", "encoding", "inputs")  # what any model this task uses must share


def tolerance_name(tau: float) -> str:
    """``0.02 → "2pct"``, ``0.005 → "0.5pct"``: the suffix of accuracy metrics."""
    return f"{100 * tau:g}pct"


class EigenvaluesConfig(TaskConfig):
    """A Feng et al. eigenvalue experiment; see the module docstring."""

    name: Literal["eigenvalues"] = "eigenvalues"
    size: Integer(2, 20) = Field(default=5, description="matrix size n (n × n symmetric)")
    entry_range: Real(0, 1e6, lo_open=True) = Field(default=10.0, description="entries are U[−a, a]")
    encoding: Literal["p1000", "fp15"] = "p1000"
    inputs: Literal["triangle", "full"] = Field(default="triangle", description="tokens of the upper triangle or of every entry")
    # model: decoder-only GPT with learned positions
    layers: Integer(1, 128) = 4
    width: Integer(8, 16384) = 256
    heads: Integer(1, 256) = 8
    mlp_ratio: Real(0, 64, lo_open=True) = 4.0
    # training
    steps: Integer(1, 100_000_000) = Field(default=2000, description="optimizer steps of generation 0")
    retrain_steps: Integer(1, 100_000_000) | None = Field(default=None, description="optimizer steps of generations ≥ 1 (default: steps)")
    batch: Integer(1, 1_000_000) = 128
    lr: Real(0, 1, lo_open=True) = 5e-4
    retrain_lr: Real(0, 1, lo_open=True) | None = Field(default=None, description="peak learning rate of generations ≥ 1 (default: lr)")
    lr_schedule: Literal["wsd", "cosine", "constant"] = "cosine"
    warmup: Integer(0, 100_000_000) = 100
    weight_decay: Real(0, 10) = 0.01
    grad_clip: Real(0, None) = 1.0
    # data
    real_size: Integer(0, 100_000_000) = Field(default=0, description="training matrices of generation 0; 0: fresh matrices every 100 steps (online)")
    synthetic_size: Integer(1, 100_000_000) = Field(default=1000, description="fresh matrices labelled per generation")
    tolerance: Real(0, 10, lo_open=True) = Field(default=0.02, description="correct if Σ|v−p| < tolerance·Σ|v|")
    test_size: Integer(1, 10_000_000) = Field(default=1000, description="fresh test matrices")
    beams: list[Integer(1, 256)] = Field(default_factory=list, description="beam sizes of the Table 1 evaluation")
    # where models come from
    generator: str | None = Field(default=None, description="a finished run of this task whose generation-0 model is generation 0")
    init: str = Field(default="scratch", description="generations ≥ 1 train from: scratch, previous, or a run's model")
    threads: Integer(1, 1024) = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    decode_batch: Integer(1, 1_000_000) = 1000

    @field_validator("generator", mode="after")
    @classmethod
    def _generator_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else user_path(value, info.context)

    @field_validator("init", mode="after")
    @classmethod
    def _init_path(cls, value: str, info: ValidationInfo) -> str:
        return value if value in ("scratch", "previous") else user_path(value, info.context)

    @model_validator(mode="after")
    def _consistent(self):
        if self.width % self.heads:
            raise ConfigError(f"task.width must be divisible by task.heads = {self.heads}; got {self.width}")
        if len(set(self.beams)) != len(self.beams):
            raise ConfigError(f"task.beams must not repeat a beam size; got {self.beams}")
        if self.generator is not None:
            model, file = load_model(self.generator, "generator")
            check_model(model, self, SHAPE_KEYS, "generator", file)
        if self.init not in ("scratch", "previous"):
            model, file = load_model(self.init, "init")
            check_model(model, self, DATA_KEYS, "init", file)
        return self

    def shape(self) -> dict:
        """What fixes a model's tokens and architecture."""
        return {key: getattr(self, key) for key in SHAPE_KEYS}


# ---- numbers and data ------------------------------------------------------------------


def sample_matrices(n: int, size: int, entry_range: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` symmetric matrices (n, size, size), upper-triangle entries i.i.d. U[−a, a]."""
    a = rng.uniform(-entry_range, entry_range, (n, size, size))
    return np.triu(a) + np.swapaxes(np.triu(a, 1), -1, -2)


def eigenvalues(matrices: np.ndarray) -> np.ndarray:
    """Eigenvalues (..., size) of symmetric ``matrices`` (..., size, size), descending."""
    return np.linalg.eigvalsh(matrices)[..., ::-1]


def relative_error(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """``Σ_i |v_i − p_i| / Σ_i |v_i|`` over the last axis; ``inf`` where a prediction is malformed (NaN).

    Examples
    --------
    >>> relative_error(np.array([[4.0, -1.0]]), np.array([[4.0, -0.9]]))
    array([0.02])
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        error = np.abs(truth - predicted).sum(axis=-1) / np.abs(truth).sum(axis=-1)
    return np.where(np.isnan(error), np.inf, error)


@dataclass
class EigenData:
    """Matrices with labels, per replicate; every field has shape (R, n, …).

    Attributes
    ----------
    matrices : float (R, n, size, size)
    answers : int32 (R, n, A)
        Answer tokens training uses (the labels' numbers, then ``<eos>``): the truth's for
        real rows, the model's own output — malformed or not — for synthetic ones.
    labels : float (R, n, size)
        The answers decoded (NaN where malformed).
    truth : float (R, n, size)
        True eigenvalues, descending.
    logprob : float (R, n)
        Mean log-probability per answer token under the model that wrote it (0 for real rows).
    """

    matrices: np.ndarray
    answers: np.ndarray
    labels: np.ndarray
    truth: np.ndarray
    logprob: np.ndarray


@dataclass
class RealEigenData(EigenData):
    """The real training rows (none when training online) and the fixed test set."""

    test: EigenData | None = None


@dataclass
class EigenModel:
    """One transformer per replicate, as plain data.

    Attributes
    ----------
    states : list (R) of dict str -> ndarray
        Each replicate's GPT ``state_dict`` (float32 numpy arrays).
    shape : dict
        ``size``, ``encoding``, ``inputs``, ``layers``, ``width``, ``heads``, ``mlp_ratio`` of the model.
    loss : ndarray (R,)
        Training loss (nats per answer token) over the last logging window.
    steps : int
        Optimizer steps of the last training (0 for a loaded generator).
    origin : str
        "trained", or the file the model was loaded from.
    """

    states: list
    shape: dict
    loss: np.ndarray
    steps: int
    origin: str = "trained"
    history: list = field(default_factory=list)  # (step, loss) of replicate 0's last training


# ---- models saved by earlier runs ----------------------------------------------------------


def _state_file(path: Path, key: str) -> Path:
    """The ``state.pkl`` a ``generator``/``init`` path names: the file itself, a workflow's
    checkpoint directory, or a run directory with exactly one workflow."""
    if path.is_file():
        return path
    if (path / "state.pkl").is_file():
        return path / "state.pkl"
    states = sorted((path / "checkpoints").glob("*/state.pkl")) if path.is_dir() else []
    if not path.exists():
        raise ConfigError(f"task.{key}: {path} does not exist (name a finished run directory of the eigenvalues task)")
    if not states:
        raise ConfigError(f"task.{key}: {path} is not a run directory with a checkpoint (no checkpoints/*/state.pkl)")
    if len(states) > 1:
        names = ", ".join(s.parent.name for s in states)
        raise ConfigError(f"task.{key}: {path} holds several workflows ({names}); name one, e.g. {states[0].parent}")
    return states[0]


@functools.lru_cache(maxsize=8)
def _read_model(file: str, mtime_ns: int, key: str) -> EigenModel:
    from ..store import read_pickle  # the store imports the tasks: import it only when needed

    payload = read_pickle(Path(file))
    model = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(model, EigenModel):
        raise ConfigError(f"task.{key}: {file} holds no model of the eigenvalues task")
    if payload.get("generation") != 0:
        raise ConfigError(f"task.{key}: {file} holds the model of generation {payload.get('generation')}; "
                          "a generator is the generation-0 model of a run with generations = 0")
    return model


def load_model(path: str, key: str) -> tuple[EigenModel, Path]:
    """The generation-0 model saved by the run at ``path``, and the file it came from."""
    file = _state_file(Path(path), key)
    return _read_model(str(file), file.stat().st_mtime_ns, key), file


def check_model(model: EigenModel, config: EigenvaluesConfig, keys: tuple[str, ...], key: str, file: Path) -> None:
    """Refuse a model whose tokens (or architecture, for ``keys``) differ from ``config``."""
    for name in keys:
        if model.shape.get(name) != getattr(config, name):
            raise ConfigError(f"task.{key}: {file} holds a model with {name} = {model.shape.get(name)!r}, "
                              f"but task.{name} = {getattr(config, name)!r}")


# ---- the task -------------------------------------------------------------------------------


class EigenvaluesTask(Task):
    """Eigenvalues of symmetric matrices with a transformer; see the module docstring."""

    Config = EigenvaluesConfig
    primary_metric = "accuracy_2pct"
    fine_tunes = True  # fit receives the previous model; ``init`` decides whether it is used

    def __init__(self, config: EigenvaluesConfig):
        super().__init__(config)
        require_torch(config.name, config.device)
        from ..nn.numbers import NumberCodec

        self.codec = NumberCodec(config.encoding)

    @property
    def metric_labels(self) -> dict[str, str]:
        labels = {f"accuracy_{tolerance_name(t)}": f"greedy accuracy at τ = {100 * t:g}% (share of test matrices)" for t in TOLERANCES}
        labels.update({
            "test_loss": "cross-entropy of the true answers (nats per answer token)",
            "train_loss": "training loss (nats per answer token, last logging window)",
            "malformed": "share of greedy test answers that are not well-formed numbers",
        })
        for t in TOLERANCES:
            labels[f"beam_oracle_{tolerance_name(t)}"] = f"accuracy at τ = {100 * t:g}%, oracle-best of the beam"
            labels[f"beam_perplexity_{tolerance_name(t)}"] = f"accuracy at τ = {100 * t:g}%, lowest-perplexity beam candidate"
        return labels

    @property
    def curve_labels(self) -> tuple[str, str]:
        return "beam size k", "accuracy (share of test matrices)"

    @property
    def real_size(self) -> int:
        return self.config.real_size

    @property
    def synthetic_size(self) -> int:
        return self.config.synthetic_size

    # ---- tokens -----------------------------------------------------------------------------

    @property
    def input_numbers(self) -> int:
        n = self.config.size
        return n * (n + 1) // 2 if self.config.inputs == "triangle" else n * n

    @property
    def prompt_length(self) -> int:
        return 2 + self.codec.tokens_per_number * self.input_numbers  # <bos> … <sep>

    @property
    def answer_length(self) -> int:
        return self.codec.tokens_per_number * self.config.size + 1  # … <eos>

    def prompts(self, matrices: np.ndarray) -> np.ndarray:
        """``<bos> entries <sep>`` token ids (N, prompt_length) of matrices (N, n, n)."""
        from ..nn.tokenizer import SPECIALS

        n = self.config.size
        if self.config.inputs == "triangle":
            rows, cols = np.triu_indices(n)
            entries = matrices[:, rows, cols]  # (N, n(n+1)/2)
        else:
            entries = matrices.reshape(len(matrices), n * n)
        ids = self.codec.encode(entries)
        N = len(matrices)
        return np.concatenate([np.full((N, 1), SPECIALS.index("<bos>")), ids, np.full((N, 1), SPECIALS.index("<sep>"))], axis=1)

    def answers(self, values: np.ndarray) -> np.ndarray:
        """Answer token ids (N, answer_length) of eigenvalues (N, n): numbers then ``<eos>``."""
        from ..nn.tokenizer import SPECIALS

        ids = self.codec.encode(values)
        return np.concatenate([ids, np.full((len(values), 1), SPECIALS.index("<eos>"))], axis=1).astype(np.int32)

    def batch(self, matrices: np.ndarray, answers: np.ndarray):
        """A training :class:`~synthloop.nn.Batch`: prompts then answers, loss on the answers."""
        import torch

        from ..nn import Batch

        tokens = np.concatenate([self.prompts(matrices), answers], axis=1)  # (N, T)
        mask = np.zeros((len(tokens), tokens.shape[1] - 1), dtype=bool)
        mask[:, self.prompt_length - 1 :] = True  # targets tokens[P:]: the answer and <eos>
        return Batch(torch.from_numpy(tokens.astype(np.int64)), torch.from_numpy(mask))

    def _rows(self, matrices: np.ndarray) -> EigenData:
        """Rows labelled with the truth (real data)."""
        truth = eigenvalues(matrices)
        return EigenData(matrices, self.answers(truth), truth.copy(), truth, np.zeros(len(matrices)))

    # ---- networks ---------------------------------------------------------------------------

    def _device(self) -> str:
        import torch

        device = self.config.device
        return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device

    def _network(self, shape: dict, state: dict | None = None, generator=None):
        import torch

        from ..nn import GPT, GPTConfig

        if generator is None:  # the weights come from ``state``; never touch torch's global generator
            generator = torch.Generator().manual_seed(0)
        config = GPTConfig(vocab_size=self.codec.vocab_size, block_size=self.prompt_length + self.answer_length,
                           n_layer=shape["layers"], n_head=shape["heads"], n_embd=shape["width"],
                           mlp_ratio=shape["mlp_ratio"], pos="learned")
        network = GPT(config, generator)
        if state is not None:
            network.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        return network.to(self._device())

    def _threads(self):
        if self._device() != "cpu":
            return contextlib.nullcontext()
        from ..nn.images import cpu_threads

        return cpu_threads(self.config.threads)

    def decode(self, network, matrices: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Answers of ``network`` to matrices (N, n, n): greedy (``k = 1``) or the ``k`` beam
        candidates, best first. Returns answer tokens (N, k, A) and the mean log-probability per
        answer token (N, k), counting tokens up to and including the first ``<eos>``."""
        import torch

        from ..nn import beam_search, generate
        from ..nn.tokenizer import SPECIALS

        eos = SPECIALS.index("<eos>")
        device = next(network.parameters()).device
        A = self.answer_length
        out = np.empty((len(matrices), k, A), dtype=np.int32)
        total = np.empty((len(matrices), k))
        size = max(1, self.config.decode_batch // k)
        for start in range(0, len(matrices), size):
            tokens = torch.from_numpy(self.prompts(matrices[start : start + size]).astype(np.int64)).to(device)
            valid = torch.ones_like(tokens, dtype=torch.bool)
            if k == 1:
                ids, logprob = generate(network, tokens, valid, A, eos)
                ids, logprob = ids[:, None], logprob[:, None]
            else:
                ids, logprob = beam_search(network, tokens, valid, A, eos, k)
            out[start : start + size] = ids.cpu().numpy()
            total[start : start + size] = logprob.float().cpu().numpy()
        ended = out == eos
        length = np.where(ended.any(axis=-1), ended.argmax(axis=-1) + 1, A)  # (N, k)
        return out, total / length

    def label(self, answers: np.ndarray) -> np.ndarray:
        """Eigenvalues (…, n) written by answer tokens (…, A); NaN where malformed."""
        flat = answers.reshape(-1, answers.shape[-1])
        values = self.codec.decode(flat[:, : self.answer_length - 1], count=self.config.size)
        return values.reshape(*answers.shape[:-1], self.config.size)

    # ---- the Task protocol ---------------------------------------------------------------------

    def sample_real(self, rngs) -> RealEigenData:
        c = self.config
        parts, tests = [], []
        for rng in rngs:
            tests.append(self._rows(sample_matrices(c.test_size, c.size, c.entry_range, rng)))
            parts.append(self._rows(sample_matrices(c.real_size, c.size, c.entry_range, rng)))

        def stack(rows: list[EigenData]) -> dict:
            return {name: np.stack([getattr(r, name) for r in rows]) for name in ("matrices", "answers", "labels", "truth", "logprob")}

        return RealEigenData(**stack(parts), test=EigenData(**stack(tests)))

    def sample_inputs(self, real, n: int, rngs) -> np.ndarray:
        c = self.config
        return np.stack([sample_matrices(n, c.size, c.entry_range, rng) for rng in rngs])  # (R, n, size, size)

    def _label_rows(self, model: EigenModel, inputs: np.ndarray, k: int) -> EigenData:
        R, n = inputs.shape[:2]
        parts = []
        with self._threads():
            for r in range(R):
                network = self._network(model.shape, model.states[r])
                answers, logprob = self.decode(network, inputs[r], k)  # (n, k, A), (n, k)
                parts.append((answers.reshape(n * k, -1), logprob.reshape(n * k)))
        answers = np.stack([a for a, _ in parts])  # (R, n k, A)
        matrices = np.repeat(inputs, k, axis=1)  # row i·k + j: candidate j of input i
        labels = self.label(answers)
        truth = eigenvalues(matrices)
        if R:
            log.info("labelled %d matrices × %d candidates: %.1f%% correct at τ = %g", n, k,
                     100 * np.mean(relative_error(truth, labels) < self.config.tolerance), self.config.tolerance)
        return EigenData(matrices, answers, labels, truth, np.stack([p for _, p in parts]))

    def synthesize(self, model: EigenModel, inputs: np.ndarray, n: int, rngs) -> EigenData:
        return self._label_rows(model, inputs, 1)

    def synthesize_candidates(self, model: EigenModel, inputs: np.ndarray, n: int, k: int, rngs) -> EigenData:
        return self._label_rows(model, inputs, k)

    def label_distance(self, data: EigenData, real) -> np.ndarray:
        """Relative L1 error ``Σ|v − p| / Σ|v|`` of each label, (R, n); inf where malformed."""
        return relative_error(data.truth, data.labels)

    def correct(self, data: EigenData, real) -> np.ndarray:
        return self.label_distance(data, real) < self.config.tolerance

    def confidence(self, model, data: EigenData) -> np.ndarray:
        """Mean log-probability per answer token (higher = lower perplexity), (R, n)."""
        return data.logprob

    def fit(self, training: TrainingSet, rngs, init: EigenModel | None = None) -> EigenModel:
        c = self.config
        if init is None and c.generator is not None:
            return self._loaded_generator(len(rngs))
        with self._threads():
            return self._fit(training, rngs, init)

    def _loaded_generator(self, R: int) -> EigenModel:
        model, file = load_model(self.config.generator, "generator")
        check_model(model, self.config, SHAPE_KEYS, "generator", file)
        return EigenModel(self._replicated(model, R, "generator", file), dict(model.shape), np.resize(model.loss, R), 0, str(file))

    @staticmethod
    def _replicated(model: EigenModel, R: int, key: str, file: Path) -> list:
        if len(model.states) == R:
            return list(model.states)
        if len(model.states) == 1:
            return list(model.states) * R
        raise ConfigError(f"task.{key}: {file} holds {len(model.states)} replicates' models; this run has {R} "
                          f"(use replicates = 1 or {len(model.states)})")

    def _fit(self, training: TrainingSet, rngs, init: EigenModel | None) -> EigenModel:
        import torch

        from ..nn import TrainConfig, Trainer, torch_generator

        c = self.config
        first = init is None
        online = first and c.real_size == 0
        if first or c.init == "scratch":
            shape, starts = c.shape(), [None] * len(rngs)
        elif c.init == "previous":
            shape, starts = dict(init.shape), list(init.states)
        else:
            model, file = load_model(c.init, "init")
            shape, starts = dict(model.shape), self._replicated(model, len(rngs), "init", file)
        steps = c.steps if first else (c.retrain_steps or c.steps)
        lr = c.lr if first else (c.retrain_lr or c.lr)
        config = TrainConfig(steps=steps, batch_size=c.batch, lr=lr, schedule=c.lr_schedule, warmup=min(c.warmup, steps // 2),
                             min_lr_ratio=0.05, weight_decay=c.weight_decay, grad_clip=c.grad_clip, device=c.device,
                             log_every=max(1, min(500, steps // 10)))
        if not online:
            matrices, answers = training.rows("matrices"), training.rows("answers")  # (R, N, …)
            if matrices.shape[1] == 0:
                raise ConfigError("the training set is empty: task.real_size = 0 trains generation 0 online and keeps no real "
                                  "rows, so a workflow that draws from the real data needs task.real_size > 0")
            weights = None
            if training.is_weighted:
                w = training.row_weights()  # (N,)
                if not np.all(w == w[0]):
                    weights = w / w.sum()
        states, losses, history = [], [], []
        for r, rng in enumerate(rngs):
            generator = torch_generator(rng)
            network = self._network(shape, starts[r], generator)
            trainer = Trainer(network, config, generator)
            if online:
                results = []
                while trainer.step < steps:
                    block = sample_matrices(ONLINE_BLOCK * c.batch, c.size, c.entry_range, rng)
                    rows = self._rows(block)
                    results.append(trainer.fit(self.batch(rows.matrices, rows.answers), until=trainer.step + ONLINE_BLOCK))
                loss = results[-1].loss
                curve = [point for result in results for point in result.history]
            else:
                index = np.arange(matrices.shape[1])
                if weights is not None:  # non-uniform mixtures: resample rows in proportion to weight
                    index = rng.choice(len(weights), len(weights), p=weights)
                result = trainer.fit(self.batch(matrices[r][index], answers[r][index]))
                loss, curve = result.loss, result.history
            log.info("eigenvalues: replicate %d trained %d steps (%s), loss %.4f", r, steps,
                     "online" if online else f"{matrices.shape[1]} rows", loss)
            states.append({k: v.detach().cpu().float().numpy() for k, v in network.state_dict().items()})
            losses.append(loss)
            if r == 0:
                history = curve
            del trainer, network
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return EigenModel(states, shape, np.array(losses, dtype=float), steps, "trained", history)

    def answer_loss(self, network, matrices: np.ndarray, answers: np.ndarray, batch: int = 500) -> float:
        """Mean cross-entropy (nats per answer token, ``<eos>`` included) of ``answers`` given matrices."""
        import torch

        from ..nn.trainer import masked_loss

        device = next(network.parameters()).device
        network.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(matrices), batch):
                b = self.batch(matrices[start : start + batch], answers[start : start + batch])
                loss = masked_loss(network, b.tokens.to(device), b.loss_mask.to(device))
                n = int(b.loss_mask.sum())
                total, count = total + float(loss) * n, count + n
        return total / max(count, 1)

    def evaluate(self, model: EigenModel, real: RealEigenData) -> dict[str, np.ndarray]:
        c = self.config
        test = real.test
        per_replicate = []
        with self._threads():
            for r in range(len(model.states)):
                network = self._network(model.shape, model.states[r])
                answers, _ = self.decode(network, test.matrices[r])  # (T, 1, A)
                error = relative_error(test.truth[r], self.label(answers[:, 0]))  # (T,)
                scores = {f"accuracy_{tolerance_name(t)}": float(np.mean(error < t)) for t in TOLERANCES}
                scores["malformed"] = float(np.mean(np.isinf(error)))
                scores["test_loss"] = self.answer_loss(network, test.matrices[r], test.answers[r])
                scores["train_loss"] = float(model.loss[r])
                for k in c.beams:
                    candidates, logprob = self.decode(network, test.matrices[r], k)  # (T, k, A), (T, k)
                    error = relative_error(test.truth[r][:, None], self.label(candidates))  # (T, k)
                    oracle = error.min(axis=1)
                    chosen = error[np.arange(len(error)), np.argmax(logprob, axis=1)]
                    for t in TOLERANCES:
                        scores[f"beam_oracle_{tolerance_name(t)}@{k}"] = float(np.mean(oracle < t))
                        scores[f"beam_perplexity_{tolerance_name(t)}@{k}"] = float(np.mean(chosen < t))
                per_replicate.append(scores)
        metrics = {key: np.array([s[key] for s in per_replicate]) for key in per_replicate[0]}
        if not np.isfinite(metrics["train_loss"]).all():
            del metrics["train_loss"]  # a loaded generator may not know it; NaN would read as divergence
        return metrics

    def theory(self, workflow: Workflow, generations: int) -> Theory:
        return Theory(note="no closed form for transformers trained on synthesized eigenvalues (simulations only)")

    def describe(self) -> str:
        c = self.config
        where = f"generator {Path(c.generator).name}" if c.generator else (
            f"{c.steps} steps, " + ("online" if c.real_size == 0 else f"{c.real_size:,} matrices"))
        init = c.init if c.init in ("scratch", "previous") else Path(c.init).name
        return (f"eigenvalues of {c.size}×{c.size} symmetric matrices, U[±{c.entry_range:g}], {c.encoding.upper()}; "
                f"GPT {c.layers}×{c.width} ({c.heads} heads), batch {c.batch}, lr {c.lr:g}; {where}; "
                f"{c.synthetic_size:,} synthesized per generation, init {init}, τ = {100 * c.tolerance:g}%")

