"""Typed events that long procedures emit, and the callback protocol that receives them (minGPT's callbacks).

Procedures never print, draw progress bars or write logs themselves: they call `emit(callbacks, event)`, and what
happens to an event is up to the callbacks the caller chose (`hyperguide.callbacks`: the run folder's JSONL log,
progress bars, plain lines on a terminal; `hyperguide.run.progress`: the bench's board; `hyperguide.trackers`:
TensorBoard and W&B, on request).

| event | emitted by | when |
|---|---|---|
| `StageStarted`, `StageFinished` | `run.stages` | a stage of one (seed, fold) starts / has written its checkpoint |
| `FitStarted`, `EpochEnded`, `StepEnded` | `train.loop.fit` | a loop starts / ends an epoch (with a record) / a step |
| `Progress` | loops that are not training (latent collection, features) | after each unit of work |
| `RowStarted`, `RowEvaluated` | `run.evaluate` | a table row's evaluation starts / ends |
| `Note` | any procedure | a line a person may want to read (a diagnostic, a reuse) |
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StageStarted:
    stage: str
    seed: int
    fold: int
    tasks: int  # meta-train tasks the stage trains on


@dataclass(frozen=True)
class StageFinished:
    stage: str
    seed: int
    fold: int
    seconds: float


@dataclass(frozen=True)
class FitStarted:
    name: str  # what is being trained, e.g. "cond-multitask" or "image tower"
    epochs: int


@dataclass(frozen=True)
class EpochEnded:
    name: str
    epoch: int  # 1-based
    epochs: int
    record: dict[str, float] = field(default_factory=dict)  # epoch, step, the epoch's mean metrics, seconds


@dataclass(frozen=True)
class StepEnded:
    name: str
    step: int  # 1-based, counted over the whole fit
    loss: float


@dataclass(frozen=True)
class Progress:
    name: str  # e.g. "collect latents", "text features"
    done: int
    total: int
    unit: str = "item"


@dataclass(frozen=True)
class RowStarted:
    row: str


@dataclass(frozen=True)
class RowEvaluated:
    row: str
    seconds: float


@dataclass(frozen=True)
class Note:
    text: str


Event = StageStarted | StageFinished | FitStarted | EpochEnded | StepEnded | Progress | RowStarted | RowEvaluated | Note
Callback = Callable[[Event], None]


def emit(callbacks: Iterable[Callback], event: Event) -> None:
    """Hand `event` to every callback, in order."""
    for callback in callbacks:
        callback(event)
