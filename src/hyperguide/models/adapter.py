"""The task network: a residual CLIP-adapter scored against answer-prompt embeddings (docs/design.md §3.1).

Weights theta = (W1 (H, D), b1 (H), W2 (D, H), b2 (D)), flattened as [W1, W2, b1, b2] (the paper's layout).
Forward for image features x (D,):  h = relu(x W1'^T + b1),  a = h W2'^T + b2 + x,  with W1' = W1 / sqrt(D) and
W2' = W2 / sqrt(H) (so N(0, 1) weights behave like LeCun-normal ones). Logits are 100 * cos(a, t_k) for the task's
answer-prompt embeddings t_k. Weights with W2 = 0, b2 = 0 give the identity adapter: pure frozen-encoder zero-shot.

Everything here is batched over tasks: weights (B, P), features (B, N, D), answers (B, K, D), with masks for padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LOGIT_SCALE = 100.0


@dataclass(frozen=True)
class AdapterShape:
    """The adapter's parameter shapes; `n_params` is the length of a flat weight vector."""

    feature_dim: int
    hidden_dim: int

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d, h = self.feature_dim, self.hidden_dim
        return {"w1": (h, d), "w2": (d, h), "b1": (h,), "b2": (d,)}

    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes.values())

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, P) -> {name: (B, *shape)} views, in the layout [W1, W2, b1, b2]."""
        if flat.shape[-1] != self.n_params:
            raise ValueError(f"adapter weights have {flat.shape[-1]} entries, expected {self.n_params}")
        shapes = self.param_shapes
        # torch.split, not slicing: a slice's backward writes a zero gradient the size of the whole vector.
        pieces = torch.split(flat, [math.prod(s) for s in shapes.values()], dim=-1)
        return {
            name: piece.reshape(*flat.shape[:-1], *s) for (name, s), piece in zip(shapes.items(), pieces, strict=True)
        }

    def flatten(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """{name: (B, *shape)} -> (B, P); the inverse of `unflatten`."""
        lead = params["b1"].shape[:-1]
        return torch.cat([params[n].reshape(*lead, -1) for n in self.param_shapes], dim=-1)

    def identity(self, batch: int = 1) -> torch.Tensor:
        """(batch, P) zero weights: the adapter that returns its input."""
        return torch.zeros(batch, self.n_params)

    def identity_random(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """(batch, P) weights that compute the identity (W2 = b1 = b2 = 0) but with W1 ~ N(0, 1), so that gradients
        reach every weight. All-zero weights are a saddle: relu(0) passes no gradient to W1, b1 or W2."""
        flat = self.identity(batch)
        n_w1 = self.hidden_dim * self.feature_dim
        flat[:, :n_w1] = torch.randn(batch, n_w1, generator=generator)
        return flat

    def init_normal(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """(batch, P) N(0, 1) weights and biases, the paper's own-weights init (docs/design.md §3.1)."""
        return torch.randn(batch, self.n_params, generator=generator)


