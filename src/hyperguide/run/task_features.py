"""Your own tasks' features: a task file prepared with a trained run's encoders (`hyperguide tasks prepare`;
docs/own-tasks.md), and read back for `run.task_eval`.

    from hyperguide.run.task_features import prepare_tasks
    features = prepare_tasks("wording.jsonl", "runs/easyvqa-random", images_root="images/")

`prepare_tasks` reads and checks the file (`data.taskfile`), checks that the universe prepared here is the very data
the run was trained on (its fingerprint is the one the run's checkpoints record: other encoders would give features
the run never saw), and embeds the questions (pooled, and token states where the universe has them), the answer
prompts (the file's, or the universe's rule under the run's `prompts`) and the images with the universe's encoders.
A universe without encoders (`synthetic`) is read through its own feature tables instead (`universes.tables`): the
file's texts must be texts it holds features for, and its images are the universe's image ids. Everything is checked
and computed before anything is written; the features folder's manifest is written last. An `--out` that is a
prepared universe's folder, a run's, or holds another kind of manifest is refused first (`check_features_dir`);
relative image paths must stay inside the images root.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from hyperguide.config import RunConfig
from hyperguide.data.features import MANIFEST, FeatureTable
from hyperguide.data.taskfile import TaskEntry, TaskFile, first_uses, image_paths, read_task_file, text_uses
from hyperguide.data.tasks import Task, TaskSpec, Universe
from hyperguide.data.tokens import QUESTION_TOKENS_FILE, TokenTable
from hyperguide.encoders.batches import in_batches
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback, Note, emit
from hyperguide.io import file_sha256, read_json, write_json
from hyperguide.report.task_report import UNTAGGED, TaskInfo
from hyperguide.trained.folder import CONFIG, RunFolder
from hyperguide.trained.loading import check_trained_on
from hyperguide.universes import UNIVERSES, Encoders, UniverseOptions, load_universe, universe_encoders
from hyperguide.universes.tables import TableEncoders

FORMAT = "hyperguide.own_tasks/1"
TASKS_FILE = "tasks.json"
TEXT_FEATURES = "text_features.safetensors"
IMAGE_FEATURES = "image_features.safetensors"


def default_features_dir(task_file: str | Path) -> Path:
    """`<folder>/<stem>.features` beside the task file."""
    path = Path(task_file)
    return path.with_name(f"{path.stem}.features")


# ------------------------------------------------------------------------------------------------------- prepare


def _encoders(
    config: RunConfig, options: UniverseOptions, universe: Universe, callbacks: Sequence[Callback]
) -> Encoders:
    try:
        return universe_encoders(config.universe, options, prompts=config.prompts)
    except HyperguideError as e:  # no encoders: its own tables
        emit(callbacks, Note(f"universe {config.universe} has no encoders here ({e}); using its own feature tables"))
        return TableEncoders(universe, str(e))


def _image_inputs(tasks: TaskFile, encoders: Encoders, images_root: Path | None) -> dict[str, str | Path]:
    """{image as written in the file: what the encoders read (a path, or a table's image id)}, each checked."""
    if not isinstance(encoders, TableEncoders):
        return dict(image_paths(tasks, images_root))
    out: dict[str, str | Path] = {}
    for task in tasks.tasks:
        for number, example in enumerate(task.examples, 1):
            raw = example.image
            if raw not in out and not encoders.has_image(raw):
                first = encoders.images_table.keys[0] if encoders.images_table.keys else "?"
                raise HyperguideError(
                    f"{tasks.where(task, number)}: image {raw!r} is not an image of universe "
                    f"{encoders.universe.name!r} (a universe without encoders names its images by its own ids, "
                    f"such as {first!r})"
                )
            out[raw] = raw
    return out


def _prompts(tasks: TaskFile, encoders: Encoders) -> list[tuple[str, ...]]:
    out = []
    for task in tasks.tasks:
        if task.prompts is not None:
            out.append(task.prompts)
            continue
        try:
            prompts = tuple(encoders.prompt(task.question, a) for a in task.answers)
        except HyperguideError as e:
            raise HyperguideError(f"{tasks.where(task)}: field 'prompts' is needed here: {e}") from None
        repeated = sorted({p for p in prompts if prompts.count(p) > 1})
        if repeated:
            raise HyperguideError(
                f"{tasks.where(task)}: the run's prompt rule gives answers the same prompt {repeated}: the run could "
                "not tell them apart; give the task's 'prompts'"
            )
        out.append(prompts)
    return out


def prepare_tasks(
    task_file: str | Path,
    run_dir: str | Path,
    *,
    images_root: str | Path | None = None,
    out: str | Path | None = None,
    options: UniverseOptions | None = None,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Embed a task file's tasks with the encoders of run `run_dir`'s universe into the features folder `out`
    (default: `default_features_dir(task_file)`); returns that folder. Image paths are relative to `images_root`
    (default: the task file's folder) unless absolute. Nothing is written unless every task can be scored."""
    tasks = read_task_file(task_file)
    run = RunFolder(Path(run_dir))
    config = run.read_config()
    options = options or UniverseOptions()
    root = None if images_root is None else Path(images_root)
    if root is not None and not root.is_dir():
        raise HyperguideError(f"--images-root {root} is not a folder")
    out_dir = check_features_dir(default_features_dir(task_file) if out is None else Path(out), options.home)

    universe = load_universe(config.universe, options, prompts=config.prompts)
    data = check_trained_on(universe, run, config, options.folder(config.universe))
    encoders = _encoders(config, options, universe, callbacks)
    images = _image_inputs(tasks, encoders, root)
    prompts = _prompts(tasks, encoders)
    n_examples = sum(len(t.examples) for t in tasks.tasks)
    emit(callbacks, Note(f"{tasks.path}: {len(tasks.tasks)} tasks, {n_examples} examples, {len(images)} images"))

    blame = text_uses(tasks, prompts)
    texts = list(blame)
    questions = list(dict.fromkeys(t.question for t in tasks.tasks))
    text_features = torch.cat(in_batches(encoders.texts, texts, blame, "task texts", callbacks))
    token_rows = [
        r for rows in in_batches(encoders.question_tokens, questions, blame, "questions", callbacks) for r in rows
    ]
    image_blame = first_uses(tasks)
    keys = list(images)
    image_features = torch.cat(
        in_batches(lambda ks: encoders.images([images[k] for k in ks]), keys, image_blame, "task images", callbacks)
    )

    text_table = FeatureTable(texts, text_features, source=f"{out_dir / TEXT_FEATURES}")
    image_table = FeatureTable(keys, image_features, source=f"{out_dir / IMAGE_FEATURES}")
    tokens = TokenTable.from_rows(questions, token_rows, source=f"{out_dir / QUESTION_TOKENS_FILE}")
    records = [_record(task, p) for task, p in zip(tasks.tasks, prompts, strict=True)]
    _build_universe(records, text_table, image_table, tokens)  # every task builds, before anything is written

    (out_dir / MANIFEST).unlink(missing_ok=True)  # from here on, the folder is not trusted until its manifest is back
    text_table.save(out_dir / TEXT_FEATURES)
    image_table.save(out_dir / IMAGE_FEATURES)
    tokens.save(out_dir / QUESTION_TOKENS_FILE)
    write_json(out_dir / TASKS_FILE, {"tasks": records})
    universe_manifest = options.folder(config.universe) / MANIFEST
    write_json(
        out_dir / MANIFEST,
        {
            "format": FORMAT,
            "task_file": str(tasks.path),
            "task_file_sha256": tasks.sha256,
            "images_root": str(root if root is not None else tasks.path.parent),
            "run": str(run.path),
            "universe": config.universe,
            "prompts": config.prompts,
            "data": data,
            "encoders": {
                "kind": "feature tables" if isinstance(encoders, TableEncoders) else "encoders",
                "class": type(encoders).__name__,
                "universe_folder": str(options.folder(config.universe)),
                "universe_manifest_sha256": file_sha256(universe_manifest) if universe_manifest.is_file() else None,
                "seed": options.seed,
            },
            "text_dim": text_table.dim,
            "image_dim": image_table.dim,
            "files": {
                name: file_sha256(out_dir / name)
                for name in (TASKS_FILE, TEXT_FEATURES, IMAGE_FEATURES, QUESTION_TOKENS_FILE)
            },
        },
    )
    return out_dir


def _within(path: Path, folder: Path) -> bool:
    inner, outer = path.resolve(), folder.resolve()
    return inner == outer or outer in inner.parents


def refuse_run_folder(folder: Path, harm: str) -> None:
    if (folder / CONFIG).exists():
        raise HyperguideError(
            f"--out {folder} holds a run (its {CONFIG}): {harm}; give a folder of its own, or leave --out out for "
            "the default one"
        )


def check_features_dir(out_dir: Path, home: Path) -> Path:
    """`out_dir` if `tasks prepare` may write its features there: a folder (or nothing yet) that is neither a
    prepared universe's, nor a run's, nor holds a manifest.json other than own-task features' (an earlier `tasks
    prepare` output is replaced); else a `HyperguideError` saying what is right. Nothing is written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise HyperguideError(f"--out {out_dir} is a file, not a folder: give a folder for the features")
    for name in UNIVERSES:
        if _within(out_dir, Path(home) / name):
            raise HyperguideError(
                f"--out {out_dir} is in the folder of the prepared universe {name!r} ({Path(home) / name}): the "
                "features would replace the universe's own files; give a folder outside it (the default is "
                "beside the task file)"
            )
    refuse_run_folder(out_dir, "the task features would be written among the run's files")
    manifest = out_dir / MANIFEST
    if manifest.exists() and (json_object(manifest) or {}).get("format") != FORMAT:
        raise HyperguideError(
            f"--out {out_dir} holds a {MANIFEST} that is not one of own-task features (format {FORMAT!r}): it is "
            "another folder's, such as a prepared universe's; give a new folder, or one an earlier `hyperguide "
            "tasks prepare` wrote"
        )
    return out_dir


def json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None for a file that is not one (unreadable, malformed, another type)."""
    try:
        data = read_json(path, what="JSON file")
    except HyperguideError:  # read_json names every failure, nesting too deep included
        return None
    return data if isinstance(data, dict) else None


def _record(task: TaskEntry, prompts: tuple[str, ...]) -> dict[str, Any]:
    """A task as tasks.json stores it: its structure, labels indexing its answers."""
    sides = {side: task.side(side) for side in ("support", "query")}
    return {
        "question": task.question,
        "answers": list(task.answers),
        "prompts": list(prompts),
        "prompts_from": "file" if task.prompts is not None else "run",
        "kind": task.kind or UNTAGGED,
        **{f"{side}_images": [e.image for e in ex] for side, ex in sides.items()},
        **{f"{side}_labels": [task.answers.index(e.answer) for e in ex] for side, ex in sides.items()},
    }


def _build_universe(
    records: Sequence[Mapping[str, Any]], texts: FeatureTable, images: FeatureTable, tokens: TokenTable
) -> Universe:
    specs = [
        TaskSpec(
            question=r["question"],
            answers=tuple(r["answers"]),
            prompts=tuple(r["prompts"]),
            support_images=tuple(r["support_images"]),
            support_labels=tuple(r["support_labels"]),
            query_images=tuple(r["query_images"]),
            query_labels=tuple(r["query_labels"]),
        )
        for r in records
    ]
    universe = Universe(
        name="own tasks",
        tasks=specs,
        meta_train=(),
        meta_test=tuple(range(len(specs))),
        image_features=images,
        text_features=texts,
        question_tokens=tokens,
    )
    universe.materialize(range(len(specs)))  # every key is there
    return universe


# ---------------------------------------------------------------------------------------------------------- read


def read_task_features(features_dir: str | Path) -> tuple[dict[str, Any], list[TaskInfo], list[Task]]:
    """A prepared features folder: its manifest, its tasks as the report lists them, and its `Task`s. Every file
    must be the one the manifest records (its sha256)."""
    folder = Path(features_dir)
    manifest = read_json(folder / MANIFEST, what="task features manifest")
    where = f"task features manifest {folder / MANIFEST}"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise HyperguideError(
            f"{where} is not of format {FORMAT!r}: prepare the features again (hyperguide tasks prepare)"
        )
    for key, kind in (("universe", str), ("prompts", str), ("data", str), ("task_file", str), ("files", dict)):
        if not isinstance(manifest.get(key), kind):
            raise HyperguideError(f"{where}: field {key!r} must be a {kind.__name__}, got {manifest.get(key)!r}")
    for key in ("text_dim", "image_dim"):
        if not _count(manifest.get(key)) or manifest[key] < 1:
            raise HyperguideError(f"{where}: field {key!r} must be a positive integer, got {manifest.get(key)!r}")
    for name in (TASKS_FILE, TEXT_FEATURES, IMAGE_FEATURES, QUESTION_TOKENS_FILE):
        sha = manifest["files"].get(name)
        if not (folder / name).is_file() or file_sha256(folder / name) != sha:
            raise HyperguideError(
                f"{folder / name} is not the file its manifest records (its sha256 differs): prepare again"
            )
    listed = read_json(folder / TASKS_FILE, what="task list")
    records = listed.get("tasks") if isinstance(listed, dict) else None
    if not isinstance(records, list) or not records:
        raise HyperguideError(f"{folder / TASKS_FILE} lists no tasks: prepare the features again")
    for number, record in enumerate(records, 1):
        _check_record(record, f"{folder / TASKS_FILE}, task {number}")
    universe = _build_universe(
        records,
        FeatureTable.load(folder / TEXT_FEATURES, dim=manifest.get("text_dim")),
        FeatureTable.load(folder / IMAGE_FEATURES, dim=manifest.get("image_dim")),
        TokenTable.load(folder / QUESTION_TOKENS_FILE),
    )
    infos: list[TaskInfo] = [
        {
            "question": r["question"],
            "kind": r["kind"],
            "answers": list(r["answers"]),
            "support": len(r["support_images"]),
            "query": len(r["query_images"]),
        }
        for r in records
    ]
    return manifest, infos, universe.materialize(range(len(records)))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


RECORD_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "question": ("a string", lambda v: isinstance(v, str)),
    "kind": ("a string", lambda v: isinstance(v, str)),
    **{
        key: ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
        for key in ("answers", "prompts", "support_images", "query_images")
    },
    **{
        key: ("a list of integers", lambda v: isinstance(v, list) and all(_count(x) for x in v))
        for key in ("support_labels", "query_labels")
    },
}


def _check_record(record: Any, where: str) -> None:
    """A tasks.json record has every field `_build_universe` and the report read, of its type."""
    again = "prepare the features again (hyperguide tasks prepare)"
    if not isinstance(record, dict):
        raise HyperguideError(f"{where}: a task record must be a JSON object, got {record!r}: {again}")
    for key, (what, ok) in RECORD_FIELDS.items():
        if key not in record:
            raise HyperguideError(f"{where}: field {key!r} is missing: {again}")
        if not ok(record[key]):
            raise HyperguideError(f"{where}: field {key!r} must be {what}, got {record[key]!r}: {again}")
