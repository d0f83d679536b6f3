"""Meta-training of a method over the meta-train tasks: batches of tasks and the method's meta-loss, run by `fit`.

Fixes of the reference code's procedure (docs/design.md §8.6): the gradient is clipped before the optimiser step;
each meta-batch's task losses are averaged once; the first step comes after the first full meta-batch. The
support/query swap of the reference's meta-training is an explicit option, off by default (§8.5).

Under torchrun, every process draws the whole meta-batch (and its random subsets) and meta-trains on its block of
its tasks (`hyperguide.distributed`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from hyperguide.config import TrainConfig
from hyperguide.data.batch import TaskBatch, collate
from hyperguide.data.tasks import Task
from hyperguide.distributed import on_block
from hyperguide.events import Callback
from hyperguide.meta.methods import Method
from hyperguide.meta.optim import adam
from hyperguide.train.loop import FitOptions, Probing, fit, probed


def subsample(task: Task, max_examples: int | None, generator: torch.Generator) -> Task:
    """The task with at most `max_examples` random support and query examples (meta-training only)."""
    if max_examples is None:
        return task
    keep_s = torch.randperm(len(task.support_y), generator=generator)[:max_examples].sort().values
    keep_q = torch.randperm(len(task.query_y), generator=generator)[:max_examples].sort().values
    return task.select(keep_s, keep_q)


def train_method(
    method: Method,
    tasks: Sequence[Task],
    config: TrainConfig,
    *,
    generator: torch.Generator,
    name: str = "meta-training",
    device: str = "cpu",
    probing: Probing[Method] | None = None,
    callbacks: Sequence[Callback] = (),
) -> list[dict[str, float]]:
    """Train `method` in place on `tasks`; returns the per-epoch log. A method trained by nothing is left as is.
    `probing` measures its fit while it trains (and may stop it at its plateau)."""
    if method.trained_by == "none":
        return []
    method.to(device).train()
    params = [p for p in method.parameters() if p.requires_grad]
    n_batches = math.ceil(len(tasks) / config.meta_batch_size)

    def batches(epoch: int) -> Iterator[list[Task]]:
        order = torch.randperm(len(tasks), generator=generator).tolist()
        for b in range(n_batches):
            chosen = order[b * config.meta_batch_size : (b + 1) * config.meta_batch_size]
            yield [subsample(tasks[i], config.max_examples, generator) for i in chosen]  # every process draws all

    def meta_batch(chosen: Sequence[Task]) -> TaskBatch:
        batch = collate(chosen).to(device)
        return batch.swapped() if config.swap_support_query else batch

    def step(drawn: list[Task]) -> dict[str, torch.Tensor] | None:
        # a mean over this process's tasks of the meta-batch
        return on_block(len(drawn), lambda mine: {"loss": method.meta_loss(meta_batch(mine.items(drawn)))})

    history = fit(
        step,
        batches,
        adam(params, config.lr, device),
        epochs=config.epochs,
        name=name,
        options=FitOptions(grad_clip=config.grad_clip, sharded=True),
        probing=probed(probing, method),
        callbacks=callbacks,
    )
    method.eval()
    return history
