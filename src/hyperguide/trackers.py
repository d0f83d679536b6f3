"""Optional experiment trackers for `hyperguide.events`: TensorBoard and Weights & Biases, asked for on the command
line with `--log tensorboard[:DIR]` and `--log wandb` (train, collect, bench).

The run folder's `metrics.jsonl` logs (`hyperguide.callbacks.JsonlLog`) stay the record of a run and are always
written; a tracker is one more listener that draws the same numbers. Neither package is a dependency (the extras
`hyperguide[tensorboard]` and `hyperguide[wandb]`): this module imports them only when a tracker is built, so a run
without `--log` never imports either.

What is logged: every numeric value of each `EpochEnded` record (the epoch's mean metrics, `epoch`, `seconds` and
the probes' `fit_*`), at the record's `step`, per (stage, seed, fold) that `StageStarted` announced; and the seconds
of each evaluated row (`RowEvaluated`). Stages whose checkpoints are reused are not trained, so they log nothing.

    with tracking(["tensorboard"], run_dir, config) as trackers:
        train_run(universe, config, RunFolder(run_dir), callbacks=trackers)
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from hyperguide.config import RunConfig, to_dict
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback, EpochEnded, Event, RowEvaluated, RowStarted, StageFinished, StageStarted
from hyperguide.io import WriteError, cannot_write

TRACKERS = {"tensorboard": "tensorboard[:DIR]", "wandb": "wandb"}  # name -> how --log spells it
EVALUATE = "evaluate"  # the TensorBoard run (and W&B key prefix) of the evaluation's numbers


class Tracker(Protocol):
    """A callback that holds files or a connection open: `close()` flushes and releases them (`failed`: the
    command ended with an error)."""

    def __call__(self, event: Event) -> None: ...

    def close(self, failed: bool = False) -> None: ...


@dataclass(frozen=True)
class TrackerSpec:
    """One `--log` value: the tracker and, for TensorBoard, the folder asked for (None: `<run folder>/tensorboard`)."""

    name: str
    directory: Path | None = None


def parse_tracker(spec: str) -> TrackerSpec:
    """`tensorboard`, `tensorboard:DIR` or `wandb` -> its `TrackerSpec`; anything else is refused with the choices."""
    name, sep, rest = spec.partition(":")
    name = name.strip().lower()
    choices = f"choose {' or '.join(TRACKERS.values())}"
    if name not in TRACKERS:
        raise HyperguideError(f"unknown tracker {spec!r} in --log: {choices}")
    if name == "tensorboard":
        if sep and not rest:
            raise HyperguideError(f"--log {spec}: give the folder after the colon (tensorboard:DIR), or no colon")
        return TrackerSpec(name, Path(rest) if rest else None)
    if sep:
        raise HyperguideError(f"--log {spec}: wandb takes no folder (it writes under the run folder's wandb/)")
    return TrackerSpec(name)


def build_tracker(spec: TrackerSpec, run_dir: Path, config: RunConfig) -> Tracker:
    """The tracker `spec` asks for, for the run in `run_dir`; its package is imported here (a missing one is a
    `HyperguideError` naming the extra to install), its files are written from the first number on. TensorBoard's
    folder is checked here, before the run writes anything: `<run folder>/tensorboard` must not be a symlink (a
    folder asked for with `tensorboard:DIR` may be one: the user named it), and either must be writable."""
    if spec.name == "tensorboard":
        if spec.directory is not None:
            return TensorBoardTracker(spec.directory, own=False)
        return TensorBoardTracker(run_dir / "tensorboard")
    if spec.name == "wandb":
        return WandbTracker(run_dir, to_dict(config))
    raise HyperguideError(f"unknown tracker {spec.name!r}: choose {' or '.join(TRACKERS.values())}")


@contextlib.contextmanager
def tracking(specs: Sequence[str], run_dir: Path, config: RunConfig) -> Iterator[list[Callback]]:
    """The trackers of the `--log` values `specs` (none for none), as callbacks, closed when the block ends, also
    when it fails. Every value is parsed and every package imported before the block runs, so a bad `--log` costs no
    training."""
    parsed = list(dict.fromkeys(parse_tracker(spec) for spec in specs))
    trackers: list[Tracker] = []
    failed = False
    try:
        for spec in parsed:
            trackers.append(build_tracker(spec, run_dir, config))
        yield list[Callback](trackers)
    except BaseException:
        failed = True
        raise
    finally:
        close_all(trackers, failed=failed)


def close_all(trackers: Sequence[Tracker], *, failed: bool = False) -> None:
    """Close every tracker, even when one fails to; the first error is raised after, unless the command `failed`
    already (its own error is the one to report)."""
    error: Exception | None = None
    for tracker in trackers:
        try:
            tracker.close(failed=failed)
        except Exception as e:
            error = error or e
    if error is not None and not failed:
        raise error


def _import(module: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise HyperguideError(
            f"--log {extra} needs the {extra} package, which is not installed ({e}): pip install 'hyperguide[{extra}]'"
        ) from None


@dataclass(frozen=True)
class Point:
    """Numbers to draw at one step: `run` is the (stage, seed, fold) they belong to (`<stage>/seed<S>-fold<F>`) or
    `evaluate`, `group` their section: the stage (not its training loop's name, which two stages may share:
    `hyperclip-hnet-attention` trains a loop named `hyperclip-hnet`), `evaluate`, or the loop's name outside a
    stage."""

    run: str
    group: str
    step: int
    values: dict[str, float]


class _Scalars:
    """Turns events into `Point`s, following which (stage, seed, fold) is running."""

    def __init__(self) -> None:
        self.stage: StageStarted | None = None  # the running stage

    def __call__(self, event: Event) -> Point | None:
        if isinstance(event, StageStarted):
            self.stage = event
        elif isinstance(event, StageFinished):
            self.stage = None
        elif isinstance(event, EpochEnded):
            values = {k: float(v) for k, v in event.record.items() if k != "step" and _is_number(v)}
            step = int(event.record.get("step", event.epoch))
            if not values:
                return None
            if self.stage is None:
                return Point(event.name, event.name, step, values)
            return Point(stage_run(self.stage.stage, self.stage.seed, self.stage.fold), self.stage.stage, step, values)
        elif isinstance(event, RowEvaluated):
            return Point(EVALUATE, EVALUATE, 0, {f"seconds/{event.row}": float(event.seconds)})
        return None


def stage_run(stage: str, seed: int, fold: int) -> str:
    """The run (a TensorBoard run folder, a W&B key prefix) of one stage of one seed and fold: `<stage>/seed0-fold0`,
    as the stage's checkpoint is `<run folder>/<stage>/seed0-fold0.safetensors`."""
    return f"{stage}/seed{seed}-fold{fold}"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))


