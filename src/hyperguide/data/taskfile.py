"""Your own tasks as a file: the task-file format, read and checked before anything is computed (docs/own-tasks.md).

A `.json` file holds `{"tasks": [TASK, ...]}` or a bare list `[TASK, ...]`; a `.jsonl` file holds one TASK a line
(blank lines skipped). A TASK is an object:

    {"question": "Is the figure round?",                  required: a non-empty string
     "answers": ["yes", "no"],                            required: at least two distinct non-empty strings
     "prompts": ["a round figure", "a figure with corners"],   optional: one per answer, the text it is scored
                                                          against (default: the run's own rule for its universe)
     "kind": "yes/no",                                    optional: a tag the report groups tasks by
     "examples": [{"image": "0.png", "answer": "yes", "split": "query"}, ...]}
                                                          required, non-empty: an image (a path, or an image id of a
                                                          universe without encoders), its answer (one of `answers`)
                                                          and its side, "support" or "query" (default "query"
                                                          for `tasks prepare`; a `taskfile` universe splits the
                                                          examples without one 70/30 per answer)

Tasks and examples are numbered from 1 in messages. Every refusal is a `HyperguideError` that names the file, the
task (its number and question) and the field: `tasks.jsonl, task 3 ('Is it round?'): field 'answers' is missing`.
A task the run could not score is refused here too, never skipped: fewer than two answers, repeated answers or
prompts, an example whose answer is not one of the task's, no query example. So is a task that repeats an earlier
one (the same question, answers with their prompts, and examples, in any order; its `kind` aside): it would be scored
twice and count twice in every mean.

An image is a path (relative to the images root, which is the task file's folder unless given) or a reference to one
of the installed easy-vqa package's images, `easy-vqa:train/12` or `easy-vqa:test/7` (`image_paths`). A `.jsonl` file
is read a line at a time, so that a file the size of Meta-VQA (1,243 tasks, 104k examples) never sits in memory as
text.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hyperguide.errors import HyperguideError

Side = Literal["support", "query"]
SIDES: tuple[Side, ...] = ("support", "query")
TASK_FIELDS = ("question", "answers", "prompts", "kind", "examples")
EXAMPLE_FIELDS = ("image", "answer", "split")
SUFFIXES = (".json", ".jsonl")
EASYVQA_IMAGES = "easy-vqa:"  # `easy-vqa:train/12`: that image of the installed easy-vqa package


@dataclass(frozen=True, slots=True)
class Example:
    image: str  # as written in the file: a path (relative to the images root), an easy-vqa reference or an image id
    answer: str
    split: Side | None = "query"  # None: not given, and the reader was told not to default it (a taskfile universe)


@dataclass(frozen=True)
class TaskEntry:
    number: int  # its place in the file, from 1
    question: str
    answers: tuple[str, ...]
    prompts: tuple[str, ...] | None  # None: the run's own prompt rule
    examples: tuple[Example, ...]
    kind: str | None = None

    def side(self, split: Side) -> list[Example]:
        return [e for e in self.examples if e.split == split]


@dataclass(frozen=True)
class TaskFile:
    path: Path
    tasks: tuple[TaskEntry, ...]
    sha256: str  # of the file's bytes, recorded with the features prepared from it

    def where(self, task: TaskEntry, example: int | None = None) -> str:
        """The start of a message about `task` (and its example number `example`, from 1)."""
        text = f"{self.path}, task {task.number} ({task.question!r})"
        return text if example is None else f"{text}, example {example}"


def _check(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise HyperguideError(f"{where}: {what}")


def _text(value: Any, where: str, field: str) -> str:
    _check(
        isinstance(value, str) and bool(value.strip()),
        where,
        f"field {field!r} must be a non-empty string, got {value!r}",
    )
    return str(value).strip()


def _texts(value: Any, where: str, field: str) -> tuple[str, ...]:
    _check(isinstance(value, list), where, f"field {field!r} must be a list of strings, got {value!r}")
    out = tuple(_text(v, where, f"{field}[{i}]") for i, v in enumerate(value))
    repeated = sorted({v for v in out if out.count(v) > 1})
    _check(not repeated, where, f"field {field!r} repeats {repeated}: the run could not tell those answers apart")
    return out


def _unknown(obj: dict[str, Any], known: tuple[str, ...], where: str, what: str) -> None:
    extra = [k for k in obj if k not in known and not k.startswith("$")]  # "$comment" keys are notes
    if extra:
        raise HyperguideError(f"{where}: field {extra[0]!r} is not a field of {what} (its fields: {', '.join(known)})")


def parse_task(obj: Any, number: int, where: str, default_split: Side | None = "query") -> TaskEntry:
    """One task object, checked; `where` names the file (messages add the task and the field). An example without a
    `split` takes `default_split`; with None it stays unsplit, and the check that some example is a query example is
    left to whoever splits it."""
    at = f"{where}, task {number}"
    _check(isinstance(obj, dict), at, f"a task must be a JSON object, got {type(obj).__name__}")
    if isinstance(obj.get("question"), str) and obj["question"].strip():
        at = f"{at} ({obj['question'].strip()!r})"
    _unknown(obj, TASK_FIELDS, at, "a task")
    for required in ("question", "answers", "examples"):
        _check(required in obj, at, f"field {required!r} is missing")
    question = _text(obj["question"], at, "question")
    answers = _texts(obj["answers"], at, "answers")
    _check(len(answers) >= 2, at, f"field 'answers' must hold at least two answers to choose from, got {list(answers)}")
    prompts = None
    if obj.get("prompts") is not None:
        prompts = _texts(obj["prompts"], at, "prompts")
        count = f"one prompt per answer ({len(answers)}), got {len(prompts)}"
        _check(len(prompts) == len(answers), at, f"field 'prompts' must hold {count}")
    kind = None if obj.get("kind") is None else _text(obj["kind"], at, "kind")
    raw = obj["examples"]
    _check(isinstance(raw, list) and bool(raw), at, f"field 'examples' must be a non-empty list, got {raw!r}")
    examples = []
    for i, ex in enumerate(raw, 1):
        here = f"{at}, example {i}"
        _check(isinstance(ex, dict), here, f"an example must be a JSON object, got {ex!r}")
        _unknown(ex, EXAMPLE_FIELDS, here, "an example")
        for required in ("image", "answer"):
            _check(required in ex, here, f"field {required!r} is missing")
        image = _text(ex["image"], here, "image")
        answer = _text(ex["answer"], here, "answer")
        _check(answer in answers, here, f"answer {answer!r} is not one of the task's answers {list(answers)}")
        split = ex.get("split", default_split)
        _check(split in SIDES or "split" not in ex, here, f"field 'split' must be 'support' or 'query', got {split!r}")
        examples.append(Example(image, answer, split))
    if default_split is not None:
        nothing = "no example has split 'query' (the default): the task has nothing to be scored on"
        _check(any(e.split == "query" for e in examples), at, nothing)
    return TaskEntry(number, question, answers, prompts, tuple(examples), kind)


def _too_deep(where: str) -> HyperguideError:
    return HyperguideError(
        f"{where}: JSON nested too deeply to be read (arrays or objects inside one another beyond Python's recursion "
        "limit); a task file nests a few levels: tasks, examples"
    )


def _utf8(data: bytes, path: Path, offset: int = 0) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HyperguideError(f"{path}: not UTF-8 text ({e.reason} at byte {offset + e.start})") from None


def _jsonl_objects(path: Path, digest: Any) -> Iterator[Any]:
    """The objects of a `.jsonl` file, a line at a time (blank lines skipped), each line's bytes fed to `digest`."""
    offset = 0
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, 1):
            digest.update(raw)
            line = _utf8(raw, path, offset)
            offset += len(raw)
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise HyperguideError(f"{path}, line {line_no}: not valid JSON ({e.msg}, column {e.colno})") from None
            except RecursionError:
                raise _too_deep(f"{path}, line {line_no}") from None


