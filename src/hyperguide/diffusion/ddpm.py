"""The DDPM process over latents (docs/design.md §3.6, §P6-§P7) with a scheduler-like API: `add_noise`, `target`,
`loss`, `estimate`, `step`, `sample`.

The denoiser is an argument: `model(x_t, t, cond) -> output` with x_t (B, L), t (B,) int64 timesteps of the trained
process, cond (B, C) or None for the null condition. What the output is, is the process's `prediction` (diffusers'
`prediction_type`):

- `"eps"`: the noise (the paper, DDPM);
- `"x0"`: the clean latent itself;
- `"v"`: v = sqrt(ab) eps - sqrt(1 - ab) x0 (Salimans & Ho's velocity).

With ab = alpha_bar_t, x_t = sqrt(ab) x0 + sqrt(1 - ab) eps, each of the three determines the other two given x_t;
`estimate` turns an output into the pair (x0, eps) the reverse step needs. Training regresses the output on its own
target with a plain mean squared error.

Guidance convention: out = out_null + gamma (out_cond - out_null), so gamma = 0 is unconditional, 1 conditional,
> 1 guided. The three predictions are affine in one another for a fixed x_t, so guiding the output is guiding the
noise estimate, whatever the prediction. Further guidance (a support-loss gradient, a classifier) enters as `guides`:
functions of the step's `Estimate` that return a corrected x0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import get_args

import torch

from hyperguide.config import Prediction
from hyperguide.diffusion.noise import Noise, randn
from hyperguide.diffusion.schedule import NoiseSchedule

PREDICTIONS: tuple[str, ...] = get_args(Prediction)
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def guided(out_null: torch.Tensor, out_cond: torch.Tensor, gamma: float) -> torch.Tensor:
    """Classifier-free guidance: (1 - gamma) out_null + gamma out_cond."""
    return out_null + gamma * (out_cond - out_null)


@dataclass(frozen=True)
class Estimate:
    """What the denoiser says at one step of the reverse chain: the noisy latents x_t at schedule entry `index`
    (timesteps `t` of the trained process), and the clean latents x0 and the noise eps it predicts."""

    x_t: torch.Tensor
    index: int
    t: torch.Tensor
    x0: torch.Tensor
    eps: torch.Tensor


Guide = Callable[[Estimate], torch.Tensor]  # an estimate -> a corrected x0 (B, L)


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] as a column broadcastable against `like` (B, ...), in like's dtype."""
    return values.to(like.device)[t].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


