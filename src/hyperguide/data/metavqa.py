"""The Meta-VQA task structure (docs/design.md §2): the authors' split files -> tasks, stand-in features, and the
layout of a prepared features folder (its CLIP features are computed by `hyperguide.universes.metavqa`).

Split files (docs/design.md §2.2): `meta_train.json`, `meta_test.json` (`{question: {"train", "test", "answers"}}`), the
answer-prompt templates `prompt_meta.json` (`{question: template}`) and optionally `ques_ans_count.json`, whose
per-question key order is the label order and must agree with each task's `"answers"`.

Answer prompt of answer `a` for question `q`: `prompt_meta[q]` with its one `{}` slot filled by `a.replace("_", " ")`
(as `str.format` would, `{{` and `}}` being literal braces, but no other field is allowed and nothing is evaluated).
A question with no template falls back to `FALLBACK_PROMPT` (the answer itself); `universe.info["prompt_fallbacks"]`
counts those tasks. Every entry is checked when read: answers and image names are non-empty strings (an image name a
plain file name, never a path), every task has examples on both sides, and each file holds at least one task.

A prepared features folder holds `image_features.safetensors` (one row per COCO image name),
`text_features.safetensors` (one row per question and per answer prompt, keyed by the text),
`question_tokens.safetensors` (each question's token states), `image_shards/` (resumable image-feature shards,
removed once complete) and `manifest.json`, written last: its presence means the folder is complete.
"""

from __future__ import annotations

import string
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from hyperguide.data.features import MANIFEST, FeatureTable
from hyperguide.data.tasks import TaskSpec, Universe
from hyperguide.data.tokens import TokenTable
from hyperguide.errors import HyperguideError, HyperguideWarning
from hyperguide.io import read_json

DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14-336"
DEFAULT_HELD_OUT_CONCEPTS: tuple[str, ...] = ("dog", "cat")
FALLBACK_PROMPT = "{}"  # a question without a template is scored against the answer itself
MANIFEST_FORMAT = 1
IMAGE_FEATURES = "image_features.safetensors"
TEXT_FEATURES = "text_features.safetensors"
IMAGE_SHARDS = "image_shards"


# ---------------------------------------------------------------------------------------------------- structure


def plain_name(name: Any) -> bool:
    """An image name is a plain file name: a non-empty string without a folder, '.' or '..', so that the image it
    names lies in its folder."""
    return isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


def template_pieces(template: Any) -> list[str] | None:
    """The literal text before and after the one `{}` slot of an answer-prompt template (`{{`, `}}` unescaped), or
    None when it is not a string with exactly one `{}` and no other replacement field."""
    if not isinstance(template, str):
        return None
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:  # a lone { or }
        return None
    if [(name, spec, conv) for _, name, spec, conv in parsed if name is not None] != [("", "", None)]:
        return None
    before, after = "", ""
    seen = False
    for literal, name, _, _ in parsed:
        if seen:
            after += literal
        else:
            before += literal
            seen = name is not None
    return [before, after]


def answer_prompt(template: str, answer: str) -> str:
    """The template's one `{}` slot filled with the answer (underscores as spaces); nothing else is interpreted."""
    pieces = template_pieces(template)
    if pieces is None:
        raise HyperguideError(f"answer-prompt template {template!r} must hold exactly one {{}} slot")
    return pieces[0] + answer.replace("_", " ") + pieces[1]


def _read_tasks(path: Path) -> dict[str, dict[str, Any]]:
    data = read_json(path, what="Meta-VQA split file")
    if not isinstance(data, dict):
        raise HyperguideError(f"Meta-VQA split file {path} must be a JSON object {{question: task}}")
    if not data:
        raise HyperguideError(f"Meta-VQA split file {path} holds no task; each side of the split needs at least one")
    for question, task in data.items():
        if not question.strip():
            raise HyperguideError(f"Meta-VQA split file {path}: a task's question is empty")
        if not isinstance(task, dict) or not all(isinstance(task.get(k), list) for k in ("train", "test", "answers")):
            raise HyperguideError(
                f"Meta-VQA split file {path}: task {question!r} needs 'train', 'test' and 'answers' lists"
            )
        if not all(isinstance(a, str) and a.strip() for a in task["answers"]):
            raise HyperguideError(
                f"Meta-VQA split file {path}: task {question!r} has answers {task['answers']!r}; each must be a "
                "non-empty string"
            )
        for side in ("train", "test"):
            if not task[side]:
                raise HyperguideError(
                    f"Meta-VQA split file {path}: task {question!r} has no {side!r} examples; it needs at least one"
                )
    return data


