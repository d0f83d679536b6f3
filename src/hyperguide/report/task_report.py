"""The report of a run on your own tasks (`hyperguide tasks eval`): its results.json schema and its results.md.

    {"run", "universe", "split", "features", "task_file", "task_file_sha256", "seeds", "folds", "folds_combined",
     "test_tasks": [question],                                                # the tasks' questions, in order
     "tasks": [{"question", "kind", "answers", "support", "query"}],          # in the task file's order
     "methods": {row: as results.json's methods[row]},                        # per_task_* follow "tasks"
     "by_kind": {kind: {"tasks": n, "methods": {row: {metric: Summary}}}},
     "skipped": {row: why}}                                                   # rows of the run left out

It holds the keys of a run's results.json that `eval.results.read_results` checks, so `hyperguide compare
REPORT_DIR ROW_A ROW_B` pairs two rows on the tasks. The main table is `report.markdown.render_table`'s, the same
as a bench's; a second table gives each row's zero-shot value of each metric per kind of task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

from hyperguide.eval.results import MetricSummaries, RowResults, Summary, metrics_of
from hyperguide.eval.statistics import ci_text
from hyperguide.machine import Machine
from hyperguide.report.markdown import machine_line, metrics_legend, ordered_rows, render_table

UNTAGGED = "untagged"  # the kind of a task whose file gives none


class KindResults(TypedDict):
    tasks: int
    methods: dict[str, MetricSummaries]


class TaskInfo(TypedDict):
    question: str
    kind: str
    answers: list[str]
    support: int  # support examples
    query: int  # query examples


class TaskResults(TypedDict):
    run: str
    universe: str
    split: str  # the run's
    features: str
    task_file: str
    task_file_sha256: str
    seeds: list[int]
    folds: int
    folds_combined: str  # how the models of several folds are combined
    test_tasks: list[str]
    tasks: list[TaskInfo]
    methods: dict[str, RowResults]
    by_kind: dict[str, KindResults]
    skipped: dict[str, str]
    machine: NotRequired[Machine]  # where it was computed (hyperguide.machine)


def _cell(stat: Summary) -> str:
    return f"{stat['mean']:.2f} ± {ci_text(stat['ci95'])}"


def caption(results: Mapping[str, Any]) -> str:
    folds = f", {results['folds']} folds ({results['folds_combined']})" if results["folds"] > 1 else ""
    return (
        f"Run {results['run']} ({results['universe']}), {len(results['seeds'])} seeds{folds}, on the "
        f"{len(results['tasks'])} tasks of {results['task_file']}. Accuracy in %: the mean over seeds of the mean "
        "over tasks ± the 95% Student-t CI over seeds; zero-shot reads the question alone, k-shot fine-tunes on the "
        "tasks' support examples. * uses support labels (not zero-shot)."
    )


def render_by_kind(results: Mapping[str, Any]) -> str:
    """One line per row: its zero-shot value of each metric on each kind of task."""
    kinds, metrics = list(results["by_kind"]), metrics_of(results)
    head = ["method", *[f"{kind} ({results['by_kind'][kind]['tasks']}) {m}" for kind in kinds for m in metrics]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ordered_rows(results):
        cells = [f"`{row}`"]
        for kind in kinds:
            scores = results["by_kind"][kind]["methods"][row]
            cells += [_cell(scores[m]) if m in scores else "" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_task_report(results: Mapping[str, Any]) -> str:
    """The whole results.md."""
    parts = [f"# Own tasks: {results['task_file']} on {results['run']}", "", caption(results), ""]
    parts += [machine_line(results), ""]
    parts += [render_table(results, None), "", metrics_legend(results), ""]
    parts += ["## By kind of task", "", "Zero-shot, in %: the mean over seeds ± 95% CI (tasks per kind).", ""]
    parts += [render_by_kind(results), ""]
    if results["skipped"]:
        parts += ["## Rows of the run left out", ""]
        parts += [f"- `{row}`: {why}" for row, why in results["skipped"].items()]
        parts += [""]
    return "\n".join(parts)
