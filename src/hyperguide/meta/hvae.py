"""HVAE training (docs/design.md §P3): a VAE over the adapter weights HNet(z) of the adapted latents.

Each epoch draws one augmentation per task; every batch of tasks takes one Adam step on the loss of
`losses.vae_loss`. The HNet is frozen: its weights are data here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hyperguide.config import HVAEConfig
from hyperguide.events import Callback
from hyperguide.meta.latent_data import fit_on_latents
from hyperguide.meta.losses import vae_loss
from hyperguide.meta.methods import UncondHNetMAML
from hyperguide.meta.optim import adam
from hyperguide.models.vae import WeightVAE


def train_hvae(
    base: UncondHNetMAML,
    latents: torch.Tensor,
    config: HVAEConfig,
    *,
    generator: torch.Generator,
    name: str = "hvae",
    device: str = "cpu",
    callbacks: Sequence[Callback] = (),
) -> tuple[WeightVAE, list[dict[str, float]]]:
    """Train a VAE on HNet(z) for the (A, N, L) adapted latents; returns it and the per-epoch log."""
    n_aug, n_tasks, _ = latents.shape
    base = base.to(device).eval().requires_grad_(False)
    vae = WeightVAE(base.shape.n_params, config.hidden_dims, config.latent_dim).to(device)
    latents = latents.to(device)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        aug, idx = batch
        with torch.no_grad():
            weights = base.generate(latents[aug.to(device), idx.to(device)])
        recon, mu, logvar = vae(weights, generator)
        loss, rec, kl = vae_loss(recon, weights, mu, logvar, config.kl_weight)
        return {"loss": loss, "recon": rec, "kl": kl}

    history = fit_on_latents(
        step,
        adam(vae.parameters(), config.lr, device),
        latents,
        config,
        generator=generator,
        name=name,
        callbacks=callbacks,
    )
    return vae.eval(), history
