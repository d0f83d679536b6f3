"""The bench's progress board: a callback that prints one line per unit of work (training one stage of one seed and
fold, or evaluating one table row) with the count done, the time elapsed and an estimate of the time left.

Units are known from events (`StageStarted`, `RowStarted`); a unit ends when the next one starts or at `finish()`.
Time left: each planned training counts the mean seconds of the finished trainings of its stage (every seed and
fold of a stage costs about the same), and each row left the mean seconds of the rows evaluated so far; work with
nothing of its kind timed yet is named beside the estimate instead of guessed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from hyperguide.events import Event, Note, RowStarted, StageStarted


@dataclass(frozen=True)
class Unit:
    """One piece of work the board counts: training one (stage, seed, fold) or evaluating one row."""

    kind: str  # "train" or "evaluate"
    name: str  # the stage or the row
    seed: int | None = None
    fold: int | None = None

    def label(self) -> str:
        where = "" if self.seed is None else f" seed {self.seed} fold {self.fold}"
        return f"{self.kind} {self.name}{where}"


def clock(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` from an hour on."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class ProgressBoard:
    plan: list[str]  # the stage of each pending training, in the order they run
    rows: int
    stream: TextIO = sys.stderr
    clock: Callable[[], float] = time.perf_counter
    start: float = field(default=0.0)
    current: Unit | None = None
    current_start: float = 0.0
    done: dict[str, list[float]] = field(default_factory=lambda: {"train": [], "evaluate": []})
    seconds_by_unit: dict[Unit, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.start = self.clock()
        self.plan = list(self.plan)

    @property
    def pending_train(self) -> int:
        return len(self.plan)

    def __call__(self, event: Event) -> None:
        if isinstance(event, StageStarted):
            self._begin(Unit("train", event.stage, event.seed, event.fold))
        elif isinstance(event, RowStarted):
            self._begin(Unit("evaluate", event.row))
        elif isinstance(event, Note):
            self.say(event.text)

    def say(self, text: str) -> None:
        print(f"[bench] {text}", file=self.stream, flush=True)

    def _begin(self, unit: Unit) -> None:
        self.finish()
        if unit.kind == "train" and len(self._stage_seconds(unit.name)) >= self.plan.count(unit.name):
            self.plan.append(unit.name)  # a dependency the plan did not list (e.g. the HNet under a HyperLDM)
        self.current, self.current_start = unit, self.clock()
        n_done = len(self.done[unit.kind]) + 1
        n_all = self.pending_train if unit.kind == "train" else self.rows
        self.say(f"{unit.label()} [{unit.kind} {n_done}/{n_all}] | {self._times()}")

    def finish(self) -> None:
        """End the running unit (if any) and record its seconds."""
        if self.current is None:
            return
        spent = self.clock() - self.current_start
        self.done[self.current.kind].append(spent)
        self.seconds_by_unit[self.current] = spent
        self.current = None

    @property
    def trained(self) -> int:
        return len(self.done["train"])

    def _stage_seconds(self, stage: str) -> list[float]:
        return [s for u, s in self.seconds_by_unit.items() if u.kind == "train" and u.name == stage]

    def _times(self) -> str:
        elapsed = self.clock() - self.start
        left, untimed = 0.0, []
        not_timed = 0  # trainings of stages with no finished unit yet
        for stage in dict.fromkeys(self.plan):
            seconds = self._stage_seconds(stage)
            remaining = self.plan.count(stage) - len(seconds)
            if remaining > 0 and seconds:
                left += remaining * sum(seconds) / len(seconds)
            elif remaining > 0:
                not_timed += remaining
        if not_timed:
            untimed.append(f"{not_timed} training{'s' * (not_timed > 1)} of stages not timed yet")
        rows_done = self.done["evaluate"]
        if self.rows > len(rows_done):
            if rows_done:
                left += (self.rows - len(rows_done)) * sum(rows_done) / len(rows_done)
            else:
                untimed.append("evaluate (not timed yet)")
        if not self.seconds_by_unit:
            return f"elapsed {clock(elapsed)}, left: unknown until a unit is done ({' + '.join(untimed)})"
        tail = "".join(f" + {u}" for u in untimed)
        return f"elapsed {clock(elapsed)}, left ~{clock(left)}{tail}"
