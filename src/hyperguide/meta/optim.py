"""The outer optimiser of every training procedure: Adam, fused where torch has a fused kernel (CPU and CUDA).

The fused kernel updates all parameters in one pass; on the paper's 50-100M-parameter models it makes the optimiser step
several times cheaper on a CPU (docs/decisions.md D4). It is deterministic, but not bitwise equal to the unfused loop.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def device_supports_fused(device: str | torch.device) -> bool:
    """Whether torch's fused Adam runs on this device (CPU and CUDA)."""
    return torch.device(device).type in ("cpu", "cuda")


def adam(params: Iterable[torch.nn.Parameter], lr: float, device: str | torch.device = "cpu") -> torch.optim.Adam:
    return torch.optim.Adam(list(params), lr=lr, fused=device_supports_fused(device))
