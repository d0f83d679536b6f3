"""Write the wording-robustness task file: easy-VQA tasks whose questions are phrased outside easy-VQA's 24 templates.

The questions are hand-written in questions.json, each with its kind (colour, shape, yes/no, negation), its answers
and a rule that labels an image from its colour and shape. Every easy-VQA image holds one shape of one colour; this
script reads both from easy-VQA's own answers to its wh-questions on its TEST images ("what color is the shape?",
"what shape is in the image?", "what is the red shape?", ...; an image whose colour or shape no such answer states,
or whose answers disagree, is left out: 791 of the 1,000 have both) and labels every kept image by every rule.

    python examples/wording/make_tasks.py --out wording.jsonl
    ROOT="$(python examples/wording/make_tasks.py --images-root)"     # easy-VQA's test image folder
    hyperguide tasks prepare wording.jsonl --run RUN --images-root "$ROOT"
    hyperguide tasks eval RUN wording.features

Image paths in the file are relative to easy-VQA's test image folder (`--images-root` prints it); no image is copied.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

QUESTIONS = Path(__file__).with_name("questions.json")
COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
SHAPES = ("circle", "rectangle", "triangle")
_C, _S = "|".join(COLORS), "|".join(SHAPES)
# easy-VQA's wh-questions, and what each one's answer (or its own words) says about the image
COLOR_OF = re.compile(rf"^what (?:color is|is the color of) the (shape|{_S})\?$")  # answer: colour; group: shape
SHAPE_QUESTION = re.compile(r"^what shape (?:is in the image|is present|does the image contain)\?$")  # answer: shape
SHAPE_OF = re.compile(rf"^what is the ({_C}) shape\?$")  # answer: shape; group: colour


def images_root() -> Path:
    """easy-VQA's test image folder: the task file's image paths are relative to it."""
    import easy_vqa

    return Path(next(iter(easy_vqa.get_test_image_paths().values()))).parent


def test_attributes() -> dict[int, dict[str, str]]:
    """{test image id: {"color", "shape"}} from easy-VQA's own answers to its wh-questions on its test images; only
    the images whose colour and shape are both stated, consistently."""
    import easy_vqa

    seen: dict[int, dict[str, set[str]]] = {}
    for question, answer, image in zip(*easy_vqa.get_test_questions(), strict=True):
        facts = seen.setdefault(int(image), {"color": set(), "shape": set()})
        if m := COLOR_OF.match(question):
            facts["color"].add(answer)
            if m.group(1) != "shape":
                facts["shape"].add(m.group(1))
        elif SHAPE_QUESTION.match(question):
            facts["shape"].add(answer)
        elif m := SHAPE_OF.match(question):
            facts["shape"].add(answer)
            facts["color"].add(m.group(1))
    return {
        image: {"color": next(iter(f["color"])), "shape": next(iter(f["shape"]))}
        for image, f in sorted(seen.items())
        if len(f["color"]) == 1 and len(f["shape"]) == 1
    }


def _matches(condition: dict[str, list[str]], attributes: dict[str, str]) -> bool:
    return all(attributes[attribute] in values for attribute, values in condition.items())


def label(rule: dict[str, Any], attributes: dict[str, str]) -> str:
    """The answer of an image (its colour and shape) under a question's rule."""
    if "attribute" in rule:
        return attributes[rule["attribute"]]
    if "yes_if" in rule:
        return "yes" if _matches(rule["yes_if"], attributes) else "no"
    if "yes_unless" in rule:
        return "no" if _matches(rule["yes_unless"], attributes) else "yes"
    raise ValueError(f"unknown rule {rule!r}: give 'attribute', 'yes_if' or 'yes_unless'")


def load_questions(path: Path = QUESTIONS) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text(encoding="utf-8"))["questions"])


def make_tasks(
    questions: list[dict[str, Any]], attributes: dict[int, dict[str, str]], max_images: int | None = None
) -> list[dict[str, Any]]:
    """One task per question: every image (the first `max_images` by id) its "where" keeps, labelled by its rule;
    every example is a query example (the set is zero-shot)."""
    images = sorted(attributes)[:max_images]
    tasks = []
    for q in questions:
        kept = [i for i in images if _matches(q.get("where", {}), attributes[i])]
        examples = [{"image": f"{i}.png", "answer": label(q["rule"], attributes[i])} for i in kept]
        unknown = {e["answer"] for e in examples} - set(q["answers"])
        if unknown:
            raise ValueError(f"{q['question']!r}: its rule gives {sorted(unknown)}, not among its answers")
        tasks.append({"question": q["question"], "answers": q["answers"], "kind": q["kind"], "examples": examples})
    return tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("wording.jsonl"), help="the task file (default wording.jsonl)")
    parser.add_argument("--questions", type=Path, default=QUESTIONS, help="the hand-written questions")
    parser.add_argument("--max-images", type=int, default=None, help="the first N labelled test images only")
    parser.add_argument("--images-root", action="store_true", help="print easy-VQA's test image folder and stop")
    args = parser.parse_args(argv)
    if args.images_root:
        print(images_root())
        return 0
    tasks = make_tasks(load_questions(args.questions), test_attributes(), args.max_images)
    args.out.write_text("".join(json.dumps(t) + "\n" for t in tasks), encoding="utf-8")
    kinds = Counter(t["kind"] for t in tasks)
    print(f"wrote {args.out}: {len(tasks)} tasks ({', '.join(f'{k} {n}' for k, n in kinds.items())}), "
          f"{sum(len(t['examples']) for t in tasks)} examples", file=sys.stderr)  # fmt: skip
    print(f"images root: {images_root()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
