"""The adapted-latent dataset (docs/design.md §P2): for every meta-train task, many latents fine-tuned from the
meta-learned z0 on random subsets of the task's data, computed batched over tasks.

One augmentation draws, per task, a random fraction f ~ U(2/3, 1) of all its examples (support and query pooled) and
fine-tunes z from z0 on them (paper: 10 SGD steps at lr 0.1). The result is (n_aug, n_tasks, L).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch

from hyperguide.config import InnerLoop
from hyperguide.data.batch import collate
from hyperguide.data.tasks import Task
from hyperguide.distributed import sum_, world
from hyperguide.events import Callback, Progress, emit
from hyperguide.meta.inner_loop import adapt, support_loss_fn
from hyperguide.meta.methods import UncondHNetMAML


def random_subset(task: Task, generator: torch.Generator, max_examples: int | None = None) -> Task:
    """All of the task's examples pooled, then a random ceil(f n) of them, f ~ U(2/3, 1), as its support set (the
    query set, unused by the collection, is its first example); at most `max_examples` of them when given."""
    x = torch.cat([task.support_x, task.query_x])
    y = torch.cat([task.support_y, task.query_y])
    f = 2 / 3 + torch.rand((), generator=generator).item() / 3
    keep = torch.randperm(len(y), generator=generator)[: math.ceil(f * len(y))]
    if max_examples is not None:
        keep = keep[:max_examples]
    return replace(task, support_x=x[keep], support_y=y[keep], query_x=x[keep[:1]], query_y=y[keep[:1]])


@torch.no_grad()
def collect_latents(
    method: UncondHNetMAML,
    tasks: Sequence[Task],
    *,
    n_aug: int,
    inner: InnerLoop,
    generator: torch.Generator,
    batch_size: int = 128,
    max_examples: int | None = None,
    device: str = "cpu",
    callbacks: Sequence[Callback] = (),
) -> torch.Tensor:
    """(n_aug, len(tasks), latent_dim) fine-tuned latents.

    Within an augmentation the tasks are batched in order of their subset sizes, so that a batch pads little and runs
    as one padded computation rather than one per task. Under torchrun the batches are dealt out to the processes
    (the same batches as in one process, so the latents are the same bit for bit) and their latents summed."""
    method.eval()
    processes = world()
    out = (torch.zeros if processes.size > 1 else torch.empty)(n_aug, len(tasks), method.config.latent_dim)
    for a in range(n_aug):
        subsets = [random_subset(t, generator, max_examples) for t in tasks]  # every process draws every subset
        order = sorted(range(len(tasks)), key=lambda i: -len(subsets[i].support_y))
        for b, start in enumerate(range(0, len(tasks), batch_size)):
            if b % processes.size != processes.rank:  # under torchrun: the batches are dealt out to the processes
                continue
            idx = order[start : start + batch_size]
            batch = collate([subsets[i] for i in idx]).to(device)
            z = adapt(support_loss_fn(method.shape, method.decoder(batch), batch), method.init_phi(batch), inner)
            out[a, idx] = z.cpu()
        emit(callbacks, Progress("collect latents", a + 1, n_aug, "aug"))
    return sum_(out)  # each process filled its batches' entries, zeros elsewhere: the sum is every latent
