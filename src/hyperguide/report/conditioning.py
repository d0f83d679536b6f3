"""The parts of results.md that say whether the question drives the weights: each question-reading row's zero-shot
score with its own question, another task's and none (the question effect), and how new its generated adapters are
beside the training tasks' adapters (`eval.controls`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hyperguide.eval.results import metrics_of
from hyperguide.eval.statistics import ci_text


def _cell(stat: Mapping[str, Any] | None, spec: str = ".2f", signed: bool = False) -> str:
    if stat is None:
        return ""
    return f"{format(stat['mean'], ('+' if signed else '') + spec)} ± {ci_text(stat['ci95'], spec)}"


def render_controls(results: Mapping[str, Any]) -> str:
    """One line per row with controls: acc with its own, a shuffled and no question, the question effect on each
    metric and the no-question effect on acc."""
    rows = [(name, m) for name, m in results["methods"].items() if "controls" in m]
    if not rows:
        return ""
    shuffled, metrics = rows[0][1]["controls"]["shuffled_tasks"], metrics_of(results)
    head = [
        "method",
        "own question",
        "shuffled",
        "no question",
        *[f"question effect ({m})" for m in metrics],
        "no-question effect (acc)",
    ]
    lines = [
        f"Each row's zero-shot accuracy on the meta-test tasks asked with their own question, with another meta-test "
        f"task's question (a fixed derangement among tasks with the same answers: {shuffled} of "
        f"{len(results['test_tasks'])} tasks; the others get no question) and with no question (a zero embedding). "
        "Question effect: own minus shuffled, per seed, mean ± 95% CI over seeds; a row that reads the question "
        "loses accuracy when it gets another's. Tasks that agree on their shared images (paraphrases, a question "
        "and a narrower one) can be each other's partner, which keeps the effect a lower bound.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, m in rows:
        c = m["controls"]
        cells = [
            f"`{name}`",
            _cell(m["zero_shot"]["acc"]),
            _cell(c["shuffled"]["acc"]),
            _cell(c["null"]["acc"]),
            *[_cell(c["question_effect"].get(m), signed=True) for m in metrics],
            _cell(c["null_effect"]["acc"], signed=True),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_novelty(results: Mapping[str, Any]) -> str:
    """One line per row with novelty measures: distance, agreements, copies."""
    rows = [(name, m) for name, m in results["methods"].items() if "novelty" in m]
    if not rows:
        return ""
    lines = [
        "Each row's zero-shot adapter for a meta-test task against the training tasks' adapters (the HNet at each "
        "meta-train task's adapted latent): the distance of its latent to the nearest training latent in "
        "within-task spreads (median over tasks; latent-space rows), the % of the task's query images it answers "
        "like that nearest training adapter, like the training adapter it agrees with most, and the % of tasks it "
        "answers exactly like some training adapter (a copy, as far as its answers tell). Mean over seeds ± 95% CI. "
        "The retrieval rows copy by construction: distance 0, 100% copies.",
        "",
        "| method | distance (within-task spreads) | agrees with nearest | agrees with best | copies (% of tasks) |",
        "|---|---|---|---|---|",
    ]
    for name, m in rows:
        n = m["novelty"]
        cells = [
            f"`{name}`",
            _cell(n.get("distance_in_spreads")),
            _cell(n.get("agreement_nearest"), ".1f"),
            _cell(n["agreement_best"], ".1f"),
            _cell(n["copies"], ".1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
