"""Gaussian noise for samplers, drawn per row: each row of a batch (a task) has its own generator, so the noise a
task gets depends on its own seed alone, not on which other tasks share its batch or where it sits in it.

`randn(shape, source)` draws from a `Noise`, a single torch generator (one stream for the whole batch), or the
global generator (None).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch


class Noise:
    """One torch generator per row, seeded from `seeds`; `randn((B, ...))` stacks one draw of shape (...) per row."""

    def __init__(self, seeds: Sequence[int]) -> None:
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def __len__(self) -> int:
        return len(self.generators)

    @classmethod
    def for_rows(cls, seed: int, rows: torch.Tensor) -> Noise:
        """One stream per row of `rows` (e.g. the tasks' question embeddings (B, D)), seeded from `seed` and the row's
        values, so that the same row gets the same noise in any batch."""
        data = rows.detach().to("cpu", torch.float32).contiguous()
        return cls([(seed * 1_000_003 + zlib.crc32(r.numpy().tobytes())) % 2**63 for r in data])

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        if not shape or shape[0] != len(self.generators):
            raise ValueError(f"a draw for {len(self.generators)} rows needs shape ({len(self.generators)}, ...)")
        return torch.stack([torch.randn(shape[1:], generator=g) for g in self.generators])


def randn(
    shape: tuple[int, ...], source: torch.Generator | Noise | None, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Standard normal draws of `shape` from `source`, on `device`."""
    if isinstance(source, Noise):
        return source.randn(shape).to(device)
    return torch.randn(shape, generator=source).to(device)
