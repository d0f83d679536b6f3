"""Latent spaces of adapters in which the guidance models work (docs/design.md §P3-§P7): an HNet's latent z, or an
HVAE's u.

A space decodes a latent to flat adapter weights, gives the starting latent of a new task (the meta-learned z0, or a
stochastic encoding of HNet(z0) for the HVAE), and maps the collected adapted HNet latents into itself as a Gaussian
per example (mean, log-variance; for the HNet the latents themselves with no noise), from which training draws.

Every space's weights are the HNet's output layer (the `readout`, W = A h + b) applied to a *code* h, the HNet's last
hidden layer: `decode(x) = readout(code(x))`; over an HNet with the pointer, plus the pointer rows that the code's
gains scale along the task's question (`UncondHNetMAML.weights`), so `decode(x, question)`. Models that read weights
(the HVAE's encoder, HyperCLIP's weight tower) read codes, their first layer folded into the readout
(`models/vae.py`), so no P-wide layer is ever trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from hyperguide.diffusion.noise import Noise, randn
from hyperguide.meta.methods import UncondHNetMAML
from hyperguide.models.vae import WeightVAE

SpaceKind = Literal["hnet", "hvae"]


class LatentSpace(nn.Module):
    kind: ClassVar[SpaceKind]

    def __init__(self, base: UncondHNetMAML) -> None:
        super().__init__()
        self.base = base

    @property
    def latent_dim(self) -> int:
        raise NotImplementedError

    @property
    def readout(self) -> nn.Linear:
        """The HNet's output layer: codes (B, H) -> adapter weights (B, P)."""
        return self.base.hypernet.output_layer

    @property
    def code_dim(self) -> int:
        return int(self.readout.in_features)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """Latents (B, L) -> the codes (B, H) of their weights."""
        raise NotImplementedError

    @property
    def reads_question(self) -> bool:
        """Whether decoding needs the tasks' questions (an HNet with the pointer)."""
        return self.base.pointer is not None

    def decode(self, x: torch.Tensor, question: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (B, L) and, for a space that reads it, the tasks' pooled question embeddings (B, D) -> adapter
        weights (B, P)."""
        return self.base.weights(self.code(x), question)

    def decoder(self, question: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """`decode` for one batch of tasks, whose questions are `question` (B, D)."""
        return lambda x: self.decode(x, question)

    def start(self, n: int, generator: torch.Generator | Noise | None) -> torch.Tensor:
        """(n, L) starting latents for n new tasks."""
        raise NotImplementedError

    @torch.no_grad()
    def from_hnet_latents(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Adapted HNet latents (..., Lz) -> this space's per-example mean (..., L) and log-variance (or None)."""
        raise NotImplementedError


def draw(mean: torch.Tensor, logvar: torch.Tensor | None, generator: torch.Generator | Noise | None) -> torch.Tensor:
    """A sample of N(mean, exp(logvar)); the mean itself when there is no variance."""
    if logvar is None:
        return mean
    return mean + (0.5 * logvar).exp() * randn(tuple(mean.shape), generator).to(mean)


class HNetSpace(LatentSpace):
    kind = "hnet"

    @property
    def latent_dim(self) -> int:
        return int(self.base.z0.shape[0])

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.hypernet.hidden(x)

    def start(self, n: int, generator: torch.Generator | Noise | None) -> torch.Tensor:
        return self.base.z0.detach().expand(n, -1).clone()

    @torch.no_grad()
    def from_hnet_latents(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return z, None


class HVAESpace(LatentSpace):
    kind = "hvae"

    def __init__(self, base: UncondHNetMAML, vae: WeightVAE) -> None:
        super().__init__(base)
        self.vae = vae

    @property
    def latent_dim(self) -> int:
        return self.vae.latent_dim

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(x)

    def start(self, n: int, generator: torch.Generator | Noise | None) -> torch.Tensor:
        """u0 ~ q(u | HNet(z0)), drawn independently per task (docs/design.md §P5)."""
        with torch.no_grad():
            mu, logvar = self.vae.encode(self.base.hypernet.hidden(self.base.z0.unsqueeze(0)))
        return draw(mu.expand(n, -1), logvar.expand(n, -1), generator)

    @torch.no_grad()
    def from_hnet_latents(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mu, logvar = self.vae.encode(self.base.hypernet.hidden(z))
        return mu, logvar


@dataclass
class SpaceLatents:
    """The adapted HNet latents (A, N, Lz) mapped into a frozen space: per (augmentation, task) a Gaussian, from which
    the guidance models' training draws."""

    mean: torch.Tensor  # (A, N, L)
    logvar: torch.Tensor | None

    @classmethod
    def of(cls, space: LatentSpace, latents: torch.Tensor, device: str | torch.device) -> SpaceLatents:
        """Freeze `space` on `device` (in place) and map the latents into it."""
        space.to(device).eval().requires_grad_(False)
        return cls(*space.from_hnet_latents(latents.to(device)))

    def draw(self, aug: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One sample for each (augmentation, task) pair."""
        return draw(self.mean[aug, idx], None if self.logvar is None else self.logvar[aug, idx], generator)
