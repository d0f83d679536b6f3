from __future__ import annotations

import random

import pytest

from hyperguide.data.easyvqa import answer_prompt, easyvqa_structure
from hyperguide.data.splits import make_splits
from hyperguide.errors import HyperguideError


@pytest.fixture(scope="module")
def universe():
    return easyvqa_structure()


def test_meta_vqa_rules_on_easyvqa(universe) -> None:
    assert len(universe.tasks) == 107
    assert len(universe.meta_train) == 75 and len(universe.meta_test) == 32
    assert sum(t.n_pairs for t in universe.tasks) == 48248
    for t in universe.tasks:
        assert t.n_answers >= 2 and t.n_pairs > 20
        for label in range(t.n_answers):  # per answer: round(0.7 n) support, the rest query
            n_s = t.support_labels.count(label)
            n_q = t.query_labels.count(label)
            assert n_s == round(0.7 * (n_s + n_q))
        assert not set(t.support_images) & set(t.query_images)


def test_support_split_is_the_seeded_per_answer_shuffle(universe) -> None:
    from hyperguide.data.easyvqa import easyvqa_records

    task = universe.tasks[0]
    label = 0
    images = []
    for q, image, a in easyvqa_records():
        if q == task.question and a == task.answers[label] and image not in images:
            images.append(image)
    random.Random(2021).shuffle(images)
    cut = round(0.7 * len(images))
    assert [i for i, y in zip(task.support_images, task.support_labels, strict=True) if y == label] == images[:cut]


def test_declarative_prompts() -> None:
    def declarative(question: str, answer: str) -> str:
        return answer_prompt(question, answer, "declarative")

    assert declarative("what color is the circle?", "red") == "the circle is red"
    assert declarative("what is the color of the shape?", "teal") == "the shape is teal"
    assert declarative("what is the red shape?", "circle") == "the red shape is a circle"
    assert declarative("is there a red shape?", "yes") == "there is a red shape"
    assert declarative("is there not a red shape in the image?", "yes") == "there is no red shape"
    assert declarative("does the image not contain a circle?", "no") == "there is a circle"
    assert declarative("is no rectangle present?", "no") == "there is a rectangle"
    assert answer_prompt("is there not a red shape?", "yes", "answer") == "yes"
    with pytest.raises(HyperguideError, match="no answer-prompt rule"):
        declarative("how many shapes?", "1")


def test_every_easyvqa_question_has_a_prompt_rule() -> None:
    tasks = easyvqa_structure("declarative").tasks
    assert all(len(set(t.prompts)) == t.n_answers for t in tasks)
    assert easyvqa_structure().tasks[0].prompts == easyvqa_structure().tasks[0].answers  # default: bare answers


def test_compositional_split_holds_out_red_and_teal(universe) -> None:
    (split,) = make_splits(universe, "compositional")
    test_questions = [universe.tasks[i].question for i in split.test]
    assert test_questions and all(("red" in q.split()) or ("teal" in q.split()) for q in test_questions)
    assert not any("red" in universe.tasks[i].question or "teal" in universe.tasks[i].question for i in split.train)
