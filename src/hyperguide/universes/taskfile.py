"""`taskfile`: your own task family from a JSON/JSONL task file (`--tasks FILE`; docs/own-tasks.md), meta-trained and
evaluated end to end like any universe. The structure is `data/taskfile_universe.py`'s; the features come one of three
ways, chosen at `prepare` (`--encoder`, inferred from the other flags when not given):

    embedded       MiniLM for questions and answer prompts, easyvqa's image tower for 64x64 images (the tower of the
                   easyvqa universe prepared under the same home, prepared first if it is not): nothing else needed
    transformers   a local `transformers` dual encoder with a shared image/text space (`--model DIR_OR_HUB_ID`:
                   CLIP, SigLIP and the like), loaded with local_files_only=True, never downloaded
    features       your own features (`--features-file FILE.safetensors`; `data/precomputed.py` says its keys)

`prepare` checks every task and every image (each decodes) before it prepares or writes anything into
`<home>/taskfile/<stem>-<key12>/`, a folder keyed by the task file's bytes and the folder its relative image paths
start from (`folder`): `text_features.safetensors`, `image_features.safetensors`, `question_tokens.safetensors`
(where the route has token states), the image tower's two files (embedded), and `manifest.json` last. A preparation
is reused while its `request` is the same (the file, the route and its model or features file, each image's path,
size and modification time). Features are computed for every task of the file, so the filters (`--min-examples`,
`--min-answer-examples`) may change without preparing again. Every command that loads the universe is given the
same `--tasks FILE`; a file changed since it was prepared is another file, and is refused until it is prepared; a
load that names another route, model or features file than the prepared one is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from hyperguide.data.easyvqa_images import read_image
from hyperguide.data.features import MANIFEST, FeatureTable
from hyperguide.data.images import decode_image
from hyperguide.data.precomputed import read_precomputed
from hyperguide.data.taskfile import TaskFile, first_uses, image_paths, read_task_file, text_uses
from hyperguide.data.taskfile_universe import NAME, Filters, taskfile_structure
from hyperguide.data.tasks import Universe
from hyperguide.data.tokens import QUESTION_TOKENS_FILE, TokenTable
from hyperguide.encoders.batches import BATCH, in_batches
from hyperguide.encoders.clip import ClipEncoder
from hyperguide.encoders.image_tower import load_tower_files
from hyperguide.encoders.text import DEFAULT_TEXT_ENCODER, TextEncoder
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback, Note, emit
from hyperguide.io import file_sha256, read_json, sweep_temporaries, write_json
from hyperguide.universes.base import EncoderParts, Encoders, UniverseSource, check_manifest, manifest_matches
from hyperguide.universes.easyvqa import TOWER_FILES, EasyVQA, EasyVQAEncoders, EasyVQAOptions
from hyperguide.universes.metavqa import ClipEncoders
from hyperguide.universes.options import at_least, option

FORMAT = 1
ROUTES = ("embedded", "transformers", "features")
TEXT_FEATURES = "text_features.safetensors"
IMAGE_FEATURES = "image_features.safetensors"


@dataclass(frozen=True)
class TaskFileOptions(EasyVQAOptions):
    """The taskfile universe's options: the task file, how its features are made, Meta-VQA's filters; and easyvqa's
    (`tower_epochs`), whose image tower the embedded route uses."""

    tasks: Path | None = option(None, help="the .json or .jsonl task file", metavar="FILE")
    images_root: Path | None = option(
        None, help="the folder relative image paths start from (default: the task file's folder)", metavar="DIR"
    )
    encoder: Literal["embedded", "transformers", "features"] | None = option(
        None,
        help="prepare: how features are made: embedded (MiniLM + easyvqa's image tower; the default), transformers "
        "(--model), features (--features-file); other commands use the prepared one",
    )
    model: str | None = option(
        None,
        help="a local transformers dual encoder (CLIP, SigLIP, ...): a folder or a hub id in the local cache",
        metavar="DIR|HUB_ID",
    )
    features_file: Path | None = option(
        None,
        help="your precomputed features: safetensors with image/<image>, text/<text>, optional tokens/<question>",
        metavar="FILE",
    )
    batch_size: int = option(32, help="images per forward pass of a transformers encoder (default 32)")
    min_examples: int = option(0, help="drop tasks with fewer examples (default 0: off)", metavar="N")
    min_answer_examples: int = option(
        0,
        help="drop answers with fewer examples (default 0: off; Meta-VQA's rules: --min-answer-examples 2 "
        "--min-examples 21)",
        metavar="N",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, "batch_size", 1)


def route(options: TaskFileOptions) -> str:
    """The feature route `options` ask for: `--encoder`, else `features` with a features file, `transformers` with
    a model, else `embedded`; a flag that the route does not read is refused."""
    chosen = options.encoder or (
        "features" if options.features_file else "transformers" if options.model else "embedded"
    )
    if chosen not in ROUTES:
        raise HyperguideError(f"--encoder must be one of {', '.join(ROUTES)}, got {chosen!r}")
    needs = {"transformers": ("--model", options.model), "features": ("--features-file", options.features_file)}
    for name, (flag, value) in needs.items():
        if chosen == name and value is None:
            raise HyperguideError(f"--encoder {name} needs {flag}")
        if chosen != name and value is not None:
            raise HyperguideError(f"{flag} is read by --encoder {name}, not by --encoder {chosen}")
    return chosen


def _asked(options: TaskFileOptions) -> bool:
    """Whether the options name a route at all (else a load takes the one prepared)."""
    return any(v is not None for v in (options.encoder, options.model, options.features_file))


class TaskFileUniverse(UniverseSource[TaskFileOptions]):
    name = NAME
    summary = "your own task family from a JSON/JSONL task file (--tasks FILE): embedded, transformers or your features"
    Options = TaskFileOptions

    # ------------------------------------------------------------------------------------------------ structure

    def task_file(self, options: TaskFileOptions) -> TaskFile:
        if options.tasks is None:
            raise HyperguideError(
                "universe 'taskfile' needs --tasks FILE: the .json or .jsonl task file of your family, the one a run "
                "of it was trained on (docs/own-tasks.md)"
            )
        return read_task_file(options.tasks, default_split=None)

    def structure(self, options: TaskFileOptions, prompts: str) -> Universe:
        return self._structure(self.task_file(options), options, prompts)

    def _structure(self, tasks: TaskFile, options: TaskFileOptions, prompts: str) -> Universe:
        if prompts != "answer":
            raise HyperguideError(
                f"universe 'taskfile' scores each answer against the task's 'prompts' (else the answer itself): "
                f"--prompts {prompts} is easyvqa's rule; leave it out"
            )
        return taskfile_structure(tasks, Filters(options.min_examples, options.min_answer_examples))

    def run_name(self, options: TaskFileOptions) -> str:
        """One run folder per task file: `taskfile-<stem>-<the first 8 hex digits of its sha256>`."""
        if options.tasks is None or not Path(options.tasks).is_file():
            return self.name
        return f"{self.name}-{Path(options.tasks).stem}-{file_sha256(options.tasks)[:8]}"

    def folder(self, options: TaskFileOptions, tasks: TaskFile) -> Path:
        """`<home>/taskfile/<stem>-<12 hex digits>`: a digest of the file's bytes and of the folder its relative image
        paths start from, so that two copies of a file over other images never share a preparation."""
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", tasks.path.stem).strip("-.") or "tasks"
        key = hashlib.sha256(f"{tasks.sha256}\n{images_base(options, tasks)}".encode()).hexdigest()
        return options.folder(self.name) / f"{stem}-{key[:12]}"

    # -------------------------------------------------------------------------------------------------- prepare

    def request(self, options: TaskFileOptions, tasks: TaskFile, paths: dict[str, Path]) -> dict[str, Any]:
        """What a preparation depends on; a cached one is reused only if its manifest records the same: the task
        file, the route and its encoder (a local model folder resolved) or features file (its sha256), and the
        images (each one's path, size and modification time) that an encoder reads."""
        chosen = route(options)
        out: dict[str, Any] = {
            "universe": self.name,
            "format": FORMAT,
            "task_file_sha256": tasks.sha256,
            "images_base": str(images_base(options, tasks)),
            "encoder": chosen,
        }
        if chosen == "features":
            out["features_file_sha256"] = file_sha256(features_file(options))
            return out
        if chosen == "embedded":
            out.update(text_encoder=DEFAULT_TEXT_ENCODER, seed=options.seed, tower_epochs=options.tower_epochs)
        else:
            out["model"] = model_name(options)
        out["images_sha256"] = _images_digest(paths)
        return out

    def prepare(self, options: TaskFileOptions, callbacks: Sequence[Callback]) -> dict[str, Any]:
        tasks = self.task_file(options)
        self._structure(tasks, options, "answer")  # every task can be trained and scored, before anything is done
        chosen = route(options)
        # every image exists (an encoder's route), before anything is encoded; a features file names them
        paths = {} if chosen == "features" else image_paths(tasks, options.images_root)
        folder = self.folder(options, tasks)
        request = self.request(options, tasks, paths)
        if not options.force and (manifest := manifest_matches(folder, request)):
            return {**manifest, "folder": str(folder), "cached": True}
        sweep_temporaries(folder)  # what a killed preparation of this file left
        start = time.perf_counter()
        texts, questions, blame = _texts(tasks)
        image_blame = first_uses(tasks)
        images = list(image_blame)
        n_examples = sum(len(t.examples) for t in tasks.tasks)
        emit(callbacks, Note(f"{tasks.path}: {len(tasks.tasks)} tasks, {n_examples} examples, {len(images)} images"))
        tower: dict[str, Path] = {}
        if chosen == "features":
            found = read_precomputed(features_file(options), images, texts, questions, blame, image_blame)
            text_table, image_table, tokens, shared = found.texts, found.images, found.tokens, found.shared_space
        else:
            _check_images(chosen, paths, image_blame, callbacks)  # each decodes (64x64 for the tower), first
            if chosen == "embedded":
                tower = _easyvqa_tower(options, callbacks)
            encoders = self._build(_parts(request, tower), options.device)
            text_table = FeatureTable(texts, torch.cat(in_batches(encoders.texts, texts, blame, "texts", callbacks)))
            rows = in_batches(encoders.question_tokens, questions, blame, "question tokens", callbacks)
            tokens = TokenTable.from_rows(questions, [r for chunk in rows for r in chunk])

            def encode(keys: list[str]) -> torch.Tensor:
                return encoders.images([paths[k] for k in keys])

            batch = BATCH if chosen == "embedded" else options.batch_size  # a large model's memory: --batch-size
            encoded = in_batches(encode, images, image_blame, "images", callbacks, batch)
            image_table = FeatureTable(images, torch.cat(encoded))
            shared = True  # MiniLM and the tower trained into its space; a dual encoder's two towers
        if text_table.dim != image_table.dim:
            raise HyperguideError(
                f"the text features have dimension {text_table.dim} and the image features {image_table.dim}: "
                "the adapter scores images against answer texts, so they must be one space"
            )
        (folder / MANIFEST).unlink(missing_ok=True)  # the old preparation is no longer trusted
        text_table.save(folder / TEXT_FEATURES)
        image_table.save(folder / IMAGE_FEATURES)
        if tokens is not None:
            tokens.save(folder / QUESTION_TOKENS_FILE)
        else:
            (folder / QUESTION_TOKENS_FILE).unlink(missing_ok=True)
        for name, source in tower.items():
            shutil.copyfile(source, folder / name)
        manifest = {
            "request": request,
            "universe": self.name,
            "task_file": str(tasks.path),
            "tasks": len(tasks.tasks),
            "examples": n_examples,
            "images": len(image_table),
            "texts": len(text_table),
            "question_tokens": tokens is not None,
            "text_dim": text_table.dim,
            "image_dim": image_table.dim,
            "shared_space": shared,
            "seconds": round(time.perf_counter() - start, 1),
        }
        write_json(folder / MANIFEST, manifest)
        return {**manifest, "folder": str(folder), "cached": False}

    def describe(self, manifest: dict[str, Any]) -> list[str]:
        """What was prepared (tasks, examples, images, texts), with which encoder, and where."""
        counts = ", ".join(f"{manifest[k]:,} {k}" for k in ("tasks", "examples", "images", "texts") if k in manifest)
        route = manifest["request"]["encoder"]
        return [f"{counts}; {route} features of dimension {manifest['image_dim']}", f"into {manifest['folder']}"]

    # ----------------------------------------------------------------------------------------------------- load

    def manifest(self, options: TaskFileOptions, tasks: TaskFile) -> dict[str, Any]:
        """The manifest of the task file's preparation; refused if there is none, or if the options ask for another
        route than the one it was prepared with."""
        folder = self.folder(options, tasks)
        path = folder / MANIFEST
        again = f"hyperguide prepare taskfile --tasks {tasks.path}"
        if not path.is_file():
            raise HyperguideError(
                f"the task file {tasks.path} (sha256 {tasks.sha256[:12]}...) is not prepared under {folder.parent}: "
                f"run `{again}` first (a file changed since it was prepared is prepared again)"
            )
        manifest = check_manifest(
            read_json(path, what="universe manifest"),
            path,
            {"request": dict, "text_dim": int, "image_dim": int},
            f"prepare it again with `{again}`",
        )
        recorded = manifest["request"].get("encoder")
        if recorded not in ROUTES or manifest["request"].get("universe") != self.name:
            raise HyperguideError(f"universe manifest {path} is not a taskfile preparation: prepare it again")
        if _asked(options):
            asked, prepared = _route_named(options), _route_recorded(manifest["request"])
            if asked != prepared:
                raise HyperguideError(
                    f"{tasks.path} was prepared with --encoder {prepared}, not {asked}: prepare it again with the "
                    "encoder you want (`hyperguide prepare taskfile --tasks ... --encoder ...`), or leave the encoder "
                    "flags out to use the prepared one"
                )
        return manifest

    def load(self, options: TaskFileOptions, prompts: str) -> Universe:
        tasks = self.task_file(options)
        universe = self._structure(tasks, options, prompts)
        manifest = self.manifest(options, tasks)
        folder = self.folder(options, tasks)
        universe.text_features = FeatureTable.load(folder / TEXT_FEATURES, dim=manifest["text_dim"])
        universe.image_features = FeatureTable.load(folder / IMAGE_FEATURES, dim=manifest["image_dim"])
        if manifest.get("question_tokens"):
            universe.question_tokens = TokenTable.load(folder / QUESTION_TOKENS_FILE)
        universe.shared_space = bool(manifest.get("shared_space"))
        universe.info.update(encoder=manifest["request"]["encoder"], prepared=str(folder))
        return universe

    # ------------------------------------------------------------------------------------------------- encoders

    def encoders(self, options: TaskFileOptions, prompts: str) -> Encoders:
        return self.encoders_from_parts(self.encoder_parts(options), device=options.device, prompts=prompts)

    def encoder_parts(self, options: TaskFileOptions) -> EncoderParts:
        """embedded: MiniLM's name and the prepared tower's two files; transformers: the model's folder or hub id.
        Precomputed features have no encoders: refused, saying so."""
        tasks = self.task_file(options)
        request = self.manifest(options, tasks)["request"]
        if request["encoder"] == "features":
            raise HyperguideError(
                f"{tasks.path} was prepared from precomputed features (--features-file): there is no encoder for a "
                "new question or image, so generate and export need the embedded or transformers route; `hyperguide "
                "tasks` can still score tasks whose texts and images the prepared features hold"
            )
        folder = self.folder(options, tasks)
        return _parts(
            request, {name: folder / name for name in TOWER_FILES} if request["encoder"] == "embedded" else {}
        )

    def encoders_from_parts(self, parts: EncoderParts, *, device: str, prompts: str) -> Encoders:
        return self._build(parts, device)

    def _build(self, parts: EncoderParts, device: str) -> Encoders:
        """The encoders of an embedded or transformers preparation (`_parts`)."""
        kind = parts.reference.get("route")
        if kind == "embedded":
            tower = load_tower_files(parts.file(TOWER_FILES[0]), parts.file(TOWER_FILES[1]))
            return EasyVQAEncoders(TextEncoder(parts.name("text_encoder"), device=device), tower, "answer")
        if kind == "transformers":
            return ClipEncoders(ClipEncoder(parts.name("clip_model"), device=device))
        raise HyperguideError(
            f"the taskfile encoders' reference {parts.reference} names no route (embedded, transformers)"
        )


def _parts(request: dict[str, Any], tower: dict[str, Path]) -> EncoderParts:
    """A preparation's encoders as parts: embedded, MiniLM's name and the tower's two files; transformers, the model."""
    if request["encoder"] == "embedded":
        return EncoderParts({"route": "embedded", "text_encoder": str(request["text_encoder"])}, tower)
    return EncoderParts({"route": "transformers", "clip_model": str(request["model"])})


def images_base(options: TaskFileOptions, tasks: TaskFile) -> Path:
    """Where relative image paths start: `--images-root`, else the task file's folder, made absolute."""
    return Path(os.path.abspath(options.images_root if options.images_root is not None else tasks.path.parent))


def features_file(options: TaskFileOptions) -> Path:
    path = Path(str(options.features_file))
    if not path.is_file():
        raise HyperguideError(f"--features-file {path} is not a file: give the safetensors file of your features")
    return path


def model_name(options: TaskFileOptions) -> str:
    """`--model` as recorded: a local folder made absolute (so a run or a bundle finds it from anywhere), else the
    hub id as given (it must be in the local cache)."""
    model = str(options.model)
    return os.path.abspath(model) if Path(model).is_dir() else model


def _route_named(options: TaskFileOptions) -> str:
    """The route the options name, with its model or its features file's sha256 (to compare with a preparation's)."""
    chosen = route(options)
    if chosen == "transformers":
        return f"transformers --model {model_name(options)}"
    if chosen == "features":
        return f"features (a file of sha256 {file_sha256(features_file(options))[:12]}...)"
    return chosen


def _route_recorded(request: dict[str, Any]) -> str:
    if request["encoder"] == "transformers":
        return f"transformers --model {request.get('model')}"
    if request["encoder"] == "features":
        return f"features (a file of sha256 {str(request.get('features_file_sha256'))[:12]}...)"
    return str(request["encoder"])


def _images_digest(paths: dict[str, Path]) -> str:
    """A sha256 of every image's name, file, size and modification time: an image changed on disk is seen."""
    digest = hashlib.sha256()
    for raw in sorted(paths):
        stat = paths[raw].stat()
        digest.update(f"{raw}\0{paths[raw]}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _check_images(chosen: str, paths: dict[str, Path], blame: dict[str, str], callbacks: Sequence[Callback]) -> None:
    """Every image decodes (and, for easyvqa's tower, is 64x64), named with its first use if not: before anything
    is prepared or loaded."""
    emit(callbacks, Note(f"checking {len(paths)} images"))
    for raw, path in paths.items():
        try:
            read_image(path) if chosen == "embedded" else decode_image(path)
        except HyperguideError as e:
            raise HyperguideError(f"{blame[raw]}: {e}") from None


def _easyvqa_tower(options: TaskFileOptions, callbacks: Sequence[Callback]) -> dict[str, Path]:
    """easyvqa's image tower files, from the easyvqa universe prepared under this home: prepared now if it is not,
    refused if it is prepared with other settings (preparing it again would replace it under its runs)."""
    easyvqa = EasyVQA()
    options = dataclasses.replace(options, force=False)
    folder = options.folder(easyvqa.name)
    request = easyvqa.request(options)
    if (folder / MANIFEST).is_file() and manifest_matches(folder, request) is None:
        raise HyperguideError(
            f"the embedded encoders use easyvqa's image tower, and easyvqa is prepared in {folder} with other settings "
            f"than these (--seed {options.seed}, --tower-epochs {options.tower_epochs}): preparing it again would "
            "replace it under the runs trained on it; give the --seed and --tower-epochs it was prepared with, or "
            "another --home"
        )
    easyvqa.prepare(options, callbacks)
    return easyvqa.encoder_parts(options).files


def _texts(tasks: TaskFile) -> tuple[list[str], list[str], dict[str, str]]:
    """Every question and answer prompt of the file (prompts: the task's, else its answers), its questions, and
    where each text is first used."""
    blame = text_uses(tasks, [t.prompts if t.prompts is not None else t.answers for t in tasks.tasks], "answers")
    questions = list(dict.fromkeys(t.question for t in tasks.tasks))
    return list(blame), questions, blame
