"""`hyperguide bench`: train every stage of every row over seeds and folds, evaluate them all, and write the report,
resumably.

Training resumes from the stage checkpoints (each (stage, seed, fold) is seeded from its own identity, so the numbers
do not depend on where a run was killed); a checkpoint whose fingerprint differs from the run's is retrained.
Evaluation is deterministic and redone unless a finished report says it is complete: `results.json` gains its
`"timing"` and `"fingerprint"` keys only after every row was evaluated and the report written, and it is reused only
when its fingerprint (the folder's config, the universe's data, every checkpoint's sha256) is the run's. Every file is
written atomically, so a `kill -9` never leaves a half-written one.

Under torchrun (`torchrun --nproc-per-node N -m hyperguide.cli bench ...`), every stage is trained data-parallel by
all the processes, the rows are evaluated by the processes in turn, and the main process alone writes and reports.
"""

from __future__ import annotations

import io
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hyperguide.checkpoint import checkpoint_problem, read_metadata
from hyperguide.config import RunConfig, to_dict
from hyperguide.data.tasks import Universe
from hyperguide.distributed import barrier, share, world
from hyperguide.errors import HyperguideError
from hyperguide.eval.results import Results, read_results
from hyperguide.eval.statistics import ci_text
from hyperguide.events import Callback, Event, Note, RowEvaluated, emit
from hyperguide.io import atomic_path, write_json
from hyperguide.report.headline import check_tune_run, choose_headline
from hyperguide.report.markdown import best_row, render_markdown
from hyperguide.report.plots import write_plots
from hyperguide.rows import table_rows
from hyperguide.run.evaluate import evaluate_run
from hyperguide.run.progress import ProgressBoard, Unit, clock
from hyperguide.run.train import check_run, expand_config, splits_of, train_run, training_plan, write_config
from hyperguide.trained.folder import RunFolder
from hyperguide.trained.stage_table import digest, row_stages, stage_fingerprint, stage_identity

REPORT_FILES = ("results.md", "gamma_sweep.png", "k_shot.png", "per_task.png", "fit_curves.png")


def pending_trainings(universe: Universe, config: RunConfig, folder: RunFolder) -> list[Unit]:
    """The (stage, seed, fold) trainings without a checkpoint of the fingerprint this run expects, in the order
    they run (a stage whose dependency is pending is pending too)."""
    splits = splits_of(universe, config)
    data = universe.fingerprint()
    return [
        Unit("train", stage, seed, split.fold)
        for stage in training_plan(config)
        for seed in config.seeds
        for split in splits
        if checkpoint_problem(
            folder.stem(stage, seed, split.fold),
            stage_fingerprint(stage, config, folder, seed, split.fold, data),
            expect=stage_identity(stage, seed, split.fold),
        )
        is not None
    ]


def train_seconds(universe: Universe, config: RunConfig, folder: RunFolder) -> dict[str, float]:
    """Seconds each training stage took over all seeds and folds, from its checkpoints: it counts the training of
    every run that contributed, also of runs before a restart."""
    splits = splits_of(universe, config)
    return {
        stage: sum(
            float(read_metadata(stem).get("train_seconds", 0.0))
            for seed in config.seeds
            for split in splits
            if (stem := folder.stem(stage, seed, split.fold)).with_suffix(".json").is_file()
        )
        for stage in training_plan(config)
    }


def evaluation_fingerprint(universe: Universe, folder: RunFolder) -> dict[str, str]:
    """What an evaluation of the folder is computed from: config.json (every knob, evaluation's included), the
    universe's data, and the sha256 of every checkpoint of every row, seed and fold."""
    config = folder.read_config()
    checkpoints = {}
    for stage in row_stages(table_rows(config)):
        for seed in config.seeds:
            for split in splits_of(universe, config):
                stem = folder.stem(stage, seed, split.fold)
                try:
                    checkpoints[f"{stage}/{stem.name}"] = read_metadata(stem).get("sha256", "missing")
                except HyperguideError:  # the evaluation will say what is missing
                    checkpoints[f"{stage}/{stem.name}"] = "missing"

    return {"config": digest(to_dict(config)), "data": universe.fingerprint(), "checkpoints": digest(checkpoints)}


def finished_results(folder: RunFolder, fingerprint: dict[str, str] | None = None) -> Results | None:
    """results.json of a finished evaluation of the folder's current rows, else None. It is finished when it has
    `timing`, which is added only after every row was evaluated; the rows must be those of config.json, which gathers
    every row ever trained into the folder, and with `fingerprint` its fingerprint must be that one. A results.json
    that cannot be read is not finished (the evaluation is redone)."""
    if not folder.results.is_file():
        return None
    try:
        results = read_results(folder.results)
    except HyperguideError:
        return None
    if "timing" not in results:
        return None
    if fingerprint is not None and results.get("fingerprint") != fingerprint:
        return None
    rows = [row.name for row in table_rows(folder.read_config())]
    return results if list(results["methods"]) == rows else None


@dataclass(frozen=True)
class BenchResult:
    results: Results
    report: Path  # results.md
    wall_seconds: float
    trained_units: int
    reused_evaluation: bool


