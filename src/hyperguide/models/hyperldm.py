"""HyperLDM's network (docs/design.md §3.5): the latent denoiser, the question encoder it conditions through, and the
per-dimension normalisation of the latents it was trained on (buffers, so a checkpoint carries them).

Training and sampling are procedures (`meta/hyperldm.py`); the process math is `diffusion/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from hyperguide.config import Condition, QuestionMode
from hyperguide.models.denoiser import LatentDenoiser
from hyperguide.models.question import QuestionEncoder
from hyperguide.models.standardizer import Standardizer


class HyperLDM(nn.Module):
    """`question` (the condition path), `denoiser` (out(x_t, t, c)), and the latent normalisation: `latents` (per
    dimension) and the box [`x0_low`, `x0_high`] of the normalised training latents."""

    def __init__(
        self,
        latent_dim: int,
        cond_dim: int,
        *,
        hidden_dims: Sequence[int],
        time_dim: int,
        null: Literal["zeros", "learned"],
        question: QuestionMode,
        question_heads: int,
        condition: Condition = "concat",
        cond_hidden: int = 128,
    ) -> None:
        super().__init__()
        self.question = QuestionEncoder(cond_dim, question, question_heads)
        self.denoiser = LatentDenoiser(latent_dim, cond_dim, hidden_dims, time_dim, null, condition, cond_hidden)
        self.latents = Standardizer(latent_dim)
        self.x0_low: torch.Tensor
        self.x0_high: torch.Tensor
        self.register_buffer("x0_low", torch.full((latent_dim,), -float("inf")))  # normalised training range
        self.register_buffer("x0_high", torch.full((latent_dim,), float("inf")))

    @property
    def latent_dim(self) -> int:
        return self.latents.dim

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.latents(x)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.latents.inverse(x)
