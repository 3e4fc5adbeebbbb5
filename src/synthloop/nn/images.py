"""Small image models in torch: an MLP VAE, an MLP DDPM denoiser with DDIM sampling, a digit
classifier for sample-quality metrics, and one short training function for all three.

Images are flat rows of ``pixels = height · width`` intensities in ``[0, 1]``. Every random draw
(initial weights, minibatch order, the VAE's reparametrization noise, the diffusion time steps and
noise, samples) comes from an explicit CPU ``torch.Generator``; tensors are then moved to the
model's device, so a run gives the same numbers on CPU whatever the device of the last run.

- :class:`ImageVAE` — Kingma & Welling (2014): Gaussian encoder q(z|x) = N(μ(x), diag σ²(x)),
  prior N(0, I), Bernoulli decoder p(x|z) with logits f(z). ``neg_elbo`` is
  ``−E_q[log p(x|z)] + KL(q(z|x) ‖ N(0, I))`` in nats per image (one reparametrized draw);
  grayscale intensities are used as Bernoulli targets, the usual (improper) convention for MNIST.
  ``sample`` decodes z ~ N(0, I) to the decoder's mean image σ(f(z)).
- :class:`Denoiser` and :class:`Diffusion` — Ho et al. (2020) ε-prediction with the cosine
  schedule of Nichol & Dhariwal (2021) over ``steps`` training time steps on images scaled to
  ``[-1, 1]``; sampling is deterministic DDIM (Song et al. 2021, η = 0) over a few of those steps.
- :class:`DigitClassifier` — an MLP whose penultimate layer gives the features of the Fréchet
  distance (Heusel et al. 2017, with this classifier in place of Inception).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

Loss = Callable[..., torch.Tensor]  # (module, *batch, generator) -> per-example losses (B,)


def default_device(device: str = "auto") -> torch.device:
    """CUDA when present (``"auto"``), else CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` CPU threads inside the block, restoring the previous count after.

    Models this small are fastest on one thread: more threads spin against each other (and
    against other processes), which made training 20× slower on a busy 2-core machine.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A CPU torch generator seeded from (and advancing) a replicate's numpy generator."""
    return torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))


def randn(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device)


def init_weights(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """PyTorch's default Linear initialization, U(±1/√fan_in), drawn from ``generator``."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * 2 * bound - bound)
                layer.bias.copy_(torch.rand(layer.bias.shape, generator=generator) * 2 * bound - bound)
    return module


def numpy_state(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's weights as numpy arrays (what checkpoints keep)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_state(module: nn.Module, state: dict[str, np.ndarray]) -> nn.Module:
    device = next(module.parameters()).device
    module.load_state_dict({k: torch.as_tensor(v, device=device) for k, v in state.items()})
    return module.eval()


def _mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class ImageVAE(nn.Module):
    """MLP VAE: pixels → hidden → hidden → (μ, log σ²) of ``latent`` dims; decoder mirrored."""

    def __init__(self, pixels: int, hidden: int = 256, latent: int = 16):
        super().__init__()
        self.latent = latent
        self.encoder = nn.Sequential(_mlp([pixels, hidden, hidden]), nn.ReLU())
        self.mean = nn.Linear(hidden, latent)
        self.log_var = nn.Linear(hidden, latent)
        self.decoder = _mlp([latent, hidden, hidden, pixels])

    def neg_elbo(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Negative ELBO of each image (nats), one reparametrized draw of z; x (B, D) in [0, 1]."""
        h = self.encoder(x)  # (B, H)
        mu, log_var = self.mean(h), self.log_var(h).clamp(-20, 10)  # (B, L)
        z = mu + torch.exp(0.5 * log_var) * randn(mu.shape, generator, x.device)
        logits = self.decoder(z)  # (B, D)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = 0.5 * (mu.square() + log_var.exp() - 1.0 - log_var).sum(1)
        return reconstruction + kl  # (B,)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` decoder mean images σ(f(z)), z ~ N(0, I), shape (n, D)."""
        device = next(self.parameters()).device
        return torch.sigmoid(self.decoder(randn((n, self.latent), generator, device)))


def vae_loss(module: ImageVAE, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return module.neg_elbo(x, generator)


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer time steps t (B,), shape (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)  # (half,)
    angles = t.float()[:, None] * freqs[None, :]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Denoiser(nn.Module):
    """ε-prediction MLP: [x_t, embed(t)] → hidden ×3 (SiLU) → pixels."""

    def __init__(self, pixels: int, hidden: int = 256, embed: int = 32):
        super().__init__()
        self.embed = embed
        self.net = _mlp([pixels + embed, hidden, hidden, hidden, pixels], nn.SiLU)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x_t, time_embedding(t, self.embed)], dim=1))  # (B, D)


class Diffusion:
    """The noise schedule, training loss and DDIM sampler around a :class:`Denoiser`.

    ``ᾱ_t = f(t)/f(0)``, ``f(t) = cos²((t/T + s)/(1 + s) · π/2)``, s = 0.008, with βₜ clipped at
    0.999 (Nichol & Dhariwal 2021, eq. 17); data are ``x₀ = 2·image − 1``.
    """

    def __init__(self, steps: int = 100, sample_steps: int = 20):
        self.steps, self.sample_steps = steps, sample_steps
        s = 0.008
        f = np.cos((np.arange(steps + 1) / steps + s) / (1 + s) * np.pi / 2) ** 2
        betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
        self.alpha_bar = torch.as_tensor(np.cumprod(1.0 - betas), dtype=torch.float32)  # (T,): ᾱ at t = 1..T

    def loss(self, module: Denoiser, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Mean squared ε-prediction error per pixel of each image at a uniform time step, (B,)."""
        x0 = 2.0 * image - 1.0  # (B, D)
        t = torch.randint(0, self.steps, (len(x0),), generator=generator).to(x0.device)  # (B,)
        eps = randn(x0.shape, generator, x0.device)
        ab = self.alpha_bar.to(x0.device)[t][:, None]  # (B, 1)
        x_t = ab.sqrt() * x0 + (1.0 - ab).sqrt() * eps
        return (module(x_t, t) - eps).square().mean(1)

    @torch.no_grad()
    def sample(self, module: Denoiser, n: int, pixels: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` images in [0, 1] by DDIM (η = 0) over ``sample_steps`` evenly spaced time steps, (n, D)."""
        device = next(module.parameters()).device
        alpha_bar = self.alpha_bar.to(device)
        times = np.linspace(self.steps - 1, 0, self.sample_steps).round().astype(int)
        x = randn((n, pixels), generator, device)  # x_T
        x0 = x
        for i, t in enumerate(times):
            ab = alpha_bar[t]
            eps = module(x, torch.full((n,), int(t), device=device))
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1.0, 1.0)
            # ε consistent with the clipped x₀: at the noisiest steps (ᾱ ≈ 1e-7) an unclipped x₀
            # is huge and a clipped one with the raw ε pushes the path off the data manifold.
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
            ab_next = alpha_bar[times[i + 1]] if i + 1 < len(times) else torch.tensor(1.0, device=device)
            x = ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps
        return (x0 + 1.0) / 2.0


class DigitClassifier(nn.Module):
    """MLP classifier pixels → 256 → ``features`` → classes; the ``features`` layer feeds the Fréchet distance."""

    def __init__(self, pixels: int, classes: int, features: int = 64):
        super().__init__()
        self.body = nn.Sequential(_mlp([pixels, 256, features]), nn.ReLU())
        self.head = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def classifier_loss(module: DigitClassifier, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return F.cross_entropy(module(x), y, reduction="none")


@torch.no_grad()
def classify(module: DigitClassifier, images: np.ndarray, batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (n, classes) and penultimate features (n, features) of images (n, D)."""
    device = next(module.parameters()).device
    module.eval()
    probs, feats = [], []
    for start in range(0, len(images), batch):
        x = torch.as_tensor(images[start : start + batch], dtype=torch.float32, device=device)
        h = module.body(x)
        probs.append(torch.softmax(module.head(h), dim=1).cpu().numpy())
        feats.append(h.cpu().numpy())
    return np.concatenate(probs).astype(float), np.concatenate(feats).astype(float)


def train(
    module: nn.Module,
    loss: Loss,
    arrays: Sequence[np.ndarray],
    *,
    generator: torch.Generator,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    weights: np.ndarray | None = None,
) -> list[float]:
    """Fit ``module`` with AdamW on minibatches of ``arrays`` (rows aligned) for ``epochs`` passes.

    ``loss(module, *batch, generator)`` returns per-example losses (B,); ``weights`` (n,) weigh
    the examples (normalized to mean 1). Returns the mean training loss of each epoch.
    """
    device = next(module.parameters()).device
    tensors = [torch.as_tensor(a, device=device) for a in arrays]
    w = None if weights is None else torch.as_tensor(weights / weights.mean(), dtype=torch.float32, device=device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr)
    n, history = len(tensors[0]), []
    module.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            per_example = loss(module, *(t[idx] for t in tensors), generator)  # (B,)
            value = per_example.mean() if w is None else (per_example * w[idx]).mean()
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            total += float(value.detach()) * len(idx)
        history.append(total / n)
    module.eval()
    return history


@torch.no_grad()
def mean_loss(module: nn.Module, loss: Loss, images: np.ndarray, generator: torch.Generator, batch: int = 1024) -> float:
    """Mean per-example ``loss`` over ``images`` (n, D), e.g. the held-out negative ELBO."""
    device = next(module.parameters()).device
    module.eval()
    total = 0.0
    for start in range(0, len(images), batch):
        x = torch.as_tensor(images[start : start + batch], dtype=torch.float32, device=device)
        total += float(loss(module, x, generator).sum())
    return total / len(images)