def _json_objects(path: Path, text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise HyperguideError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise _too_deep(str(path)) from None
    if isinstance(data, dict):
        _unknown(data, ("tasks",), str(path), "a task file")
        _check("tasks" in data, str(path), "field 'tasks' is missing (a task file is {\"tasks\": [...]} or a list)")
        data = data["tasks"]
    _check(isinstance(data, list), str(path), f"'tasks' must be a list of task objects, got {type(data).__name__}")
    return list(data)


def read_task_file(path: str | Path, *, default_split: Side | None = "query") -> TaskFile:
    """The tasks of a `.json` or `.jsonl` task file, every field checked (the module's docstring says how). An
    example without a `split` takes `default_split` (None: it stays unsplit, for a universe to split)."""
    path = Path(path)
    suffix = repr(path.suffix) if path.suffix else "a name without one"
    _check(path.suffix in SUFFIXES, str(path), f"a task file's name ends in .json or .jsonl, not {suffix}")
    if not path.is_file():
        raise HyperguideError(f"task file not found: {path}")
    digest = hashlib.sha256()
    if path.suffix == ".jsonl":  # every line is read as JSON before any task is checked: a syntax error first
        objects = list(_jsonl_objects(path, digest))
    else:
        data = path.read_bytes()
        digest.update(data)
        objects = _json_objects(path, _utf8(data, path))
    tasks = tuple(parse_task(obj, i, str(path), default_split) for i, obj in enumerate(objects, 1))
    _check(bool(tasks), str(path), "the file holds no task")
    _refuse_repeats(path, tasks)
    return TaskFile(path, tasks, digest.hexdigest())


def _identity(task: TaskEntry) -> tuple[Any, ...]:
    """What a task is scored on: its question, its answers with their prompts, its examples (orders and kind aside)."""
    prompts: tuple[str | None, ...] = task.prompts if task.prompts is not None else (None,) * len(task.answers)
    answers = sorted(zip(task.answers, prompts, strict=True), key=repr)
    return task.question, tuple(answers), tuple(sorted((e.image, e.answer, e.split or "") for e in task.examples))


def _refuse_repeats(path: Path, tasks: tuple[TaskEntry, ...]) -> None:
    """An exact repeat of an earlier task would be scored twice and count twice in every mean: refused."""
    seen: dict[tuple[Any, ...], TaskEntry] = {}
    for task in tasks:
        first = seen.setdefault(_identity(task), task)
        _check(
            first is task,
            f"{path}, task {task.number} ({task.question!r})",
            f"repeats task {first.number}: the same question, answers, prompts and examples would be scored twice "
            "and count twice in every mean; remove one of them",
        )


# ------------------------------------------------------------------------------------------------------ images


def easyvqa_image(reference: str) -> Path | None:
    """The installed easy-vqa package's image file named by `easy-vqa:train/12` (or `test/7`); None if there is no
    such image (a split other than train and test, an id it does not have)."""
    split, _, number = reference.removeprefix(EASYVQA_IMAGES).partition("/")
    if split not in ("train", "test") or not number.isdigit():
        return None
    import easy_vqa

    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    found = paths.get(int(number))
    return None if found is None else Path(found)


def inside(root: Path, relative: Path, what: str) -> Path:
    """`root / relative` with its `..` resolved, refused if that climbs out of `root` (a link in it is followed)."""
    base = Path(os.path.normpath(root.absolute()))
    joined = Path(os.path.normpath(base / relative))
    if not joined.is_relative_to(base):
        raise HyperguideError(
            f"{what} {str(relative)!r} lies outside the images root {root} (a relative path must stay inside it: "
            "give --images-root a folder that holds it, or an absolute path)"
        )
    return root / relative


def image_path(raw: str, base: Path, where: str) -> Path:
    """The file an example's image names: an `easy-vqa:` reference, an absolute path, or a path relative to `base`
    (which it may not climb out of); a `HyperguideError` starting with `where` if it does not exist."""
    if raw.startswith(EASYVQA_IMAGES):
        found = easyvqa_image(raw)
        if found is None or not found.is_file():
            raise HyperguideError(
                f"{where}: image {raw!r} is not an image of the installed easy-vqa package (its images are "
                f"{EASYVQA_IMAGES}train/0 .. train/3999 and {EASYVQA_IMAGES}test/0 .. test/999)"
            )
        return found
    path = Path(raw).expanduser()
    resolved = path if path.is_absolute() else inside(base, path, f"{where}: image")
    if not resolved.is_file():
        looked = f"looked for {resolved}" if path.is_absolute() else f"looked in {base}"
        raise HyperguideError(f"{where}: image {raw!r} does not exist ({looked})")
    return resolved


def image_paths(tasks: TaskFile, images_root: Path | None) -> dict[str, Path]:
    """{image as written in the file: its file}, each checked to exist (`image_path`); relative paths are relative
    to `images_root`, else to the task file's folder."""
    base = images_root if images_root is not None else tasks.path.parent
    out: dict[str, Path] = {}
    for task in tasks.tasks:
        for number, example in enumerate(task.examples, 1):
            if example.image not in out:
                out[example.image] = image_path(example.image, base, tasks.where(task, number))
    return out


def text_uses(tasks: TaskFile, prompts: Sequence[Sequence[str]], field: str = "prompts") -> dict[str, str]:
    """{question or answer prompt: where it is first used, `FILE, task N ('...'): field 'question'`}, in the file's
    order; `prompts[i]` are task i's answer prompts, named as `field` where the task gives none of its own."""
    out: dict[str, str] = {}
    for task, task_prompts in zip(tasks.tasks, prompts, strict=True):
        out.setdefault(task.question, f"{tasks.where(task)}: field 'question'")
        named = "prompts" if task.prompts is not None else field
        for text in task_prompts:
            out.setdefault(text, f"{tasks.where(task)}: field {named!r}")
    return out


def first_uses(tasks: TaskFile) -> dict[str, str]:
    """{image: where it is first used, `FILE, task N ('...'), example M: image 'raw'`}, in one pass."""
    out: dict[str, str] = {}
    for task in tasks.tasks:
        for number, example in enumerate(task.examples, 1):
            if example.image not in out:
                out[example.image] = f"{tasks.where(task, number)}: image {example.image!r}"
    return out
