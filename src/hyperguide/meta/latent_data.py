"""How the guidance models see the adapted-latent dataset (docs/design.md §P3, §P4, §P6): every epoch draws one of
the augmentations per task uniformly, permutes the tasks, and cuts them into batches.

The paper counts training in epochs over 870 tasks (27 steps each). On a universe with few tasks an epoch is a few
steps, so each stage also has `min_steps`: it trains at least that many optimiser steps, whatever the task count
(`train.loop.epochs_for`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


def steps_per_epoch(n_tasks: int, batch_size: int) -> int:
    return max(1, math.ceil(n_tasks / batch_size))


def epoch_batches(
    n_aug: int, n_tasks: int, batch_size: int, generator: torch.Generator, min_batch: int = 1
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(augmentation index, task index) tensors of one epoch's batches; a last batch under `min_batch` is dropped."""
    aug = torch.randint(0, n_aug, (n_tasks,), generator=generator)
    order = torch.randperm(n_tasks, generator=generator)
    for start in range(0, n_tasks, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) >= min_batch:
            yield aug[idx], idx
