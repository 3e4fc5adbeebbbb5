"""Training loop: AdamW, warmup-stable-decay or cosine schedule, clipping, hooks, checkpoints.

nanoGPT-style and explicit: batches are drawn with a ``torch.Generator`` the caller seeds, the
learning rate is a pure function of the step (:func:`learning_rate`), and a checkpoint is a
plain state dict (model, optimizer, step, generator state) written with ``torch.save`` and read
back with ``torch.load(weights_only=True)`` — no pickled code. On a GPU the trainer moves to
CUDA and computes in bfloat16 autocast; ``compile=True`` wraps the model in ``torch.compile``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .model import GPT
from .tokenizer import Batch

log = logging.getLogger(__name__)


def torch_generator(rng: np.random.Generator, device: str = "cpu") -> torch.Generator:
    """A torch generator seeded from a numpy generator (so it derives from the experiment seed)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(rng.integers(2**63 - 1)))
    return generator


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class TrainConfig:
    """Optimization settings.

    Attributes
    ----------
    steps : int
        Optimizer steps.
    batch_size : int
    lr : float
        Peak learning rate.
    schedule : {"wsd", "cosine", "constant"}
        Warmup-stable-decay (linear warmup, constant, linear decay over the last
        ``decay_fraction`` of steps), cosine (warmup then cosine to ``min_lr_ratio``), constant.
    warmup : int
        Warmup steps (linear from 0).
    decay_fraction : float
        Share of the steps spent decaying under ``"wsd"``.
    min_lr_ratio : float
        Final learning rate as a fraction of ``lr``.
    weight_decay, beta1, beta2, grad_clip : float
        AdamW and clipping (``grad_clip`` ≤ 0 disables clipping).
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    bf16 : bool
        bfloat16 autocast on CUDA.
    compile : bool
        ``torch.compile`` the model.
    log_every : int
        Steps between progress lines (loss and tokens/s).
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 5e-4
    schedule: Literal["wsd", "cosine", "constant"] = "wsd"
    warmup: int = 100
    decay_fraction: float = 0.2
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0
    device: str = "auto"
    bf16: bool = True
    compile: bool = False
    log_every: int = 100

    def to_dict(self) -> dict:
        return asdict(self)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Learning rate at ``step`` (0-based) under ``config.schedule``.

    Examples
    --------
    >>> c = TrainConfig(steps=100, lr=1.0, warmup=10, decay_fraction=0.2)
    >>> learning_rate(4, c), learning_rate(50, c), learning_rate(90, c)
    (0.5, 1.0, 0.5)
    """
    lr, low = config.lr, config.lr * config.min_lr_ratio
    if step < config.warmup:
        return lr * (step + 1) / config.warmup
    if config.schedule == "constant":
        return lr
    if config.schedule == "cosine":
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return low + 0.5 * (lr - low) * (1 + math.cos(math.pi * min(1.0, progress)))
    decay_steps = int(round(config.decay_fraction * config.steps))
    decay_start = config.steps - decay_steps
    if step < decay_start:
        return lr
    return low + (lr - low) * (config.steps - step) / max(1, decay_steps)


@dataclass
class TrainResult:
    """What a call to :meth:`Trainer.fit` did: the step reached, mean loss of its last logging
    window, tokens seen (non-padding), wall time, and (step, loss) at every logging step."""

    steps: int
    loss: float
    tokens: int
    seconds: float
    history: list[tuple[int, float]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def masked_loss(model: GPT, tokens: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the targets where ``loss_mask`` (B, T-1) is True."""
    logits = model(tokens[:, :-1])  # (B, T-1, V)
    losses = F.cross_entropy(logits.float().transpose(1, 2), tokens[:, 1:], reduction="none")  # (B, T-1)
    return (losses * loss_mask).sum() / loss_mask.sum().clamp(min=1)


class Trainer:
    """Trains a :class:`GPT` on a :class:`Batch` of examples.

    Parameters
    ----------
    model : GPT
    config : TrainConfig
    generator : torch.Generator
        Draws the batches (CPU generator).
    hooks : list of callables ``hook(step, trainer)``, optional
        Called every ``config.log_every`` steps and after the last one — evaluation hooks.
    """

    def __init__(self, model: GPT, config: TrainConfig, generator: torch.Generator,
                 hooks: list[Callable[[int, Trainer], None]] | None = None):
        self.config = config
        self.device = default_device() if config.device == "auto" else config.device
        self.model = model.to(self.device)
        self.generator = generator
        self.hooks = list(hooks or [])
        self.step = 0
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=(config.beta1, config.beta2), fused=self.device == "cuda",
        )
        self._forward = torch.compile(model) if config.compile else model

    @property
    def autocast(self):
        enabled = self.device == "cuda" and self.config.bf16
        return torch.autocast(device_type="cuda" if self.device == "cuda" else "cpu", dtype=torch.bfloat16, enabled=enabled)

    def fit(self, data: Batch, until: int | None = None) -> TrainResult:
        """Train on batches drawn from ``data`` from the current step (0, or where :meth:`load`
        left off) to ``until`` (default: ``config.steps``)."""
        c = self.config
        until = c.steps if until is None else min(until, c.steps)
        tokens, loss_mask = data.tokens, data.loss_mask
        lengths = (tokens != 0).sum(1)  # pad id is 0
        self.model.train()
        start, seen, window, history = time.perf_counter(), 0, [], []
        while self.step < until:
            index = torch.randint(len(data), (c.batch_size,), generator=self.generator)
            T = int(lengths[index].max())  # trim the batch's common padding
            x = tokens[index, :T].to(self.device, non_blocking=True)
            m = loss_mask[index, : T - 1].to(self.device, non_blocking=True)
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(self.step, c)
            with self.autocast:
                loss = masked_loss(self._forward, x, m)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if c.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
            self.optimizer.step()
            self.step += 1
            seen += int(lengths[index].sum())
            window.append(loss.detach())
            if self.step % c.log_every == 0 or self.step == until:
                mean = float(torch.stack(window).mean())
                history.append((self.step, mean))
                window = []
                elapsed = time.perf_counter() - start
                rate = seen / max(elapsed, 1e-9)
                # ``progress`` lets a front end (the CLI's bar) follow training without parsing text.
                log.info("step %d/%d  loss %.4f  lr %.2e  %.0f tokens/s", self.step, c.steps, mean,
                         learning_rate(self.step - 1, c), rate, extra={"progress": (self.step, c.steps, mean, rate)})
                for hook in self.hooks:
                    hook(self.step, self)
        loss_value = history[-1][1] if history else float("nan")
        return TrainResult(self.step, loss_value, seen, time.perf_counter() - start, history)

    def state_dict(self) -> dict:
        """Model and optimizer tensors, step and generator state — plain data only."""
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])

    def save(self, path: str | Path) -> None:
        """Checkpoint with ``torch.save`` (written to a temporary file, then renamed)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)

    def load(self, path: str | Path) -> None:
        """Resume from :meth:`save`'s file, read with ``weights_only=True``."""
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
