"""Experiment 2 of the DeTox issue: noisy preference labels, the edit against DPO on the same pairs.

A fraction of the preference pairs has its labels swapped (:func:`synthloop.preferences.flip_labels`,
exactly ``round(rate · n)`` pairs); then, on the same flipped pairs,

- ``edit``: the toxic-subspace projection (:mod:`synthloop.editing`), rank ``k`` on a block range;
- ``dpo``: one epoch of DPO with LoRA (:func:`synthloop.dpo.dpo_finetune`) from the same base model.

Each is evaluated as :mod:`synthloop.detox` evaluates an edit (toxicity of sampled continuations
under plain and steered decoding, the steering tokens' probability, perplexity of held-out
text; common random numbers across conditions), and timed. This is the verifier-noise question
of Feng et al. in another form: the labels are a verifier's verdicts, and a flip rate of 0.5 is a
verifier that knows nothing.

::

    DIR/config.toml        the resolved NoisyLabelsExperiment
    DIR/pairs.jsonl        the (unflipped) pairs with provenance, reused on re-run
    DIR/metrics.parquet    method, flip_rate, metric, value (written after each condition)
    DIR/summary.json       status, pairs, the embedding time shared by the edits
    DIR/figure.png         redrawn from metrics.parquet alone (:func:`noise_figure`)

Timing: ``seconds`` of an edit is the time to embed the pair texts (measured once; the texts do
not depend on the labels) plus fitting the subspace and editing; of DPO, the training (LoRA merge
included). ``cpu_seconds`` is this process's CPU time for the same work.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from .detox import EditSettings
from .validation import Integer, Real

log = logging.getLogger(__name__)

# Plain decoding is rarely toxic with these prompts (0 flagged everywhere at CPU scale): the
# sampling-free toxic_mass is the more informative second panel.
METRICS = ["toxicity_steered", "toxic_mass", "perplexity", "seconds"]
LABELS = {
    "toxicity_steered": "flagged continuations, steered decoding",
    "toxic_mass": "P(steering token) on held-out text",
    "perplexity": "perplexity of held-out text",
    "seconds": "wall time of the method (s)",
}
METHODS = ("edit", "dpo")
COLUMNS = ["method", "flip_rate", "metric", "value"]


class NoisyLabelsExperiment(EditSettings):
    """Configuration of the noisy-labels experiment (``synthloop edit-noise``); the defaults are its CPU-scale preset."""

    name: str = "detox-noisy-labels"
    n_pairs: Integer(1, 100_000) = 100
    flip_rates: list[Real(0, 1)] = Field(default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5], min_length=1)
    methods: list[str] = Field(default=list(METHODS), min_length=1)
    rank: Integer(0, 64) = 2
    layers: tuple[Integer(0, 1000), Integer(0, 1000)] = (12, 25)
    dpo_beta: Real(0, 100, lo_open=True) = 0.1
    dpo_learning_rate: Real(0, 1, lo_open=True) = 5e-4
    dpo_batch_size: Integer(1, 4096) = 4
    dpo_epochs: Integer(1, 100) = 1
    lora_rank: Integer(0, 1024) = 8
    eval_prompts: Integer(1, 10_000) = 24
    held_out_texts: Integer(1, 10_000) = 24
    max_new_tokens: Integer(1, 256) = 10

    @field_validator("methods")
    @classmethod
    def _known(cls, value):
        bad = [m for m in value if m not in METHODS]
        if bad:
            raise ValueError(f"must name methods among {', '.join(METHODS)}; got {bad}")
        return value

    @field_validator("layers")
    @classmethod
    def _ordered(cls, value):
        if value[0] > value[1]:
            raise ValueError(f"must be [first, last] blocks with first ≤ last; got [{value[0]}, {value[1]}]")
        return value


class _Metrics:
    """The metrics table, written atomically after each condition; conditions already in it are skipped."""

    def __init__(self, path: Path):
        self.path = path
        self.frame = pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=COLUMNS)

    def done(self, method: str, rate: float) -> bool:
        f = self.frame
        return bool(((f["method"] == method) & np.isclose(f["flip_rate"].astype(float), rate)).any())

    def add(self, method: str, rate: float, values: dict) -> None:
        from .store import write_parquet

        rows = pd.DataFrame([{"method": method, "flip_rate": float(rate), "metric": m, "value": float(v)} for m, v in values.items()])
        self.frame = rows if self.frame.empty else pd.concat([self.frame, rows], ignore_index=True)
        self.frame = self.frame.astype({"flip_rate": float, "value": float})
        write_parquet(self.frame, self.path)


def swap_flipped(preferred: np.ndarray, dispreferred: np.ndarray, flipped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings of flipped pairs: columns ``flipped`` (N,) of the two (L, N, D) arrays exchanged."""
    flipped = np.asarray(flipped, bool)[None, :, None]  # (1, N, 1)
    return np.where(flipped, dispreferred, preferred), np.where(flipped, preferred, dispreferred)


