"""The groups example (examples/groups): the shipped task file is what its script writes, its question kinds are
not easy-VQA's, and its labels agree with easy-VQA's own answers, read here straight from easy-VQA's questions (the
script reads them through `image_attributes`, so the check is independent of how that resolves them)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from hyperguide.data.taskfile import read_task_file

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "groups"
FAMILY = {"red": "warm", "yellow": "warm", "brown": "warm", "green": "cool", "blue": "cool", "teal": "cool"}
FAMILY |= {"black": "neutral", "gray": "neutral"}
CORNERS = {"circle": "none", "triangle": "three", "rectangle": "four"}


@pytest.fixture(scope="module")
def make_tasks() -> ModuleType:
    pytest.importorskip("easy_vqa")
    spec = importlib.util.spec_from_file_location("groups_make_tasks", FOLDER / "make_tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_shipped_file_is_what_the_script_writes(make_tasks: ModuleType, tmp_path: Path) -> None:
    assert make_tasks.main(["--out", str(tmp_path / "tasks.jsonl")]) == 0
    assert (tmp_path / "tasks.jsonl").read_bytes() == (FOLDER / "tasks.jsonl").read_bytes()
    tasks = read_task_file(FOLDER / "tasks.jsonl", default_split=None).tasks
    assert len(tasks) >= 40 and all(len(t.examples) >= 20 for t in tasks)


def _said() -> dict[str, dict[str, str]]:
    """{image: {"color" | "shape": value}} from easy-VQA's wh-questions alone ("what color is the X?", "what shape
    is in the image?", ...): the answer is the value."""
    import easy_vqa

    said: dict[str, dict[str, str]] = {}
    for side, fetch in (("train", easy_vqa.get_train_questions), ("test", easy_vqa.get_test_questions)):
        for question, answer, image in zip(*fetch(), strict=True):
            attribute = "color" if re.search(r"\bcolor\b", question) else "shape" if "shape" in question else None
            if attribute and not question.startswith(("is ", "does ")) and answer not in ("yes", "no"):
                said.setdefault(f"easy-vqa:{side}/{image}", {})[attribute] = answer
    return said


def test_labels_agree_with_easyvqas_own_answers() -> None:
    pytest.importorskip("easy_vqa")
    said = _said()
    checked = 0
    for line in (FOLDER / "tasks.jsonl").read_text().splitlines():
        task = json.loads(line)
        question = task["question"]
        for example in task["examples"]:
            facts = said.get(example["image"], {})
            want = None
            if "shape" in facts and ("corners" in question or "round" in question):
                shape = facts["shape"]
                if question.startswith("how many corners"):
                    want = CORNERS[shape]
                else:
                    has_corners = shape != "circle"
                    want = "yes" if has_corners == ("corners" in question) else "no"
            elif "color" in facts and "family" in question:
                want = FAMILY[facts["color"]]
            elif "color" in facts and (m := re.search(r"a (warm|cool|neutral) colour", question)):
                want = "yes" if FAMILY[facts["color"]] == m.group(1) else "no"
            if want is not None:
                assert example["answer"] == want, (question, example)
                checked += 1
    assert checked > 1000  # most of the 2,580 examples have a wh-answer that states their colour or shape


def test_no_question_is_one_of_easyvqas() -> None:
    easy_vqa = pytest.importorskip("easy_vqa")
    theirs = {q for fetch in (easy_vqa.get_train_questions, easy_vqa.get_test_questions) for q in fetch()[0]}
    ours = [json.loads(line)["question"] for line in (FOLDER / "tasks.jsonl").read_text().splitlines()]
    assert not set(ours) & theirs
    assert all(re.search(r"\b(corners|round|family|warm|cool|neutral)\b", q) for q in ours)
