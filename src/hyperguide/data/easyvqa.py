"""The embedded default universe: Meta-VQA's rules (docs/design.md §2.1) applied to the `easy-vqa` package's questions.

easy-VQA has no answer types, so yes/no questions are kept: 107 tasks. Records are pooled train then test (as VQA v2
pools train2014 then val2014); images are keyed "train/{id}" and "test/{id}".

Answer prompts (the text each answer is scored against) come in two styles:
- `answer` (default): the bare answer ("red", "yes"). Yes/no tasks can then only be solved through the question, as
  in Meta-VQA, where tasks with the same answers ("what color is the bowl?", "... the grass?") differ by question.
- `declarative` (the idea of the paper's prompt_meta.json): the question turned into a statement that is true when the
  answer is right: "what color is the circle?" + red -> "the circle is red"; for yes/no questions the affirmative or
  negated statement, "is there not a red shape?" + yes -> "there is no red shape". Every task then reduces to matching
  an image with a true sentence, so the question carries no information the prompts lack: one shared adapter
  (uncond-multitask) already scores close to every conditional method (docs/decisions.md D1).
"""

from __future__ import annotations

import re
from typing import get_args

from hyperguide.config import PromptStyle
from hyperguide.data.metavqa_rules import build_meta_vqa, spec_from_split_entry, split_meta_train_test
from hyperguide.data.tasks import Universe
from hyperguide.errors import HyperguideError

PROMPT_STYLES: tuple[str, ...] = get_args(PromptStyle)
HELD_OUT_CONCEPTS = ("red", "teal")
# Every colour and shape the questions name: the folds of the leave-one-concept-out split (`--split concepts`).
CONCEPTS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow", "circle", "rectangle", "triangle")

# yes/no question forms: (pattern, polarity). The captured group is the concept ("red shape", "circle").
_YES_NO = [
    (re.compile(r"^is there not an? (.+?)(?: in the image)?\?$"), False),
    (re.compile(r"^is there an? (.+?)(?: in the image)?\?$"), True),
    (re.compile(r"^does the image not contain an? (.+?)\?$"), False),
    (re.compile(r"^does the image contain an? (.+?)\?$"), True),
    (re.compile(r"^is no (.+?) present\?$"), False),
    (re.compile(r"^is an? (.+?) present\?$"), True),
]
# wh-question forms -> a template with one slot for the answer.
_WH = [
    (re.compile(r"^what color is the (.+?)\?$"), "the {0} is {{}}"),
    (re.compile(r"^what is the color of the (.+?)\?$"), "the {0} is {{}}"),
    (re.compile(r"^what shape is in the image\?$"), "a {{}} is in the image"),
    (re.compile(r"^what shape does the image contain\?$"), "the image contains a {{}}"),
    (re.compile(r"^what shape is present\?$"), "a {{}} is present"),
    (re.compile(r"^what is the (.+?)\?$"), "the {0} is a {{}}"),
]


def answer_prompt(question: str, answer: str, style: str = "answer") -> str:
    """The text an answer is scored against, for an easy-VQA question."""
    if style not in PROMPT_STYLES:
        raise HyperguideError(f"unknown prompt style {style!r}; choose one of {', '.join(PROMPT_STYLES)}")
    if style == "answer":
        return answer
    for pattern, positive in _YES_NO:
        m = pattern.match(question)
        if m:
            if answer not in ("yes", "no"):
                raise HyperguideError(f"yes/no question {question!r} has answer {answer!r}")
            present = (answer == "yes") == positive
            return f"there is {'a' if present else 'no'} {m.group(1)}"
    for pattern, template in _WH:
        m = pattern.match(question)
        if m:
            return template.format(*m.groups()).format(answer)
    raise HyperguideError(f"no answer-prompt rule for easy-VQA question {question!r}")


def easyvqa_records() -> list[tuple[str, str, str]]:
    """(question, image key, answer) for every easy-VQA question, train then test."""
    import easy_vqa

    records: list[tuple[str, str, str]] = []
    for side, fetch in (("train", easy_vqa.get_train_questions), ("test", easy_vqa.get_test_questions)):
        texts, answers, image_ids = fetch()
        records.extend((q, f"{side}/{i}", a) for q, a, i in zip(texts, answers, image_ids, strict=True))
    return records


def easyvqa_structure(prompts: str = "answer") -> Universe:
    """The 107 easy-VQA tasks with the paper's per-answer support/query split and meta-train/test split."""
    built = build_meta_vqa(easyvqa_records())
    questions = list(built)
    train_q, test_q = split_meta_train_test(questions)
    index = {q: i for i, q in enumerate(questions)}
    tasks = [spec_from_split_entry(q, built[q], lambda q_, a: answer_prompt(q_, a, prompts)) for q in questions]
    return Universe(
        name="easyvqa",
        tasks=tasks,
        meta_train=tuple(index[q] for q in train_q),
        meta_test=tuple(index[q] for q in test_q),
        held_out_concepts=HELD_OUT_CONCEPTS,
        concepts=CONCEPTS,
        info={"prompts": prompts},
        shared_space=True,  # the image tower is trained into MiniLM's space (encoders/tower_training.py)
    )
