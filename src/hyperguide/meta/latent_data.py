"""How the guidance models see the adapted-latent dataset (docs/design.md §P3, §P4, §P6): every epoch draws one of
the augmentations per task uniformly, permutes the tasks, and cuts them into batches.

The paper counts training in epochs over 870 tasks (27 steps each). On a universe with few tasks an epoch is a few
steps, so each stage also has `min_steps`: it trains at least that many optimiser steps, whatever the task count
(`train.loop.epochs_for`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch

from hyperguide.events import Callback
from hyperguide.train.loop import EMA, FitOptions, Metrics, Probed, epochs_for, fit


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


class LatentTraining(Protocol):
    """The settings a trainer over the latent dataset reads (HVAE, HyperCLIP and HyperLDM configs have them)."""

    @property
    def batch_size(self) -> int: ...

    @property
    def epochs(self) -> int: ...

    @property
    def min_steps(self) -> int: ...


def fit_on_latents(
    step: Callable[[tuple[torch.Tensor, torch.Tensor]], Metrics | None],
    optimizer: torch.optim.Optimizer,
    latents: torch.Tensor,
    config: LatentTraining,
    *,
    generator: torch.Generator,
    name: str,
    min_batch: int = 1,
    ema: EMA[Any] | None = None,
    probing: Probed[Any] | None = None,
    callbacks: Sequence[Callback] = (),
    sharded: bool = False,
) -> list[dict[str, float]]:
    """`fit` over the (A, N, L) adapted latents: `config.epochs` epochs of `epoch_batches` (at least
    `config.min_steps` steps); `step` gets each batch's (augmentation, task) indices; `ema`, `probing` and `sharded`
    as `fit` has them (under torchrun, a sharded step computes its process's block of the batch,
    `distributed.on_block`)."""
    n_aug, n_tasks = int(latents.shape[0]), int(latents.shape[1])
    return fit(
        step,
        lambda epoch: epoch_batches(n_aug, n_tasks, config.batch_size, generator, min_batch),
        optimizer,
        epochs=epochs_for(config.epochs, config.min_steps, steps_per_epoch(n_tasks, config.batch_size)),
        name=name,
        options=FitOptions(ema=ema, sharded=sharded),
        probing=probing,
        callbacks=callbacks,
    )