def run_noisy_labels(config: NoisyLabelsExperiment, out: str | Path, overwrite: bool = False, on_step: Callable[[str], None] | None = None) -> Path:
    """Run the noisy-labels experiment into the run directory ``out`` (resumed when interrupted).

    Parameters
    ----------
    config : NoisyLabelsExperiment
    out : path
        Run directory; an existing one of the same config is resumed (finished conditions are
        not run again), of another config refused unless ``overwrite``.
    on_step : callable, optional
        Called with a short description before each step (for a progress display).

    Returns
    -------
    Path
        The run directory.
    """
    import torch

    from .detox import evaluate, prepare
    from .dpo import dpo_finetune
    from .editing import edit_model, fit_toxic_subspace, mean_hidden_states, mlp_output_projections
    from .preferences import flip_labels
    from .store import atomic_write

    step = on_step or (lambda text: None)
    out = Path(out)
    lo, hi = config.layers
    setup = prepare(config, out, overwrite, config.n_pairs, {"layers": [config.layers]}, step)
    model, tokenizer, pairs = setup.model, setup.tokenizer, setup.pairs
    flip_seed = setup.rngs["flips"].integers(2**63)  # every rate flips with a generator of this seed

    metrics = _Metrics(out / "metrics.parquet")
    if not metrics.done("base", 0.0):
        step("evaluating the unedited model")
        metrics.add("base", 0.0, evaluate(model, setup, config))

    embeddings = None
    embed_seconds = embed_cpu = float("nan")
    original = [p.weight.detach().clone() for p in mlp_output_projections(model)]
    for rate in config.flip_rates:
        noisy = flip_labels(pairs, rate, np.random.default_rng(flip_seed))
        flipped = np.array([p.flipped for p in noisy])
        for method in config.methods:
            if metrics.done(method, rate):
                continue
            step(f"{method}: {rate:.0%} of {len(pairs)} labels flipped")
            if method == "edit":
                if embeddings is None:
                    start, cpu = time.perf_counter(), time.process_time()
                    embeddings = (mean_hidden_states(model, tokenizer, [p.preferred for p in pairs], config.batch_size),  # (L, N, D)
                                  mean_hidden_states(model, tokenizer, [p.dispreferred for p in pairs], config.batch_size))
                    embed_seconds, embed_cpu = time.perf_counter() - start, time.process_time() - cpu
                start, cpu = time.perf_counter(), time.process_time()
                preferred, dispreferred = swap_flipped(*embeddings, flipped)
                edit_model(model, fit_toxic_subspace(preferred, dispreferred, rank=config.rank, layers=range(lo, hi + 1)))
                timing = {"seconds": embed_seconds + time.perf_counter() - start, "cpu_seconds": embed_cpu + time.process_time() - cpu}
                metrics.add(method, rate, {**evaluate(model, setup, config), **timing, "flipped": flipped.sum()})
                with torch.no_grad():
                    for proj, weight in zip(mlp_output_projections(model), original):
                        proj.weight.copy_(weight)
            else:
                trained, result = dpo_finetune(
                    copy.deepcopy(model), tokenizer, noisy, beta=config.dpo_beta, learning_rate=config.dpo_learning_rate,
                    batch_size=config.dpo_batch_size, epochs=config.dpo_epochs, lora_rank=config.lora_rank, seed=config.seed,
                )
                values = {**evaluate(trained, setup, config), "seconds": result.seconds, "cpu_seconds": result.cpu_seconds, "flipped": flipped.sum(),
                          "dpo_steps": result.steps, "dpo_final_loss": result.losses[-1] if result.losses else float("nan")}
                del trained
                metrics.add(method, rate, values)

    summary = {"status": "finished", "pairs": len(pairs), "steer_tokens": len(setup.bias), "blocks": len(mlp_output_projections(model)),
               "embed_seconds": embed_seconds, "embed_cpu_seconds": embed_cpu}
    atomic_write(out / "summary.json", json.dumps(summary, indent=2))
    import matplotlib.pyplot as plt

    fig = noise_figure(metrics.frame, title=f"{config.name}: edit vs DPO under flipped labels, {config.model}, {len(pairs)} pairs")
    fig.savefig(out / "figure.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def noise_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, flip rate), one column per metric (wide form of ``metrics.parquet``)."""
    wide = metrics.pivot_table(index=["method", "flip_rate"], columns="metric", values="value").reset_index()
    wide = wide.sort_values(["method", "flip_rate"], key=lambda c: c.map({"base": 0, "edit": 1, "dpo": 2}) if c.name == "method" else c, ignore_index=True)
    wanted = ["toxicity_steered", "toxicity_plain", "toxic_mass", "perplexity", "seconds", "cpu_seconds", "flipped", "dpo_final_loss"]
    return wide[["method", "flip_rate"] + [m for m in wanted if m in wide]]


def noise_figure(metrics: pd.DataFrame, title: str | None = None):
    """Each metric against the flip rate: one line per method, the unedited model dotted."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .report import COLORS

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.6))
    base = metrics[metrics["method"] == "base"].set_index("metric")["value"]
    for ax, metric in zip(axes, METRICS):
        for i, method in enumerate(m for m in METHODS if (metrics["method"] == m).any()):
            rows = metrics[(metrics["method"] == method) & (metrics["metric"] == metric)].sort_values("flip_rate")
            ax.plot(100 * rows["flip_rate"], rows["value"], "o-", color=COLORS[i % len(COLORS)], label={"edit": "edit (projection)", "dpo": "DPO (LoRA, 1 epoch)"}[method])
        if metric in base:
            ax.axhline(base[metric], color="k", ls=":", label="unedited")
        ax.set_xlabel("labels flipped (%)")
        ax.set_title(LABELS[metric], fontsize=9)
        if metric in ("perplexity", "seconds"):
            ax.set_yscale("log")
    axes[0].set_ylabel("value")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.08))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
