"""Per-task accuracy and balanced accuracy (mean per-answer recall) over padded task batches, in percent."""

from __future__ import annotations

import torch


def task_accuracy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) top-1 accuracy of each task over its unmasked examples."""
    correct = (logits.argmax(-1) == labels) & mask
    return 100.0 * correct.sum(1) / mask.sum(1).clamp_min(1)


def task_balanced_accuracy(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, n_answers: int
) -> torch.Tensor:
    """(B,) mean over the answers present in each task's examples of the recall of that answer."""
    pred = logits.argmax(-1)
    onehot = torch.nn.functional.one_hot(labels, n_answers).bool() & mask.unsqueeze(-1)  # (B, N, K)
    support = onehot.sum(1)  # (B, K) examples per answer
    hits = (onehot & (pred == labels).unsqueeze(-1)).sum(1)  # (B, K)
    present = support > 0
    recall = torch.where(present, hits / support.clamp_min(1), torch.zeros_like(hits, dtype=torch.float))
    return 100.0 * recall.sum(1) / present.sum(1).clamp_min(1)
