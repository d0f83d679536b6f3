"""Callbacks for `hyperguide.events`: the JSONL training log, progress bars and plain progress lines.

`JsonlLog` is the run folder's record of training (always on); the command line chooses the others: `ProgressBars`
on an interactive terminal, `Lines` otherwise. Nothing here is needed by a procedure: callbacks only listen.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TextIO

from hyperguide.events import (
    EpochEnded,
    Event,
    FitStarted,
    Note,
    Progress,
    RowStarted,
    StageFinished,
    StageStarted,
)
from hyperguide.io import cannot_write


class JsonlLog:
    """Writes each epoch's record to the running stage's `metrics.jsonl` the moment it arrives (flushed), so a
    killed stage keeps its log so far and a running one can be tailed.

    A stage that starts again (after a crash) starts its log again: the old file is removed and a new one created
    exclusively (a symlink planted in its place is removed, never followed). A failed write (a full disk) raises
    `WriteError` naming the log."""

    def __init__(self, path_of: Callable[[str, int, int], Path]) -> None:
        self.path_of = path_of  # (stage, seed, fold) -> the stage's log file
        self._file: IO[str] | None = None
        self._path: Path | None = None

    def __call__(self, event: Event) -> None:
        try:
            if isinstance(event, StageStarted):
                self._close()
                self._path = self.path_of(event.stage, event.seed, event.fold)
                self._file = _create(self._path)
            elif isinstance(event, EpochEnded) and self._file is not None:
                self._file.write(json.dumps(event.record) + "\n")
                self._file.flush()
            elif isinstance(event, StageFinished):
                self._close()
        except OSError as e:
            file, self._file = self._file, None
            if file is not None:
                with contextlib.suppress(OSError):  # its buffer holds what the disk refused: closed all the same
                    file.close()
            raise cannot_write(self._path or "the training log", e) from None

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _create(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    return os.fdopen(fd, "w", encoding="utf-8")


class ProgressBars:
    """tqdm bars: one per training loop (epochs, with the last epoch's loss) and one per other long loop."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._bars: dict[str, Any] = {}

    def __call__(self, event: Event) -> None:
        from tqdm.auto import tqdm

        if isinstance(event, FitStarted):
            self._close(event.name)
            self._bars[event.name] = tqdm(total=event.epochs, desc=event.name, unit="epoch", file=self.stream)
        elif isinstance(event, EpochEnded) and event.name in self._bars:
            bar = self._bars[event.name]
            bar.update(1)
            if "loss" in event.record:
                bar.set_postfix(loss=f"{event.record['loss']:.4g}")
            if event.epoch >= event.epochs:
                self._close(event.name)
        elif isinstance(event, Progress):
            if event.name not in self._bars:
                self._bars[event.name] = tqdm(total=event.total, desc=event.name, unit=event.unit, file=self.stream)
            bar = self._bars[event.name]
            bar.update(event.done - bar.n)
            if event.done >= event.total:
                self._close(event.name)

    def _close(self, name: str) -> None:
        bar = self._bars.pop(name, None)
        if bar is not None:
            bar.close()


class Lines:
    """One plain line per stage started, row evaluated and note: for logs and terminals without bars."""

    def __init__(self, stream: TextIO | None = None, prefix: str = "") -> None:
        self.stream = stream
        self.prefix = prefix

    def __call__(self, event: Event) -> None:
        text = describe(event)
        if text is not None:
            print(f"{self.prefix}{text}", file=self.stream or sys.stderr, flush=True)


def describe(event: Event) -> str | None:
    """The line a person reads for an event, or None for events too frequent to print."""
    if isinstance(event, StageStarted):
        return f"train {event.stage} seed {event.seed} fold {event.fold} ({event.tasks} tasks)"
    if isinstance(event, RowStarted):
        return f"evaluate {event.row}"
    if isinstance(event, Note):
        return event.text
    return None
