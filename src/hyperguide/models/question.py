"""The question as a conditioning vector: the pooled sentence embedding, or learned attention pooling over its tokens.

A mean-pooled sentence embedding can hide what decides a task: on easy-VQA the pooled MiniLM embeddings of "is there
a red shape?" and "is there not a red shape?" have cosine 0.97. `QuestionEncoder` turns a batch's question into the
(B, Dq) vector a model conditions on:

- `"pooled"`: the pooled embedding, unchanged; no parameters (today's behaviour).
- `"attention"`: `heads` learned queries attend over the layer-normed token states (padded tokens get -inf scores),
  each head returns its attention-weighted mean of the normed states, the heads' outputs are concatenated and
  projected back to Dq, and the result is added to the pooled embedding. The projection starts at zero, so at
  initialisation the output *is* the pooled embedding and training only learns what the tokens add to it.

Inputs are what `hyperguide.data.batch.TaskBatch` carries: `question_emb` (B, Dq), `question_tokens` (B, L, Dq) and
`question_token_mask` (B, L), whose rows are non-empty prefixes. A task without token states has one token, its
pooled embedding, so both modes work on every batch.
"""

from __future__ import annotations

import math
from typing import get_args

import torch
from torch import nn

from hyperguide.config import QuestionMode
from hyperguide.data.batch import Questions, TaskBatch

QUESTION_MODES: tuple[str, ...] = get_args(QuestionMode)


class QuestionEncoder(nn.Module):
    """(question_emb (B, Dq), tokens (B, L, Dq), mask (B, L)) -> (B, Dq) conditioning vector; see the module doc.

    Attention scores of head h: `q_h . (W_k LN(x))_h / sqrt(dk)` with dk = max(1, Dq // heads); values are `LN(x)`.
    """

    def __init__(self, question_dim: int, mode: QuestionMode, heads: int = 4) -> None:
        super().__init__()
        if mode not in QUESTION_MODES:
            raise ValueError(f"unknown question mode {mode!r}; choose one of {', '.join(QUESTION_MODES)}")
        if question_dim < 1 or heads < 1:
            raise ValueError(f"question_dim and heads must be positive, got {question_dim} and {heads}")
        self.question_dim = question_dim
        self.mode = mode
        self.heads = heads
        if mode == "attention":
            self.key_dim = max(1, question_dim // heads)
            self.norm = nn.LayerNorm(question_dim)
            self.keys = nn.Linear(question_dim, heads * self.key_dim, bias=False)
            self.queries = nn.Parameter(torch.randn(heads, self.key_dim))
            self.proj = nn.Linear(heads * question_dim, question_dim)
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def attention(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, heads, L) attention weights over the real tokens (0 on padding; each row sums to 1)."""
        b, length, _ = tokens.shape
        keys = self.keys(self.norm(tokens)).view(b, length, self.heads, self.key_dim)  # (B, L, H, dk)
        scores = torch.einsum("blhd,hd->bhl", keys, self.queries) / math.sqrt(self.key_dim)
        scores = scores.masked_fill(~mask.bool().unsqueeze(1), float("-inf"))
        return torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a row without real tokens would be NaN: make it 0

    def forward(self, question_emb: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.mode == "pooled":
            return question_emb
        weights = self.attention(tokens, mask)  # (B, H, L)
        pooled = torch.einsum("bhl,bld->bhd", weights, self.norm(tokens))  # (B, H, Dq)
        return question_emb + self.proj(pooled.flatten(1))

    def encode(self, questions: Questions) -> torch.Tensor:
        """`forward` on a `Questions` container: (N, Dq)."""
        return self(questions.emb, questions.tokens, questions.mask)

    def encode_batch(self, batch: TaskBatch) -> torch.Tensor:
        """`forward` on a task batch's question fields: (B, Dq)."""
        return self(batch.question_emb, batch.question_tokens, batch.question_token_mask)

    def extra_repr(self) -> str:
        return f"question_dim={self.question_dim}, mode={self.mode!r}, heads={self.heads}"
