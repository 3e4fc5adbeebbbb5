"""Variational autoencoders trained on their own samples (Shumailov et al. 2024; Gerstgrasser et al. 2024).

Generation 0 trains an MLP VAE (:class:`~synthloop.nn.images.ImageVAE`: Gaussian encoder, ``latent``
dimensions, Bernoulli decoder) on ``T`` real images; each later generation decodes ``T`` draws of
the prior z ~ N(0, I) of the previous VAE to their mean images, and the workflow composes the next
training set from the pool. Every generation trains a fresh VAE for ``epochs`` passes over its
training set with AdamW, so accumulating costs more per generation than replacing.

Metrics, all on held-out REAL images or against them: ``neg_elbo`` — the negative evidence lower
bound, nats per image (one reparametrized draw per image; an upper bound on −log p(x) under the
Bernoulli decoder, with grayscale intensities as Bernoulli targets), and the sample-quality
metrics of :mod:`synthloop.tasks.images` (``fd``, ``confidence``, ``class_entropy``,
``label_entropy``). Data sets, split and classifier: see :mod:`synthloop.tasks.images`.
"""

from __future__ import annotations

from typing import Literal

from ..validation import Integer
from .images import QUALITY_LABELS, ImageConfig, ImageTask


class VAEConfig(ImageConfig):
    name: Literal["vae"] = "vae"
    latent: Integer(1, 10_000) = 16


class VAETask(ImageTask):
    Config = VAEConfig
    primary_metric = "neg_elbo"
    metric_labels = {"neg_elbo": "negative ELBO of held-out real images (nats per image)", **QUALITY_LABELS}

    def build(self, pixels: int):
        from ..nn.images import ImageVAE

        return ImageVAE(pixels, hidden=self.config.hidden, latent=self.config.latent)

    def loss(self, module, images, generator):
        return module.neg_elbo(images, generator)

    def held_out_metrics(self, module, test, generator):
        from ..nn.images import mean_loss, vae_loss

        return {"neg_elbo": mean_loss(module, vae_loss, test, generator)}

    def sample(self, module, n, pixels, generator):
        return module.sample(n, generator)

    def describe_model(self) -> str:
        return f"MLP VAE (hidden {self.config.hidden}, latent {self.config.latent})"