def _examples(
    pairs: list[Any], label_of: dict[str, int], path: Path, question: str
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    images: list[str] = []
    labels: list[int] = []
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise HyperguideError(
                f"Meta-VQA split file {path}: task {question!r} has an example {pair!r}, expected [image_name, answer]"
            )
        image, answer = pair
        if not plain_name(image):
            raise HyperguideError(
                f"Meta-VQA split file {path}: task {question!r} has an example with image {image!r}; an image is "
                "named by a plain file name (no folder, not '.' or '..')"
            )
        if not isinstance(answer, str) or answer not in label_of:
            raise HyperguideError(
                f"Meta-VQA split file {path}: task {question!r} has an example with answer {answer!r}, "
                "which is not in its 'answers' list"
            )
        images.append(image)
        labels.append(label_of[answer])
    return tuple(images), tuple(labels)


def _check_label_order(path: Path, counts: Any, tasks: dict[str, dict[str, Any]]) -> None:
    if not isinstance(counts, dict):
        raise HyperguideError(f"{path} must be a JSON object {{question: {{answer: count}}}}")
    if set(counts) != set(tasks):
        extra = sorted(set(counts) - set(tasks))[:3]
        missing = sorted(set(tasks) - set(counts))[:3]
        raise HyperguideError(
            f"{path} does not list the same tasks as the split files (missing: {missing}, extra: {extra})"
        )
    for question, task in tasks.items():
        entry = counts[question]
        if not isinstance(entry, dict) or list(entry) != task["answers"]:
            raise HyperguideError(
                f"{path}: the answers of {question!r} are not in the split files' label order {task['answers']}"
            )
        seen = Counter(answer for _, answer in (*task["train"], *task["test"]))
        if any(entry[a] != seen[a] for a in entry):
            raise HyperguideError(f"{path}: the answer counts of {question!r} differ from the split files")


def load_split_files(
    splits_dir: str | Path,
    prompts_file: str | Path | None = None,
    *,
    held_out_concepts: tuple[str, ...] = DEFAULT_HELD_OUT_CONCEPTS,
) -> Universe:
    """The Meta-VQA task structure (no features): meta-train tasks, then meta-test tasks.

    `prompts_file` defaults to `splits_dir/prompt_meta.json`; if that default is absent every task falls back to
    `FALLBACK_PROMPT` (with a warning). An explicitly given prompts file must exist.
    """
    splits_dir = Path(splits_dir)
    train_path, test_path = splits_dir / "meta_train.json", splits_dir / "meta_test.json"
    train_tasks, test_tasks = _read_tasks(train_path), _read_tasks(test_path)
    both = set(train_tasks) & set(test_tasks)
    if both:
        raise HyperguideError(f"{train_path} and {test_path} share {len(both)} task(s), e.g. {sorted(both)[0]!r}")
    all_tasks = {**train_tasks, **test_tasks}

    counts_path = splits_dir / "ques_ans_count.json"

    if prompts_file is None and not (splits_dir / "prompt_meta.json").is_file():
        templates: dict[str, Any] = {}
        prompts_path = None
        warnings.warn(
            f"no prompt_meta.json in {splits_dir}: every answer prompt falls back to the answer itself",
            HyperguideWarning,
            stacklevel=2,
        )
    else:
        prompts_path = Path(prompts_file) if prompts_file is not None else splits_dir / "prompt_meta.json"
        templates = read_json(prompts_path, what="Meta-VQA prompt file")
        if not isinstance(templates, dict):
            raise HyperguideError(f"Meta-VQA prompt file {prompts_path} must be a JSON object {{question: template}}")

    specs: list[TaskSpec] = []
    fallbacks = 0
    for source, tasks in ((train_path, train_tasks), (test_path, test_tasks)):
        for question, task in tasks.items():
            answers = tuple(task["answers"])
            label_of = {a: i for i, a in enumerate(answers)}
            if len(label_of) != len(answers) or len(answers) < 2:
                raise HyperguideError(f"{source}: task {question!r} needs >= 2 distinct answers, got {list(answers)}")
            template = templates.get(question)
            if template is None:
                fallbacks += 1
                template = FALLBACK_PROMPT
            elif template_pieces(template) is None:
                raise HyperguideError(
                    f"Meta-VQA prompt file {prompts_path}: the template of {question!r} must be a string with "
                    "exactly one {} slot and no other {...} field ({{ and }} for literal braces), "
                    f"got {template!r}"
                )
            support = _examples(task["train"], label_of, source, question)
            query = _examples(task["test"], label_of, source, question)
            specs.append(
                TaskSpec(
                    question=question,
                    answers=answers,
                    prompts=tuple(answer_prompt(template, a) for a in answers),
                    support_images=support[0],
                    support_labels=support[1],
                    query_images=query[0],
                    query_labels=query[1],
                )
            )
    if counts_path.is_file():  # after every example was checked
        _check_label_order(counts_path, read_json(counts_path, what="Meta-VQA label-order file"), all_tasks)
    n_train = len(train_tasks)
    return Universe(
        name="metavqa",
        tasks=specs,
        meta_train=tuple(range(n_train)),
        meta_test=tuple(range(n_train, len(specs))),
        held_out_concepts=tuple(held_out_concepts),
        info={
            "prompts_file": str(prompts_path) if prompts_path else None,
            "prompt_fallbacks": fallbacks,
            "label_order_checked": counts_path.is_file(),
        },
        shared_space=True,  # CLIP's image and text embeddings
    )


def image_keys(universe: Universe) -> list[str]:
    """Every image name of the universe, sorted."""
    return sorted({i for t in universe.tasks for i in (*t.support_images, *t.query_images)})


def text_keys(universe: Universe) -> list[str]:
    """Every question and answer prompt of the universe, sorted (the text feature table's keys)."""
    return sorted({t.question for t in universe.tasks} | {p for t in universe.tasks for p in t.prompts})


# ---------------------------------------------------------------------------------------------------- stand-in


def standin_universe(splits_dir: str | Path, dim: int = 768, seed: int = 0) -> Universe:
    """The Meta-VQA structure with random N(0, 1) float32 features, for paper-scale speed benchmarks only.

    One `torch.Generator` seeded `seed` draws the image rows (sorted image names), then the text rows (sorted texts).
    Question tokens (one per word, plus 2 for start and end tokens) come from a second generator seeded `seed + 1`,
    centred on the question's text row so that their mean is its pooled stand-in.
    """
    universe = load_split_files(splits_dir)
    generator = torch.Generator().manual_seed(seed)
    images, texts = image_keys(universe), text_keys(universe)
    universe.image_features = FeatureTable(
        images, torch.randn(len(images), dim, generator=generator), source="<metavqa stand-in images>"
    )
    universe.text_features = FeatureTable(
        texts, torch.randn(len(texts), dim, generator=generator), source="<metavqa stand-in texts>"
    )
    universe.question_tokens = _standin_question_tokens(universe.tasks, universe.text_features, seed + 1)
    universe.name = "metavqa-standin"
    universe.info.update(standin_seed=seed, standin_dim=dim)
    return universe


def _standin_question_tokens(tasks: list[TaskSpec], texts: FeatureTable, seed: int) -> TokenTable:
    """Random tokens per question, one per word plus 2, centred on the question's stand-in text row."""
    generator = torch.Generator().manual_seed(seed)
    questions = sorted({t.question for t in tasks})
    rows = []
    for question, emb in zip(questions, texts.get(questions), strict=True):
        spread = torch.randn(len(question.split()) + 2, emb.shape[0], generator=generator)
        rows.append(emb + spread - spread.mean(0))
    return TokenTable.from_rows(questions, rows, source="<metavqa stand-in question tokens>")


# ---------------------------------------------------------------------------------------------------- CLIP features


def coco_image_path(coco_root: str | Path, name: str) -> Path:
    """`coco_root/<train2014|val2014>/<name>.jpg`, else `coco_root/<name>.jpg`; a clear error naming it if neither.
    A name that is not a plain file name (a folder, `..`) is refused: nothing outside `coco_root` is read."""
    if not plain_name(name):
        raise HyperguideError(f"image name {name!r} is not a plain file name; nothing outside {coco_root} is read")
    root = Path(coco_root)
    parts = name.split("_")
    candidates = [root / parts[1] / f"{name}.jpg"] if len(parts) == 3 and parts[0] == "COCO" else []
    candidates.append(root / f"{name}.jpg")
    for path in candidates:
        if path.is_file():
            return path
    raise HyperguideError(f"COCO image {name} not found: looked for {' and '.join(str(c) for c in candidates)}")


def read_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of a complete features folder, or None if there is none."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    manifest = read_json(path, what="Meta-VQA features manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise HyperguideError(f"Meta-VQA features manifest {path} is not a format-{MANIFEST_FORMAT} manifest")
    return manifest


def check_covers(table: FeatureTable, keys: list[str], what: str) -> None:
    missing = [k for k in keys if k not in table]
    if missing:
        raise HyperguideError(
            f"feature table {table.source} lacks {len(missing)} {what} of the split files (first: {missing[0]!r}); "
            "re-run prepare for these split files"
        )
