"""The schema of `results.json`, typed: what `run.evaluate` writes and the report, the bench and `generate` read.

    {"universe", "split", "folds", "seeds", "test_tasks",
     "methods": {row: {"zero_shot": {"acc": Summary, "bal_acc": Summary, "per_task_acc": [[per task] per seed]},
                       "k_shot": {k: {"acc": Summary, "bal_acc": Summary, "tasks": n}},
                       "uses_support_labels": bool, "train_seconds": float}},
     "diagnostics": {name: {...}},
     "timing": {"train": {stage: s}, "evaluate": {row: s}, "report": s, "total": s},   # a finished bench only
     "fingerprint": {"config": sha256, "data": sha256, "checkpoints": sha256}}           # a finished bench only

A Summary is {"mean", "ci95", "per_seed"}: per-seed values (each a mean over meta-test tasks), their mean and the
half-width of their 95% Student-t interval. Accuracies are in percent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NotRequired, TypedDict

from hyperguide.errors import HyperguideError
from hyperguide.io import read_json


class Summary(TypedDict):
    mean: float
    ci95: float
    per_seed: list[float]


class ZeroShot(TypedDict):
    acc: Summary
    bal_acc: Summary
    per_task_acc: list[list[float]]  # [seed][meta-test task]


class KShot(TypedDict):
    acc: Summary
    bal_acc: Summary
    tasks: int  # meta-test tasks that have k support examples for at least two answers


class RowResults(TypedDict):
    zero_shot: ZeroShot
    k_shot: dict[str, KShot]
    uses_support_labels: bool
    train_seconds: float


class Timing(TypedDict):
    train: dict[str, float]
    evaluate: dict[str, float]
    report: float
    total: float


class Results(TypedDict):
    universe: str
    split: str
    folds: int
    seeds: list[int]
    test_tasks: list[str]
    methods: dict[str, RowResults]
    diagnostics: dict[str, Any]
    timing: NotRequired[Timing]
    fingerprint: NotRequired[dict[str, str]]  # what a finished bench evaluated: config, data, checkpoints


_REQUIRED = {
    "": ("universe", "split", "folds", "seeds", "test_tasks", "methods"),
    "row": ("zero_shot", "k_shot", "uses_support_labels"),
    "zero_shot": ("acc", "bal_acc", "per_task_acc"),
    "summary": ("mean", "ci95", "per_seed"),
}


def read_results(path: str | Path) -> Results:
    """A results.json, checked for the keys every reader relies on; a missing one is named."""
    data = read_json(path, what="results")

    def need(node: Any, kind: str, where: str) -> None:
        if not isinstance(node, dict):
            raise HyperguideError(f"{path}: {where or 'the file'} must be a JSON object")
        missing = [k for k in _REQUIRED[kind] if k not in node]
        if missing:
            raise HyperguideError(f"{path}: {where or 'the file'} lacks {', '.join(map(repr, missing))}")

    need(data, "", "")
    for row, entry in data["methods"].items():
        need(entry, "row", f"methods[{row!r}]")
        need(entry["zero_shot"], "zero_shot", f"methods[{row!r}].zero_shot")
        for metric in ("acc", "bal_acc"):
            need(entry["zero_shot"][metric], "summary", f"methods[{row!r}].zero_shot.{metric}")
    data.setdefault("diagnostics", {})
    return data
