"""The Meta-VQA construction rules (docs/design.md §2.1), independent of where the question/answer records come from.

Given (question, image, answer) records pooled over the source's splits, in the source's order:
1. group by the exact question string; per (question, image) the first record wins;
2. drop answers seen on fewer than 2 images;
3. keep a question iff it has > 20 remaining images, >= 2 distinct answers, and no whitespace token "or";
4. per task and answer, shuffle that answer's images with a fresh `random.Random(2021)` and put the first
   round(0.7 n) in the task's "train" split (its support set) and the rest in "test" (its query set);
5. shuffle the task list with `random.Random(2021)`: the first round(0.7 n_tasks) tasks are meta-train.

Answers keep their order of first appearance, which fixes the label order (label i is answers[i]).
The output is the authors' split-file format:
{question: {"train": [[image, answer], ...], "test": [...], "answers": [...]}}.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from hyperguide.data.tasks import TaskSpec
from hyperguide.errors import HyperguideError

PAPER_SEED = 2021
MIN_IMAGES_EXCLUSIVE = 20
MIN_IMAGES_PER_ANSWER = 2
SUPPORT_FRACTION = 0.7


def group_questions(records: Iterable[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    """{question: {image: answer}}, keeping the first answer recorded for each (question, image)."""
    grouped: dict[str, dict[str, str]] = {}
    for question, image, answer in records:
        per_image = grouped.setdefault(question, {})
        per_image.setdefault(image, answer)
    return grouped


def keep_question(question: str, answer_images: dict[str, list[str]]) -> bool:
    n_images = sum(len(v) for v in answer_images.values())
    return n_images > MIN_IMAGES_EXCLUSIVE and len(answer_images) >= 2 and "or" not in question.split()


def build_task(answer_images: dict[str, list[str]], seed: int = PAPER_SEED) -> dict[str, Any]:
    """One task in split-file format from {answer: [images]} (answers in label order)."""
    train: list[list[str]] = []
    test: list[list[str]] = []
    for answer, images in answer_images.items():
        shuffled = list(images)
        random.Random(seed).shuffle(shuffled)
        cut = round(SUPPORT_FRACTION * len(shuffled))
        train.extend([image, answer] for image in shuffled[:cut])
        test.extend([image, answer] for image in shuffled[cut:])
    return {"train": train, "test": test, "answers": list(answer_images)}


def build_meta_vqa(records: Iterable[tuple[str, str, str]], seed: int = PAPER_SEED) -> dict[str, dict[str, Any]]:
    """All tasks that pass the rules, in order of first appearance of their question."""
    tasks: dict[str, dict[str, Any]] = {}
    for question, per_image in group_questions(records).items():
        answer_images: dict[str, list[str]] = {}
        for image, answer in per_image.items():
            answer_images.setdefault(answer, []).append(image)
        answer_images = {a: ims for a, ims in answer_images.items() if len(ims) >= MIN_IMAGES_PER_ANSWER}
        if keep_question(question, answer_images):
            tasks[question] = build_task(answer_images, seed)
    return tasks


def split_meta_train_test(questions: list[str], seed: int = PAPER_SEED) -> tuple[list[str], list[str]]:
    """The paper's task split: shuffle with `random.Random(seed)`, first round(0.7 n) are meta-train."""
    order = list(questions)
    random.Random(seed).shuffle(order)
    cut = round(SUPPORT_FRACTION * len(order))
    return order[:cut], order[cut:]


def spec_from_split_entry(question: str, entry: dict[str, Any], prompt: Callable[[str, str], str]) -> TaskSpec:
    """A TaskSpec from one task of the split-file format ({"train", "test", "answers"})."""
    answers = tuple(entry["answers"])
    label = {a: i for i, a in enumerate(answers)}
    try:
        support = [(image, label[a]) for image, a in entry["train"]]
        query = [(image, label[a]) for image, a in entry["test"]]
    except KeyError as e:
        raise HyperguideError(f"task {question!r}: example answer {e.args[0]!r} is not in its answers list") from None
    return TaskSpec(
        question=question,
        answers=answers,
        prompts=tuple(prompt(question, a) for a in answers),
        support_images=tuple(i for i, _ in support),
        support_labels=tuple(y for _, y in support),
        query_images=tuple(i for i, _ in query),
        query_labels=tuple(y for _, y in query),
    )
