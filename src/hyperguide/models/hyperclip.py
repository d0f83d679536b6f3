"""HyperCLIP's weight encoder (docs/design.md §3.4): an MLP with Softplus activations from a flat adapter weight vector
to the question-embedding space, trained contrastively so that a task's weights land near its question.

The weight tower is learned; the text side is the frozen pooled question embedding (the paper), or learned attention
pooling over the question's token states (`models/question.py`), trained with the weight tower. The logit scale is
fixed at 100, as in the paper (never optimised there).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hyperguide.config import QuestionMode
from hyperguide.data.batch import Questions
from hyperguide.models.question import QuestionEncoder

LOGIT_SCALE = 100.0


class HyperCLIPEncoder(nn.Module):
    """forward: weights (B, P) -> L2-normalised embeddings (B, C)."""

    def __init__(self, weight_dim: int, hidden_dims: Sequence[int], out_dim: int) -> None:
        super().__init__()
        dims = [weight_dim, *hidden_dims, out_dim]
        layers = [nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)]
        for layer in layers:
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.layers = nn.ModuleList(layers)

    def forward(self, weights: torch.Tensor) -> torch.Tensor:
        h = weights
        for layer in self.layers[:-1]:
            h = F.softplus(layer(h))
        return F.normalize(self.layers[-1](h), dim=-1)


def clip_logits(weight_emb: torch.Tensor, question_emb: torch.Tensor, scale: float = LOGIT_SCALE) -> torch.Tensor:
    """(N, N') scaled cosines between normalised weight embeddings and (normalised here) question embeddings."""
    return scale * weight_emb @ F.normalize(question_emb, dim=-1).T


class HyperCLIP(nn.Module):
    """The two towers: `embed_weights` (B, P) -> (B, C) and `embed_questions` -> (B, C), both L2-normalised."""

    def __init__(
        self,
        weight_dim: int,
        hidden_dims: Sequence[int],
        question_dim: int,
        question_mode: QuestionMode = "pooled",
        question_heads: int = 4,
    ) -> None:
        super().__init__()
        self.weights = HyperCLIPEncoder(weight_dim, hidden_dims, question_dim)
        self.question = QuestionEncoder(question_dim, question_mode, question_heads)

    def embed_weights(self, weights: torch.Tensor) -> torch.Tensor:
        return self.weights(weights)

    def embed_questions(self, questions: Questions) -> torch.Tensor:
        return F.normalize(self.question.encode(questions), dim=-1)

    def logits(self, weights: torch.Tensor, questions: Questions) -> torch.Tensor:
        return clip_logits(self.embed_weights(weights), self.embed_questions(questions))