class DDPM:
    def __init__(self, schedule: NoiseSchedule, prediction: Prediction = "eps") -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
        self.schedule = schedule
        self.prediction = prediction

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise."""
        ab = self.schedule.alpha_bar
        return _at(ab.sqrt(), t, x0) * x0 + _at((1 - ab).sqrt(), t, x0) * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the denoiser must output for x_t = add_noise(x0, noise, t)."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        ab = self.schedule.alpha_bar
        return _at(ab.sqrt(), t, x0) * noise - _at((1 - ab).sqrt(), t, x0) * x0

    def training_draws(
        self, shape: Sequence[int], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A training step's randomness for a batch of `shape`: a uniform timestep per example and the noise."""
        t = torch.randint(0, self.schedule.num_steps, (shape[0],), generator=generator)
        return t, torch.randn(tuple(shape), generator=generator)

    def loss(
        self,
        model: Denoiser,
        x0: torch.Tensor,
        cond: torch.Tensor | None,
        generator: torch.Generator | None = None,
        draws: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Mean squared error of the output against its target, at a uniformly drawn timestep per example (or the
        timesteps and noise of `draws`, from `training_draws`)."""
        t, noise = self.training_draws(x0.shape, generator) if draws is None else draws
        t, noise = t.to(x0.device), noise.to(x0)
        return ((model(self.add_noise(x0, noise, t), t, cond) - self.target(x0, noise, t)) ** 2).mean()

    def coefficients(self, index: int) -> tuple[float, float]:
        """(sqrt(alpha_bar), sqrt(1 - alpha_bar)) at schedule entry `index`."""
        ab = float(self.schedule.alpha_bar[index])
        return ab**0.5, (1 - ab) ** 0.5

    def x0_from_eps(self, eps: torch.Tensor, index: int, x_t: torch.Tensor) -> torch.Tensor:
        """x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar), at schedule entry `index`."""
        a, s = self.coefficients(index)
        return (x_t - s * eps) / a

    def eps_from_x0(self, x0: torch.Tensor, index: int, x_t: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar), at schedule entry `index`."""
        a, s = self.coefficients(index)
        return (x_t - a * x0) / s

    def estimate(self, output: torch.Tensor, index: int, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The denoiser's output at schedule entry `index` as (x0, eps)."""
        if self.prediction == "eps":
            return self.x0_from_eps(output, index, x_t), output
        if self.prediction == "x0":
            return output, self.eps_from_x0(output, index, x_t)
        a, s = self.coefficients(index)
        return a * x_t - s * output, s * x_t + a * output

    def reverse(
        self,
        x0: torch.Tensor,
        eps: torch.Tensor,
        index: int,
        x_t: torch.Tensor,
        noise: torch.Tensor | None,
        clip: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """One ancestral step from schedule entry `index` to `index - 1`, given the estimates x0 and eps of x_t
        (which agree: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps), plus sigma_t noise (none at index 0).

        The mean is the posterior mean c0 x0 + ct x_t; with `clip` = (low, high), x0 is clamped to [low, high] first
        (improved-DDPM's `clip_denoised`). An unclamped noise predictor steps through the equal eps form,
        (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t), which does not divide by sqrt(alpha_bar)."""
        s = self.schedule
        beta, alpha, ab = float(s.betas[index]), float(s.alphas[index]), float(s.alpha_bar[index])
        if clip is None and self.prediction == "eps":
            mean = (x_t - beta / (1 - ab) ** 0.5 * eps) / alpha**0.5
        else:
            ab_prev = float(s.alpha_bar_prev[index])
            if clip is not None:
                x0 = torch.maximum(torch.minimum(x0, clip[1]), clip[0])
            mean = (beta * ab_prev**0.5 / (1 - ab)) * x0 + ((1 - ab_prev) * alpha**0.5 / (1 - ab)) * x_t
        if index == 0 or noise is None:
            return mean
        return mean + float(s.posterior_variance[index]) ** 0.5 * noise

    def step(
        self,
        output: torch.Tensor,
        index: int,
        x_t: torch.Tensor,
        noise: torch.Tensor | None,
        clip: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`reverse` from the denoiser's output (in this process's prediction) at schedule entry `index`."""
        x0, eps = self.estimate(output, index, x_t)
        return self.reverse(x0, eps, index, x_t, noise, clip)

    @torch.no_grad()
    def sample(
        self,
        model: Denoiser,
        shape: tuple[int, ...],
        cond: torch.Tensor | None,
        *,
        gamma: float = 1.0,
        generator: torch.Generator | Noise | None = None,
        device: str | torch.device = "cpu",
        x_start: torch.Tensor | None = None,
        start_index: int | None = None,
        clip: tuple[torch.Tensor, torch.Tensor] | None = None,
        guides: Sequence[Guide] = (),
    ) -> torch.Tensor:
        """Ancestral sampling over the entries of the schedule (respace the schedule for fewer steps).

        By default the chain starts from pure noise at the last entry. With `x_start` and `start_index`, it starts
        from x_start noised to entry `start_index` (q(x_t | x_0), SDEdit-style) and runs down from there. Each
        step's x0 estimate goes through `guides` in order, then `clip` bounds it (see `reverse`). `generator` draws
        the noise: a torch generator for the whole batch, or a `Noise` with one stream per row."""
        top = self.schedule.num_steps - 1 if start_index is None else start_index
        if not 0 <= top < self.schedule.num_steps:
            raise ValueError(f"start_index must lie in 0..{self.schedule.num_steps - 1}, got {start_index}")
        x = randn(shape, generator, device)
        timesteps = self.schedule.original_timesteps
        if x_start is not None:
            x = self.add_noise(x_start.to(device), x, torch.full((shape[0],), top, dtype=torch.long, device=device))
        for index in reversed(range(top + 1)):
            t = torch.full((shape[0],), int(timesteps[index]), dtype=torch.long, device=device)
            if cond is None or gamma == 0:
                out = model(x, t, None)
            elif gamma == 1:
                out = model(x, t, cond)
            else:
                out = guided(model(x, t, None), model(x, t, cond), gamma)
            x0, eps = self.estimate(out, index, x)
            for guide in guides:
                x0 = guide(Estimate(x, index, t, x0, eps))
                eps = self.eps_from_x0(x0, index, x)
            noise = randn(shape, generator, device) if index > 0 else None
            x = self.reverse(x0, eps, index, x, noise, clip)
        return x
