"""The HyperLDM denoiser (docs/design.md §3.5): an MLP over normalised latents, `out(x_t, t, c)`, whose output is
whatever the diffusion process predicts (noise, clean latent or velocity: `diffusion.ddpm`), and condition dropout.

Blocks are Linear -> LayerNorm -> ReLU, then a Linear back to the latent. The timestep embedding is sinusoidal
([cos | sin], max period 10000). The condition c reaches the network in one of two ways (`condition`):

- `"concat"` (the paper): the first block's input is concat[x_t, c, emb(t)];
- `"film"`: the first block's input is concat[x_t, emb(t)]; c goes through a learned projection,
  SiLU(LayerNorm(Linear(c))), and modulates every block after its LayerNorm, h -> h (1 + scale) + shift, with
  scale and shift linear in the projection and zero at initialisation (DiT's adaLN-Zero, without the gate), so the
  condition acts at every depth however small its input norm.

The null condition (the "unconditional" input of classifier-free guidance) is the zero vector as in the paper, or a
learned embedding; `drop_condition` replaces each example's condition by it with probability p_uncond (an
independent Bernoulli draw per example).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from hyperguide.config import Condition


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) integer timesteps -> (B, dim) [cos | sin] features at geometrically spaced frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float().unsqueeze(-1) * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return nn.functional.pad(emb, (0, dim - 2 * half))


class LatentDenoiser(nn.Module):
    """forward(x_t (B, L), t (B,), cond (B, C) or None) -> (B, L). None means the null condition."""

    def __init__(
        self,
        latent_dim: int,
        cond_dim: int,
        hidden_dims: Sequence[int] = (128, 128),
        time_dim: int = 100,
        null: Literal["zeros", "learned"] = "zeros",
        condition: Condition = "concat",
        cond_hidden: int = 128,
    ) -> None:
        super().__init__()
        if condition not in ("concat", "film"):
            raise ValueError(f"condition must be 'concat' or 'film', got {condition!r}")
        self.time_dim = time_dim
        self.condition = condition
        dims = [latent_dim + time_dim + (cond_dim if condition == "concat" else 0), *hidden_dims]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.norms = nn.ModuleList(nn.LayerNorm(b) for b in hidden_dims)
        self.out = nn.Linear(dims[-1], latent_dim)
        if condition == "film":
            self.cond_proj = nn.Sequential(nn.Linear(cond_dim, cond_hidden), nn.LayerNorm(cond_hidden), nn.SiLU())
            modulations = [nn.Linear(cond_hidden, 2 * b) for b in hidden_dims]
            for m in modulations:
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
            self.modulations = nn.ModuleList(modulations)
        if null == "learned":
            self.null_cond = nn.Parameter(torch.zeros(cond_dim))
        else:
            self.register_buffer("null_cond", torch.zeros(cond_dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            cond = self.null_cond.expand(x_t.shape[0], -1)
        temb = timestep_embedding(t, self.time_dim)
        if self.condition == "concat":
            h = torch.cat([x_t, cond, temb], dim=-1)
            for linear, norm in zip(self.linears, self.norms, strict=True):
                h = torch.relu(norm(linear(h)))
            return self.out(h)
        c = self.cond_proj(cond)
        h = torch.cat([x_t, temb], dim=-1)
        for linear, norm, modulation in zip(self.linears, self.norms, self.modulations, strict=True):
            scale, shift = modulation(c).chunk(2, dim=-1)
            h = torch.relu(norm(linear(h)) * (1 + scale) + shift)
        return self.out(h)

    @staticmethod
    def drop_mask(n: int, p_uncond: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n,) bool: which of n rows lose their condition, each with probability p_uncond."""
        return torch.rand(n, generator=generator) < p_uncond

    def drop_condition(
        self,
        cond: torch.Tensor,
        p_uncond: float,
        generator: torch.Generator | None = None,
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Each row replaced by the null condition with probability p_uncond (classifier-free guidance training), or
        the rows `drop` (a `drop_mask` drawn beforehand) marks."""
        drop = self.drop_mask(cond.shape[0], p_uncond, generator) if drop is None else drop
        return torch.where(drop.to(cond.device).unsqueeze(-1), self.null_cond.expand_as(cond), cond)
