"""Your own tasks evaluated: a trained run's rows scored on a task file's prepared features (`run.task_features`)
with the main evaluation's machinery (`hyperguide tasks eval`; docs/own-tasks.md).

    from hyperguide.run.task_eval import evaluate_tasks, write_task_report
    results = evaluate_tasks("runs/easyvqa-random", features)     # a TaskResults dict
    write_task_report(results, "wording-report")                 # results.json, results.md

`evaluate_tasks` scores, for every seed and fold of the run, each question-conditioned row (plus `chance`, and
`majority` when every task has support examples) with `run.evaluate.score_row`: zero-shot on every task, and
each of the run's k-shot settings on the tasks with enough support examples. Each fold's model scores every task
(none of them is a meta-train task of any fold); a task's score for a seed is the mean over the folds' models, and the
rows are summarised over seeds by `run.evaluate.summarize_row`, as in the main results.json. Checkpoints are
loaded by `trained.loading.load_row` with their fingerprints checked, the data's being the prepared universe's. The
report is written only where no run's files are (`check_report_dir`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hyperguide.config import RunConfig
from hyperguide.config.precision import precision
from hyperguide.data.tasks import Task
from hyperguide.errors import HyperguideError
from hyperguide.eval.metrics import METRICS
from hyperguide.eval.results import PER_TASK, RowResults, metric_keys
from hyperguide.eval.scoring import Scores
from hyperguide.eval.statistics import summarize
from hyperguide.events import Callback, RowEvaluated, RowStarted, emit
from hyperguide.io import atomic_path, write_json
from hyperguide.machine import machine_record
from hyperguide.report.task_report import KindResults, TaskInfo, TaskResults, render_task_report
from hyperguide.rows import Row, table_rows
from hyperguide.run.evaluate import Setting, score_row, summarize_row
from hyperguide.run.task_features import json_object, read_task_features, refuse_run_folder
from hyperguide.trained.folder import RESULTS, RunFolder, run_folds
from hyperguide.trained.loading import load_row

REPORT_KEYS = ("features", "task_file", "folds_combined", "by_kind")  # keys only a task report's results.json has
FOLDS_COMBINED = "every fold's model scores every task; a task's score per seed is the mean over the folds"


def default_report_dir(features_dir: str | Path, run_dir: str | Path) -> Path:
    """`<stem>-<run>-report` beside the features folder (`wording.features` and run `R`: `wording-R-report`)."""
    features = Path(features_dir)
    stem = features.name.removesuffix(".features")
    return features.parent / f"{stem}-{Path(run_dir).resolve().name}-report"


# ------------------------------------------------------------------------------------------------------ evaluate


def task_rows(
    config: RunConfig, names: Sequence[str] | None, tasks: Sequence[Task], run: Path
) -> tuple[list[Row], dict[str, str]]:
    """The rows to evaluate and the rows of the run left out, with why. By default every question-conditioned row
    and `chance`; a row that uses support labels (`majority`) only when every task has support examples. `names`
    chooses rows of the run's table (a sweeping method's name stands for all its rows)."""
    table = table_rows(config)
    supported = all(len(t.support_y) > 0 for t in tasks)
    no_support = "it uses support labels, and some tasks have no support example"
    if names is not None:
        chosen: list[Row] = []
        for name in names:
            matched = [r for r in table if name in (r.name, r.spec.name)]
            if not matched:
                raise HyperguideError(
                    f"{name!r} is not a row of run {run}; its rows: {', '.join(r.name for r in table)}"
                )
            for row in matched:
                if row.spec.labels_used(config) and not supported:
                    raise HyperguideError(f"row {row.name!r}: {no_support}")
            chosen += [r for r in matched if r not in chosen]
        return chosen, {}
    chosen, skipped = [], {}
    for row in table:
        if row.spec.build is not None and not row.spec.reads_question:
            skipped[row.name] = "it does not read the question"
        elif row.spec.labels_used(config) and not supported:
            skipped[row.name] = no_support
        else:
            chosen.append(row)
    return chosen, skipped


def _mean_over_folds(scores: Sequence[Scores]) -> Scores:
    return {
        metric: [sum(column) / len(column) for column in zip(*(s[metric] for s in scores), strict=True)]
        for metric in METRICS
    }


def evaluate_task_row(
    row: Row,
    tasks: list[Task],
    config: RunConfig,
    folder: RunFolder,
    data: str | None,
    device: str = "cpu",
) -> RowResults:
    """One row on the tasks, over the run's seeds and folds (each fold's model on every task, averaged per task)."""
    wants_k = not config.eval.k_shot_methods or row.name in config.eval.k_shot_methods
    has_support = any(len(t.support_y) > 0 for t in tasks)
    settings: list[Setting] = [None, *(config.eval.k_shots if wants_k and has_support else ())]
    folds = run_folds(config) if row.spec.build is not None else [0]
    per_seed = []
    seconds = 0.0
    for seed in config.seeds:
        by_fold = []
        for fold in folds:
            loaded = None
            if row.spec.build is not None:
                loaded = load_row(row, tasks, config, folder, seed, fold, data)
                seconds += loaded.train_seconds
            by_fold.append(score_row(row, loaded, tasks, settings, config, seed, device))
        per_seed.append({s: _mean_over_folds([scores[s] for scores in by_fold]) for s in settings})
    return summarize_row(per_seed, config.eval.k_shots, row.spec.labels_used(config), seconds)


def _by_kind(infos: Sequence[TaskInfo], methods: Mapping[str, RowResults]) -> dict[str, KindResults]:
    out: dict[str, KindResults] = {}
    for kind in dict.fromkeys(info["kind"] for info in infos):
        index = [i for i, info in enumerate(infos) if info["kind"] == kind]
        out[kind] = {"tasks": len(index), "methods": {}}
        for row, entry in methods.items():
            zero_shot: Mapping[str, Any] = entry["zero_shot"]
            out[kind]["methods"][row] = {
                m: summarize([sum(seed[i] for i in index) / len(index) for seed in zero_shot[f"{PER_TASK}{m}"]])
                for m in metric_keys(zero_shot)
            }
    return out


def evaluate_tasks(
    run_dir: str | Path,
    features_dir: str | Path,
    *,
    methods: Sequence[str] | None = None,
    device: str = "cpu",
    callbacks: Sequence[Callback] = (),
) -> TaskResults:
    """Evaluate the run's rows (`task_rows`) on the prepared tasks of `features_dir`; returns the report's dict."""
    folder = RunFolder(Path(run_dir))
    config = folder.read_config()
    manifest, infos, tasks = read_task_features(features_dir)
    for key in ("universe", "prompts"):
        if manifest[key] != getattr(config, key):
            raise HyperguideError(
                f"the features in {features_dir} were prepared for {key} {manifest[key]!r}, but run {folder.path} "
                f"has {key} {getattr(config, key)!r}: prepare them with --run {folder.path}"
            )
    rows, skipped = task_rows(config, methods, tasks, folder.path)
    results: dict[str, RowResults] = {}
    with precision(config.precision, device):
        for row in rows:
            emit(callbacks, RowStarted(row.name))
            start = time.perf_counter()
            results[row.name] = evaluate_task_row(row, tasks, config, folder, manifest["data"], device)
            emit(callbacks, RowEvaluated(row.name, time.perf_counter() - start))
    return {
        "run": str(folder.path),
        "universe": config.universe,
        "split": config.split,
        "features": str(features_dir),
        "task_file": manifest["task_file"],
        "task_file_sha256": str(manifest.get("task_file_sha256", "")),
        "seeds": list(config.seeds),
        "folds": len(run_folds(config)),
        "folds_combined": FOLDS_COMBINED,
        "test_tasks": [info["question"] for info in infos],
        "tasks": infos,
        "methods": results,
        "by_kind": _by_kind(infos, results),
        "skipped": skipped,
        "machine": machine_record(device, config.precision),
    }


def check_report_dir(out_dir: str | Path) -> Path:
    """`out_dir` if a task report may be written there: a folder (or nothing yet) that holds no run (a config.json)
    and no results.json other than an earlier task report's (which is replaced); else a `HyperguideError`."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise HyperguideError(f"--out {out} is a file, not a folder: give a folder for the report")
    refuse_run_folder(out, f"the task report would replace the run's {RESULTS} and results.md")
    if (out / RESULTS).exists() and not all(key in (json_object(out / RESULTS) or {}) for key in REPORT_KEYS):
        raise HyperguideError(
            f"--out {out} holds a {RESULTS} that is not a task report of `hyperguide tasks eval` (a run's "
            "evaluation?): the report would replace it; give a new folder, or one an earlier `tasks eval` wrote"
        )
    return out


def write_task_report(results: TaskResults, out_dir: str | Path) -> Path:
    """`out_dir/results.json` and `out_dir/results.md` (`out_dir` checked by `check_report_dir` first); returns the
    folder."""
    out = check_report_dir(out_dir)
    write_json(out / "results.json", results)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(render_task_report(results), encoding="utf-8")
    return out
