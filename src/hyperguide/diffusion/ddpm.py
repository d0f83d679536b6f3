"""The DDPM process over latents (docs/design.md §3.6, §P6-§P7) with a scheduler-like API: `add_noise`, `loss`,
`step`, `sample`.

The denoiser is an argument: `eps_model(x_t, t, cond) -> eps` with x_t (B, L), t (B,) int64 timesteps of the trained
process, cond (B, C) or None for the null condition. Guidance convention: eps = eps_null + gamma (eps_cond - eps_null),
so gamma = 0 is unconditional, 1 conditional, > 1 guided.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hyperguide.diffusion.schedule import NoiseSchedule

EpsModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def guided_eps(eps_null: torch.Tensor, eps_cond: torch.Tensor, gamma: float) -> torch.Tensor:
    """Classifier-free guidance: (1 - gamma) eps_null + gamma eps_cond."""
    return eps_null + gamma * (eps_cond - eps_null)


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] as a column broadcastable against `like` (B, ...), in like's dtype."""
    return values.to(like.device)[t].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


class DDPM:
    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise."""
        ab = self.schedule.alpha_bar
        return _at(ab.sqrt(), t, x0) * x0 + _at((1 - ab).sqrt(), t, x0) * noise

    def loss(
        self, eps_model: EpsModel, x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Mean squared error of the predicted noise at a uniformly drawn timestep per example."""
        t = torch.randint(0, self.schedule.num_steps, (x0.shape[0],), generator=generator).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        return ((eps_model(self.add_noise(x0, noise, t), t, cond) - noise) ** 2).mean()

    def predict_x0(self, eps: torch.Tensor, index: int, x_t: torch.Tensor) -> torch.Tensor:
        """x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
        ab = float(self.schedule.alpha_bar[index])
        return (x_t - (1 - ab) ** 0.5 * eps) / ab**0.5

    def step(
        self,
        eps: torch.Tensor,
        index: int,
        x_t: torch.Tensor,
        noise: torch.Tensor | None,
        clip: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """One ancestral step from schedule entry `index` to `index - 1`:
        x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t) + sigma_t noise (no noise at index 0).

        With `clip` = (low, high), the step goes through the predicted x0 instead, clamped to [low, high], and the
        posterior mean c0 x0 + ct x_t (improved-DDPM's `clip_denoised`); unclamped, the two forms are the same."""
        s = self.schedule
        beta, alpha, ab = float(s.betas[index]), float(s.alphas[index]), float(s.alpha_bar[index])
        if clip is None:
            mean = (x_t - beta / (1 - ab) ** 0.5 * eps) / alpha**0.5
        else:
            ab_prev = float(s.alpha_bar_prev[index])
            x0 = torch.maximum(torch.minimum(self.predict_x0(eps, index, x_t), clip[1]), clip[0])
            mean = (beta * ab_prev**0.5 / (1 - ab)) * x0 + ((1 - ab_prev) * alpha**0.5 / (1 - ab)) * x_t
        if index == 0 or noise is None:
            return mean
        return mean + float(s.posterior_variance[index]) ** 0.5 * noise

    @torch.no_grad()
    def sample(
        self,
        eps_model: EpsModel,
        shape: tuple[int, ...],
        cond: torch.Tensor | None,
        *,
        gamma: float = 1.0,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
        x_start: torch.Tensor | None = None,
        start_index: int | None = None,
        clip: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Ancestral sampling over the entries of the schedule (respace the schedule for fewer steps).

        By default the chain starts from pure noise at the last entry. With `x_start` and `start_index`, it starts
        from x_start noised to entry `start_index` (q(x_t | x_0), SDEdit-style) and runs down from there. `clip`
        bounds each step's predicted x0 (see `step`).
        """
        top = self.schedule.num_steps - 1 if start_index is None else start_index
        if not 0 <= top < self.schedule.num_steps:
            raise ValueError(f"start_index must lie in 0..{self.schedule.num_steps - 1}, got {start_index}")
        x = torch.randn(shape, generator=generator).to(device)
        timesteps = self.schedule.original_timesteps
        if x_start is not None:
            x = self.add_noise(x_start.to(device), x, torch.full((shape[0],), top, dtype=torch.long, device=device))
        for index in reversed(range(top + 1)):
            t = torch.full((shape[0],), int(timesteps[index]), dtype=torch.long, device=device)
            if cond is None or gamma == 0:
                eps = eps_model(x, t, None)
            elif gamma == 1:
                eps = eps_model(x, t, cond)
            else:
                eps = guided_eps(eps_model(x, t, None), eps_model(x, t, cond), gamma)
            noise = torch.randn(shape, generator=generator).to(device) if index > 0 else None
            x = self.step(eps, index, x, noise, clip)
        return x
