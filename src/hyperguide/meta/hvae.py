"""HVAE training (docs/design.md §P3): a VAE over the adapter weights HNet(z) of the adapted latents.

Each epoch draws one augmentation per task; every batch of tasks takes one Adam step on the loss of
`losses.vae_loss`. The HNet is frozen: its weights are data here. The VAE reads and writes the weights' codes (the
HNet's last hidden layer, `models/vae.py`), and its reconstruction error is measured in weight space through the
readout's Gram matrix, so the loss is the paper's sum over the P weights. Over the HNet with the pointer the weights
also move with the code through the pointer's gains (whose rows point along each task's question); the loss leaves
that part out, and the gate (`hvae` stage: decoded means scored on their tasks) says whether it mattered.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hyperguide.config import HVAEConfig
from hyperguide.distributed import Part, on_block
from hyperguide.events import Callback
from hyperguide.meta.latent_data import fit_on_latents
from hyperguide.meta.losses import vae_loss
from hyperguide.meta.methods import UncondHNetMAML
from hyperguide.meta.optim import adam
from hyperguide.models.vae import WeightVAE
from hyperguide.train.loop import Probing, probed


def build_hvae(base: UncondHNetMAML, config: HVAEConfig) -> WeightVAE:
    return WeightVAE(base.hypernet.output_layer.in_features, config.hidden_dims, config.latent_dim)


def train_hvae(
    base: UncondHNetMAML,
    latents: torch.Tensor,
    config: HVAEConfig,
    *,
    generator: torch.Generator,
    name: str = "hvae",
    device: str = "cpu",
    probing: Probing[WeightVAE] | None = None,
    callbacks: Sequence[Callback] = (),
) -> tuple[WeightVAE, list[dict[str, float]]]:
    """Train a VAE on HNet(z) for the (A, N, L) adapted latents; returns it and the per-epoch log."""
    base = base.to(device).eval().requires_grad_(False)
    vae = build_hvae(base, config).to(device)
    readout = base.hypernet.output_layer
    with torch.no_grad():
        codes = base.hypernet.hidden(latents.to(device))  # (A, N, H)
        metric = readout.weight.T @ readout.weight  # (H, H): |A d|^2 = d^T A^T A d
    if config.normalize:
        vae.normalize_to(codes.reshape(-1, codes.shape[-1]))

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        aug, idx = batch
        eps = torch.randn((len(idx), config.latent_dim), generator=generator)  # every process draws the whole batch's

        def block(mine: Part) -> dict[str, torch.Tensor]:
            code = codes[mine(aug).to(device), mine(idx).to(device)]
            recon, mu, logvar = vae(code, eps=mine(eps))
            loss, rec, kl = vae_loss(recon, code, mu, logvar, config.kl_weight, metric=metric, dim=readout.out_features)
            return {"loss": loss, "recon": rec, "kl": kl}

        return on_block(len(idx), block)

    history = fit_on_latents(
        step,
        adam(vae.parameters(), config.lr, device),
        latents,
        config,
        generator=generator,
        name=name,
        probing=probed(probing, vae),
        callbacks=callbacks,
        sharded=True,
    )
    return vae.eval(), history