def adapt_features(shape: AdapterShape, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Adapted features a (B, N, D) from weights (B, P) and image features x (B, N, D)."""
    p = shape.unflatten(weights)
    # The 1/sqrt(fan_in) weight scaling rides on the matmul's alpha: no scaled copy of the weights is made.
    h = torch.relu(
        torch.baddbmm(p["b1"].unsqueeze(1), x, p["w1"].transpose(1, 2), alpha=shape.feature_dim**-0.5)
    )  # (B, N, H)
    return torch.baddbmm(p["b2"].unsqueeze(1), h, p["w2"].transpose(1, 2), alpha=shape.hidden_dim**-0.5) + x


def adapt_features_ragged(
    shape: AdapterShape, weights: torch.Tensor, x: torch.Tensor, lengths: list[int]
) -> torch.Tensor:
    """As `adapt_features`, computing only each task's first `lengths[b]` examples (padded rows come back zero).

    When tasks differ much in size, padding to the largest wastes most of a batched matmul; one matmul per task
    does only the real work.
    """
    n = x.shape[1]
    # split/unbind, not indexing: the backward of `weights[b]` would write a zero (B, P) gradient for every task.
    rows = [
        F.pad(adapt_features(shape, w, xb[:, :length])[0], (0, 0, 0, n - length))
        for w, xb, length in zip(torch.split(weights, 1), torch.split(x, 1), lengths, strict=True)
    ]
    return torch.stack(rows)


def _ragged_logits(
    shape: AdapterShape, weights: torch.Tensor, x: torch.Tensor, t: torch.Tensor, lengths: list[int]
) -> torch.Tensor:
    """(B, N, K) logits computed task by task on each task's real rows only (padded rows 0); t normalised answers.

    Every step after the two weight products (residual, normalisation, scoring) also runs on the real rows alone,
    so none of the padded (B, N, D) work of the batched path is done. The weights are unbound, not indexed: the
    backward of `weights[b]` would write a zero (B, P) gradient for every task.
    """
    n = x.shape[1]
    p = shape.unflatten(weights)
    alpha1, alpha2 = shape.feature_dim**-0.5, shape.hidden_dim**-0.5
    rows = []
    for w1, w2, b1, b2, xb, tb, length in zip(
        p["w1"].unbind(0), p["w2"].unbind(0), p["b1"].unbind(0), p["b2"].unbind(0), x, t, lengths, strict=True
    ):
        xb = xb[:length]
        # The 1/sqrt(fan_in) scaling goes on the (n_b, .) activations, not the (H, D) weights or their gradients.
        h = torch.relu(torch.addmm(b1, xb * alpha1, w1.T))  # (n_b, H)
        a = F.normalize(torch.addmm(b2, h * alpha2, w2.T) + xb, dim=-1)  # (n_b, D)
        rows.append(F.pad(LOGIT_SCALE * (a @ tb.T), (0, 0, 0, n - length)))  # (N, K)
    return torch.stack(rows)


def adapter_logits(
    shape: AdapterShape,
    weights: torch.Tensor,
    x: torch.Tensor,
    answer_emb: torch.Tensor,
    answer_mask: torch.Tensor | None = None,
    lengths: list[int] | None = None,
    members: int = 1,
) -> torch.Tensor:
    """(B, N, K) logits: 100 * cosine between adapted image features and answer embeddings; padded answers -inf.

    With `lengths` (real examples per task, a prefix of each row), padded rows are skipped (see
    `adapt_features_ragged`) and their logits are 0. With `members` > 1, `weights` holds an ensemble of that many
    adapters per task (B * members, P; a task's members consecutive) and the logits are their mean.
    """
    if members > 1:
        b = x.shape[0]

        def rep(v: torch.Tensor) -> torch.Tensor:
            return v.repeat_interleave(members, 0)

        logits = adapter_logits(
            shape,
            weights,
            rep(x),
            rep(answer_emb),
            None if answer_mask is None else rep(answer_mask),
            None if lengths is None else [n for n in lengths for _ in range(members)],
        )
        return logits.view(b, members, *logits.shape[1:]).mean(1)
    t = F.normalize(answer_emb, dim=-1)
    if lengths is None:
        a = F.normalize(adapt_features(shape, weights, x), dim=-1)
        logits = LOGIT_SCALE * torch.bmm(a, t.transpose(1, 2))
    else:
        logits = _ragged_logits(shape, weights, x, t, lengths)
    if answer_mask is not None:
        logits = logits.masked_fill(~answer_mask.unsqueeze(1), float("-inf"))
    return logits


class ResidualAdapter(nn.Module):
    """The same adapter as an ordinary module that owns its weights (the reference the functional form must match)."""

    def __init__(self, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.shape = AdapterShape(feature_dim, hidden_dim)
        self.fc1 = nn.Linear(feature_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, feature_dim)
        for p in self.parameters():
            nn.init.normal_(p)

    def forward(self, x: torch.Tensor, answer_emb: torch.Tensor) -> torch.Tensor:
        """x (N, D), answer_emb (K, D) -> logits (N, K)."""
        d, h = self.shape.feature_dim, self.shape.hidden_dim
        hidden = torch.relu(F.linear(x, self.fc1.weight / math.sqrt(d), self.fc1.bias))
        adapted = F.linear(hidden, self.fc2.weight / math.sqrt(h), self.fc2.bias) + x
        return LOGIT_SCALE * F.normalize(adapted, dim=-1) @ F.normalize(answer_emb, dim=-1).T

    def flat_weights(self) -> torch.Tensor:
        """(P,) in the paper's layout."""
        return self.shape.flatten(
            {"w1": self.fc1.weight, "w2": self.fc2.weight, "b1": self.fc1.bias, "b2": self.fc2.bias}
        )
