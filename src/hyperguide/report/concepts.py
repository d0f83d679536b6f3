"""The leave-one-concept-out table (`--split concepts`): each row's zero-shot balanced accuracy per held-out
concept, and its mean over concepts, from results.json's `concept_folds` and per-task scores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hyperguide.eval.statistics import ci_text, summarize


def concept_scores(
    results: Mapping[str, Any], row: str, metric: str = "bal_acc"
) -> tuple[dict[str, list[float]], list[float]] | None:
    """({concept: per-seed mean over the fold's tasks}, per seed the mean over concepts) of a row's zero-shot
    `metric` (`bal_acc` or `acc`); None without concept folds or per-task scores."""
    folds = results.get("concept_folds")
    per_task = results["methods"][row]["zero_shot"].get(f"per_task_{metric}")
    if not folds or not per_task:
        return None
    out: dict[str, list[float]] = {}
    start = 0
    for fold in folds:
        stop = start + fold["tasks"]
        out[fold["concept"]] = [sum(seed[start:stop]) / fold["tasks"] for seed in per_task]
        start = stop
    mean = [sum(values[s] for values in out.values()) / len(out) for s in range(len(per_task))]
    return out, mean


def render_concepts(results: Mapping[str, Any]) -> str:
    """The Markdown table, '' when the run is not a `concepts` split."""
    folds = results.get("concept_folds")
    if not folds:
        return ""
    lines = [
        "| method | " + " | ".join(f"{f['concept']} ({f['tasks']})" for f in folds) + " | mean |",
        "|---|" + "---|" * (len(folds) + 1),
    ]
    for row in results["methods"]:
        scores = concept_scores(results, row)
        if scores is None:
            continue
        per_concept, mean = scores
        cells = []
        for values in [*per_concept.values(), mean]:
            summary = summarize(values)
            cells.append(f"{summary['mean']:.1f} ± {ci_text(summary['ci95'], '.1f')}")
        lines.append(f"| `{row}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)
