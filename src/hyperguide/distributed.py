"""Data parallelism over processes that `torchrun` launches (torch.distributed): which process this is, the rows of
a batch it computes, and the few collectives the training loop, the latent collection and the evaluation need.

One process (no `torchrun`) is a world of size 1: every function here is then the identity or does nothing, and a
single-process run performs exactly the operations it performed before this module existed. Under
`torchrun --nproc-per-node N hyperguide bench ...` the command line joins the process group (`init_from_env`): gloo
on CPUs, NCCL on GPUs (one GPU a process, `cuda:LOCAL_RANK`).

How a training step is sharded, so that N processes compute the step of one process:

- every process draws the same batch and the same random numbers for the whole batch (the same seeds, the same
  generator, the same order of draws), so that generators stay in step and every example gets the noise it gets in
  one process;
- each computes the loss on its own contiguous block of the batch's rows (`part`), weighted by its share of the batch
  (`Part.scale`): a batch-mean loss is the sum of the blocks' weighted means;
- the training loop sums the weighted gradients and metrics over processes (`all_sum`, `reduce_gradients`); every
  process then takes the same optimiser step, and the models stay identical.

The sum is the whole batch's gradient; only the order of floating-point additions differs from one process, so a
multi-process run agrees with a single-process one to float rounding, not bit for bit. A loss that is not a mean over
rows (HyperCLIP's contrastive loss, over every pair of the batch) gathers the blocks' embeddings (`gather_rows`) and
computes the whole batch's loss in every process.

Only the main process (rank 0) writes the run folder; the others wait for it at `barrier()`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's rank among `size` processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Whether this process is the one that writes files and prints."""
        return self.rank == 0


def world() -> World:
    """The process group this process belongs to (a world of one when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched_size() -> int:
    """How many processes `torchrun` launched (its `WORLD_SIZE`), 1 without it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: str) -> str:
    """Join the process group that `torchrun` describes in the environment (nothing without torchrun, or when joined
    already); returns the device this process computes on: `cuda` becomes this process's GPU, `cuda:LOCAL_RANK`."""
    if launched_size() <= 1 or not dist.is_available() or dist.is_initialized():
        return device
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return device


@contextmanager
def joined(device: str) -> Iterator[str]:
    """`init_from_env(device)` for the duration of a command, `close()` after it."""
    device = init_from_env(device)
    try:
        yield device
    finally:
        close()


