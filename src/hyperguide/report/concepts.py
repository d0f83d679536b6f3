"""The leave-one-concept-out table (`--split concepts`): each row's zero-shot balanced accuracy per held-out
concept, and its mean over concepts, from results.json's `concept_folds` and per-task scores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hyperguide.eval.stats import ci_text, summarize


def concept_scores(results: Mapping[str, Any], row: str, metric: str = "bal_acc") -> dict[str, list[float]] | None:
    """{concept: per-seed mean over the fold's tasks} of a row's zero-shot `metric` (`bal_acc` or `acc`), and
    "mean" (per seed, the mean over concepts); None without concept folds or per-task scores."""
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
    seeds = range(len(per_task))
    out["mean"] = [sum(values[s] for values in out.values()) / len(folds) for s in seeds]
    return out


def render_concepts(results: Mapping[str, Any]) -> str:
    """The Markdown table, '' when the run is not a `concepts` split."""
    folds = results.get("concept_folds")
    if not folds:
        return ""
    concepts = [f["concept"] for f in folds]
    lines = [
        "| method | " + " | ".join(f"{c} ({f['tasks']})" for c, f in zip(concepts, folds, strict=True)) + " | mean |",
        "|---|" + "---|" * (len(concepts) + 1),
    ]
    for row in results["methods"]:
        scores = concept_scores(results, row)
        if scores is None:
            continue
        cells = []
        for key in [*concepts, "mean"]:
            summary = summarize(scores[key])
            cells.append(f"{summary['mean']:.1f} ± {ci_text(summary['ci95'], '.1f')}")
        lines.append(f"| `{row}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)
