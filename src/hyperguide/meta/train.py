"""Meta-training of a method over the meta-train tasks: batches of tasks, Adam, gradient clipping, logging.

Fixes of the reference code's procedure (SPEC 8.6): the gradient is clipped before the optimiser step; each meta-batch's
task losses are averaged once; the first step comes after the first full meta-batch. The support/query swap of the
reference's meta-training is an explicit option, off by default.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from hyperguide.data.batch import collate
from hyperguide.data.tasks import Task
from hyperguide.meta.methods import Method
from hyperguide.meta.optim import adam

Logger = Callable[[dict[str, float]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Outer-loop settings (paper: Adam 1e-3, 32 tasks a step, clip 10; it trains 1000 meta-epochs)."""

    epochs: int = 100
    meta_batch_size: int = 32
    lr: float = 1e-3
    grad_clip: float = 10.0
    swap_support_query: bool = False
    max_examples: int | None = 64  # per task and set, a fresh random subset each step (None: all examples)
    log_every: int = 1


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
    device: str = "cpu",
    log: Logger | None = None,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Train `method` in place on `tasks`; returns the per-epoch log. A method trained by nothing is left as is."""
    if method.trained_by == "none":
        return []
    method.to(device).train()
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = adam(params, config.lr, device)
    n_batches = math.ceil(len(tasks) / config.meta_batch_size)
    history: list[dict[str, float]] = []
    bar = tqdm(total=config.epochs * n_batches, desc=f"train {method.name}", disable=not progress, unit="step")
    step = 0
    start = time.perf_counter()
    for epoch in range(config.epochs):
        order = torch.randperm(len(tasks), generator=generator).tolist()
        losses = []
        for b in range(n_batches):
            chosen = order[b * config.meta_batch_size : (b + 1) * config.meta_batch_size]
            batch = collate([subsample(tasks[i], config.max_examples, generator) for i in chosen])
            batch = batch.to(device)
            if config.swap_support_query:
                batch = batch.swapped()
            loss = method.meta_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        record = {
            "epoch": epoch + 1,
            "step": step,
            "loss": sum(losses) / len(losses),
            "grad_norm": float(grad_norm),
            "seconds": time.perf_counter() - start,
        }
        history.append(record)
        if log is not None and ((epoch + 1) % config.log_every == 0 or epoch + 1 == config.epochs):
            log(record)
    bar.close()
    method.eval()
    return history
