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


def vae_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    kl_weight: float = 1.0,
    *,
    metric: torch.Tensor | None = None,
    dim: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The HVAE loss (docs/design.md §3.3), scaled by 1/sqrt(P): [sum over dims of the batch-mean squared error
    + kl_weight * batch-mean KL(N(mu, sigma^2) || N(0, I))] / sqrt(P). Returns (loss, reconstruction, KL).

    With `metric` M (H, H), `recon` and `target` are codes of weights W = A h + b, M = A^T A, and the squared error
    is (h' - h)^T M (h' - h) = sum_P (W' - W)^2; `dim` is then P (default: the last dimension of `target`)."""
    dim = int(target.shape[-1]) if dim is None else dim
    diff = recon - target
    rec = ((diff**2) if metric is None else (diff @ metric) * diff).sum(-1).mean()
    kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)).mean()
    return (rec + kl_weight * kl) / dim**0.5, rec, kl


def symmetric_info_nce(logits: torch.Tensor) -> torch.Tensor:
    """The contrastive loss of HyperCLIP (docs/design.md §3.4): cross-entropy of the matched pairs (the diagonal of the
    (N, N) logits) over rows plus over columns, summed as the paper does."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)