class TensorBoardTracker:
    """Writes TensorBoard event files under `directory`, with the tensorboard package's own event writer (no
    TensorFlow, and not torch's `SummaryWriter`, which needs the same package and adds nothing for scalars).

    One TensorBoard *run* per (stage, seed, fold), in `directory/<stage>/seed<S>-fold<F>/`, and the tags
    `<stage>/<metric>` (e.g. `hyperldm-hnet/loss`): TensorBoard gathers the tags of a stage in one section, and each
    chart overlays every seed and fold of the stage as runs that its run filter can pick (`seed0`, `fold2`), which is
    how seeds are compared; tag prefixes per seed would give one chart per seed instead. A training loop outside any
    stage would be its own run and section, under its name. The evaluation's row seconds go to the run `evaluate`
    (tags `evaluate/seconds/<row>`).

    A stage that starts again (after a crash, or retrained) starts its TensorBoard run again: the event files in its
    folder are removed, as its `metrics.jsonl` is. Each run's file is closed (flushed) when its stage finishes, the
    others at `close()`.

    Nothing is written outside `directory`: a folder under it that is a symlink is refused, as a run's stage folders
    are, and so is `directory` itself when it is the run's own (`own`; a `tensorboard:DIR` is the user's to point
    anywhere). An old event file that is a symlink is removed, never followed. `directory` is checked for writing
    when the tracker is built, so that a folder that cannot be written is refused before the run starts."""

    def __init__(self, directory: Path, *, own: bool = True) -> None:
        _import("tensorboard", "tensorboard")
        if own:
            _refuse_link(directory)
        _check_writable(directory)
        from tensorboard.compat.proto.event_pb2 import Event as TBEvent
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.directory, self.own = directory, own
        self._event, self._summary, self._writer_class = TBEvent, Summary, EventFileWriter
        self._writers: dict[str, Any] = {}
        self._started: set[str] = set()  # runs whose old event files were removed by this tracker
        self._scalars = _Scalars()

    def __call__(self, event: Event) -> None:
        if isinstance(event, StageStarted | StageFinished):
            self._close_run(stage_run(event.stage, event.seed, event.fold))
        if isinstance(event, StageStarted):
            self._started.discard(stage_run(event.stage, event.seed, event.fold))
        point = self._scalars(event)
        if point is None:
            return
        summary = self._summary(
            value=[self._summary.Value(tag=f"{point.group}/{k}", simple_value=v) for k, v in point.values.items()]
        )
        self._writer(point.run).add_event(self._event(step=point.step, summary=summary))

    def _writer(self, run: str) -> Any:
        if run not in self._writers:
            folder = self.directory / run
            parts = Path(run).parts
            for depth in range(0 if self.own else 1, len(parts) + 1):
                _refuse_link(self.directory.joinpath(*parts[:depth]))  # (`directory`), `<stage>`, `<stage>/seed0-fold0`
            if run not in self._started:
                _remove_event_files(folder)
                self._started.add(run)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                self._writers[run] = self._writer_class(str(folder))
            except OSError as e:
                raise cannot_write(folder, e) from None
        return self._writers[run]

    def _close_run(self, run: str) -> None:
        writer = self._writers.pop(run, None)
        if writer is not None:
            writer.close()

    def close(self, failed: bool = False) -> None:
        for run in list(self._writers):
            self._close_run(run)


