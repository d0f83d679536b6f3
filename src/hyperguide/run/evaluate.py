"""Evaluating a run: every table row on the meta-test tasks of every seed and fold, into `results.json`.

A row is scored per (seed, fold) by `score_row` (zero-shot, then each k-shot setting fine-tuned from the very
zero-shot value the zero-shot column scored), and its scores are pooled over folds and summarised over seeds by
`summarize_row`. The evaluation is deterministic: run again, it gives the same file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from hyperguide.checkpoint import metadata_number, read_metadata
from hyperguide.config import RunConfig
from hyperguide.config.precision import precision
from hyperguide.data.batch import Questions
from hyperguide.data.splits import TaskSplit
from hyperguide.data.tasks import Task, Universe
from hyperguide.distributed import barrier, gather, world
from hyperguide.eval.controls import derangement, novelty, null_questions, shuffled_questions
from hyperguide.eval.fit import within_task_spread
from hyperguide.eval.metrics import METRICS
from hyperguide.eval.results import (
    PER_TASK,
    Controls,
    Curve,
    KShot,
    MetricSummaries,
    Novelty,
    Results,
    RowFit,
    RowResults,
    Summary,
    ZeroShot,
)
from hyperguide.eval.scoring import (
    Scores,
    add_scores,
    evaluate_method,
    k_shot_tasks,
    no_scores,
    task_count,
    zero_shot_phis,
    zero_shot_weights,
)
from hyperguide.eval.statistics import summarize
from hyperguide.events import Callback, RowEvaluated, RowStarted, emit
from hyperguide.io import write_json
from hyperguide.machine import machine_record
from hyperguide.meta.guided import GuidedMethod
from hyperguide.meta.methods import Method
from hyperguide.rows import Row, table_rows
from hyperguide.run.stages import StageContext
from hyperguide.run.train import splits_of, training_plan
from hyperguide.trained.folder import RunFolder
from hyperguide.trained.loading import LoadedRow, load_row
from hyperguide.trained.stage_table import DEFAULT_CHAIN, Chain, row_chain, row_stages, stage_config, stage_table

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
            out[setting] = no_scores()
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
    """One row's results.json entry from its per-seed scores (each pooled over folds): per setting and metric the
    mean over tasks per seed, summarised over seeds; the zero-shot per-task values; k-shot settings with tasks only."""
    k_shot: dict[str, KShot] = {}
    for k in k_shots:
        scored = [s[k] for s in per_seed if task_count(s.get(k, {}))]
        if scored:
            k_shot[k] = cast(KShot, {**summarize_metrics(scored), "tasks": task_count(scored[0])})
    zero_shot = summarize_metrics([s[None] for s in per_seed if task_count(s[None])])
    per_task = {f"{PER_TASK}{m}": [s[None][m] for s in per_seed] for m in METRICS}
    return {
        "zero_shot": cast(ZeroShot, {**zero_shot, **per_task}),
        "k_shot": k_shot,
        "uses_support_labels": uses_labels,
        "train_seconds": train_seconds,
    }


def question_controls(method: Method, tasks: Sequence[Task], config: RunConfig, device: str) -> dict[str, Scores]:
    """Zero-shot scores of the tasks asked with another task's question (`shuffled`) and with none (`null`)
    (`eval.controls`)."""
    batch = config.eval.batch_size
    return {
        "shuffled": evaluate_method(method, shuffled_questions(tasks), batch_size=batch, device=device),
        "null": evaluate_method(method, null_questions(tasks), batch_size=batch, device=device),
    }


@dataclass
class TrainingAdapters:
    """The meta-train tasks of one (seed, fold) as the run adapted them: their HNet latents (A, N, Lz) and the
    weights of their mean latents (N, P)."""

    latents: torch.Tensor
    weights: torch.Tensor


def training_adapters(
    tasks: list[Task],
    split: TaskSplit,
    config: RunConfig,
    folder: RunFolder,
    seed: int,
    device: str,
    chain: Chain = DEFAULT_CHAIN,
) -> TrainingAdapters | None:
    """The adapted meta-train tasks of (seed, fold) in `chain` (the row's), or None when the run has not collected
    them."""
    if chain != DEFAULT_CHAIN:
        config = stage_config(chain.base, config)
    ctx = StageContext(folder, seed, split, tasks, config, device, chain=chain)
    stems = (ctx.stem(chain.latents), ctx.stem(chain.base))
    if not all(stem.with_suffix(".json").is_file() for stem in stems):
        return None
    latents = ctx.load_latents().to(device)
    base = ctx.load_base().eval()
    questions = Questions.of([tasks[i] for i in split.train]).emb.to(device)
    with torch.no_grad():
        weights = base.weights(base.hypernet.hidden(latents.mean(0)), questions)
    return TrainingAdapters(latents, weights)


@torch.no_grad()
def generated_novelty(
    method: Method, tasks: Sequence[Task], training: TrainingAdapters, config: RunConfig, device: str
) -> dict[str, list[float]]:
    """Per meta-test task, how the row's zero-shot adapter stands to the training tasks' (`eval.controls.novelty`);
    the latent distance for rows that generate in a latent space."""
    method.eval()
    phi = zero_shot_phis(method, tasks, batch_size=config.eval.batch_size, device=device)
    weights = zero_shot_weights(method, tasks, phi, batch_size=config.eval.batch_size, device=device)
    if not isinstance(method, GuidedMethod):
        return novelty(method.shape, weights, training.weights, tasks, members=method.members)
    mean, logvar = method.space.from_hnet_latents(training.latents)
    return novelty(
        method.shape,
        weights,
        training.weights,
        tasks,
        members=method.members,
        latents=phi.reshape(len(tasks), method.members, -1)[:, 0],
        training_latents=mean.mean(0),
        within=within_task_spread(mean, logvar),
    )


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def summarize_metrics(per_seed: Sequence[Scores]) -> MetricSummaries:
    """Per registered metric, its mean over tasks per seed, summarised over seeds."""
    return {m: summarize([_mean(s[m]) for s in per_seed]) for m in METRICS}


def summarize_controls(real: Sequence[Scores], controls: Sequence[dict[str, Scores]], donors: int) -> Controls:
    """The controls' scores and, per seed, the real score minus each (the question effect: minus shuffled; the null
    effect: minus null), over seeds."""

    def minus(name: str) -> list[Scores]:
        return [{m: [_mean(r[m]) - _mean(c[name][m])] for m in METRICS} for r, c in zip(real, controls, strict=True)]

    return {
        "shuffled": summarize_metrics([c["shuffled"] for c in controls]),
        "null": summarize_metrics([c["null"] for c in controls]),
        "question_effect": summarize_metrics(minus("shuffled")),
        "null_effect": summarize_metrics(minus("null")),
        "shuffled_tasks": donors,
    }


def summarize_novelty(per_seed: Sequence[dict[str, list[float]]]) -> Novelty:
    """Per seed the median distance and the mean agreements and share of copies over tasks, over seeds."""

    def median(values: list[float]) -> float:
        return float(torch.tensor(values).median())

    out: Novelty = {
        "agreement_best": summarize([_mean(s["agreement_best"]) for s in per_seed]),
        "copies": summarize([_mean(s["copy"]) for s in per_seed]),
        "tasks": len(per_seed[0]["copy"]),
    }
    if "distance_in_spreads" in per_seed[0]:
        out["distance_in_spreads"] = summarize([median(s["distance_in_spreads"]) for s in per_seed])
        out["agreement_nearest"] = summarize([_mean(s["agreement_nearest"]) for s in per_seed])
    return out


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
    controls_per_seed: list[dict[str, Scores]] = []
    novelty_per_seed: list[dict[str, list[float]]] = []
    conditional = row.spec.reads_question and row.spec.build is not None
    train_seconds = 0.0
    donors = sum(d is not None for s in splits for d in derangement([tasks[i] for i in s.test]))
    for seed in config.seeds:
        pooled: dict[Setting, Scores] = {s: no_scores() for s in settings}
        fit = no_scores()
        controls = {c: no_scores() for c in ("shuffled", "null")}
        new: dict[str, list[float]] = {}
        for split in splits:
            loaded = None
            if row.spec.build is not None:
                loaded = load_row(row, tasks, config, folder, seed, split.fold, data)
                train_seconds += loaded.train_seconds
            test = [tasks[i] for i in split.test]
            scores = score_row(row, loaded, test, settings, config, seed, device)
            for setting, s in scores.items():
                add_scores(pooled[setting], s)
            if conditional and loaded is not None:
                for name, c in question_controls(loaded.method, test, config, device).items():
                    add_scores(controls[name], c)
                adapters = training_adapters(tasks, split, config, folder, seed, device, row_chain(row.spec))
                if adapters is not None and not loaded.method.uses_support_for_zero_shot:
                    for key, values in generated_novelty(loaded.method, test, adapters, config, device).items():
                        new.setdefault(key, []).extend(values)
            if loaded is not None and not loaded.method.uses_support_for_zero_shot:
                own = [tasks[i] for i in split.train]
                add_scores(fit, evaluate_method(loaded.method, own, batch_size=config.eval.batch_size, device=device))
        per_seed.append(pooled)
        if task_count(fit):
            fit_per_seed.append(fit)
        if task_count(controls["shuffled"]):
            controls_per_seed.append(controls)
        if new:
            novelty_per_seed.append(new)
    results = summarize_row(per_seed, config.eval.k_shots, row.spec.labels_used(config), train_seconds)
    if len(controls_per_seed) == len(per_seed):
        results["controls"] = summarize_controls([s[None] for s in per_seed], controls_per_seed, donors)
    if novelty_per_seed and len(novelty_per_seed) == len(per_seed):
        results["novelty"] = summarize_novelty(novelty_per_seed)
    if not fit_per_seed:
        return results, None
    return results, cast(RowFit, {**summarize_metrics(fit_per_seed), "tasks": task_count(fit_per_seed[0])})


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
        spec = stage_table().get(name)
        if spec is None or not spec.fit:
            continue
        per_seed: dict[str, list[float]] = {key: [] for key in spec.fit_keys}
        for seed in config.seeds:
            stems = [
                stem for split in splits if (stem := folder.stem(name, seed, split.fold)).with_suffix(".json").is_file()
            ]
            metas = [(stem, read_metadata(stem)) for stem in stems]
            for key in spec.fit_keys:
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
        spec = stage_table().get(name)
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
    """Evaluate every row of the run on every seed and fold; write and return results.json. Under torchrun the rows
    are shared out among the processes, and every process returns the whole results (the main one writes them)."""
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
    if config.split == "concepts" and config.tune_folds is None:  # which tasks of test_tasks each fold held out
        results["concept_folds"] = [
            {"concept": c, "tasks": len(s.test)} for c, s in zip(config.held_out, splits, strict=True)
        ]
    rows = table_rows(config)
    processes = world()
    results["machine"] = machine_record(device, config.precision, processes.size)
    evaluated: dict[str, tuple[RowResults, RowFit | None, float]] = {}
    with precision(config.precision, device):
        for i, row in enumerate(rows):
            if i % processes.size != processes.rank:  # under torchrun: the rows are dealt out to the processes
                continue
            emit(callbacks, RowStarted(row.name))
            start = time.perf_counter()
            scores, fit = evaluate_row(row, tasks, splits, config, folder, device, data)
            evaluated[row.name] = (scores, fit, time.perf_counter() - start)
            emit(callbacks, RowEvaluated(row.name, evaluated[row.name][2]))
    if processes.size > 1:  # every row is seeded from its own identity: where it was evaluated does not matter
        mine = set(evaluated)
        for share_of in gather(evaluated):
            evaluated.update(share_of)
        for name, (_, _, seconds) in evaluated.items():
            if name not in mine:
                emit(callbacks, RowEvaluated(name, seconds))
    fit_rows: dict[str, RowFit] = {}
    for row in rows:
        results["methods"][row.name], fit, _ = evaluated[row.name]
        if fit is not None:
            fit_rows[row.name] = fit
    results["diagnostics"] = diagnostics(folder, config, splits)
    results["fit"] = {
        "rows": fit_rows,
        "stages": stage_fit(folder, config, splits),
        "curves": fit_curves(folder, config, splits),
    }
    if processes.main:
        write_json(folder.results, results)
    barrier()
    return results
