"""The HyperLDM denoiser (docs/design.md §3.5): an MLP eps(x_t, t, c) over normalised latents, and condition dropout.

Input concat[x_t, c, emb(t)] -> Linear -> LayerNorm -> ReLU -> ... -> Linear(latent_dim). The timestep embedding is
sinusoidal ([cos | sin], max period 10000). The null condition (the "unconditional" input of classifier-free
guidance) is the zero vector as in the paper, or a learned embedding; `drop_condition` replaces each example's
condition by it with probability p_uncond (an independent Bernoulli draw per example).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) integer timesteps -> (B, dim) [cos | sin] features at geometrically spaced frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float().unsqueeze(-1) * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return nn.functional.pad(emb, (0, dim - 2 * half))


class LatentDenoiser(nn.Module):
    """forward(x_t (B, L), t (B,), cond (B, C) or None) -> predicted noise (B, L). None means the null condition."""

    def __init__(
        self,
        latent_dim: int,
        cond_dim: int,
        hidden_dims: Sequence[int] = (128, 128),
        time_dim: int = 100,
        null: Literal["zeros", "learned"] = "zeros",
    ) -> None:
        super().__init__()
        self.time_dim = time_dim
        dims = [latent_dim + cond_dim + time_dim, *hidden_dims]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], latent_dim))
        self.net = nn.Sequential(*layers)
        if null == "learned":
            self.null_cond = nn.Parameter(torch.zeros(cond_dim))
        else:
            self.register_buffer("null_cond", torch.zeros(cond_dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            cond = self.null_cond.expand(x_t.shape[0], -1)
        return self.net(torch.cat([x_t, cond, timestep_embedding(t, self.time_dim)], dim=-1))

    def drop_condition(
        self, cond: torch.Tensor, p_uncond: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Each row replaced by the null condition with probability p_uncond (classifier-free guidance training)."""
        drop = torch.rand(cond.shape[0], generator=generator).to(cond.device) < p_uncond
        return torch.where(drop.unsqueeze(-1), self.null_cond.expand_as(cond), cond)
