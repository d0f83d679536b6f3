"""The one training loop: every trainer of the project (meta-training, HVAE, HyperCLIP, HyperLDM, the image tower)
supplies its batches and its step, and `fit` does the rest: the epochs (`epochs_for` turns a minimum number of steps
into epochs), the optimiser step, gradient clipping, an EMA of the weights, a per-step learning rate, the history and
the events.

    history = fit(step, batches, optimizer, epochs=10, name="hvae", options=FitOptions(grad_clip=1.0))

`batches(epoch)` yields the epoch's batches and is consumed lazily, one batch per step, so a trainer that draws its
batches from a seeded generator draws them in the same order as a hand-written loop would. `step(batch)` returns
the batch's metrics: `"loss"`, the scalar to minimise, and anything else worth logging (tensors or floats). A loss
(or a clipped gradient norm) that is NaN or infinite stops the training with `NonFiniteLoss`: nothing trained from
it may pass for a result.

Under `torchrun` (`hyperguide.distributed`), every process runs `fit` on the same batches; a step computes its
process's block of the batch and returns its metrics weighted by the block's share, None for a process without rows
(`distributed.on_block`), and `fit` (`FitOptions(sharded=True)`) sums metrics and gradients over processes before the
(identical) optimiser step. A step that does not shard (`sharded=False`, the default) is computed whole by every
process.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import torch
from torch import nn

from hyperguide import distributed
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback, EpochEnded, FitStarted, StepEnded, emit

B = TypeVar("B")
Metrics = Mapping[str, torch.Tensor | float]


M = TypeVar("M", bound=nn.Module)


class EMA(Generic[M]):
    """An exponential moving average of a module's parameters, in a frozen copy of the module (buffers are copied
    once, at construction). The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so that early
    averages are not dominated by the random initialisation."""

    def __init__(self, module: M, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.source = module
        self.module = copy.deepcopy(module).requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for averaged, current in zip(self.module.parameters(), self.source.parameters(), strict=True):
            averaged.lerp_(current, 1 - decay)


class NonFiniteLoss(HyperguideError):
    """A training step's loss (or gradient norm) is NaN or infinite: the training diverged and is stopped. Its
    message guesses the cause generically; a caller that knows more (the stage's settings, what it trains on) says
    it with `hinted`."""

    def __init__(self, name: str, epoch: int, step: int, what: str, value: float) -> None:
        self.name, self.epoch, self.step, self.what, self.value = name, epoch, step, what, value
        super().__init__(self.hinted("a learning rate too high for it?"))

    def hinted(self, hint: str) -> str:
        """The message with `hint`, a guess at the cause, in place of the generic one."""
        return (
            f"{self.name}: the {self.what} is {self.value} at epoch {self.epoch}, step {self.step}: the training "
            f"diverged ({hint}); nothing of it was saved"
        )


def _floats(metrics: Metrics) -> dict[str, float]:
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in metrics.items()}


def epochs_for(epochs: int, min_steps: int, steps_per_epoch: int) -> int:
    """`epochs`, or more when that many epochs of `steps_per_epoch` steps fall short of `min_steps` steps."""
    return max(epochs, math.ceil(min_steps / max(1, steps_per_epoch)))


@dataclass(frozen=True)
class Probing(Generic[M]):
    """Fit measurements while a model trains, for `fit`'s records: `measure(model)`, in eval mode, at `count` epochs
    spread over the run. With `patience`, the run stops early, at the stage's plateau, once the first measure that
    `measure` returns has not risen more than `min_delta` above its best for `patience` probes in a row."""

    measure: Callable[[M], Mapping[str, float]]
    count: int
    patience: int | None = None
    min_delta: float = 0.0

    def stops(self, watched: Sequence[float]) -> bool:
        """Whether the first measure's values so far, `watched`, have reached their plateau (never without patience)."""
        return self.patience is not None and plateau_reached(watched, self.patience, self.min_delta)


@dataclass(frozen=True)
class Probed(Generic[M]):
    """A `Probing` of the module being trained: what `fit` measures and when it stops."""

    probing: Probing[M]
    module: M

    def probe(self) -> dict[str, float]:
        """The measures of the module, taken in eval mode (its mode restored after)."""
        was_training = self.module.training
        self.module.eval()
        try:
            return {k: float(v) for k, v in self.probing.measure(self.module).items()}
        finally:
            self.module.train(was_training)


def probed(probing: Probing[M] | None, module: M) -> Probed[M] | None:
    """`probing` of `module`, or no probing."""
    return None if probing is None else Probed(probing, module)


@dataclass(frozen=True)
class FitOptions:
    """What `fit` does around each optimiser step besides backpropagating the loss, and what it records.

    `lr_at(step)` (0-based) sets every parameter group's learning rate before the step; with `grad_clip` the gradient
    norm over the optimiser's parameters is clipped to it (and logged as `grad_norm`); after the optimiser step, `ema`
    is updated and `after_step()` runs (e.g. to clamp a parameter). `history` is one record per epoch or per step.
    `sharded`: the step computes this process's block of the batch (see the module's docstring)."""

    grad_clip: float | None = None
    lr_at: Callable[[int], float] | None = None
    ema: EMA[Any] | None = None
    after_step: Callable[[], None] | None = None
    history: Literal["epoch", "step"] = "epoch"
    sharded: bool = False


def plateau_reached(values: Sequence[float], patience: int, min_delta: float) -> bool:
    """Whether the last `patience` values all stay within `min_delta` of the best value before them."""
    if patience < 1 or len(values) <= patience:
        return False
    return max(values[-patience:]) <= max(values[:-patience]) + min_delta


def probe_epochs(epochs: int, probes: int) -> tuple[int, ...]:
    """`probes` epochs spread evenly over `epochs`, the last one included (fewer when there are fewer epochs)."""
    if probes <= 0 or epochs <= 0:
        return ()
    return tuple(sorted({max(1, round(epochs * k / probes)) for k in range(1, probes + 1)}))


def fit(
    step: Callable[[B], Metrics | None],
    batches: Callable[[int], Iterable[B]],
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    name: str,
    options: FitOptions = FitOptions(),
    probing: Probed[Any] | None = None,
    callbacks: Sequence[Callback] = (),
) -> list[dict[str, float]]:
    """Train for `epochs` epochs; returns one record per epoch (or per step, with `options.history="step"`).

    Per step: the step's loss is backpropagated and the optimiser steps, with what `options` adds around it. An
    epoch's record is `epoch` (1-based), `step` (steps so far), the mean of each metric over the epoch's steps, and
    `seconds`; at `count` epochs of the `probing` spread over the run (`probe_epochs`) it also holds what the probing
    measures (its time is not counted in `seconds`), so that the log carries the fit curve of the stage. With a
    patience, training stops after the probe at which the first measure reached its plateau (`Probing.stops`); that
    record has `stopped: 1`.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sharded = options.sharded and distributed.world().size > 1
    summed = distributed.StepSums(params)
    if sharded:
        distributed.broadcast_parameters(params)
    records: list[dict[str, float]] = []
    emit(callbacks, FitStarted(name, epochs))
    start = time.perf_counter()
    probe_at = probe_epochs(epochs, probing.probing.count) if probing is not None else ()
    probe_seconds = 0.0
    watched: list[float] = []
    n_steps = 0
    for epoch in range(1, epochs + 1):
        sums: dict[str, float] = {}
        epoch_steps = 0
        for batch in batches(epoch - 1):
            if options.lr_at is not None:
                lr = options.lr_at(n_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
            metrics = step(batch)
            if not sharded:
                assert metrics is not None, "a step without rows happens only in a process of several"
                loss = metrics["loss"]
                assert isinstance(loss, torch.Tensor), "a step's 'loss' must be the tensor to minimise"
                if not bool(torch.isfinite(loss.detach()).all()):
                    raise NonFiniteLoss(name, epoch, n_steps + 1, "loss", float(loss.detach().float().sum()))
                optimizer.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                values = _floats(metrics)
            else:  # this process's block of the batch: weighted metrics and gradients, summed over processes
                optimizer.zero_grad(set_to_none=True)
                if metrics is not None and isinstance(metrics["loss"], torch.Tensor) and metrics["loss"].requires_grad:
                    torch.autograd.backward(metrics["loss"])
                values = summed(None if metrics is None else _floats(metrics))
                if not math.isfinite(values["loss"]):  # the same sum in every process: all of them stop
                    raise NonFiniteLoss(name, epoch, n_steps + 1, "loss", values["loss"])
            if options.grad_clip is not None:
                values["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, options.grad_clip))
                if not math.isfinite(values["grad_norm"]):  # clipping a non-finite norm would write NaN weights
                    raise NonFiniteLoss(name, epoch, n_steps + 1, "gradient norm", values["grad_norm"])
            optimizer.step()
            if options.ema is not None:
                options.ema.update()
            if options.after_step is not None:
                options.after_step()
            n_steps += 1
            epoch_steps += 1
            emit(callbacks, StepEnded(name, n_steps, values["loss"]))
            if options.history == "step":
                records.append({"epoch": epoch, "step": n_steps, **values, "seconds": time.perf_counter() - start})
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value
        record = {
            "epoch": epoch,
            "step": n_steps,
            **{k: v / max(1, epoch_steps) for k, v in sums.items()},
            "seconds": time.perf_counter() - start - probe_seconds,
        }
        stop = False
        if epoch in probe_at:
            assert probing is not None
            began = time.perf_counter()
            measured = probing.probe()
            probe_seconds += time.perf_counter() - began
            record.update(measured)
            if measured:
                watched.append(next(iter(measured.values())))
                stop = epoch < epochs and probing.probing.stops(watched)
                if stop:
                    record["stopped"] = 1.0
        if options.history == "epoch":
            records.append(record)
        emit(callbacks, EpochEnded(name, epoch, epochs, record))
        if stop:
            break
    return records
