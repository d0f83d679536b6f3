"""The schema of `results.json`, typed: what `run.evaluate` writes and the report, the bench and `generate` read.

    {"universe", "split", "folds", "seeds", "test_tasks",
     "methods": {row: {"zero_shot": {metric: Summary, "per_task_<metric>": [[per task] per seed]},
                       "k_shot": {k: {metric: Summary, "tasks": n}},
                       "uses_support_labels": bool, "train_seconds": float,
                       "controls": {"shuffled", "null", "question_effect", "null_effect": {metric: Summary},
                                    "shuffled_tasks": n},                       # rows that read the question
                       "novelty": {"agreement_best", "copies", "distance_in_spreads", "agreement_nearest": Summary,
                                   "tasks": n}}},
     "diagnostics": {name: {...}},
     "fit": {"rows": {row: {metric: Summary, "tasks": n}},                       # zero-shot on meta-train tasks
             "stages": {stage: {measure: Summary}},                               # each stage's own fit measures
             "curves": {stage: {measure: [{"seed", "fold", "step": [..], "value": [..]}]}}},   # fit over training
     "concept_folds": [{"concept", "tasks"}],                                     # split concepts only
     "machine": {"cpu", "cores", "threads", "processes", "device", "precision", "torch", "python", "platform"},
     "timing": {"train": {stage: s}, "evaluate": {row: s}, "report": s, "total": s},   # a finished bench only
     "fingerprint": {"config": sha256, "data": sha256, "checkpoints": sha256}}           # a finished bench only

A Summary is {"mean", "ci95", "per_seed"}: per-seed values (each a mean over meta-test tasks), their mean and the
half-width of their 95% Student-t interval (null with one seed: it does not exist). Accuracies are in percent.

A metric is one of the registry `eval.metrics.METRICS`, in its order: `acc` and `bal_acc`, which every results.json
has, then any other registered when the file was written. The reader checks and the report shows the metrics a file
has (`metrics_of`), not those registered now: a file without a newer metric, or with one no longer registered, reads
and renders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from hyperguide.errors import HyperguideError
from hyperguide.io import read_json
from hyperguide.machine import Machine

REQUIRED_METRICS = ("acc", "bal_acc")  # every results.json has them; the report's headline and Δ are taken on them
PER_TASK = "per_task_"  # a metric's zero-shot values per seed and meta-test task: per_task_<metric>
RESERVED_KEYS = ("tasks",)  # what sits beside the metrics in a k-shot entry and a fit row


class Summary(TypedDict):
    mean: float
    ci95: float | None  # None (null) below two seeds: the interval does not exist
    per_seed: list[float]


MetricSummaries = dict[str, Summary]  # {metric: Summary}


class ZeroShot(TypedDict):
    """A Summary per metric and its values per seed and meta-test task (`per_task_<metric>`). The required metrics
    are declared; each other metric adds its two keys of the same kind."""

    acc: Summary
    bal_acc: Summary
    per_task_acc: list[list[float]]  # [seed][meta-test task]
    per_task_bal_acc: NotRequired[list[list[float]]]  # [seed][meta-test task]


class KShot(TypedDict):
    """A Summary per metric (the required ones declared, the others alike) and the tasks scored."""

    acc: Summary
    bal_acc: Summary
    tasks: int  # meta-test tasks that have k support examples for at least two answers


class Controls(TypedDict):
    """A question-reading row's zero-shot scores with another task's question and with none (`eval.controls`), and
    the real score minus each, per seed, over seeds."""

    shuffled: MetricSummaries
    null: MetricSummaries
    question_effect: MetricSummaries  # real - shuffled
    null_effect: MetricSummaries  # real - null
    shuffled_tasks: int  # meta-test tasks (over folds) that took another task's question; the others took none


class Novelty(TypedDict):
    """How a row's zero-shot adapters stand to the training tasks' adapters (`eval.controls.novelty`), over seeds."""

    agreement_best: Summary  # % of query answers shared with the most agreeing training adapter (mean over tasks)
    copies: Summary  # % of meta-test tasks whose adapter answers exactly like some training adapter
    tasks: int
    distance_in_spreads: NotRequired[Summary]  # median over tasks; latent-space rows
    agreement_nearest: NotRequired[Summary]  # with the adapter of the nearest training latent; latent-space rows


class RowResults(TypedDict):
    zero_shot: ZeroShot
    k_shot: dict[str, KShot]
    uses_support_labels: bool
    train_seconds: float
    controls: NotRequired[Controls]  # rows that read the question
    novelty: NotRequired[Novelty]  # rows that read the question, in a run with collected latents


class RowFit(TypedDict):
    """A row's zero-shot procedure on the meta-train tasks it was trained on (their questions, their query sets): a
    Summary per metric (the required ones declared, the others alike) and the tasks scored."""

    acc: Summary
    bal_acc: Summary
    tasks: int  # meta-train tasks per seed (over all folds)


class Curve(TypedDict):
    """A stage's fit measure over its training, for one seed and fold (metrics.jsonl's `fit_*` records)."""

    seed: int
    fold: int
    step: list[int]
    value: list[float]


class Fit(TypedDict):
    rows: dict[str, RowFit]
    stages: dict[str, dict[str, Summary]]
    curves: NotRequired[dict[str, dict[str, list[Curve]]]]  # stage -> measure -> one curve per seed and fold


class Timing(TypedDict):
    train: dict[str, float]
    evaluate: dict[str, float]
    report: float
    total: float


class ConceptFold(TypedDict):
    """A fold of the `concepts` split: the concept it held out and how many of `test_tasks` (in fold order) it
    tested on."""

    concept: str
    tasks: int


class Headline(TypedDict):
    """The rows a report puts forward and how they were chosen (`report.headline`): picked on a tune run's folds of
    the meta-train tasks (`chosen_on`; None: nothing chose them, and they are None), with their scores there; the
    meta-test maximum apart (`best_case`)."""

    guidance: str | None
    baseline: str | None
    paper_baseline: str | None
    measure: str
    chosen_on: str | None
    tune_scores: dict[str, float]
    best_case: dict[str, str | None]


class Results(TypedDict):
    universe: str
    split: str
    folds: int
    tune_folds: NotRequired[int | None]  # set: the "meta-test" tasks are folds of the split's meta-train tasks
    seeds: list[int]
    test_tasks: list[str]
    methods: dict[str, RowResults]
    diagnostics: dict[str, Any]
    fit: NotRequired[Fit]
    concept_folds: NotRequired[list[ConceptFold]]  # split `concepts`: the folds, in the order of test_tasks
    machine: NotRequired[Machine]  # where the evaluation ran (hyperguide.machine); absent in older files
    headline: NotRequired[Headline]  # the report's guidance row and baseline, chosen without meta-test
    timing: NotRequired[Timing]
    fingerprint: NotRequired[dict[str, str]]  # what a finished bench evaluated: config, data, checkpoints


_REQUIRED = {
    "": ("universe", "split", "folds", "seeds", "test_tasks", "methods"),
    "row": ("zero_shot", "k_shot", "uses_support_labels"),
    "zero_shot": (*REQUIRED_METRICS, "per_task_acc"),
    "k_shot": (*REQUIRED_METRICS, "tasks"),
    "summary": ("mean", "ci95", "per_seed"),
}


def metric_keys(node: Mapping[str, Any]) -> list[str]:
    """The metrics of a node of results.json that holds a Summary per metric (a zero-shot or k-shot entry, a fit
    row, a control), in its order: its keys but the per-task values and the task count."""
    return [k for k in node if k not in RESERVED_KEYS and not k.startswith(PER_TASK)]


def metrics_of(results: Mapping[str, Any]) -> list[str]:
    """The metrics a results.json (or a task report) has: those of its rows' zero-shot entries, in their order."""
    return list(dict.fromkeys(m for entry in results["methods"].values() for m in metric_keys(entry["zero_shot"])))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_results(path: str | Path) -> Results:
    """A results.json, checked for the keys every reader relies on and for their numbers (finite; a CI >= 0 or
    null); a missing key or a bad value is named."""
    data = read_json(path, what="results")

    def need(node: Any, kind: str, where: str) -> None:
        if not isinstance(node, dict):
            raise HyperguideError(f"{path}: {where or 'the file'} must be a JSON object")
        missing = [k for k in _REQUIRED[kind] if k not in node]
        if missing:
            raise HyperguideError(f"{path}: {where or 'the file'} lacks {', '.join(map(repr, missing))}")

    def check(ok: bool, where: str, what: str, value: Any) -> None:
        if not ok:
            raise HyperguideError(f"{path}: {where} must be {what}, got {value!r}")

    def summary(node: Any, where: str) -> None:
        need(node, "summary", where)
        check(_number(node["mean"]), f"{where}.mean", "a finite number", node["mean"])
        ci = node["ci95"]
        check(ci is None or (_number(ci) and ci >= 0), f"{where}.ci95", "a finite number >= 0 or null", ci)
        seeds = node["per_seed"]
        check(isinstance(seeds, list) and all(map(_number, seeds)), f"{where}.per_seed", "finite numbers", seeds)

    need(data, "", "")
    check(isinstance(data["methods"], dict), "methods", "an object {row: results}", data["methods"])
    for row, entry in data["methods"].items():
        where = f"methods[{row!r}]"
        need(entry, "row", where)
        zero_shot = entry["zero_shot"]
        need(zero_shot, "zero_shot", f"{where}.zero_shot")
        for metric in metric_keys(zero_shot):
            summary(zero_shot[metric], f"{where}.zero_shot.{metric}")
        for key in (k for k in zero_shot if k.startswith(PER_TASK)):
            per_task = zero_shot[key]
            ok = isinstance(per_task, list) and all(isinstance(s, list) and all(map(_number, s)) for s in per_task)
            check(ok, f"{where}.zero_shot.{key}", "lists of finite numbers (per seed, per task)", per_task)
        check(isinstance(entry["k_shot"], dict), f"{where}.k_shot", "an object {k: results}", entry["k_shot"])
        for k, shot in entry["k_shot"].items():
            need(shot, "k_shot", f"{where}.k_shot[{k!r}]")
            for metric in metric_keys(shot):
                summary(shot[metric], f"{where}.k_shot[{k!r}].{metric}")
    folds = data.get("concept_folds", [])
    ok = isinstance(folds, list) and all(
        isinstance(f, dict) and isinstance(f.get("concept"), str) and isinstance(f.get("tasks"), int)
        and not isinstance(f.get("tasks"), bool) and f["tasks"] >= 1
        for f in folds
    )  # fmt: skip
    check(ok, "concept_folds", "a list of {concept: text, tasks: integer >= 1}", folds)
    machine = data.get("machine", {})
    check(isinstance(machine, dict), "machine", "an object", machine)
    headline = data.get("headline")
    if headline is not None:
        keys = ("guidance", "baseline", "paper_baseline", "chosen_on")
        ok = isinstance(headline, dict) and all(isinstance(headline.get(k, 0), str | None) for k in keys)
        ok = ok and isinstance(headline.get("best_case"), dict) and isinstance(headline.get("tune_scores"), dict)
        check(ok, "headline", "an object {guidance, baseline, paper_baseline, chosen_on: text or null, ...}", headline)
    data.setdefault("diagnostics", {})
    return data