def close() -> None:
    """Leave the process group (after the last collective of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class Part:
    """This process's contiguous block `[start, stop)` of a batch of `total` rows (all of them in one process)."""

    start: int
    stop: int
    total: int

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop == self.total

    @property
    def empty(self) -> bool:
        """A batch with fewer rows than processes leaves some of them without rows."""
        return self.stop <= self.start

    @property
    def weight(self) -> float:
        """The block's share of the batch: its mean loss, times this, sums over processes to the batch's mean."""
        return (self.stop - self.start) / self.total

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        """The block's rows of a tensor whose first dimension is the batch."""
        return rows if self.whole else rows[self.start : self.stop]

    def items(self, rows: Sequence[T]) -> list[T]:
        """The block's items of a sequence as long as the batch."""
        return list(rows[self.start : self.stop])

    def scale(self, metrics: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Metrics that are means over the block's rows, weighted to sum over processes to the batch's means."""
        return dict(metrics) if self.whole else {k: v * self.weight for k, v in metrics.items()}


def part(total: int) -> Part:
    """This process's block of a batch of `total` rows: process r of N takes rows [total r / N, total (r + 1) / N)."""
    w = world()
    return Part(total * w.rank // w.size, total * (w.rank + 1) // w.size, total)


def on_block(total: int, metrics: Callable[[Part], Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor] | None:
    """A sharded training step's metrics: `metrics(mine)`, means over this process's block `mine` of a batch of
    `total` rows, weighted to sum over processes to the batch's means (`Part.scale`); None for a process without rows.
    The step draws the whole batch's randomness before it, in every process, so that their generators stay in step."""
    mine = part(total)
    return None if mine.empty else mine.scale(metrics(mine))


def all_sum(values: Mapping[str, float] | None) -> dict[str, float]:
    """The sum over processes of each process's `values` (None: a process without rows), in rank order, the same in
    every process."""
    gathered: list[Any] = [None] * world().size
    dist.all_gather_object(gathered, None if values is None else dict(values))
    present = [g for g in gathered if g is not None]
    if not present:
        raise RuntimeError("no process computed the step: a batch without rows")
    return {key: sum(float(g[key]) for g in present) for key in present[0]}


class StepSums:
    """Sums a training step over processes, after each process's backward pass: its metrics (each process's weighted
    means; None for a process without rows) and its parameters' gradients, in one all-reduce of one flat float32
    buffer (which parameters have a gradient, the metrics, the gradients). A parameter without a gradient in every
    process keeps none (an optimiser skips it, as it would in one process); one with a gradient somewhere gets the
    sum, zeros standing for the processes without one. The metrics must have the same names at every step: the first
    step learns them (`all_sum`, which pickles)."""

    def __init__(self, params: Sequence[torch.Tensor]) -> None:
        self.params = list(params)
        self.keys: list[str] | None = None

    def __call__(self, values: Mapping[str, float] | None) -> dict[str, float]:
        first = self.keys is None
        if first:
            out = all_sum(values)
            self.keys = list(out)
        keys = self.keys
        assert keys is not None
        if values is not None and list(values) != keys:
            raise RuntimeError(f"a step's metrics changed from {keys} to {list(values)}")
        device = self.params[0].device if self.params else torch.device("cpu")
        flags = [float(p.grad is not None) for p in self.params]
        metrics = [0.0] * (len(keys) + 1) if values is None or first else [*(values[k] for k in keys), 1.0]
        head = torch.tensor([*flags, *metrics], dtype=torch.float32, device=device)
        flat = torch.cat(
            [head, *((p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.params)]
        )
        dist.all_reduce(flat)
        n = len(self.params)
        offset = len(head)
        for p, present in zip(self.params, flat[:n].tolist(), strict=True):
            size = p.numel()
            p.grad = flat[offset : offset + size].view_as(p).clone() if present > 0 else None
            offset += size
        if first:
            return out
        summed = flat[n : n + len(keys) + 1].tolist()
        if summed[-1] == 0:
            raise RuntimeError("no process computed the step: a batch without rows")
        return dict(zip(keys, summed[:-1], strict=True))


def broadcast_parameters(params: Sequence[torch.Tensor]) -> None:
    """Every process takes rank 0's values of `params`, in one broadcast (a safety net: seeded initialisations agree
    anyway)."""
    if not params:
        return
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        dist.broadcast(flat, src=0)
        offset = 0
        for p in params:
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


def sum_(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over processes, in place (each process having filled its own entries, zeros elsewhere)."""
    if world().size == 1:
        return tensor
    if dist.get_backend() == "nccl" and not tensor.is_cuda:  # NCCL reduces GPU tensors only
        on_gpu = tensor.cuda()
        dist.all_reduce(on_gpu)
        return tensor.copy_(on_gpu.cpu())
    dist.all_reduce(tensor)
    return tensor


def gather(value: T) -> list[T]:
    """Every process's `value`, in rank order (a list of one without torchrun)."""
    if world().size == 1:
        return [value]
    out: list[Any] = [None] * world().size
    dist.all_gather_object(out, value)
    return out


def share(value: T) -> T:
    """Rank 0's `value`, in every process (what the main process decided from the run folder)."""
    if world().size == 1:
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every process gets here (after the main process wrote what the others read next)."""
    if world().size > 1:
        dist.barrier()


class _Gathered(torch.autograd.Function):
    """All processes' blocks, concatenated; the gradient flows back to this process's block alone, times the number
    of processes: each process computes the same loss on the same gathered rows, and the sum of their gradients for
    this block is N times its own."""

    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor, total: int) -> torch.Tensor:
        w = world()
        block = -(-total // w.size)  # the largest block: all_gather wants equal sizes
        padded = torch.zeros((block, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
        padded[: len(rows)] = rows
        out = [torch.empty_like(padded) for _ in range(w.size)]
        dist.all_gather(out, padded.contiguous())
        blocks = [out[r][: total * (r + 1) // w.size - total * r // w.size] for r in range(w.size)]
        ctx.start, ctx.stop, ctx.size = total * w.rank // w.size, total * (w.rank + 1) // w.size, w.size
        return torch.cat(blocks)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad[ctx.start : ctx.stop] * ctx.size, None


def gather_rows(rows: torch.Tensor, total: int) -> torch.Tensor:
    """The whole batch of `total` rows from each process's block (`part(total)` of it), differentiable with respect
    to this process's block; without torchrun, `rows` itself. A loss over the gathered rows, weighted 1/N
    (`Part` of a batch gathered whole: `replicated_weight`), gives every process the whole batch's gradient share."""
    if world().size == 1:
        return rows
    return _Gathered.apply(rows, total)  # type: ignore[no-untyped-call]


def replicated_weight() -> float:
    """The weight of a loss that every process computes whole (on gathered rows): 1/N, so that its values sum to the
    loss over processes and its gradients, N times this process's block's (`gather_rows`), sum to the whole's."""
    return 1.0 / world().size
