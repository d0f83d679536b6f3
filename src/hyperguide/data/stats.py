"""Universe statistics (docs/design.md §2.3): sizes per side, answers per task, and trivial reference accuracies."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hyperguide.data.splits import TaskSplit
from hyperguide.data.tasks import TaskSpec, Universe
from hyperguide.errors import HyperguideError


def _summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "min": 0.0, "max": 0.0}
    return {
        "mean": round(statistics.fmean(values), 4),
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
    }


def chance_accuracy(task: TaskSpec) -> float:
    """Expected accuracy of uniform guessing among the task's answers, in percent."""
    return 100.0 / task.n_answers


def majority_accuracy(task: TaskSpec) -> float:
    """Accuracy on the query set of always answering the support set's most frequent answer, in percent.

    Uses support labels, so it is a reference, never a zero-shot method. Ties go to the lowest label.
    """
    if not task.query_labels:
        return 0.0
    counts = Counter(task.support_labels)
    majority = min(counts, key=lambda y: (-counts[y], y)) if counts else 0
    return 100.0 * sum(y == majority for y in task.query_labels) / len(task.query_labels)


def side_stats(tasks: Sequence[TaskSpec]) -> dict[str, Any]:
    answers = [t.n_answers for t in tasks]
    return {
        "tasks": len(tasks),
        "support_pairs": sum(len(t.support_images) for t in tasks),
        "query_pairs": sum(len(t.query_images) for t in tasks),
        "pairs": sum(t.n_pairs for t in tasks),
        "support_per_task": _summary([len(t.support_images) for t in tasks]),
        "query_per_task": _summary([len(t.query_images) for t in tasks]),
        "pairs_per_task": _summary([t.n_pairs for t in tasks]),
        "answers_per_task": _summary(answers),
        "answer_classes": sum(answers),
        "tasks_with_2_answers": sum(a == 2 for a in answers),
        "tasks_with_at_most_5_answers": sum(a <= 5 for a in answers),
        "tasks_with_at_most_10_answers": sum(a <= 10 for a in answers),
        "tasks_with_more_than_20_answers": sum(a > 20 for a in answers),
        "distinct_images": len({i for t in tasks for i in (*t.support_images, *t.query_images)}),
        "chance_acc": round(statistics.fmean(chance_accuracy(t) for t in tasks), 4) if tasks else 0.0,
        "majority_acc": round(statistics.fmean(majority_accuracy(t) for t in tasks), 4) if tasks else 0.0,
    }


def universe_stats(universe: Universe, splits: Sequence[TaskSplit], fold: int = 0) -> dict[str, Any]:
    """Statistics of one fold (the only one, except for kfold) in detail, plus the task counts of every fold.

    Top-level keys `meta_train_tasks`, `meta_test_tasks`, `pairs`, `mean_answers` are a stable contract.
    """
    if not 0 <= fold < len(splits):
        raise HyperguideError(f"fold {fold} does not exist: split {splits[0].kind!r} has folds 0..{len(splits) - 1}")
    first = splits[fold]
    train = [universe.tasks[i] for i in first.train]
    test = [universe.tasks[i] for i in first.test]
    all_tasks = universe.tasks
    every = side_stats(all_tasks)
    return {
        "universe": universe.name,
        "split": first.kind,
        "folds": len(splits),
        "fold": first.fold,
        "meta_train_tasks": len(train),
        "meta_test_tasks": len(test),
        "pairs": every["pairs"],
        "mean_answers": every["answers_per_task"]["mean"],
        "chance_acc_meta_test": side_stats(test)["chance_acc"],
        "majority_acc_meta_test": side_stats(test)["majority_acc"],
        "meta_train": side_stats(train),
        "meta_test": side_stats(test),
        "all": every,
        "fold_sizes": [
            {"fold": s.fold, "meta_train_tasks": len(s.train), "meta_test_tasks": len(s.test)} for s in splits
        ],
    }


def format_stats(stats: dict[str, Any]) -> str:
    """A plain-text table of `universe_stats` for the terminal."""
    sides = (stats["meta_train"], stats["meta_test"], stats["all"])

    def dist(d: dict[str, float]) -> str:
        return f"{d['mean']:.2f} / {d['median']:g} / {d['min']:g} / {d['max']:g}"

    def pct(x: float) -> str:
        return f"{x:.2f}"

    spec: list[tuple[str, str, Any]] = [
        ("tasks", "tasks", str),
        ("support pairs", "support_pairs", str),
        ("query pairs", "query_pairs", str),
        ("total pairs", "pairs", str),
        ("support / task (mean/med/min/max)", "support_per_task", dist),
        ("query / task (mean/med/min/max)", "query_per_task", dist),
        ("answers / task (mean/med/min/max)", "answers_per_task", dist),
        ("answer classes", "answer_classes", str),
        ("tasks with 2 answers", "tasks_with_2_answers", str),
        ("distinct images", "distinct_images", str),
        ("chance acc % (mean over tasks)", "chance_acc", pct),
        ("majority acc % (mean over tasks)", "majority_acc", pct),
    ]
    header = ("", "meta-train", "meta-test", "all")
    rows = [header] + [(name, *(fmt(side[key]) for side in sides)) for name, key, fmt in spec]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    title = f"universe {stats['universe']}, split {stats['split']}"
    if stats["folds"] > 1:
        title += f" (fold {stats['fold']} of {stats['folds']})"
    lines = [title]
    for r in rows:
        lines.append("  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]))
    return "\n".join(lines)
