import numpy as np
import pytest
from scipy import stats

import synthloop


def z_for(checks: int, alpha: float = 1e-3) -> float:
    """Two-sided normal quantile with a Bonferroni correction over ``checks`` comparisons."""
    return float(stats.norm.ppf(1 - alpha / (2 * checks)))


def regression(**overrides):
    """A small regression experiment with dotted-key overrides."""
    base = {"task.d": 5, "task.T": 30, "generations": 10, "replicates": 400}
    base.update(overrides)
    return synthloop.Experiment().with_overrides(base)


# Image presets train for minutes per generation; smoke tests run tiny models on few images.
TINY_IMAGES = ["task.T=100", "task.test_size=50", "task.epochs=1", "task.hidden=16", "task.classifier_epochs=1"]


# Presets that train neural models for minutes even shrunk; each has its own test file that runs
# it shrunk (test_self_improve, test_text, test_eigenvalues, test_llm, test_conditional).
OWN_TEST_PRESETS = ("self-improve-", "text-", "feng-eigen-", "llm-", "detox-loop", "feng-summarization-")


def smoke_overrides(preset: str) -> list[str]:
    """Overrides that shrink a preset to a seconds-long smoke run: tiny image models, fewer
    synthetic inputs for the mixture curves (measured inside every fit), a smaller ridge design
    (its exact theory averages over designs)."""
    task = synthloop.load_experiment(preset).task
    if task.name in ("vae", "diffusion"):
        return TINY_IMAGES
    if task.name == "mixture":
        return [f"task.T0={max([500, *(task.curve_sizes or [])])}"]
    if task.name == "regression" and task.ridge > 0 and task.d > 10:
        return ["task.d=10"]
    return []


def mean_and_sem(run, workflow: str, metric: str = "excess_risk"):
    """Per-generation mean and standard error over replicates, as arrays indexed by generation."""
    frame = run.metrics[(run.metrics["workflow"] == workflow) & (run.metrics["metric"] == metric)]
    table = frame.pivot(index="generation", columns="replicate", values="value").sort_index()
    values = table.to_numpy()  # (G + 1, R)
    return values.mean(axis=1), values.std(axis=1, ddof=1) / np.sqrt(values.shape[1]), values


def theory_values(run, workflow: str, kind: str = "exact"):
    frame = run.theory[(run.theory["workflow"] == workflow) & (run.theory["kind"] == kind)].sort_values("generation")
    return frame["value"].to_numpy()


@pytest.fixture(autouse=True)
def _no_display(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
