"""Pointer rows: adapter hidden units that look along the question's own embedding (the `-pointer` rows).

Where image features and question embeddings share a space (easyvqa's image tower was trained into MiniLM's, CLIP
aligns both), a question names its concept by a direction: cos(x, q) separates the images that show "red" from those
that do not, even for a word no meta-train question used. A generator that maps q through learned layers to weights
can only emit combinations of what it was trained to emit, and snaps a new word onto a seen concept. The pointer
gives the question a path to the weights that goes through no learned map:

    W1 row k  +=  sqrt(D) (g_k q + c_k m)          k < K

for the first K of the adapter's H hidden units (W1' = W1 / sqrt(D) in the adapter, so unit k computes
g_k q.x + c_k m.x). The gains g_k, c_k ("what to do with the concept": detect it, with which threshold) are produced
by the generator from its conditioning; the direction q ("which concept") is the question's pooled embedding as it
is; m is one learned direction shared by every task, along which m.x measures the feature's scale, so that
c_k m.x acts as a threshold proportional to |x|. The rest of the weights (W2, the other units, the biases) come from
the generator as before, so a pointer row fits whatever the row without it fits.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from hyperguide.models.adapter import AdapterShape


class PointerRows(nn.Module):
    """(conditioning (B, C), question embedding (B, D)) -> (B, P) additions to flat adapter weights: the first `rows`
    rows of W1 point along the question; every other entry is 0. The gains start at zero (the generator's weights
    alone), the shared direction m at a random unit vector (a zero m would be a saddle: neither m nor c moves)."""

    def __init__(self, shape: AdapterShape, cond_dim: int, rows: int) -> None:
        super().__init__()
        if not 1 <= rows <= shape.hidden_dim:
            raise ValueError(f"pointer rows must be between 1 and the adapter's {shape.hidden_dim} units, got {rows}")
        self.shape, self.rows = shape, rows
        self.gains = nn.Linear(cond_dim, 2 * rows)
        nn.init.zeros_(self.gains.weight)
        nn.init.zeros_(self.gains.bias)
        direction = torch.randn(shape.feature_dim)
        self.direction = nn.Parameter(direction / direction.norm())

    def forward(self, cond: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        d = self.shape.feature_dim
        if question.shape[-1] != d:
            raise ValueError(f"pointer: question embeddings of dimension {question.shape[-1]}, features of {d}")
        g, c = self.gains(cond).chunk(2, dim=-1)  # (B, K) each
        rows = g.unsqueeze(-1) * question.unsqueeze(1) + c.unsqueeze(-1) * self.direction  # (B, K, D)
        flat = math.sqrt(d) * rows.flatten(1)
        return F.pad(flat, (0, self.shape.n_params - flat.shape[1]))  # W1's rows lead the flat layout
