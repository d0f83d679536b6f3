"""Per-task losses over padded task batches: every task's loss is the mean over its own real examples."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def task_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean cross-entropy of each task over its unmasked examples. logits (B, N, K), labels/mask (B, N)."""
    b, n, k = logits.shape
    safe = logits.masked_fill(~mask.unsqueeze(-1), 0.0)  # padded rows would be all -inf where answers are padded
    ce = F.cross_entropy(safe.reshape(b * n, k), labels.reshape(b * n), reduction="none").reshape(b, n)
    ce = ce.masked_fill(~mask, 0.0)
    return ce.sum(1) / mask.sum(1).clamp_min(1)