def run_bench(
    universe: Universe,
    config: RunConfig,
    folder: RunFolder,
    *,
    device: str = "cpu",
    callbacks: Sequence[Callback] = (),
    stream: TextIO = sys.stderr,
    headline_from: Path | None = None,
) -> BenchResult:
    """Train, evaluate and report; every stage that already finished in the folder is reused. Progress goes to
    `stream` (the bench's board); `callbacks` get every event too (e.g. progress bars inside a stage). The report's
    headline rows are chosen on the tune run `headline_from` (`report.headline`)."""
    start = time.perf_counter()
    config = expand_config(config, universe)
    check_run(universe, config, device=device)  # nothing is written for a refused run
    tune = None if headline_from is None else read_tune_run(headline_from, universe, config)  # before any training
    write_config(folder, config)  # refuses a folder that holds a run with another config
    main = world().main  # under torchrun, the main process shows progress and writes the report
    pending = pending_trainings(universe, config, folder)
    planned = len(training_plan(config)) * len(config.seeds) * len(splits_of(universe, config))
    n_rows = len(table_rows(folder.read_config()))  # the evaluation covers every row ever trained into the folder
    mine = len(range(world().rank, n_rows, world().size))  # the rows this process evaluates (all in one process)
    board = ProgressBoard(plan=[u.name for u in pending], rows=mine, stream=stream if main else io.StringIO())
    eval_seconds: dict[str, float] = {}

    def listen(event: Event) -> None:
        if isinstance(event, RowEvaluated):
            eval_seconds[event.row] = event.seconds

    listeners: list[Callback] = [board, listen, *callbacks] if main else [listen, *callbacks]
    emit(
        listeners,
        Note(
            f"{folder.path}: {n_rows} rows, {len(config.seeds)} seeds; "
            f"{planned - len(pending)} of {planned} trainings already done"
        ),
    )
    train_run(universe, config, folder, device=device, callbacks=listeners)
    board.finish()
    trained = board.trained

    fingerprint = evaluation_fingerprint(universe, folder)
    trained = share(trained)  # the main process's count: only its board saw the stages start
    results = share(finished_results(folder, fingerprint) if trained == 0 and main else None)
    reused = results is not None
    if results is None:
        if main:
            for name in REPORT_FILES:  # the report of an earlier evaluation must not outlive it
                (folder.path / name).unlink(missing_ok=True)
        results = evaluate_run(universe, folder, device=device, callbacks=listeners)
        board.finish()
    else:
        emit(listeners, Note("evaluation: reusing the finished results.json"))
        eval_seconds = {k: float(v) for k, v in results["timing"]["evaluate"].items()}
    train = train_seconds(universe, config, folder)
    report = folder.path / "results.md"
    if tune is not None or "headline" not in results:
        results["headline"] = choose_headline(results, tune, None if headline_from is None else str(headline_from))
    # a finished report on read-only storage stays as it is, unless a tune run chooses its headline now
    if main and not (reused and tune is None and report_is_current(folder)):
        report = write_bench_report(results, folder, train=train, evaluate=eval_seconds, fingerprint=fingerprint)
    barrier()
    return BenchResult(results, report, time.perf_counter() - start, trained, reused)


def read_tune_run(path: Path, universe: Universe, config: RunConfig) -> Results:
    """The results.json of the tune run at `path` (a folder or the file), refused unless it is a tune run of this
    run's universe and split that tested on none of this run's meta-test tasks (`report.headline.check_tune_run`)."""
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise HyperguideError(f"--headline-from {path}: no results.json there; run its bench first")
    tune = read_results(file)
    tested = [universe.tasks[i].question for s in splits_of(universe, config) for i in s.test]
    check_tune_run({"universe": config.universe, "split": config.split, "test_tasks": tested}, tune, str(path))
    return tune


def report_is_current(folder: RunFolder) -> bool:
    """Whether the folder's results.md and every plot it shows exist, written after results.json: then a bench whose
    evaluation is reused has nothing to write."""
    report = folder.path / "results.md"
    if not (report.is_file() and folder.results.is_file()):
        return False
    if report.stat().st_mtime_ns < folder.results.stat().st_mtime_ns:
        return False
    shown = re.findall(r"\]\(([^)\s]+\.png)\)", report.read_text(encoding="utf-8"))
    return all((folder.path / name).is_file() for name in shown)


def write_bench_report(
    results: Results,
    folder: RunFolder,
    *,
    train: dict[str, float],
    evaluate: dict[str, float],
    fingerprint: dict[str, str] | None = None,
) -> Path:
    """Plots, then results.json with `timing` and `fingerprint` (the mark of a finished evaluation, and what it was
    computed from), then results.md; all atomic."""
    start = time.perf_counter()
    plots = write_plots(results, folder.path)
    report_seconds = time.perf_counter() - start
    results["timing"] = {
        "train": train,
        "evaluate": evaluate,
        "report": report_seconds,
        "total": sum(train.values()) + sum(evaluate.values()) + report_seconds,
    }
    if fingerprint is not None:
        results["fingerprint"] = fingerprint
    write_json(folder.results, results)
    path = folder.path / "results.md"
    with atomic_path(path) as tmp:
        tmp.write_text(render_markdown(results, plots), encoding="utf-8")
    return path


def summary_line(result: BenchResult) -> str:
    """One line for the end of a bench: wall time, the best zero-shot row that is not a bound, and the report."""
    best = best_row(result.results)
    zs = result.results["methods"][best]["zero_shot"]["acc"] if best else None
    best_text = f"best zero-shot row {best} {zs['mean']:.2f} ± {ci_text(zs['ci95'])}" if zs else "no method rows"
    return (
        f"bench done in {clock(result.wall_seconds)} ({result.trained_units} trainings run"
        f"{', evaluation reused' if result.reused_evaluation else ''}); {best_text}; report: {result.report}"
    )
