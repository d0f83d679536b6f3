"""Noise schedules (docs/design.md §3.6): beta_t for t = 0..T-1 and the quantities derived from them, in float64.

alpha_t = 1 - beta_t, alpha_bar_t = prod_{s <= t} alpha_s, posterior variance
sigma_t^2 = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) with alpha_bar_{-1} = 1 (so sigma_0 = 0).
`respace` keeps a subset of the timesteps and recomputes the betas from alpha_bar at the kept steps (improved-DDPM
respacing), so that a sampler with fewer steps is the exact process on those steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class NoiseSchedule:
    """A diffusion process's betas and the quantities derived from them, computed once, at construction."""

    betas: torch.Tensor  # (T,) float64
    timesteps: tuple[int, ...] = ()  # the original timestep of each entry (respaced schedules); empty: 0..T-1
    alphas: torch.Tensor = field(init=False, repr=False, compare=False)
    alpha_bar: torch.Tensor = field(init=False, repr=False, compare=False)
    alpha_bar_prev: torch.Tensor = field(init=False, repr=False, compare=False)
    posterior_variance: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.betas.ndim != 1 or not bool(((self.betas > 0) & (self.betas < 1)).all()):
            raise ValueError("betas must be a 1-d tensor with every value in (0, 1)")
        alphas = 1.0 - self.betas
        alpha_bar = torch.cumprod(alphas, dim=0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=self.betas.dtype), alpha_bar[:-1]])
        derived = {
            "alphas": alphas,
            "alpha_bar": alpha_bar,
            "alpha_bar_prev": alpha_bar_prev,
            "posterior_variance": self.betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # a frozen dataclass sets its derived fields once, here

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])

    @property
    def original_timesteps(self) -> torch.Tensor:
        """(T,) int64: which timestep of the trained process each step of this schedule is."""
        if self.timesteps:
            return torch.tensor(self.timesteps, dtype=torch.long)
        return torch.arange(self.num_steps)

    @classmethod
    def cosine(cls, num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Nichol & Dhariwal: alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2)."""
        t = torch.arange(num_steps + 1, dtype=torch.float64)
        f = torch.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
        return cls(betas)

    @classmethod
    def linear(cls, num_steps: int = 1000, start: float = 1e-4, end: float = 2e-2) -> NoiseSchedule:
        """Betas whose square roots are evenly spaced from sqrt(start) to sqrt(end)."""
        return cls(torch.linspace(start**0.5, end**0.5, num_steps, dtype=torch.float64) ** 2)

    def respace(self, keep: Sequence[int]) -> NoiseSchedule:
        """The process restricted to the timesteps `keep` (increasing, of this schedule's own steps)."""
        keep = sorted(set(int(k) for k in keep))
        if not keep or keep[0] < 0 or keep[-1] >= self.num_steps:
            raise ValueError(f"respaced timesteps must lie in 0..{self.num_steps - 1}")
        alpha_bar = self.alpha_bar[keep]
        prev = torch.cat([torch.ones(1, dtype=alpha_bar.dtype), alpha_bar[:-1]])
        original = self.original_timesteps[keep].tolist()
        return NoiseSchedule(1.0 - alpha_bar / prev, tuple(original))

    def strided(self, num_steps: int) -> NoiseSchedule:
        """`num_steps` evenly spaced timesteps, always including the last one."""
        if not 1 <= num_steps <= self.num_steps:
            raise ValueError(f"a respaced sampler needs 1..{self.num_steps} steps, got {num_steps}")
        keep = torch.linspace(0, self.num_steps - 1, num_steps).round().long().tolist()
        return self.respace(keep)
