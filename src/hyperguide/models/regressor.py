"""The ablation's question -> latent regressor: an MLP from the question's vector to a latent of a space, over
latents normalised per dimension (buffers, so a checkpoint carries them). Deterministic: one latent per question.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hyperguide.config import QuestionMode
from hyperguide.data.batch import Questions
from hyperguide.models.question import QuestionEncoder
from hyperguide.models.standardizer import Standardizer


class LatentRegressor(nn.Module):
    """forward(questions) -> latents (B, L): MLP(question vector) in the latents' standardised coordinates."""

    def __init__(
        self,
        question_dim: int,
        latent_dim: int,
        hidden_dims: Sequence[int],
        question: QuestionMode = "pooled",
        question_heads: int = 4,
    ) -> None:
        super().__init__()
        self.question = QuestionEncoder(question_dim, question, question_heads)
        dims = [question_dim, *hidden_dims]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], latent_dim))
        self.net = nn.Sequential(*layers)
        self.latents = Standardizer(latent_dim)

    def normalized(self, questions: Questions) -> torch.Tensor:
        """(B, L) latents in the normalised coordinates the network is trained in."""
        return self.net(self.question.encode(questions))

    def forward(self, questions: Questions) -> torch.Tensor:
        return self.latents.inverse(self.normalized(questions))
