"""HyperCLIP (docs/design.md §3.4): a weight encoder from adapter weights to the question-embedding space, trained
contrastively so that a task's weights land near its question.

The paper's weight tower is an MLP with Softplus activations whose first layer reads the flat weight vector W
(Linear(P, 128)). Every W a guidance space produces is an HNet readout W = A h + b of a code h (`meta/spaces.py`),
so that first layer is a Linear(H, 128) on the code: the tower here reads codes, optionally standardised by the
training codes' mean and std (the paper's `normalize`). Same functions of the HNet's weights; 128-wide layers.

The weight tower is learned; the text side is the frozen pooled question embedding (the paper), or learned attention
pooling over the question's token states (`models/question.py`), trained with the weight tower. The logit scale is
fixed at 100, as in the paper (never optimised there). `bank` holds the meta-train tasks' latents and question
vectors (`models/bank.py`) for guidance that starts from the data.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hyperguide.config import QuestionMode
from hyperguide.data.batch import Questions
from hyperguide.models.bank import LatentBank
from hyperguide.models.question import QuestionEncoder
from hyperguide.models.standardizer import Standardizer

LOGIT_SCALE = 100.0


class HyperCLIPEncoder(nn.Module):
    """forward: codes (B, H) -> L2-normalised embeddings (B, C)."""

    def __init__(self, code_dim: int, hidden_dims: Sequence[int], out_dim: int) -> None:
        super().__init__()
        dims = [code_dim, *hidden_dims, out_dim]
        layers = [nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)]
        for layer in layers:
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.layers = nn.ModuleList(layers)
        self.codes = Standardizer(code_dim)  # the identity unless fitted (the paper's `normalize`, std >= 0.01)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        h = self.codes(codes)
        for layer in self.layers[:-1]:
            h = F.softplus(layer(h))
        return F.normalize(self.layers[-1](h), dim=-1)


def clip_logits(weight_emb: torch.Tensor, question_emb: torch.Tensor, scale: float = LOGIT_SCALE) -> torch.Tensor:
    """(N, N') scaled cosines between normalised weight embeddings and (normalised here) question embeddings."""
    return scale * weight_emb @ F.normalize(question_emb, dim=-1).T


class HyperCLIP(nn.Module):
    """The two towers: `embed_codes` (B, H) -> (B, C) and `embed_questions` -> (B, C), both L2-normalised."""

    def __init__(
        self,
        code_dim: int,
        hidden_dims: Sequence[int],
        question_dim: int,
        question_mode: QuestionMode = "pooled",
        question_heads: int = 4,
        latent_dim: int = 0,
    ) -> None:
        super().__init__()
        self.weights = HyperCLIPEncoder(code_dim, hidden_dims, question_dim)
        self.question = QuestionEncoder(question_dim, question_mode, question_heads)
        self.bank = LatentBank(latent_dim, question_dim)

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.weights(codes)

    def embed_questions(self, questions: Questions) -> torch.Tensor:
        return F.normalize(self.question.encode(questions), dim=-1)

    def logits(self, codes: torch.Tensor, questions: Questions) -> torch.Tensor:
        return clip_logits(self.embed_codes(codes), self.embed_questions(questions))
