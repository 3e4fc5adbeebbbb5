"""Self-improving transformers (Lee et al. 2025) as a synthloop task.

Round 0 trains a small transformer on labelled instances of difficulties ``train_min..train_max``
(the real data). Each later round, the model of the previous round

1. picks the difficulties to synthesize with the **schedule** (:mod:`synthloop.schedules`),
   from its frontier (largest difficulty trained on) and its accuracy per difficulty,
2. labels ``synthetic_size`` fresh inputs by greedy decoding — with ``filter.models``
   independently trained models under a majority vote,
3. filters the labels without any truth (:mod:`synthloop.filters`), optionally corrupting a
   share of the kept ones (error avalanche), and the loop adds them to the pool;

then every model continues training (``round_steps`` more steps, fresh optimizer and schedule)
from its last weights on the whole pool (``accumulate``). The loop's ``fine_tunes`` hook hands
:meth:`fit` the previous round's model.

Each round records exact-match accuracy per difficulty (``accuracy_d<n>``, the heat map of
:func:`heatmap_figure`), ``solved`` (largest ``n`` with every difficulty ``1..n`` at ≥ 99%),
the frontier, the training loss, and the newest data's filter statistics: rows kept, the share
of labels that were right before and after the filter, and labels injected wrong.

The model is plain data (numpy state dicts per replicate and model, accuracies), so run
checkpoints hold no torch objects; torch is imported only when a model is trained or used.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..filters import FilterConfig, apply_filter
from ..pool import TrainingSet
from ..schedules import ScheduleConfig
from ..validation import Integer, Real
from .base import Task, TaskConfig
from .problems import PROBLEMS, Problem, accuracy_by_difficulty, make_problem

log = logging.getLogger(__name__)

SOLVED = 0.99  # "solved" in the paper's sense: exact match on at least 99% of instances


class SelfImproveConfig(TaskConfig):
    """A self-improvement experiment: problem, model, training and the round's rules."""

    name: Literal["self-improve"] = "self-improve"
    problem: Literal[PROBLEMS] = Field(default="copy", description="which algorithmic problem")
    train_min: Integer(1, 1000) = Field(default=1, description="smallest labelled difficulty (round 0)")
    train_max: Integer(1, 1000) = Field(default=10, description="largest labelled difficulty (round 0)")
    train_size: Integer(1, 100_000_000) = Field(default=20_000, description="labelled examples, uniform over difficulties")
    operands: Literal["equal", "independent"] = Field(
        default="equal", description="addition's labelled data: both operands of one length, or each length drawn on its own "
        "(the paper's code; difficulty = the longer operand); test sets and self-labelled rounds always use equal lengths")
    synthetic_size: Integer(1, 100_000_000) = Field(default=2_000, description="inputs self-labelled per round")
    eval_max: Integer(1, 1000) | None = Field(default=None, description="largest difficulty evaluated; default train_max + 10")
    eval_size: Integer(1, 100_000) = Field(default=100, description="test instances per difficulty")
    maze_nodes: Integer(2, 52) = 30
    # model
    layers: Integer(1, 128) = 4
    width: Integer(8, 16384) = 128
    heads: Integer(1, 256) = 4
    mlp_ratio: Real(0, 64, lo_open=True) = 4.0
    # "rope-inf": RoPE with base = inf, i.e. every rotation frequency 0 except each head's first pair,
    # which turns by 1 radian per token -- what the paper's code gets from LLaMA's rope_theta = inf,
    # the setting it calls NoPE.
    pos: Literal["nope", "rope-inf", "learned", "rope"] = Field(default="nope", description="positional encoding")
    # training
    steps: Integer(1, 10_000_000) = Field(default=2_000, description="optimizer steps of round 0")
    round_steps: Integer(1, 10_000_000) = Field(default=500, description="optimizer steps of every later round")
    batch_size: Integer(1, 1_000_000) = 128
    lr: Real(0, 1, lo_open=True) = 5e-4
    lr_schedule: Literal["wsd", "cosine", "constant"] = "wsd"
    warmup: Integer(0, 10_000_000) = 100
    decay_fraction: Real(0, 1) = 0.2
    weight_decay: Real(0, 10) = 0.01
    beta2: Real(0, 1, hi_open=True) = 0.98
    grad_clip: Real(0, None) = 1.0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    decode_batch: Integer(1, 1_000_000) = 512
    # rounds
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    avalanche_round: Integer(1, 10_000) | None = Field(default=None, description="round whose kept labels are partly corrupted")
    avalanche_rate: Real(0, 1) = Field(default=0.0, description="share of that round's kept labels made wrong")

    @model_validator(mode="after")
    def _consistent(self):
        # Messages start with the key they blame; validation prefixes "task.".
        if self.train_min > self.train_max:
            raise ValueError(f"train_min must be at most task.train_max ({self.train_max}); got {self.train_min}")
        if self.eval_max is not None and self.eval_max < self.train_max:
            raise ValueError(f"eval_max must be at least task.train_max ({self.train_max}); got {self.eval_max}")
        if self.width % self.heads:
            raise ValueError(f"width must be divisible by task.heads ({self.heads}); got {self.width}")
        if (self.avalanche_round is None) != (self.avalanche_rate == 0):
            raise ValueError("avalanche_round and task.avalanche_rate go together: set both or neither")
        if self.pos in ("rope", "rope-inf") and (self.width // self.heads) % 2:
            raise ValueError(f"pos {self.pos!r} needs an even head size task.width / task.heads; got {self.width // self.heads}")
        if self.operands == "independent" and self.problem not in ("addition", "reverse-addition"):
            raise ValueError(f"operands = 'independent' needs task.problem 'addition' or 'reverse-addition'; got {self.problem!r}")
        if self.problem == "maze" and self.levels[-1] > 51:
            raise ValueError(f"eval_max of a maze must be at most 51 hops (52 named nodes); got {self.levels[-1]}")
        problem = self.filter.problem()
        if problem:
            raise ValueError(f"filter.{problem}")
        return self

    @property
    def levels(self) -> np.ndarray:
        """Difficulties evaluated every round, ``1..eval_max``."""
        return np.arange(1, (self.eval_max or self.train_max + 10) + 1)


@dataclass
class Examples:
    """Prompts with labels, per replicate: every field has shape (R, n).

    Attributes
    ----------
    prompts, labels, truth : object arrays of str
        ``labels`` are what training uses (the truth for real data, the model's for synthetic).
    difficulty : int array
    keep : bool array
        Whether the row passed the filter (always True for real data).
    injected : bool array
        Labels corrupted on purpose (error avalanche).
    test : Examples or None
        Real data only: the fixed test set, ``eval_size`` instances per evaluated difficulty.
    """

    prompts: np.ndarray
    labels: np.ndarray
    truth: np.ndarray
    difficulty: np.ndarray
    keep: np.ndarray
    injected: np.ndarray
    test: Examples | None = None


@dataclass
class SelfImproveModel:
    """The models of one round, as plain data.

    Attributes
    ----------
    states : list (R) of list (M) of dict str -> ndarray
        State dict of each replicate's ``M`` models (float32 arrays).
    round : int
    frontier : ndarray (R,)
        Largest difficulty in each replicate's training data.
    accuracy : ndarray (R, D)
        Exact-match accuracy of model 0 at difficulties ``1..D``.
    loss : ndarray (R,)
        Mean training loss of model 0 over its last logging window.
    data_stats : dict str -> ndarray (R,)
        Filter statistics of the round's newest synthetic rows (empty at round 0).
    """

    states: list
    round: int
    frontier: np.ndarray
    accuracy: np.ndarray
    loss: np.ndarray
    data_stats: dict = field(default_factory=dict)


def solved_up_to(accuracy: np.ndarray, threshold: float = SOLVED) -> np.ndarray:
    """Largest ``n`` such that every difficulty ``1..n`` reaches ``threshold``, per row of
    ``accuracy`` (R, D); 0 when difficulty 1 fails."""
    ok = np.nan_to_num(accuracy, nan=0.0) >= threshold  # (R, D)
    return np.where(ok.all(axis=1), ok.shape[1], np.argmin(ok, axis=1))


class SelfImproveTask(Task):
    """Lee et al.'s self-improvement rounds on one algorithmic problem; see the module docstring."""

    Config = SelfImproveConfig
    primary_metric = "solved"
    fine_tunes = True

    def __init__(self, config: SelfImproveConfig):
        super().__init__(config)
        self.problem: Problem = make_problem(config.problem, config.maze_nodes)

    @property
    def metric_labels(self) -> dict[str, str]:
        labels = {
            "solved": "largest difficulty solved at ≥ 99% (all easier ones too)",
            "frontier": "largest difficulty trained on",
            "loss": "training loss (nats per answer token)",
            "kept": "self-labelled rows kept per round",
            "label_accuracy": "share of self-labels correct before filtering",
            "kept_accuracy": "share of kept self-labels correct",
            "injected": "labels corrupted on purpose",
            "synthesized_difficulty": "largest difficulty synthesized",
        }
        labels.update({f"accuracy_d{d}": f"exact-match accuracy at difficulty {d}" for d in self.config.levels})
        return labels

    @property
    def real_size(self) -> int:
        return self.config.train_size

    @property
    def synthetic_size(self) -> int:
        return self.config.synthetic_size

    # ---- data ---------------------------------------------------------------------------

    def _examples(self, levels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prompts, truth and difficulty for the given difficulty of each row (sorted by difficulty)."""
        levels = np.sort(levels)
        prompts = np.empty(len(levels), dtype=object)
        for level in np.unique(levels):
            at = levels == level
            prompts[at] = self.problem.sample(int(level), int(at.sum()), rng)
        return prompts, self.problem.solve_all(prompts), levels

    def _mixed_examples(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Addition with each operand's length drawn on its own from ``train_min..train_max``,
        sorted by difficulty (the longer operand)."""
        c = self.config
        digits = rng.integers(c.train_min, c.train_max + 1, (2, c.train_size))  # (2, N)
        order = np.argsort(digits.max(axis=0), kind="stable")
        digits = digits[:, order]
        prompts = self.problem.sample_lengths(digits[0], digits[1], rng)
        return prompts, self.problem.solve_all(prompts), digits.max(axis=0)

    def sample_real(self, rngs) -> Examples:
        c = self.config
        train, test = [], []
        for rng in rngs:
            if c.operands == "independent":
                train.append(self._mixed_examples(rng))
            else:
                train.append(self._examples(rng.integers(c.train_min, c.train_max + 1, c.train_size), rng))
            test.append(self._examples(np.repeat(c.levels, c.eval_size), rng))

        def stack(parts):
            prompts, truth, difficulty = (np.stack(x) for x in zip(*parts))
            ones = np.ones(difficulty.shape, dtype=bool)
            return Examples(prompts, truth.copy(), truth, difficulty, ones, ~ones)

        real = stack(train)
        real.test = stack(test)
        return real

    def correct(self, data: Examples, real) -> np.ndarray:
        return data.labels == data.truth

    # ---- the model ----------------------------------------------------------------------

    def _tokenizer(self):
        from ..nn import CharTokenizer

        return CharTokenizer(self.problem.alphabet)

    def _gpt_config(self, tokenizer):
        from ..nn import GPTConfig

        c = self.config
        longest = self.problem.max_prompt_length(int(c.levels[-1]) + 1) + self.problem.answer_length(int(c.levels[-1]) + 1) + 4
        return GPTConfig(vocab_size=tokenizer.vocab_size, block_size=max(256, 2 * longest), n_layer=c.layers,
                         n_head=c.heads, n_embd=c.width, mlp_ratio=c.mlp_ratio,
                         pos="rope" if c.pos == "rope-inf" else c.pos, rope_base=math.inf if c.pos == "rope-inf" else 10_000.0)

    def _train_config(self, fine_tune: bool):
        from ..nn import TrainConfig

        c = self.config
        steps = c.round_steps if fine_tune else c.steps
        return TrainConfig(steps=steps, batch_size=c.batch_size, lr=c.lr, schedule=c.lr_schedule,
                           warmup=min(c.warmup, steps // 10) if fine_tune else c.warmup, decay_fraction=c.decay_fraction,
                           weight_decay=c.weight_decay, beta2=c.beta2, grad_clip=c.grad_clip, device=c.device, compile=c.compile)

    def _network(self, state: dict | None, generator=None):
        import torch

        from ..nn import GPT

        if generator is None:  # the weights come from ``state``; never touch torch's global generator
            generator = torch.Generator().manual_seed(0)
        network = GPT(self._gpt_config(self._tokenizer()), generator)
        if state is not None:
            network.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        device = "cuda" if self.config.device == "auto" and torch.cuda.is_available() else self.config.device
        return network.to("cpu" if device == "auto" else device)

    def label(self, network, prompts: np.ndarray, difficulty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Greedy answers of ``network`` to ``prompts`` (n,), and whether each ended with the end
        token; batches of ``decode_batch`` rows of similar difficulty share one decoding."""
        from ..nn import generate

        tok = self._tokenizer()
        device = next(network.parameters()).device
        answers = np.empty(len(prompts), dtype=object)
        ended = np.zeros(len(prompts), dtype=bool)
        order = np.argsort(difficulty, kind="stable")
        size = self.config.decode_batch
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            tokens, valid = tok.prompt_batch(list(prompts[rows]))
            max_new = self.problem.answer_length(int(difficulty[rows].max())) + 1
            out, _ = generate(network, tokens.to(device), valid.to(device), max_new, tok.eos)
            out = out.cpu().numpy()
            for i, row in zip(rows, out):
                answers[i] = tok.decode(row)
                ended[i] = bool((row == tok.eos).any())
        return answers, ended

    def fit(self, training: TrainingSet, rngs, init: SelfImproveModel | None = None) -> SelfImproveModel:
        from ..nn import Trainer, torch_generator

        c = self.config
        prompts, labels = training.rows("prompts"), training.rows("labels")  # (R, N)
        keep, difficulty = training.rows("keep"), training.rows("difficulty")
        test = training.pool.real.data.test
        newest = training.pool.sources[-1]
        tok = self._tokenizer()
        models = c.filter.models
        states, accuracy, loss, frontier = [], [], [], []
        for r, rng in enumerate(rngs):
            data = tok.batch(list(prompts[r][keep[r]]), list(labels[r][keep[r]]))
            members = []
            for m in range(models):
                generator = torch_generator(rng)
                network = self._network(None if init is None else init.states[r][m], generator)
                trainer = Trainer(network, self._train_config(init is not None), generator)
                result = trainer.fit(data)
                log.info("round %d replicate %d model %d: %d examples, loss %.4f, %.0f tokens/s",
                         0 if init is None else init.round + 1, r, m, len(data), result.loss, result.tokens_per_s)
                members.append({k: v.detach().cpu().float().numpy() for k, v in network.state_dict().items()})
                if m == 0:
                    loss.append(result.loss)
                    predicted, _ = self.label(network, test.prompts[r], test.difficulty[r])
                    accuracy.append(accuracy_by_difficulty(predicted, test.truth[r], test.difficulty[r], c.levels))
                    log.info("round %d replicate %d: solved %d; exact match (%%) by difficulty %s", 0 if init is None else init.round + 1,
                             r, int(solved_up_to(accuracy[-1][None])[0]),
                             " ".join(f"{level}:{100 * a:.0f}" for level, a in zip(c.levels, accuracy[-1], strict=True)))
            states.append(members)
            trained = difficulty[r][keep[r]]
            frontier.append(int(trained.max()))
        stats = {}
        if newest.generation > 0:
            d: Examples = newest.data
            kept = d.keep  # (R, n)
            labelled = (d.labels != "").any(axis=1)  # False where the gate held the round
            with np.errstate(invalid="ignore"):
                stats = {
                    "kept": kept.sum(axis=1).astype(float),
                    "label_accuracy": np.where(labelled, (d.labels == d.truth).mean(axis=1), np.nan),
                    "kept_accuracy": np.where(kept.any(axis=1), ((d.labels == d.truth) & kept).sum(axis=1) / kept.sum(axis=1), np.nan),
                    "injected": d.injected.sum(axis=1).astype(float),
                    "synthesized_difficulty": np.where(labelled, d.difficulty.max(axis=1), np.nan),
                }
        return SelfImproveModel(states, 0 if init is None else init.round + 1, np.array(frontier), np.array(accuracy), np.array(loss), stats)

    def synthesize(self, model: SelfImproveModel, inputs, n: int, rngs) -> Examples:
        c = self.config
        round_ = model.round + 1
        parts = []
        for r, rng in enumerate(rngs):
            frontier = int(model.frontier[r])
            levels = c.schedule.difficulties(frontier, dict(zip(c.levels.tolist(), model.accuracy[r].tolist())))
            if not levels:  # the gate holds: nothing new this round
                log.info("round %d replicate %d: difficulty %d not solved yet; holding", round_, r, frontier + 1)
                prompts, truth, difficulty = self._examples(np.full(n, frontier + 1), rng)
                empty = np.full(n, "", dtype=object)
                parts.append((prompts, empty, truth, difficulty, np.zeros(n, bool), np.zeros(n, bool)))
                continue
            prompts, truth, difficulty = self._examples(rng.choice(levels, n), rng)
            answers, formed = [], []
            for state in model.states[r]:
                predicted, ended = self.label(self._network(state), prompts, difficulty)
                answers.append(predicted)
                formed.append(ended & self.problem.well_formed(predicted, difficulty))
            filtered = apply_filter(c.filter, np.stack(answers), np.stack(formed))
            labels, keep = filtered.labels, filtered.keep
            injected = np.zeros(n, dtype=bool)
            if c.avalanche_round == round_:
                injected = keep & (rng.random(n) < c.avalanche_rate)
                labels = labels.copy()
                for i in np.flatnonzero(injected):
                    labels[i] = self.problem.corrupt(truth[i], rng)  # wrong for sure
            log.info("round %d replicate %d: difficulties %s, kept %d of %d (%.1f%% correct before the filter)",
                     round_, r, levels, keep.sum(), n, 100 * np.mean(labels == truth))
            parts.append((prompts, labels, truth, difficulty, keep, injected))
        return Examples(*(np.stack(x) for x in zip(*parts)))

    def evaluate(self, model: SelfImproveModel, real) -> dict[str, np.ndarray]:
        metrics = {f"accuracy_d{d}": model.accuracy[:, i] for i, d in enumerate(self.config.levels)}
        metrics["solved"] = solved_up_to(model.accuracy).astype(float)
        metrics["frontier"] = model.frontier.astype(float)
        metrics["loss"] = model.loss.astype(float)
        for name, values in model.data_stats.items():
            values = np.asarray(values, dtype=float)  # (R,)
            # Undefined statistics (round 0; a held round labels nothing) are left out, not NaN,
            # which the loop would read as divergence.
            if np.isfinite(values).all():
                metrics[name] = values
        return metrics

    def usable_rows(self, data: Examples, kept: int) -> float:
        """Rows that passed the filter (mean over replicates); the others stay in the pool,
        masked out of training."""
        return float(data.keep.sum(axis=1).mean())

    def extra_figures(self, metrics, title: str) -> dict:
        """``heatmap``: accuracy per difficulty and round (one ``heatmap-<workflow>`` per
        workflow when there are several)."""
        workflows = list(dict.fromkeys(metrics["workflow"]))
        if len(workflows) == 1:
            return {"heatmap": heatmap_figure(metrics, title=title)}
        safe = {w: re.sub(r"[^A-Za-z0-9_.-]+", "_", str(w)) for w in workflows}  # workflow labels are free text
        return {f"heatmap-{safe[w]}": heatmap_figure(metrics, w, title=f"{title}: {w}") for w in workflows}

    def verification_problem(self) -> str | None:
        return "self-improvement filters its own labels (task.filter); the loop's verifiers keep a fixed share instead"

    def describe(self) -> str:
        c = self.config
        return (f"self-improve {c.problem}: labelled {c.train_min}–{c.train_max}, {c.layers}×{c.width} {c.pos} "
                f"transformer, {c.steps}+{c.round_steps}/round steps, batch {c.batch_size}, schedule {c.schedule.name}, "
                f"filter {c.filter.name}" + (f" × {c.filter.models}" if c.filter.name == "majority" else ""))


def heatmap_figure(metrics, workflow: str | None = None, title: str = "self-improvement"):
    """Accuracy per difficulty (x) and round (y), like Lee et al.'s figures; a pure function of
    a run's long-format metrics frame (mean over replicates)."""
    import matplotlib.pyplot as plt

    frame = metrics[metrics["metric"].str.startswith("accuracy_d")]
    if workflow is not None:
        frame = frame[frame["workflow"] == workflow]
    frame = frame.assign(difficulty=frame["metric"].str.slice(len("accuracy_d")).astype(int))
    table = frame.pivot_table(index="generation", columns="difficulty", values="value", aggfunc="mean").sort_index()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.3 * table.shape[1] + 2), max(2.5, 0.3 * table.shape[0] + 1.5)))
    image = ax.imshow(table.to_numpy(), aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1,
                      extent=(table.columns.min() - 0.5, table.columns.max() + 0.5, table.index.min() - 0.5, table.index.max() + 0.5))
    fig.colorbar(image, ax=ax, label="exact-match accuracy")
    ax.set_xlabel("difficulty (digits / length / hops)")
    ax.set_ylabel("round (generation)")
    ax.set_title(title)
    return fig
