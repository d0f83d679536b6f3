"""HVAE (docs/design.md §3.3): a variational autoencoder over adapter weights. Its 128-d latent u is a space of adapters
in which the guidance models work: weights = decode(u).

The weights it models are an HNet's outputs, W = A h + b: h (H = 128) the HNet's last hidden layer, A and b its
frozen output layer (the *readout*). The paper's encoder starts with a Linear(P, 128) on W, and on such W that is a
Linear(H, 128) on h (E W = (E A) h + E b), so the encoder reads the *code* h. Its decoder ends with a free
Linear(128, P); here that last layer is the readout itself, so the decoder outputs a code and decode(u) = A h'(u) + b.
Every weight vector the HVAE sees lies in the readout's image, so the tied layer loses no reconstruction, and the
reconstruction error sum_P (W' - W)^2 is exactly (h' - h)^T A^T A (h' - h) (`meta/losses.vae_loss`'s `metric`).
Training and decoding then cost 128-wide layers instead of P-wide ones (P = 98,816 on easyvqa, 394,240 in the paper):
docs/decisions.md D10.

Encoder: code -> hidden (ReLU) -> 2L, split into the mean and log-variance (minus 1, the reference's offset, so that
the posterior starts narrow). Decoder: L -> reversed hidden (ReLU) -> code. Both are initialised like the HNet.
With `normalize` (the paper's option), the encoder reads standardised codes and the decoder's output is
de-standardised, from zero-initialised last weights: the decoder starts at the mean code, i.e. the mean weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hyperguide.models.hypernet import HyperNet
from hyperguide.models.standardizer import Standardizer

LOGVAR_OFFSET = -1.0


class WeightVAE(nn.Module):
    def __init__(self, code_dim: int, hidden_dims: Sequence[int] = (128, 128), latent_dim: int = 128) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = HyperNet(code_dim, hidden_dims, 2 * latent_dim)
        self.decoder = HyperNet(latent_dim, tuple(reversed(hidden_dims)), code_dim)
        self.codes = Standardizer(code_dim)

    @torch.no_grad()
    def normalize_to(self, codes: torch.Tensor) -> None:
        """Standardise the encoder's input by the codes' (N, H) per-dimension mean and std, and start the decoder at
        the mean code (zero last weights and bias, output de-standardised)."""
        self.codes.fit(codes)
        nn.init.zeros_(self.decoder.output_layer.weight)
        nn.init.zeros_(self.decoder.output_layer.bias)

    def encode(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H) codes -> mean (B, L), log-variance (B, L)."""
        mu, logvar = self.encoder(self.codes(code)).chunk(2, dim=-1)
        return mu, logvar + LOGVAR_OFFSET

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        """(B, L) latents -> (B, H) codes."""
        return self.codes.inverse(self.decoder(u))

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None, eps: torch.Tensor | None = None
    ) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=generator) if eps is None else eps
        return mu + (0.5 * logvar).exp() * eps.to(mu)

    def forward(
        self, code: torch.Tensor, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstructed codes (B, H), mean and log-variance (B, L); the posterior draw takes `eps` (B, L) when given,
        else draws it from `generator`."""
        mu, logvar = self.encode(code)
        return self.decode(self.reparameterize(mu, logvar, generator, eps)), mu, logvar
