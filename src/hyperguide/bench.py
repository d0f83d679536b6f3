"""`hyperguide bench`: train every method over seeds and folds, evaluate them all, and write a report, resumably.

Stages run in order: one training stage per trained method (all its seeds and folds), one evaluation stage per table
row, then the report (`results.json` with `"timing"`, `results.md`, PNG plots). Training resumes from the checkpoints
`train_run` leaves (each (method, seed, fold) is seeded from its own identity, so the numbers do not depend on where a
run was killed). Evaluation is deterministic and redone unless a finished report says it is complete: `results.json`
gains its `"timing"` key only after every row was evaluated, and it is the only file a restart trusts. Every file is
written atomically (a temporary file renamed over the target), so a `kill -9` never leaves a half-written one.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hyperguide.checkpoint import checkpoint_exists
from hyperguide.config import apply_overrides
from hyperguide.data.tasks import Universe
from hyperguide.errors import HyperguideError
from hyperguide.harness import RunConfig, evaluate_run, read_config, splits_of, train_run, write_config
from hyperguide.io import atomic_path, read_json, write_json
from hyperguide.meta.methods import REFERENCE_ROWS
from hyperguide.stages import STAGE_DEPS, method_class, stage_stem, stages_of, trained_name

# The full benchmark, sized to fit 30 minutes for 3 seeds of easyvqa's random split on 2 CPU cores (stage costs in the
# README). Where the budget forced a cut, it went where it costs the table least:
# - 30 meta-epochs for the baselines and the HNet: at 20, `cond-multitask` had not yet learned to tell a task's
#   answers apart (balanced accuracy 55% against 74% at 30), and it is the row every guidance row is compared with;
# - 5 augmentations per task for the adapted latents (an epoch of the guidance models draws one per task, so more
#   augmentations add variety, not steps; they lie ~0.006 per dimension from each other);
# - 60 epochs for the HVAE and HyperCLIP (the paper: 10,000 and 1,000), the most expensive guidance training;
# - the oracle bound at 50 Adam steps: on easyvqa it scores the same as at 100 (zero-shot, 1-, 8-shot, full).
DEFAULT: dict[str, Any] = {
    "train.epochs": 30,
    "collect.n_aug": 5,
    "collect.max_examples": 128,
    "hvae.epochs": 60,  # at the paper's lr 1e-4; at 1e-3 the HVAE diverged on easyvqa (fan-in 98,816)
    "hyperclip.epochs": 60,
    "method.oracle.steps": 50,
}

# Smoke runs and tests: the same stages and code paths with fewer seeds, steps and k-shot settings.
QUICK: dict[str, Any] = {
    "seeds": [0, 1],
    "train.epochs": 3,
    "train.meta_batch_size": 8,
    "train.max_examples": 32,
    "method.inner.steps": 3,
    "method.oracle.steps": 10,
    "eval.k_shots": ["1", "full"],
    "eval.finetune.steps": 3,
    "collect.n_aug": 4,
    "collect.inner.steps": 3,
    "hvae.epochs": 5,
    "hyperclip.epochs": 10,
    "hyperclip.guidance.steps": 3,
    "hyperldm.epochs": 5,
    "hyperldm.min_steps": 0,
    "hyperldm.num_steps": 50,
    "hyperldm.sample_steps": 5,
}

REPORT_FILES = ("results.md", "gamma_sweep.png", "k_shot.png", "per_task.png")


def bench_config(
    universe: str,
    *,
    split: str = "random",
    folds: int = 5,
    held_out: tuple[str, ...] = (),
    prompts: str = "answer",
    seeds: int | None = None,
    quick: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
) -> RunConfig:
    """The run config of a bench: RunConfig's methods, the DEFAULT or QUICK preset, `seeds` (0..N-1; None: the
    preset's), then the user's `--set` overrides, which win."""
    config = RunConfig(universe=universe, split=split, folds=folds, held_out=held_out, prompts=prompts)
    preset = QUICK if quick else DEFAULT
    items = [*_as_overrides(preset)]
    if seeds is not None:
        if seeds < 1:
            raise HyperguideError(f"--seeds must be at least 1, got {seeds}")
        items.append(f"seeds={list(range(seeds))}")
    return apply_overrides(config, [*items, *overrides])


def _as_overrides(preset: Mapping[str, Any]) -> list[str]:
    """A preset dict as `key=value` strings; values are written as JSON so that `apply_overrides` reads them back."""
    return [f"{key}={json.dumps(value)}" for key, value in preset.items()]


@dataclass(frozen=True)
class Unit:
    """One piece of work the progress display counts: training one (method, seed, fold) or evaluating one row."""

    stage: str  # "train" or "evaluate"
    method: str
    seed: int | None = None
    fold: int | None = None

    def label(self) -> str:
        where = "" if self.seed is None else f" seed {self.seed} fold {self.fold}"
        return f"{self.stage} {self.method}{where}"


_TRAIN_EVENT = re.compile(r"^train (\S+) seed (\d+) fold (\d+)")
_EVAL_EVENT = re.compile(r"^evaluate (\S+)")


def parse_event(message: str) -> Unit | None:
    """The unit a harness message (`say`) starts, or None for any other message."""
    if m := _TRAIN_EVENT.match(message):
        return Unit("train", m.group(1), int(m.group(2)), int(m.group(3)))
    if m := _EVAL_EVENT.match(message):
        return Unit("evaluate", m.group(1))
    return None


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class ProgressBoard:
    """Counts units as the harness announces them and prints one line per unit: what runs, elapsed, time left.

    A harness message starts a unit and ends the one before it. Time left: each planned training counts the mean
    seconds of the finished trainings of its stage (every seed and fold of a stage costs about the same), and each
    table row left the mean seconds of the rows evaluated so far; work with nothing of its kind timed yet is named
    beside the estimate instead of guessed."""

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

    def say(self, message: str) -> None:
        unit = parse_event(message)
        if unit is None:
            self._line(message)
            return
        self.finish()
        if unit.stage == "train" and self._trained(unit.method) >= self.plan.count(unit.method):
            self.plan.append(unit.method)  # a dependency the plan did not list (e.g. the HNet under a HyperLDM)
        self.current, self.current_start = unit, self.clock()
        n_done = len(self.done[unit.stage]) + 1
        n_all = self.pending_train if unit.stage == "train" else self.rows
        self._line(f"{unit.label()} [{unit.stage} {n_done}/{n_all}] | {self._times()}")

    def finish(self) -> None:
        """End the running unit (if any) and record its seconds."""
        if self.current is None:
            return
        spent = self.clock() - self.current_start
        self.done[self.current.stage].append(spent)
        self.seconds_by_unit[self.current] = spent
        self.current = None

    def eval_seconds(self) -> dict[str, float]:
        return {u.method: s for u, s in self.seconds_by_unit.items() if u.stage == "evaluate"}

    def _stage_seconds(self, method: str) -> list[float]:
        return [s for u, s in self.seconds_by_unit.items() if u.stage == "train" and u.method == method]

    def _trained(self, method: str) -> int:
        return len(self._stage_seconds(method))

    def _times(self) -> str:
        elapsed = self.clock() - self.start
        left, untimed = 0.0, []
        not_timed = 0  # trainings of stages with no finished unit yet
        for method in dict.fromkeys(self.plan):
            seconds = self._stage_seconds(method)
            remaining = self.plan.count(method) - len(seconds)
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
            return f"elapsed {_clock(elapsed)}, left: unknown until a unit is done ({' + '.join(untimed)})"
        tail = "".join(f" + {u}" for u in untimed)
        return f"elapsed {_clock(elapsed)}, left ~{_clock(left)}{tail}"

    def _line(self, text: str) -> None:
        print(f"[bench] {text}", file=self.stream, flush=True)


def run_stages(config: RunConfig) -> list[str]:
    """Every training stage the rows need, dependencies included, each once and after what it needs."""
    order: list[str] = []

    def visit(stage: str) -> None:
        for dep in STAGE_DEPS.get(stage, ()):
            visit(dep)
        if stage not in order:
            order.append(stage)

    for row in config.methods:
        name = trained_name(row)
        if name not in REFERENCE_ROWS and method_class(name).trained_by != "none":
            for stage in stages_of(name):
                visit(stage)
    return order


def pending_train_units(universe: Universe, config: RunConfig, out_dir: Path) -> list[Unit]:
    """The (stage, seed, fold) trainings whose checkpoints do not exist yet."""
    splits = splits_of(universe, config)
    return [
        Unit("train", stage, seed, split.fold)
        for stage in run_stages(config)
        for seed in config.seeds
        for split in splits
        if not checkpoint_exists(stage_stem(out_dir, stage, seed, split.fold))
    ]


def train_seconds(universe: Universe, config: RunConfig, out_dir: Path) -> dict[str, float]:
    """Seconds each training stage took over all seeds and folds, from its checkpoints: it counts the training of
    every run that contributed, also of runs before a restart."""
    splits = splits_of(universe, config)
    return {
        stage: sum(
            float(read_json(stem.with_suffix(".json"), what="checkpoint metadata").get("train_seconds", 0.0))
            for seed in config.seeds
            for split in splits
            if (stem := stage_stem(out_dir, stage, seed, split.fold)).with_suffix(".json").is_file()
        )
        for stage in run_stages(config)
    }


def finished_results(out_dir: Path) -> dict[str, Any] | None:
    """results.json of a finished evaluation of the folder's current rows, else None. It is finished when it has
    `timing`, which is added only after every row was evaluated; the rows must be those of config.json, which gathers
    every row ever trained into the folder."""
    path = out_dir / "results.json"
    if not path.is_file():
        return None
    results = read_json(path, what="results")
    if not isinstance(results, dict) or "timing" not in results:
        return None
    return results if list(results.get("methods", {})) == list(read_config(out_dir).methods) else None


@dataclass(frozen=True)
class BenchResult:
    results: dict[str, Any]
    report: Path
    wall_seconds: float
    trained_units: int
    reused_evaluation: bool


def run_bench(
    universe: Universe,
    config: RunConfig,
    out_dir: Path,
    *,
    device: str = "cpu",
    progress: bool = False,
    stream: TextIO = sys.stderr,
) -> BenchResult:
    """Train, evaluate and report; every stage that already finished in `out_dir` is reused."""
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_config(out_dir, config)  # refuses a folder that holds a run with another config
    pending = pending_train_units(universe, config, out_dir)
    planned = len(run_stages(config)) * len(config.seeds) * len(splits_of(universe, config))
    board = ProgressBoard(plan=[u.method for u in pending], rows=len(config.methods), stream=stream)
    board.say(
        f"{out_dir}: {len(config.methods)} rows, {len(config.seeds)} seeds; "
        f"{planned - len(pending)} of {planned} trainings already done"
    )
    train_run(universe, config, out_dir, device=device, progress=progress, say=board.say)
    board.finish()
    trained = len(board.done["train"])

    results = finished_results(out_dir) if trained == 0 else None
    reused = results is not None
    if results is None:
        for name in REPORT_FILES:  # the report of an earlier evaluation must not outlive it
            (out_dir / name).unlink(missing_ok=True)
        results = evaluate_run(universe, out_dir, device=device, say=board.say)
        board.finish()
        eval_seconds = board.eval_seconds()
    else:
        board.say("evaluation: reusing the finished results.json")
        eval_seconds = {k: float(v) for k, v in results["timing"].get("evaluate", {}).items()}
    report = write_bench_report(results, out_dir, train=train_seconds(universe, config, out_dir), evaluate=eval_seconds)
    return BenchResult(results, report, time.perf_counter() - start, trained, reused)


def write_bench_report(
    results: dict[str, Any], out_dir: Path, *, train: dict[str, float], evaluate: dict[str, float]
) -> Path:
    """Plots, then results.json with `timing` (the mark of a finished evaluation), then results.md; all atomic."""
    from hyperguide.plots import write_plots
    from hyperguide.report import render_markdown

    start = time.perf_counter()
    plots = write_plots(results, out_dir)
    report_seconds = time.perf_counter() - start
    results["timing"] = {
        "train": train,
        "evaluate": evaluate,
        "report": report_seconds,
        "total": sum(train.values()) + sum(evaluate.values()) + report_seconds,
    }
    write_json(out_dir / "results.json", results)
    path = out_dir / "results.md"
    with atomic_path(path) as tmp:
        tmp.write_text(render_markdown(results, plots), encoding="utf-8")
    return path


def summary_line(result: BenchResult) -> str:
    """One line for the end of a bench: wall time, the best zero-shot row that is not a bound, and the report."""
    from hyperguide.report import best_row

    best = best_row(result.results)
    zs = result.results["methods"][best]["zero_shot"]["acc"] if best else None
    best_text = f"best zero-shot row {best} {zs['mean']:.2f} ± {zs['ci95']:.2f}" if zs else "no method rows"
    return (
        f"bench done in {_clock(result.wall_seconds)} ({result.trained_units} trainings run"
        f"{', evaluation reused' if result.reused_evaluation else ''}); {best_text}; report: {result.report}"
    )
