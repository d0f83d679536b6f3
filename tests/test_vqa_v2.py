"""Meta-VQA builder on a small fixture in the official VQA v2 format: every rule of docs/design.md §2.1, file errors,
round trip."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hyperguide.data.metavqa import load_split_files
from hyperguide.data.vqa_v2 import annotations_filename, build_from_vqa_v2, questions_filename
from hyperguide.errors import HyperguideError

# (split, question, image_id, answer_type, multiple_choice_answer), in annotation-file order per split.
Record = tuple[str, str, int, str, str]

KEEP_21 = "How many people are there?"
DROP_20 = "How many dogs are there?"
COLOR = "What color is the car?"  # "color" contains "or" but is not the token "or": kept
FOR = "What is this for?"  # "for" contains "or": kept; asked only in val2014, so it comes after train questions
OR = "Is the cup red or blue?"  # the token "or": dropped
YES_NO = "Is this a dog?"
ONE_ANSWER = "What is the man holding?"
EXTRA = [f"What animal is in picture {k}?" for k in range(5)]


def fixture_records() -> list[Record]:
    r: list[Record] = []
    # 11 + 10 images kept plus one answer seen once: 22 raw, 21 remaining -> kept.
    r += [("train2014", KEEP_21, 100 + i, "number", "2") for i in range(11)]
    r += [("train2014", KEEP_21, 200 + i, "number", "3") for i in range(10)]
    r += [("train2014", KEEP_21, 300, "number", "7")]
    # 10 + 10 images plus one answer seen once: 21 raw, 20 remaining -> dropped.
    r += [("train2014", DROP_20, 100 + i, "number", "1") for i in range(10)]
    r += [("train2014", DROP_20, 200 + i, "number", "2") for i in range(10)]
    r += [("train2014", DROP_20, 300, "number", "5")]
    # red 10 (6 train2014, 4 val2014 with the same ids: other images), blue 8, green 3, purple once (dropped).
    r += [("train2014", COLOR, 10 + i, "other", "red") for i in range(6)]
    r += [("train2014", COLOR, 30 + i, "other", "blue") for i in range(8)]
    r += [("train2014", COLOR, 10, "other", "blue")]  # repeated (question, image): the first answer (red) wins
    r += [("train2014", COLOR, 50 + i, "yes/no", "yes") for i in range(3)]  # yes/no records are dropped
    r += [("train2014", COLOR, 60, "other", "purple")]
    r += [("val2014", COLOR, 10 + i, "other", "red") for i in range(4)]
    r += [("val2014", COLOR, 70 + i, "other", "green") for i in range(3)]
    r += [("train2014", OR, 100 + i, "other", "red" if i % 2 else "blue") for i in range(30)]
    r += [("train2014", YES_NO, 100 + i, "yes/no", "yes" if i % 2 else "no") for i in range(30)]
    r += [("train2014", ONE_ANSWER, 100 + i, "other", "bat") for i in range(25)]
    r += [("train2014", ONE_ANSWER, 200, "other", "ball")]
    for k, question in enumerate(EXTRA):
        answers = ["cat", "dog", "horse"][: 2 + k % 2]
        r += [("train2014", question, 1000 * (k + 1) + i, "other", answers[i % len(answers)]) for i in range(22 + k)]
    r += [("val2014", FOR, 500 + i, "other", ["cutting", "eating", "sleeping"][i % 3]) for i in range(24)]
    return r


def write_vqa(root: Path, records: list[Record], *, subfolders: bool) -> None:
    qdir = root / "Questions" if subfolders else root
    adir = root / "Annotations" if subfolders else root
    qdir.mkdir(parents=True, exist_ok=True)
    adir.mkdir(parents=True, exist_ok=True)
    for split in ("train2014", "val2014"):
        questions, annotations = [], []
        for qid, (s, question, image_id, answer_type, answer) in enumerate(records):
            if s != split:
                continue
            questions.append({"image_id": image_id, "question": question, "question_id": qid})
            answers = [{"answer": answer, "answer_confidence": "yes", "answer_id": j + 1} for j in range(10)]
            annotations.append(
                {
                    "question_id": qid,
                    "image_id": image_id,
                    "question_type": "what",
                    "answer_type": answer_type,
                    "multiple_choice_answer": answer,
                    "answers": answers,
                }
            )
        questions.reverse()  # the order that counts is the annotation file's
        (qdir / questions_filename(split)).write_text(json.dumps({"questions": questions}))
        (adir / annotations_filename(split)).write_text(json.dumps({"annotations": annotations}))


def name(split: str, image_id: int) -> str:
    return f"COCO_{split}_{image_id:012d}"


def expected_answer_images(records: list[Record]) -> dict[str, dict[str, list[str]]]:
    """docs/design.md §2.1 steps 1-5, written out independently of the builder."""
    per_question: dict[str, dict[str, str]] = {}
    for split, question, image_id, answer_type, answer in records:
        if answer_type == "yes/no":
            continue
        per_question.setdefault(question, {}).setdefault(name(split, image_id), answer)
    kept = {}
    for question, per_image in per_question.items():
        groups: dict[str, list[str]] = {}
        for image, answer in per_image.items():
            groups.setdefault(answer, []).append(image)
        groups = {a: ims for a, ims in groups.items() if len(ims) >= 2}
        if sum(map(len, groups.values())) > 20 and len(groups) >= 2 and "or" not in question.split():
            kept[question] = groups
    return kept


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("vqa")
    write_vqa(root, fixture_records(), subfolders=True)
    out = root / "meta"
    return out, build_from_vqa_v2(root, out)


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_rules_select_exactly_the_expected_tasks(built: tuple[Path, dict[str, int]]) -> None:
    out, counts = built
    tasks = {**read(out / "meta_train.json"), **read(out / "meta_test.json")}
    assert set(tasks) == {KEEP_21, COLOR, FOR, *EXTRA}
    assert DROP_20 not in tasks and OR not in tasks and YES_NO not in tasks and ONE_ANSWER not in tasks
    assert counts["tasks"] == 8 and counts["meta_train_tasks"] == 6 and counts["meta_test_tasks"] == 2
    assert counts["pairs"] == sum(len(t["train"]) + len(t["test"]) for t in tasks.values())

    assert tasks[KEEP_21]["answers"] == ["2", "3"]  # "7" was seen on one image only
    color = tasks[COLOR]
    assert color["answers"] == ["red", "blue", "green"]  # no "yes" (yes/no type), no "purple" (one image)
    pairs = {image: answer for image, answer in (*color["train"], *color["test"])}
    assert len(pairs) == len(color["train"]) + len(color["test"]) == 21  # each image once
    assert pairs[name("train2014", 10)] == "red"  # first occurrence wins over the later "blue"
    assert name("val2014", 10) in pairs and pairs[name("val2014", 10)] == "red"  # same id, other split: other image


def test_per_answer_split_is_a_fresh_seeded_shuffle(built: tuple[Path, dict[str, int]]) -> None:
    out, _ = built
    tasks = {**read(out / "meta_train.json"), **read(out / "meta_test.json")}
    for question, groups in expected_answer_images(fixture_records()).items():
        task = tasks[question]
        assert task["answers"] == list(groups)
        train, test = [], []
        for answer, images in groups.items():
            shuffled = list(images)
            random.Random(2021).shuffle(shuffled)
            cut = round(0.7 * len(shuffled))
            train += [[image, answer] for image in shuffled[:cut]]
            test += [[image, answer] for image in shuffled[cut:]]
        assert task["train"] == train and task["test"] == test, question


def test_task_split_is_a_seeded_shuffle_of_first_appearance_order(built: tuple[Path, dict[str, int]]) -> None:
    out, _ = built
    order = list(expected_answer_images(fixture_records()))
    assert order == [KEEP_21, COLOR, *EXTRA, FOR]  # val-only questions come after train2014's
    shuffled = list(order)
    random.Random(2021).shuffle(shuffled)
    cut = round(0.7 * len(order))
    assert list(read(out / "meta_train.json")) == shuffled[:cut]
    assert list(read(out / "meta_test.json")) == shuffled[cut:]
    counts = read(out / "ques_ans_count.json")
    assert list(counts) == order
    assert counts[COLOR] == {"red": 10, "blue": 8, "green": 3}


def test_written_files_load_back(built: tuple[Path, dict[str, int]]) -> None:
    out, _ = built
    prompts = {KEEP_21: "{} people", COLOR: "the car is {}", FOR: "this is for {}"}  # EXTRA questions fall back
    (out / "prompt_meta.json").write_text(json.dumps(prompts))
    universe = load_split_files(out)
    assert len(universe) == 8 and len(universe.meta_train) == 6 and len(universe.meta_test) == 2
    assert universe.info["prompt_fallbacks"] == len(EXTRA) and universe.info["label_order_checked"]
    spec = next(t for t in universe.tasks if t.question == COLOR)
    assert spec.prompts == ("the car is red", "the car is blue", "the car is green")
    task = read(out / "meta_train.json").get(COLOR) or read(out / "meta_test.json")[COLOR]
    assert list(spec.support_images) == [image for image, _ in task["train"]]
    assert [spec.answers[y] for y in spec.query_labels] == [answer for _, answer in task["test"]]
    extra = next(t for t in universe.tasks if t.question == EXTRA[0])
    assert extra.prompts == extra.answers  # the fallback prompt is the answer itself


def test_flat_layout_gives_the_same_files(tmp_path: Path, built: tuple[Path, dict[str, int]]) -> None:
    write_vqa(tmp_path, fixture_records(), subfolders=False)
    build_from_vqa_v2(tmp_path, tmp_path / "meta")
    for file in ("meta_train.json", "meta_test.json", "ques_ans_count.json"):
        assert read(tmp_path / "meta" / file) == read(built[0] / file)


def test_truncated_json_names_the_file(tmp_path: Path) -> None:
    write_vqa(tmp_path, fixture_records(), subfolders=False)
    path = tmp_path / annotations_filename("val2014")
    path.write_text(path.read_text()[:-200])
    with pytest.raises(HyperguideError, match=annotations_filename("val2014")):
        build_from_vqa_v2(tmp_path, tmp_path / "meta")
    assert not (tmp_path / "meta" / "meta_train.json").exists()


def test_missing_file_names_it(tmp_path: Path) -> None:
    write_vqa(tmp_path, fixture_records(), subfolders=True)
    (tmp_path / "Questions" / questions_filename("train2014")).unlink()
    with pytest.raises(HyperguideError, match=questions_filename("train2014")):
        build_from_vqa_v2(tmp_path, tmp_path / "meta")


def test_question_without_annotation_is_an_error(tmp_path: Path) -> None:
    write_vqa(tmp_path, fixture_records(), subfolders=False)
    path = tmp_path / questions_filename("train2014")
    data = read(path)
    data["questions"].append({"image_id": 1, "question": "What?", "question_id": 999_999})
    path.write_text(json.dumps(data))
    with pytest.raises(HyperguideError, match="999999.*no annotation"):
        build_from_vqa_v2(tmp_path, tmp_path / "meta")


def test_annotation_without_question_is_an_error(tmp_path: Path) -> None:
    write_vqa(tmp_path, fixture_records(), subfolders=False)
    path = tmp_path / annotations_filename("val2014")
    data = read(path)
    data["annotations"][0]["question_id"] = 888_888
    path.write_text(json.dumps(data))
    with pytest.raises(HyperguideError, match="888888 has no question"):
        build_from_vqa_v2(tmp_path, tmp_path / "meta")


def test_wrong_top_level_is_an_error(tmp_path: Path) -> None:
    write_vqa(tmp_path, fixture_records(), subfolders=False)
    (tmp_path / questions_filename("val2014")).write_text(json.dumps({"annotations": []}))
    with pytest.raises(HyperguideError, match=f"{questions_filename('val2014')} has no 'questions' list"):
        build_from_vqa_v2(tmp_path, tmp_path / "meta")


def _set_field(path: Path, key: str, entry: int, field: str, value: object) -> None:
    data = read(path)
    data[key][entry][field] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("which", "field", "value", "expected"),
    [
        ("questions", "question_id", [1, 2], "a non-negative integer, got [1, 2]"),
        ("questions", "image_id", "abc", "a non-negative integer, got 'abc'"),
        ("questions", "image_id", True, "a non-negative integer, got True"),
        ("questions", "question", {"text": "What color?"}, "a non-empty string, got {'text': 'What color?'}"),
        ("questions", "question", "  ", "a non-empty string, got '  '"),
        ("annotations", "question_id", 3.0, "a non-negative integer, got 3.0"),
        ("annotations", "image_id", -4, "a non-negative integer, got -4"),
        ("annotations", "answer_type", ["other"], "a non-empty string, got ['other']"),
        ("annotations", "multiple_choice_answer", None, "a non-empty string, got None"),
        ("annotations", "multiple_choice_answer", "", "a non-empty string, got ''"),
    ],
)
def test_a_field_of_the_wrong_type_names_the_file_entry_and_field(
    tmp_path: Path, which: str, field: str, value: object, expected: str
) -> None:
    """N54: a list id was a TypeError traceback, a string image id a ValueError one, a null answer became the class
    "None" and an object question was stringified; each is now refused with the file, the entry and the field."""
    write_vqa(tmp_path, fixture_records(), subfolders=False)
    filename = questions_filename("train2014") if which == "questions" else annotations_filename("train2014")
    _set_field(tmp_path / filename, which, 3, field, value)
    message = f"VQA v2 file {tmp_path / filename}: entry 3's field '{field}' must be {expected}"
    with pytest.raises(HyperguideError) as caught:
        build_from_vqa_v2(tmp_path, tmp_path / "meta")
    assert str(caught.value) == message
    assert not (tmp_path / "meta").exists()


def test_a_long_odd_value_is_shown_shortened(tmp_path: Path) -> None:
    write_vqa(tmp_path, fixture_records(), subfolders=False)
    path = tmp_path / questions_filename("train2014")
    _set_field(path, "questions", 0, "question", {"text": "x" * 500})
    with pytest.raises(HyperguideError, match=r"entry 0's field 'question' must be a non-empty string, got \{'text'"):
        build_from_vqa_v2(tmp_path, tmp_path / "meta")
    with pytest.raises(HyperguideError) as caught:
        build_from_vqa_v2(tmp_path, tmp_path / "meta")
    assert str(caught.value).endswith("...") and "x" * 100 not in str(caught.value)


def test_prepare_metavqa_refuses_a_list_question_id_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hyperguide.cli import main

    root, home, coco = tmp_path / "vqa", tmp_path / "home", tmp_path / "coco"
    write_vqa(root, fixture_records(), subfolders=True)
    coco.mkdir()  # no images: the VQA files are read first
    path = root / "Questions" / questions_filename("val2014")
    _set_field(path, "questions", 0, "question_id", [7])
    assert main(["prepare", "metavqa", "--vqa-root", str(root), "--coco-root", str(coco), "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert f"error: VQA v2 file {path}: entry 0's field 'question_id' must be a non-negative integer, got [7]" in err
    assert "Traceback" not in err
    assert not home.exists()  # refused before anything was written
