"""Write the groups task file: easy-VQA tasks whose questions ask for properties that group colours or shapes.

easy-VQA asks what colour or shape an image holds, or whether it holds a given one; it never asks for a property
that several colours or shapes share. These tasks do, over easy-VQA's own images:

- shape groups: "does the shape have corners?" (rectangle, triangle: yes), "is the shape round?" (circle: yes),
  "how many corners does the shape have?" (circle: none, triangle: three, rectangle: four);
- colour families: warm (red, yellow, brown), cool (green, blue, teal), neutral (black, gray): "is the shape a warm
  colour?", "which colour family is the shape?" (warm, cool, neutral), ...;
- the same properties asked of the images of one shape ("is the circle a warm colour?", "which colour family is the
  triangle?") or of one colour ("does the red shape have corners?", "is the blue shape round?", ...).

Every image is labelled from its colour and shape, both read off easy-VQA's own answers to its questions
(`hyperguide.data.easyvqa_images.image_attributes`, train and test images; an image whose colour or shape they do not
pin down is left out). Each task draws a fixed sample of about 60 images (seeded by its question), as balanced
across its answers as the images allow. Images are written `easy-vqa:train/12`: the installed package's image.

    python examples/groups/make_tasks.py                 # writes examples/groups/tasks.jsonl
    hyperguide prepare taskfile --tasks examples/groups/tasks.jsonl
    hyperguide bench taskfile --tasks examples/groups/tasks.jsonl --quick
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hyperguide.data.easyvqa_images import COLORS, SHAPES, image_attributes

OUT = Path(__file__).with_name("tasks.jsonl")
SCHEME = "easy-vqa:"
PER_TASK = 60  # examples drawn per task, shared out equally among its answers as far as the images allow
MIN_PER_ANSWER = 10  # a task with fewer images for one of its answers is refused
FAMILY = {
    "red": "warm", "yellow": "warm", "brown": "warm",
    "green": "cool", "blue": "cool", "teal": "cool",
    "black": "neutral", "gray": "neutral",
}  # fmt: skip
FAMILIES = ("warm", "cool", "neutral")
CORNER_COUNT = {"circle": "none", "triangle": "three", "rectangle": "four"}
YES_NO = ("yes", "no")
# each kind is one property, and the answers it can take
ANSWERS: dict[str, tuple[str, ...]] = {
    "corners": YES_NO,
    "round": YES_NO,
    "corner count": ("none", "three", "four"),
    "colour family": FAMILIES,
    **{family: YES_NO for family in FAMILIES},
}


@dataclass(frozen=True)
class Question:
    text: str
    kind: str  # the property it asks for: a key of ANSWERS
    color: str | None = None  # only images of this colour
    shape: str | None = None  # only images of this shape

    def allows(self, color: str, shape: str) -> bool:
        return self.color in (None, color) and self.shape in (None, shape)


def _yes(holds: bool) -> str:
    return "yes" if holds else "no"


def label(kind: str, color: str, shape: str) -> str:
    """The answer of an image of this colour and shape to a question of this kind."""
    if kind == "corners":
        return _yes(CORNER_COUNT[shape] != "none")
    if kind == "round":
        return _yes(shape == "circle")
    if kind == "corner count":
        return CORNER_COUNT[shape]
    if kind == "colour family":
        return FAMILY[color]
    if kind in FAMILIES:
        return _yes(FAMILY[color] == kind)
    raise ValueError(f"unknown kind {kind!r}: one of {', '.join(ANSWERS)}")


def questions() -> list[Question]:
    """Every question: each property asked of any image, then of the images of one shape or of one colour."""
    out = [
        Question("does the shape have corners?", "corners"),
        Question("is the shape round?", "round"),
        Question("how many corners does the shape have?", "corner count"),
        Question("which colour family is the shape?", "colour family"),
    ]
    out += [Question(f"is the shape a {family} colour?", family) for family in FAMILIES]
    out += [Question(f"is the {s} a {family} colour?", family, shape=s) for s in SHAPES for family in FAMILIES]
    out += [Question(f"which colour family is the {s}?", "colour family", shape=s) for s in SHAPES]
    out += [Question(f"does the {c} shape have corners?", "corners", color=c) for c in COLORS]
    out += [Question(f"is the {c} shape round?", "round", color=c) for c in COLORS]
    out += [Question(f"how many corners does the {c} shape have?", "corner count", color=c) for c in COLORS]
    return out


def check_questions(qs: list[Question]) -> None:
    """Refuse a repeated question, one not lower case or not ending in "?", one with the word "or", an unknown kind."""
    repeated = sorted(text for text, n in Counter(q.text for q in qs).items() if n > 1)
    if repeated:
        raise ValueError(f"repeated questions: {repeated}")
    for q in qs:
        if q.text != q.text.lower() or not q.text.endswith("?") or "or" in q.text.split() or q.kind not in ANSWERS:
            raise ValueError(f"{q.text!r} (kind {q.kind!r}): lower case, ending in '?', no word 'or', a known kind")


def labelled_images() -> dict[str, tuple[str, str]]:
    """{"train/{id}" | "test/{id}": (colour, shape)} for every easy-VQA image whose answers give both."""
    return {
        key: (a["color"], a["shape"])
        for key, a in image_attributes().items()
        if a["color"] is not None and a["shape"] is not None
    }


def quotas(sizes: dict[str, int], total: int) -> dict[str, int]:
    """How many of each answer to draw: equal shares of `total`, except that an answer with fewer images than its
    share gives all it has and the others share what it leaves (the first answers take any remainder)."""
    out: dict[str, int] = {}
    left, remaining = dict(sizes), total
    while left:
        share = remaining // len(left)
        short = {answer: n for answer, n in left.items() if n <= share}
        if not short:
            extra = remaining - share * len(left)
            out.update({answer: share + (i < extra) for i, answer in enumerate(left)})
            break
        for answer, n in short.items():
            out[answer] = n
            remaining -= n
            del left[answer]
    return {answer: out[answer] for answer in sizes}


def make_task(
    question: Question, images: dict[str, tuple[str, str]], per_task: int = PER_TASK, seed: int = 0
) -> dict[str, object]:
    """One task: a sample of the images its question allows, drawn per answer, seeded by the question."""
    answers = ANSWERS[question.kind]
    pools: dict[str, list[str]] = {answer: [] for answer in answers}
    for key in sorted(images):
        color, shape = images[key]
        if question.allows(color, shape):
            pools[label(question.kind, color, shape)].append(key)
    rng = random.Random(f"{seed}:{question.text}")
    counts = quotas({answer: len(keys) for answer, keys in pools.items()}, per_task)
    picked = [(key, answer) for answer in answers for key in rng.sample(pools[answer], counts[answer])]
    few = {answer: n for answer, n in counts.items() if n < MIN_PER_ANSWER}
    if few:
        raise ValueError(f"{question.text!r}: too few images for {few} (at least {MIN_PER_ANSWER} per answer)")
    rng.shuffle(picked)
    return {
        "question": question.text,
        "answers": list(answers),
        "kind": question.kind,
        "examples": [{"image": SCHEME + key, "answer": answer} for key, answer in picked],
    }


def make_tasks(images: dict[str, tuple[str, str]], per_task: int = PER_TASK, seed: int = 0) -> list[dict[str, object]]:
    qs = questions()
    check_questions(qs)
    return [make_task(q, images, per_task, seed) for q in qs]


def summary(tasks: list[dict[str, object]], out: Path) -> str:
    examples = [e for t in tasks for e in t["examples"]]  # type: ignore[attr-defined]
    kinds = Counter(str(t["kind"]) for t in tasks)
    return (
        f"wrote {out}: {len(tasks)} tasks, {len(examples)} examples, {len({e['image'] for e in examples})} distinct "
        f"images; kinds: {', '.join(f'{kind} {n}' for kind, n in kinds.items())}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"the task file (default {OUT})")
    parser.add_argument("--per-task", type=int, default=PER_TASK, help=f"examples per task (default {PER_TASK})")
    parser.add_argument("--seed", type=int, default=0, help="mixed with each question into its sample's seed")
    args = parser.parse_args(argv)
    tasks = make_tasks(labelled_images(), args.per_task, args.seed)
    args.out.write_text("".join(json.dumps(t) + "\n" for t in tasks), encoding="utf-8")
    print(summary(tasks, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
