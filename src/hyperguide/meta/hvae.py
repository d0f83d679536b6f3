"""HVAE training (SPEC P3): a VAE over the adapter weights HNet(z) of the adapted latents.

Each epoch draws one augmentation per task; every batch of tasks takes one Adam step on the loss of
`losses.vae_loss`. The HNet is frozen: its weights are data here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from hyperguide.meta.latent_data import epoch_batches, epochs_needed
from hyperguide.meta.losses import vae_loss
from hyperguide.meta.methods import UncondHNetMAML
from hyperguide.meta.optim import adam
from hyperguide.models.vae import WeightVAE


@dataclass(frozen=True)
class HVAEConfig:
    """Paper defaults (SPEC 4.1): Adam 1e-4, batch 32, 10,000 epochs, KL weight 1, latent 128."""

    hidden_dims: tuple[int, ...] = (128, 128)
    latent_dim: int = 128
    kl_weight: float = 1.0
    lr: float = 1e-4
    batch_size: int = 32
    epochs: int = 10000
    min_steps: int = 0


def train_hvae(
    base: UncondHNetMAML,
    latents: torch.Tensor,
    config: HVAEConfig,
    *,
    generator: torch.Generator,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[WeightVAE, list[dict[str, float]]]:
    """Train a VAE on HNet(z) for the (A, N, L) adapted latents; returns it and the per-epoch log."""
    n_aug, n_tasks, _ = latents.shape
    base = base.to(device).eval().requires_grad_(False)
    vae = WeightVAE(base.shape.n_params, config.hidden_dims, config.latent_dim).to(device)
    optimizer = adam(vae.parameters(), config.lr, device)
    latents = latents.to(device)
    history = []
    epochs = epochs_needed(n_tasks, config.batch_size, config.epochs, config.min_steps)
    for epoch in tqdm(range(epochs), desc="train hvae", disable=not progress, unit="epoch"):
        sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
        n = 0
        for aug, idx in epoch_batches(n_aug, n_tasks, config.batch_size, generator):
            with torch.no_grad():
                weights = base.generate(latents[aug.to(device), idx.to(device)])
            recon, mu, logvar = vae(weights, generator)
            loss, rec, kl = vae_loss(recon, weights, mu, logvar, config.kl_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for key, value in zip(sums, (loss, rec, kl), strict=True):
                sums[key] += float(value.detach())
            n += 1
        history.append({"epoch": epoch + 1, **{k: v / n for k, v in sums.items()}})
    return vae.eval(), history
