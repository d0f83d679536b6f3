"""The wording-robustness example (examples/wording): hand-written questions outside easy-VQA's 24 templates, and a
generator whose labels agree with easy-VQA's own yes/no answers on its test images (the generator reads only its
wh-answers, so the check is independent)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from hyperguide.data.taskfile import read_task_file

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wording" / "make_tasks.py"
COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
SHAPES = ("circle", "rectangle", "triangle")
WORD = re.compile(r"\b(" + "|".join(COLORS + SHAPES) + r")\b")


@pytest.fixture(scope="module")
def make_tasks() -> ModuleType:
    pytest.importorskip("easy_vqa")
    spec = importlib.util.spec_from_file_location("make_tasks", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _template(question: str) -> str:
    return WORD.sub("X", question.lower().replace("colour", "color")).rstrip("?. ")


def test_questions_are_outside_easyvqa_templates(make_tasks: ModuleType) -> None:
    import easy_vqa

    templates = {_template(q) for fetch in (easy_vqa.get_train_questions, easy_vqa.get_test_questions)
                 for q in fetch()[0]}  # fmt: skip
    assert len(templates) == 24
    questions = make_tasks.load_questions()
    kinds = [q["kind"] for q in questions]
    assert len(questions) >= 30 and {k: kinds.count(k) >= 6 for k in set(kinds)} == dict.fromkeys(
        ("colour", "shape", "yes/no", "negation"), True
    )
    assert len({q["question"] for q in questions}) == len(questions)
    assert [q["question"] for q in questions if _template(q["question"]) in templates] == []


def _yes_no_facts(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """{(attribute, value): holds} from easy-VQA's yes/no answers about one image ("is there not a red shape?" =
    no says red holds)."""
    facts: dict[tuple[str, str], bool] = {}
    for question, answer in pairs:
        if answer not in ("yes", "no"):
            continue
        named = WORD.findall(question)
        assert len(named) == 1, question
        negated = " not " in question or question.startswith("is no ")
        attribute = "color" if named[0] in COLORS else "shape"
        facts[(attribute, named[0])] = (answer == "yes") != negated
    return facts


def _expected(rule: dict[str, dict[str, list[str]]], facts: dict[tuple[str, str], bool]) -> str | None:
    """The rule's answer from the facts, or None when they do not settle it."""
    condition = rule.get("yes_if") or rule.get("yes_unless")
    assert condition is not None
    holds: list[bool | None] = []
    for attribute, values in condition.items():
        known = [facts.get((attribute, v)) for v in values]
        holds.append(True if True in known else False if all(k is False for k in known) else None)
    if None in holds:
        return None if False not in holds else ("no" if "yes_if" in rule else "yes")
    met = all(holds)
    return "yes" if met == ("yes_if" in rule) else "no"


def test_generated_labels_agree_with_easyvqa_answers(make_tasks: ModuleType, tmp_path: Path) -> None:
    import easy_vqa

    attributes = make_tasks.test_attributes()
    assert len(attributes) >= 700  # of the 1,000 test images
    tasks = make_tasks.make_tasks(make_tasks.load_questions(), attributes)
    assert len(tasks) >= 30 and all(task["examples"] for task in tasks)

    texts, answers, ids = easy_vqa.get_test_questions()
    handful = sorted(attributes)[:25]
    asked: dict[str, list[tuple[str, str]]] = {f"{i}.png": [] for i in handful}
    for question, answer, image in zip(texts, answers, ids, strict=True):
        if f"{image}.png" in asked:
            asked[f"{image}.png"].append((question, answer))
    checked = 0
    for task, spec in zip(tasks, make_tasks.load_questions(), strict=True):
        for example in task["examples"]:
            if example["image"] not in asked:
                continue
            pairs = asked[example["image"]]
            facts = _yes_no_facts(pairs)
            if "attribute" in spec["rule"]:  # colour, shape: easy-VQA's wh-answers, and its yes/no answers agree
                attribute, label = spec["rule"]["attribute"], example["answer"]
                vocab = COLORS if attribute == "color" else SHAPES
                stated = {a for _, a in pairs if a in vocab}
                assert stated <= {label} and facts.get((attribute, label)) is not False, (task["question"], example)
                assert not any(facts.get((attribute, v)) for v in vocab if v != label), (task["question"], example)
                checked += bool(stated) or any((attribute, v) in facts for v in vocab)
            else:  # yes/no and negation: what easy-VQA's yes/no answers on the image imply
                expected = _expected(spec["rule"], facts)
                if expected is not None:
                    assert example["answer"] == expected, (task["question"], example, pairs)
                    checked += 1
    assert checked >= 300

    out = tmp_path / "wording.jsonl"
    assert make_tasks.main(["--out", str(out), "--max-images", "120"]) == 0
    written = read_task_file(out)  # a valid task file
    assert len(written.tasks) == len(tasks) and all(len(t.examples) <= 120 for t in written.tasks)
    root = make_tasks.images_root()
    assert all((root / e.image).is_file() for t in written.tasks for e in t.examples)
