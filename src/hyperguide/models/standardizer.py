"""Per-dimension standardisation by the statistics of a model's training data, as buffers (a checkpoint carries
them): the HVAE's and HyperCLIP's input codes, the regressor's and HyperLDM's latents."""

from __future__ import annotations

import torch
from torch import nn


class Standardizer(nn.Module):
    """forward: x -> (x - mean) / scale; `inverse`: back. Identity until `fit`."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mean: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @torch.no_grad()
    def fit(self, data: torch.Tensor, *, scale: torch.Tensor | None = None, min_scale: float = 1e-6) -> None:
        """The mean of `data` (N, D) and its per-dimension std (or the given `scale`), at least `min_scale`."""
        self.mean.copy_(data.mean(0))
        self.scale.copy_((data.std(0) if scale is None else scale).clamp_min(min_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale + self.mean
