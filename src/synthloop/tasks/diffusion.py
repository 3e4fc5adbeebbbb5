"""Denoising diffusion models trained on their own samples (after Gerstgrasser et al. 2024).

Gerstgrasser et al. retrain a diffusion model on its own molecule conformations; those data are
not available offline, so images stand in (the same data sets as the ``vae`` task, see
:mod:`synthloop.tasks.images`). Generation 0 trains an MLP ε-prediction denoiser
(:class:`~synthloop.nn.images.Denoiser`, DDPM loss of Ho et al. 2020 with a cosine schedule over
``diffusion_steps`` time steps) on ``T`` real images; each later generation draws ``T`` images
from the previous model by deterministic DDIM over ``sample_steps`` steps, and the workflow
composes the next training set from the pool. Every generation trains a fresh denoiser for
``epochs`` passes over its training set with AdamW.

Metrics, on held-out REAL images or against them: ``denoising_loss`` — the DDPM training loss
(mean squared ε error per pixel at a uniform time step, one draw per image) of held-out real
images, the cheap, unweighted relative of the variational bound — and the sample-quality metrics
(``fd``, ``confidence``, ``class_entropy``, ``label_entropy``).
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import model_validator

from ..validation import ConfigError, Integer, Real
from .images import QUALITY_LABELS, ImageConfig, ImageTask


class DiffusionConfig(ImageConfig):
    name: Literal["diffusion"] = "diffusion"
    epochs: Integer(1, 100_000) = 50
    lr: Real(0, 1, lo_open=True) = 2e-3
    diffusion_steps: Integer(2, 10_000) = 100
    sample_steps: Integer(1, 10_000) = 20

    @model_validator(mode="after")
    def _steps(self):
        if self.sample_steps > self.diffusion_steps:
            raise ConfigError(f"task.sample_steps must be an integer in [1, {self.diffusion_steps}] (task.diffusion_steps); got {self.sample_steps}")
        return self


class DiffusionTask(ImageTask):
    Config = DiffusionConfig
    primary_metric = "fd"
    metric_labels = {"denoising_loss": "held-out denoising loss: mean squared ε error per pixel", **QUALITY_LABELS}

    @cached_property
    def schedule(self):
        """The noise schedule and DDIM sampler (built once per task object)."""
        from ..nn.images import Diffusion

        return Diffusion(self.config.diffusion_steps, self.config.sample_steps)

    def build(self, pixels: int):
        from ..nn.images import Denoiser

        return Denoiser(pixels, hidden=self.config.hidden)

    def loss(self, module, images, generator):
        return self.schedule.loss(module, images, generator)

    def held_out_metrics(self, module, test, generator):
        from ..nn.images import mean_loss

        return {"denoising_loss": mean_loss(module, self.schedule.loss, test, generator)}

    def sample(self, module, n, pixels, generator):
        return self.schedule.sample(module, n, pixels, generator)

    def describe_model(self) -> str:
        c = self.config
        return f"MLP DDPM (hidden {c.hidden}, {c.diffusion_steps} steps, DDIM {c.sample_steps} sampling steps)"