def _refuse_link(folder: Path) -> None:
    if folder.is_symlink():
        raise HyperguideError(f"{folder} is a symlink: a run's TensorBoard folders must be its own (remove the link)")


def _remove_event_files(folder: Path) -> None:
    """Remove the event files of an earlier start of a run: regular files, and links (the link, never the file it
    points to); anything else by that name is left alone."""
    for old in folder.glob("events.out.tfevents.*"):
        if old.is_symlink() or old.is_file():
            old.unlink()


def _check_writable(directory: Path) -> None:
    """Refuse, as `cannot write DIR: REASON`, a folder that cannot be made or written: a file in its place or in
    its path, or no permission to write the folder or the one it is to be made in. Nothing is created."""
    existing = directory
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        reason = f"{os.strerror(errno.ENOTDIR)} ({existing} is in the way: not a folder)"
        raise WriteError(f"cannot write {directory}: {reason}")
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        code = errno.EROFS if read_only else errno.EACCES
        raise cannot_write(directory, OSError(code, os.strerror(code)))


class WandbTracker:
    """Logs to Weights & Biases: one W&B run per command, `wandb.init(project="hyperguide", dir=<run folder>,
    mode=$WANDB_MODE or "offline", config=<the run's config>)`, named after the run folder (`WANDB_PROJECT` and
    `WANDB_ENTITY` choose where it goes).

    Offline by default: the run is written to `<run folder>/wandb/offline-run-*` and nothing leaves the machine until
    `wandb sync <that folder>`; with `WANDB_MODE=online` (after `wandb login`) it streams to the server as it trains.
    The mode is passed to `wandb.init`, so it is `WANDB_MODE` that switches it: `wandb online` (a settings file) does
    not.
    The W&B run starts with the first stage or row (`StageStarted`, `RowStarted`: before their timers start, so its
    start-up is not counted in a stage's seconds), so a command that trains and evaluates nothing starts none.

    Keys: `<stage>/seed<S>-fold<F>/<metric>` (a loop outside any stage: `<loop name>/<metric>`), each prefix with
    its own step axis (`<prefix>/step`, declared with `define_metric`), since every stage counts its steps from 1;
    the evaluation's `evaluate/seconds/<row>`."""

    def __init__(self, run_dir: Path, config: Mapping[str, Any]) -> None:
        self._wandb = _import("wandb", "wandb")
        self.run_dir = run_dir
        self.config = dict(config)
        self._run: Any = None
        self._axes: set[str] = set()
        self._scalars = _Scalars()

    def __call__(self, event: Event) -> None:
        if isinstance(event, StageStarted | RowStarted):
            self._start()
        point = self._scalars(event)
        if point is None:
            return
        prefix = point.run  # the section is the run's first part
        run = self._start()
        if prefix not in self._axes:
            run.define_metric(f"{prefix}/step")
            run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/step")
            self._axes.add(prefix)
        run.log({f"{prefix}/step": point.step, **{f"{prefix}/{k}": v for k, v in point.values.items()}})

    def _start(self) -> Any:
        if self._run is None:
            self._run = self._wandb.init(
                project=os.environ.get("WANDB_PROJECT", "hyperguide"),
                dir=str(self.run_dir),
                name=self.run_dir.name,
                mode=os.environ.get("WANDB_MODE") or "offline",
                config=self.config,
            )
        return self._run

    def close(self, failed: bool = False) -> None:
        run, self._run = self._run, None
        if run is not None:
            run.finish(exit_code=1 if failed else 0)
