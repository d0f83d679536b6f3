"""Build the Meta-VQA split files from the official VQA v2 question and annotation files (docs/design.md §2.1, 2.2).

Reads train2014 then val2014 (each in its annotation file's order, as the authors' script did), keeps the
"number" and "other" answer types, names images `COCO_{split}_{image_id:012d}`, then applies the source-independent
rules of `metavqa_rules`. Writes `meta_train.json`, `meta_test.json` and `ques_ans_count.json` in the authors' format.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hyperguide.data.metavqa_rules import build_meta_vqa, split_meta_train_test
from hyperguide.errors import HyperguideError
from hyperguide.io import read_json, write_json

VQA_SPLITS: tuple[str, ...] = ("train2014", "val2014")
KEPT_ANSWER_TYPES = frozenset({"number", "other"})


def questions_filename(split: str) -> str:
    return f"v2_OpenEnded_mscoco_{split}_questions.json"


def annotations_filename(split: str) -> str:
    return f"v2_mscoco_{split}_annotations.json"


def image_name(split: str, image_id: int) -> str:
    return f"COCO_{split}_{int(image_id):012d}"


def find_vqa_file(vqa_root: str | Path, filename: str, subfolder: str) -> Path:
    """`vqa_root/filename` or `vqa_root/subfolder/filename`; a clear error naming both places if neither exists."""
    root = Path(vqa_root)
    candidates = [root / filename, root / subfolder / filename]
    for path in candidates:
        if path.is_file():
            return path
    raise HyperguideError(
        f"VQA v2 file {filename} not found: looked for {candidates[0]} and {candidates[1]}. "
        "Download the VQA v2 questions and annotations (train2014 and val2014) into that folder."
    )


def _records_list(obj: Any, key: str, path: Path) -> list[dict[str, Any]]:
    if not isinstance(obj, dict) or not isinstance(obj.get(key), list):
        raise HyperguideError(f"VQA v2 file {path} has no {key!r} list at its top level; is it the right file?")
    records: list[dict[str, Any]] = obj[key]
    return records


def _field(entry: Any, name: str, path: Path, index: int) -> Any:
    if not isinstance(entry, dict) or name not in entry:
        raise HyperguideError(f"VQA v2 file {path}: entry {index} lacks the field {name!r}")
    return entry[name]


def _wrong(name: str, path: Path, index: int, expected: str, value: Any) -> HyperguideError:
    shown = repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:57]}..."
    return HyperguideError(f"VQA v2 file {path}: entry {index}'s field {name!r} must be {expected}, got {shown}")


def _int_field(entry: Any, name: str, path: Path, index: int) -> int:
    """An id: a non-negative integer (not a bool, not a string of digits), as the official files have."""
    value = _field(entry, name, path, index)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _wrong(name, path, index, "a non-negative integer", value)
    return value


def _text_field(entry: Any, name: str, path: Path, index: int) -> str:
    """A question, an answer or an answer type: a non-empty string (null or an object is not one)."""
    value = _field(entry, name, path, index)
    if not isinstance(value, str) or not value.strip():
        raise _wrong(name, path, index, "a non-empty string", value)
    return value


def read_split_records(vqa_root: str | Path, split: str) -> Iterator[tuple[str, str, str]]:
    """(question, image name, multiple_choice_answer) for one split's kept answer types, in annotation order."""
    q_path = find_vqa_file(vqa_root, questions_filename(split), "Questions")
    a_path = find_vqa_file(vqa_root, annotations_filename(split), "Annotations")
    questions = _records_list(read_json(q_path, what="VQA v2 questions file"), "questions", q_path)
    annotations = _records_list(read_json(a_path, what="VQA v2 annotations file"), "annotations", a_path)

    by_id: dict[int, tuple[str, int]] = {}
    for i, q in enumerate(questions):
        qid = _int_field(q, "question_id", q_path, i)
        by_id[qid] = (_text_field(q, "question", q_path, i), _int_field(q, "image_id", q_path, i))

    annotated: set[int] = set()
    for i, ann in enumerate(annotations):
        qid = _int_field(ann, "question_id", a_path, i)
        if qid not in by_id:
            raise HyperguideError(f"VQA v2 file {a_path}: question id {qid} has no question in {q_path}")
        annotated.add(qid)
        question, q_image = by_id[qid]
        image_id = _int_field(ann, "image_id", a_path, i)
        if image_id != q_image:
            raise HyperguideError(
                f"VQA v2 file {a_path}: question id {qid} is on image {image_id}, but {q_path} says image {q_image}"
            )
        if _text_field(ann, "answer_type", a_path, i) in KEPT_ANSWER_TYPES:
            yield question, image_name(split, image_id), _text_field(ann, "multiple_choice_answer", a_path, i)

    missing = [qid for qid in by_id if qid not in annotated]
    if missing:
        raise HyperguideError(
            f"VQA v2 file {q_path}: question id {missing[0]} ({len(missing)} in all) has no annotation in "
            f"{a_path}; the two files must be from the same split and release"
        )


def read_vqa_v2_records(vqa_root: str | Path) -> list[tuple[str, str, str]]:
    """Pooled train2014 then val2014 records (question, image name, answer) of the kept answer types."""
    return [record for split in VQA_SPLITS for record in read_split_records(vqa_root, split)]


def build_from_vqa_v2(vqa_root: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Write meta_train.json, meta_test.json and ques_ans_count.json to `out_dir`; return counts.

    `ques_ans_count.json` lists all tasks in order of first appearance (before the task shuffle), each with its
    answers in label order and their image counts, as the authors' file does.
    """
    records = read_vqa_v2_records(vqa_root)
    tasks = build_meta_vqa(records)
    train_questions, test_questions = split_meta_train_test(list(tasks))
    if not train_questions or not test_questions:
        raise HyperguideError(
            f"the VQA v2 files in {vqa_root} give {len(tasks)} task(s) under the Meta-VQA rules ({len(records)} "
            "question-answer records): too few for a meta-train and a meta-test side; no split file was written"
        )
    ques_ans_count: dict[str, dict[str, int]] = {}
    for question, task in tasks.items():
        counts = Counter(answer for _, answer in (*task["train"], *task["test"]))
        ques_ans_count[question] = {answer: counts[answer] for answer in task["answers"]}
    out = Path(out_dir)
    write_json(out / "meta_train.json", {q: tasks[q] for q in train_questions}, indent=None)
    write_json(out / "meta_test.json", {q: tasks[q] for q in test_questions}, indent=None)
    write_json(out / "ques_ans_count.json", ques_ans_count, indent=None)
    return {
        "records": len(records),
        "questions": len({q for q, _, _ in records}),
        "tasks": len(tasks),
        "meta_train_tasks": len(train_questions),
        "meta_test_tasks": len(test_questions),
        "pairs": sum(len(t["train"]) + len(t["test"]) for t in tasks.values()),
        "answer_classes": sum(len(t["answers"]) for t in tasks.values()),
        "images": len({image for t in tasks.values() for image, _ in (*t["train"], *t["test"])}),
    }
