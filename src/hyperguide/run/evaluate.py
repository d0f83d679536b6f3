"""Evaluating a run: every table row on the meta-test tasks of every seed and fold, into `results.json`.

A row is scored per (seed, fold) by `score_row` (zero-shot, then each k-shot setting fine-tuned from the very
zero-shot value the zero-shot column scored), and its scores are pooled over folds and summarised over seeds by
`summarize_row`. The evaluation is deterministic: run again, it gives the same file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import torch

from hyperguide.checkpoint import metadata_number, read_metadata
from hyperguide.config import RunConfig
from hyperguide.data.splits import TaskSplit
from hyperguide.data.tasks import Task, Universe
from hyperguide.eval.evaluate import Scores, evaluate_method, k_shot_tasks, zero_shot_phis
from hyperguide.eval.results import Curve, KShot, Results, RowFit, RowResults, Summary
from hyperguide.eval.stats import summarize
from hyperguide.events import Callback, RowEvaluated, RowStarted, emit
from hyperguide.io import write_json
from hyperguide.rows import Row, table_rows
from hyperguide.run.folder import RunFolder
from hyperguide.run.stages import STAGES, LoadedRow, load_row, row_stages
from hyperguide.run.train import splits_of, training_plan

Setting = str | None  # None: zero-shot; "1", "2", ..., "full": k-shot


def _k(setting: str) -> int | None:
    return None if setting == "full" else int(setting)


def score_row(
    row: Row,
    loaded: LoadedRow | None,
    tasks: Sequence[Task],
    settings: Sequence[Setting],
    config: RunConfig,
    seed: int,
    device: str = "cpu",
) -> dict[Setting, Scores]:
    """Per-task scores of one (seed, fold) of a row on its meta-test `tasks`, for each setting. `loaded` is the
    row's trained model (None for a row that makes no weights). A question-only zero-shot value is computed once
    and every k-shot setting fine-tunes from it."""
    method = None if loaded is None else loaded.method.to(device)
    zero_shot = None
    if method is not None and not method.uses_support_for_zero_shot:
        zero_shot = zero_shot_phis(method, tasks, batch_size=config.eval.batch_size, device=device)
    out: dict[Setting, Scores] = {}
    for setting in settings:
        if setting is None:
            kept, chosen = list(range(len(tasks))), list(tasks)
        else:
            k = _k(setting)
            kept, chosen = k_shot_tasks(tasks, k, seed=1000 * seed + (k or 0))
        if not chosen:
            out[setting] = {"acc": [], "bal_acc": []}
        elif method is None:
            assert row.spec.score is not None
            out[setting] = row.spec.score(chosen)
        else:
            out[setting] = evaluate_method(
                method,
                chosen,
                finetune=None if setting is None else config.eval.finetune,
                start=None if zero_shot is None else zero_shot[torch.tensor(kept)],
                batch_size=config.eval.batch_size,
                device=device,
            )
    return out


def summarize_row(
    per_seed: Sequence[dict[Setting, Scores]], k_shots: Sequence[str], uses_labels: bool, train_seconds: float
) -> RowResults:
    """One row's results.json entry from its per-seed scores (each pooled over folds): per setting the mean over
    tasks per seed, summarised over seeds; the zero-shot per-task accuracies; k-shot settings with tasks only."""

    def means(setting: Setting, metric: str) -> list[float]:
        return [sum(s[setting][metric]) / len(s[setting][metric]) for s in per_seed if s[setting][metric]]

    k_shot: dict[str, KShot] = {}
    for k in k_shots:
        if any(s.get(k, {}).get("acc") for s in per_seed):
            tasks = next(len(s[k]["acc"]) for s in per_seed if s[k]["acc"])
            k_shot[k] = {"acc": summarize(means(k, "acc")), "bal_acc": summarize(means(k, "bal_acc")), "tasks": tasks}
    return {
        "zero_shot": {
            "acc": summarize(means(None, "acc")),
            "bal_acc": summarize(means(None, "bal_acc")),
            "per_task_acc": [s[None]["acc"] for s in per_seed],
            "per_task_bal_acc": [s[None]["bal_acc"] for s in per_seed],
        },
        "k_shot": k_shot,
        "uses_support_labels": uses_labels,
        "train_seconds": train_seconds,
    }


def evaluate_row(
    row: Row,
    tasks: list[Task],
    splits: Sequence[TaskSplit],
    config: RunConfig,
    folder: RunFolder,
    device: str = "cpu",
    data: str | None = None,
) -> tuple[RowResults, RowFit | None]:
    """A row's results over every seed and fold (the folds' meta-test tasks pooled per seed), and its fit: the same
    zero-shot procedure on the meta-train tasks it was trained on (their questions, scored on their query sets), for
    a row that makes weights without labels (None for the others). `data` is the universe's fingerprint that every
    checkpoint must have been trained on (None: not checked)."""
    wants_k = not config.eval.k_shot_methods or row.name in config.eval.k_shot_methods
    settings: list[Setting] = [None, *(config.eval.k_shots if wants_k else ())]
    per_seed: list[dict[Setting, Scores]] = []
    fit_per_seed: list[Scores] = []
    train_seconds = 0.0
    for seed in config.seeds:
        pooled: dict[Setting, Scores] = {s: {"acc": [], "bal_acc": []} for s in settings}
        fit: Scores = {"acc": [], "bal_acc": []}
        for split in splits:
            loaded = None
            if row.spec.build is not None:
                loaded = load_row(row, tasks, config, folder, seed, split.fold, data)
                train_seconds += loaded.train_seconds
            scores = score_row(row, loaded, [tasks[i] for i in split.test], settings, config, seed, device)
            for setting, s in scores.items():
                pooled[setting]["acc"].extend(s["acc"])
                pooled[setting]["bal_acc"].extend(s["bal_acc"])
            if loaded is not None and not loaded.method.uses_support_for_zero_shot:
                own = [tasks[i] for i in split.train]
                scored = evaluate_method(loaded.method, own, batch_size=config.eval.batch_size, device=device)
                fit["acc"].extend(scored["acc"])
                fit["bal_acc"].extend(scored["bal_acc"])
        per_seed.append(pooled)
        if fit["acc"]:
            fit_per_seed.append(fit)
    results = summarize_row(per_seed, config.eval.k_shots, row.spec.labels_used(config), train_seconds)
    if not fit_per_seed:
        return results, None
    return results, {
        "acc": summarize([sum(f["acc"]) / len(f["acc"]) for f in fit_per_seed]),
        "bal_acc": summarize([sum(f["bal_acc"]) / len(f["bal_acc"]) for f in fit_per_seed]),
        "tasks": len(fit_per_seed[0]["acc"]),
    }


def fit_curves(folder: RunFolder, config: RunConfig, splits: Sequence[TaskSplit]) -> dict[str, dict[str, list[Curve]]]:
    """Every training stage's fit probes from its metrics.jsonl (records with `fit_*` keys), per measure, one curve
    (steps and values) per seed and fold."""
    out: dict[str, dict[str, list[Curve]]] = {}
    for name in training_plan(config):
        for seed in config.seeds:
            for split in splits:
                path = folder.metrics(name, seed, split.fold)
                if not path.is_file():
                    continue
                curves: dict[str, Curve] = {}
                for line in path.read_text(encoding="utf-8").splitlines():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:  # a last line cut by a crash
                        continue
                    for key, value in record.items():
                        if key.startswith("fit_") and isinstance(value, int | float):
                            curve = curves.setdefault(key, {"seed": seed, "fold": split.fold, "step": [], "value": []})
                            curve["step"].append(int(record.get("step", 0)))
                            curve["value"].append(float(value))
                for key, curve in curves.items():
                    out.setdefault(name, {}).setdefault(key, []).append(curve)
    return out


def stage_fit(folder: RunFolder, config: RunConfig, splits: Sequence[TaskSplit]) -> dict[str, dict[str, Summary]]:
    """Each stage's fit measurements (`StageSpec.fit`, recorded in its checkpoints' metadata), summarised over
    seeds (folds averaged within a seed), for the stages of the run whose checkpoints exist."""
    out: dict[str, dict[str, Summary]] = {}
    for name in row_stages(table_rows(config)):
        spec = STAGES.get(name)
        if spec is None or not spec.fit:
            continue
        per_seed: dict[str, list[float]] = {key: [] for key in spec.fit}
        for seed in config.seeds:
            stems = [
                stem for split in splits if (stem := folder.stem(name, seed, split.fold)).with_suffix(".json").is_file()
            ]
            metas = [(stem, read_metadata(stem)) for stem in stems]
            for key in spec.fit:
                values = [metadata_number(m, key, stem) for stem, m in metas if key in m]
                if values:
                    per_seed[key].append(sum(values) / len(values))
        summaries = {key: summarize(values) for key, values in per_seed.items() if values}
        if summaries:
            out[name] = summaries
    return out


def diagnostics(folder: RunFolder, config: RunConfig, splits: Sequence[TaskSplit]) -> dict[str, Any]:
    """The stages' diagnostics (HyperCLIP's task identification), each summarised over seeds, for the stages of
    the run whose checkpoints exist."""
    out: dict[str, Any] = {}
    for name in row_stages(table_rows(config)):
        spec = STAGES.get(name)
        if spec is None or spec.diagnostic is None:
            continue
        d = spec.diagnostic
        per_seed: dict[str, list[float]] = {"train": [], "test": []}
        for seed in config.seeds:
            values: dict[str, list[float]] = {"train": [], "test": []}
            for split in splits:
                stem = folder.stem(name, seed, split.fold)
                if stem.with_suffix(".json").is_file():
                    meta = read_metadata(stem)
                    values["train"].append(metadata_number(meta, d.train, stem))
                    values["test"].append(metadata_number(meta, d.test, stem))
            for key, v in values.items():
                if v:
                    per_seed[key].append(sum(v) / len(v))
        if per_seed["train"]:
            out[f"{name}_{d.key}"] = {
                **d.extra(config),
                "train": summarize(per_seed["train"]),
                "test": summarize(per_seed["test"]),
            }
    return out


def evaluate_run(
    universe: Universe, folder: RunFolder, *, device: str = "cpu", callbacks: Sequence[Callback] = ()
) -> Results:
    """Evaluate every row of the run on every seed and fold; write and return results.json."""
    config = folder.read_config()
    tasks = universe.materialize(range(len(universe.tasks)))
    splits = splits_of(universe, config)
    data = universe.fingerprint()
    results: Results = {
        "universe": config.universe,
        "split": config.split,
        "folds": len(splits),
        "tune_folds": config.tune_folds,
        "seeds": list(config.seeds),
        "test_tasks": [universe.tasks[i].question for s in splits for i in s.test],
        "methods": {},
        "diagnostics": {},
    }
    fit_rows: dict[str, RowFit] = {}
    for row in table_rows(config):
        emit(callbacks, RowStarted(row.name))
        start = time.perf_counter()
        results["methods"][row.name], fit = evaluate_row(row, tasks, splits, config, folder, device, data)
        if fit is not None:
            fit_rows[row.name] = fit
        emit(callbacks, RowEvaluated(row.name, time.perf_counter() - start))
    results["diagnostics"] = diagnostics(folder, config, splits)
    results["fit"] = {
        "rows": fit_rows,
        "stages": stage_fit(folder, config, splits),
        "curves": fit_curves(folder, config, splits),
    }
    write_json(folder.results, results)
    return results
