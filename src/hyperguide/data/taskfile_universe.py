"""A task file as a universe's task structure (`hyperguide ... taskfile --tasks FILE`; docs/own-tasks.md).

Each task of the file is one task of the universe, in the file's order. Its examples go to its support or query set
as their `split` says; the examples without one are split by the universe's rule, Meta-VQA's: per answer, that
answer's unsplit examples are shuffled by a fresh `random.Random(2021)` and the first round(0.7 n) go to support, the
rest to query (`metavqa_rules.SUPPORT_FRACTION`). An answer is scored against the task's `prompts`, else against the
answer itself. The meta-train / meta-test split is the `random` split's rule (`data/splits.py`).

Meta-VQA's filters are options, off by default (every task of your file is kept unless you ask otherwise):
- `min_answer_examples` N: an answer with fewer than N examples is dropped with its examples (Meta-VQA: 2);
- `min_examples` N: a task with fewer than N examples (after dropping answers) is dropped (Meta-VQA: 21).
A task the filters leave with fewer than two answers is dropped too; every dropped task is listed with why in
`universe.info["dropped"]`. A task that cannot be trained or scored is refused, never skipped, named with its number,
question and what to change: one whose split leaves fewer than two answers on its support or its query side (an
answer's lone example goes to support: two examples of an answer reach both sides), one listing an answer no example
gives, one holding an image twice, and one asking the question of an earlier task (a task is its question).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from hyperguide.data.metavqa_rules import PAPER_SEED, SUPPORT_FRACTION
from hyperguide.data.taskfile import Example, TaskEntry, TaskFile
from hyperguide.data.tasks import TaskSpec, Universe
from hyperguide.errors import HyperguideError

NAME = "taskfile"


@dataclass(frozen=True)
class Filters:
    """Meta-VQA's task filters as options; 0 is off."""

    min_examples: int = 0
    min_answer_examples: int = 0

    def __post_init__(self) -> None:
        for name in ("min_examples", "min_answer_examples"):
            if getattr(self, name) < 0:
                raise HyperguideError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")


def split_examples(examples: Sequence[Example], answers: Sequence[str]) -> tuple[list[Example], list[Example]]:
    """(support, query): the examples whose `split` is given keep it; per answer, the others are shuffled by a fresh
    `random.Random(2021)` and the first round(0.7 n) go to support."""
    support = [e for e in examples if e.split == "support"]
    query = [e for e in examples if e.split == "query"]
    for answer in answers:
        unsplit = [e for e in examples if e.split is None and e.answer == answer]
        random.Random(PAPER_SEED).shuffle(unsplit)
        cut = round(SUPPORT_FRACTION * len(unsplit))
        support += unsplit[:cut]
        query += unsplit[cut:]
    return support, query


def _filtered(task: TaskEntry, filters: Filters) -> tuple[TaskEntry | None, str]:
    """The task with the answers the filters keep, or None with why it is dropped."""
    counts = {a: sum(e.answer == a for e in task.examples) for a in task.answers}
    keep = [i for i, a in enumerate(task.answers) if counts[a] >= filters.min_answer_examples]
    if len(keep) < 2:
        return None, f"fewer than two answers with >= {filters.min_answer_examples} examples"
    answers = tuple(task.answers[i] for i in keep)
    prompts = None if task.prompts is None else tuple(task.prompts[i] for i in keep)
    examples = tuple(e for e in task.examples if e.answer in answers)
    if len(examples) < filters.min_examples:
        return None, f"{len(examples)} examples, fewer than {filters.min_examples}"
    return TaskEntry(task.number, task.question, answers, prompts, examples, task.kind), ""


def _check_examples(tasks: TaskFile, task: TaskEntry) -> None:
    """Every answer has an example, and no image is in the task twice (on both sides it would leak the label
    into k-shot; with two answers it contradicts itself)."""
    unused = [a for a in task.answers if not any(e.answer == a for e in task.examples)]
    if unused:
        raise HyperguideError(
            f"{tasks.where(task)}: answer {unused[0]!r} has no example: a task's answers are the ones its examples "
            "give (a listed answer that never occurs is scored against nothing); remove it from 'answers' or give "
            "it examples"
        )
    seen: dict[str, int] = {}
    for number, example in enumerate(task.examples, 1):
        first = seen.setdefault(example.image, number)
        if first != number:
            raise HyperguideError(
                f"{tasks.where(task, number)}: image {example.image!r} is already example {first} of this task: an "
                "image is in a task once (twice, it would be scored where it was adapted on, or labelled twice)"
            )


def task_spec(tasks: TaskFile, task: TaskEntry) -> TaskSpec:
    """One task of the file as the universe's task; refused (named) if it cannot be meta-trained and scored."""
    _check_examples(tasks, task)
    support, query = split_examples(task.examples, task.answers)
    for side, found in (("support", support), ("query", query)):
        answered = sorted({e.answer for e in found})
        if len(answered) < 2:
            raise HyperguideError(
                f"{tasks.where(task)}: its {side} examples give {len(answered)} answer(s) {answered} once split (a "
                "given 'split', else 70/30 per answer, where an answer's lone example goes to support): a universe's "
                "task needs two answers or more on each side (meta-training adapts on support examples and scores "
                "query ones, and one answer alone is no choice); give it more examples, or 'split' on some"
            )
    label = {a: i for i, a in enumerate(task.answers)}
    return TaskSpec(
        question=task.question,
        answers=task.answers,
        prompts=task.prompts if task.prompts is not None else task.answers,
        support_images=tuple(e.image for e in support),
        support_labels=tuple(label[e.answer] for e in support),
        query_images=tuple(e.image for e in query),
        query_labels=tuple(label[e.answer] for e in query),
    )


def taskfile_structure(tasks: TaskFile, filters: Filters | None = None) -> Universe:
    """The universe of a task file's tasks, no features (the module's docstring says how)."""
    filters = filters or Filters()
    specs: list[TaskSpec] = []
    kept: list[TaskEntry] = []
    dropped: list[dict[str, object]] = []
    asked: dict[str, int] = {}
    for task in tasks.tasks:
        first = asked.setdefault(task.question, task.number)
        if first != task.number:
            raise HyperguideError(
                f"{tasks.where(task)}: asks the question of task {first}: a universe's task is its question (the "
                "weights come from the question alone, so two tasks asking it would be one task trained two ways, or "
                "a meta-test question seen in meta-training); merge them, or word them apart"
            )
        entry, why = _filtered(task, filters)
        if entry is None:
            dropped.append({"task": task.number, "question": task.question, "why": why})
            continue
        specs.append(task_spec(tasks, entry))
        kept.append(entry)
    if len(specs) < 2:
        raise HyperguideError(
            f"{tasks.path}: {len(specs)} task(s) left after the filters ({len(dropped)} dropped); a universe needs at "
            "least two, one to meta-train on and one to test"
        )
    return Universe(
        name=NAME,
        tasks=specs,
        meta_train=(),  # the `random` split's rule
        meta_test=(),
        info={
            "task_file": str(tasks.path),
            "task_file_sha256": tasks.sha256,
            "kinds": [t.kind or "untagged" for t in kept],
            "numbers": [t.number for t in kept],
            "filters": {"min_examples": filters.min_examples, "min_answer_examples": filters.min_answer_examples},
            "dropped": dropped,
        },
    )
