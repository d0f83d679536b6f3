"""HVAE (docs/design.md §3.3): a variational autoencoder over flat adapter weight vectors. Its 128-d latent u is a space
of adapters in which the guidance models work: weights = decode(u).

Encoder: P -> hidden (ReLU) -> 2L, split into the mean and log-variance (minus 1, the reference's offset, so that
the posterior starts narrow). Decoder: L -> reversed hidden (ReLU) -> P. Both are initialised like the HNet.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hyperguide.models.hypernet import HyperNet

LOGVAR_OFFSET = -1.0


class WeightVAE(nn.Module):
    def __init__(self, weight_dim: int, hidden_dims: Sequence[int] = (128, 128), latent_dim: int = 128) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = HyperNet(weight_dim, hidden_dims, 2 * latent_dim)
        self.decoder = HyperNet(latent_dim, tuple(reversed(hidden_dims)), weight_dim)

    def encode(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, P) -> mean (B, L), log-variance (B, L)."""
        mu, logvar = self.encoder(weights).chunk(2, dim=-1)
        return mu, logvar + LOGVAR_OFFSET

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        return self.decoder(u)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=generator).to(mu)
        return mu + (0.5 * logvar).exp() * eps

    def forward(
        self, weights: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction (B, P), mean and log-variance (B, L)."""
        mu, logvar = self.encode(weights)
        return self.decode(self.reparameterize(mu, logvar, generator)), mu, logvar
