"""What a task universe is to the rest of the project: a `UniverseSource` with four verbs, and its `Encoders`.

    structure(options, prompts) -> Universe   tasks and splits, no features (enough for statistics)
    prepare(options, callbacks) -> manifest   compute and cache the frozen features (a no-op for in-memory ones)
    load(options, prompts) -> Universe        tasks, splits and features
    encoders(options, prompts) -> Encoders    the frozen encoders, for questions and images the universe lacks

A universe whose encoders can travel with an exported generator (`hyperguide export`, `bundle.py`) is also a
`PortableEncoders`: `encoder_parts(options)` says what its encoders are made of (a JSON reference to what is
loaded by name, such as a text encoder's package or a CLIP model's hub id or folder, and the files it trained
itself, such as easyvqa's image tower) and `encoders_from_parts(parts, ...)` builds them from those alone, with no
prepared universe.

Prepared features live in `<home>/<universe>/` (home: `--home`, `$HYPERGUIDE_HOME` or `~/.cache/hyperguide`), and a
`manifest.json` written last marks a complete preparation; without it, nothing in the folder is trusted. Loading
checks that the manifest is the universe's and that its fields have their types (`check_manifest`), so that a
manifest another command wrote there, or one of the wrong shape, is refused with the file and the field named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from hyperguide.data.features import MANIFEST
from hyperguide.data.metavqa import DEFAULT_CLIP_MODEL
from hyperguide.data.tasks import Universe
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback
from hyperguide.io import default_home, read_json


@dataclass
class UniverseOptions:
    """Where a universe's files are and how to compute them; each universe reads the fields it uses."""

    home: Path = field(default_factory=default_home)
    seed: int = 0  # the universe's own randomness: synthetic tasks, the easyvqa image tower
    device: str = "cpu"
    tower_epochs: int | None = None  # easyvqa: image-tower training epochs (None: the tower's default)
    splits_dir: Path | None = None  # metavqa: the authors' split files
    vqa_root: Path | None = None  # metavqa: VQA v2 question/annotation JSON, to build the split files
    coco_root: Path | None = None  # metavqa: COCO 2014 images
    prompts_file: Path | None = None  # metavqa: {question: template} answer prompts (default: splits_dir's)
    clip_model: str = DEFAULT_CLIP_MODEL
    batch_size: int = 32
    force: bool = False
    tasks: Path | None = None  # taskfile: the task file
    images_root: Path | None = None  # taskfile (and `tasks prepare`): where relative image paths start
    encoder: str | None = None  # taskfile: embedded, transformers or features (None: inferred from the two below)
    model: str | None = None  # taskfile, --encoder transformers: a local dual encoder (folder or cached hub id)
    features_file: Path | None = None  # taskfile, --encoder features: the precomputed features
    min_examples: int = 0  # taskfile: Meta-VQA's task filter (0: off)
    min_answer_examples: int = 0  # taskfile: Meta-VQA's answer filter (0: off)

    def __post_init__(self) -> None:
        for name, value, low in (("tower_epochs", self.tower_epochs, 1), ("batch_size", self.batch_size, 1)):
            if value is not None and value < low:
                flag = "--" + name.replace("_", "-")
                raise HyperguideError(f"{flag} must be >= {low}, got {value}")

    def folder(self, name: str) -> Path:
        """Where universe `name` keeps its prepared files. A home that is a file (or lies under one) is refused
        here, naming it: nothing can be prepared in it, and "run prepare first" would be advice that cannot work."""
        home = Path(self.home)
        found = _nearest_existing(home)
        if found is not None and not found.is_dir():
            where = "" if found == home else f" lies under {found}, which"
            raise HyperguideError(
                f"the home {home}{where} is a file, not a folder: give a folder for prepared universes (--home or "
                "$HYPERGUIDE_HOME)"
            )
        return home / name


def _nearest_existing(path: Path) -> Path | None:
    """`path` or the nearest of its parents that exists; None where that cannot be told (a folder we may not read:
    what is read there later says so)."""
    try:
        return next((p for p in (path, *path.parents) if p.exists()), None)
    except OSError:
        return None


class Encoders(Protocol):
    """A universe's frozen encoders, for a question (and its answers, and images) the universe does not hold."""

    def prompt(self, question: str, answer: str) -> str:
        """The text an answer is scored against."""
        ...

    def texts(self, texts: list[str]) -> torch.Tensor:
        """(N, D) embeddings of questions or answer prompts."""
        ...

    def question_tokens(self, questions: list[str]) -> list[torch.Tensor]:
        """One (L_i, D) matrix of token states per question."""
        ...

    def images(self, paths: Sequence[str | Path]) -> torch.Tensor:
        """(N, D) features of image files."""
        ...


class UniverseSource(Protocol):
    name: str
    summary: str  # one line for `--help` and the README

    def structure(self, options: UniverseOptions, prompts: str) -> Universe: ...

    def prepare(self, options: UniverseOptions, callbacks: Sequence[Callback]) -> dict[str, Any]: ...

    def load(self, options: UniverseOptions, prompts: str) -> Universe: ...

    def encoders(self, options: UniverseOptions, prompts: str) -> Encoders: ...


@dataclass(frozen=True)
class EncoderParts:
    """What a universe's frozen encoders are made of: `reference`, JSON-able names of what is loaded from elsewhere
    (a text encoder's package, a CLIP model's hub id or local folder), and `files`, the files it trained itself, by
    the name a bundle stores them under (easyvqa: `image_tower.safetensors` and `image_tower.json`)."""

    reference: dict[str, str]
    files: dict[str, Path] = field(default_factory=dict)

    def name(self, key: str) -> str:
        """The reference's entry `key`, or a `HyperguideError` saying it is missing."""
        value = self.reference.get(key)
        if not isinstance(value, str) or not value.strip():
            raise HyperguideError(f"the encoders' reference {self.reference} has no {key!r} (a name or a folder)")
        return value

    def file(self, name: str) -> Path:
        """The file stored as `name`, or a `HyperguideError` saying it is missing."""
        if name not in self.files:
            raise HyperguideError(f"the encoders need the file {name!r}, which is not among {sorted(self.files)}")
        return self.files[name]


@runtime_checkable
class PortableEncoders(Protocol):
    """A universe whose encoders can be built from their parts alone, with no prepared universe folder."""

    def encoder_parts(self, options: UniverseOptions) -> EncoderParts:
        """The parts of the encoders `encoders(options, ...)` gives (files in the prepared universe)."""
        ...

    def encoders_from_parts(self, parts: EncoderParts, *, device: str, prompts: str) -> Encoders:
        """The encoders built from `parts`, on `device`, with answer prompts by the rule `prompts`."""
        ...


def manifest_matches(folder: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """The folder's manifest if it was prepared for `request` (every key equal), else None (also for a manifest that
    cannot be read: it is prepared again)."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = read_json(path, what="universe manifest")
    except HyperguideError:  # read_json names every failure, nesting too deep included
        return None
    recorded = manifest.get("request") if isinstance(manifest, dict) else None
    if not isinstance(recorded, dict):
        return None
    return manifest if all(recorded.get(k) == v for k, v in request.items()) else None


MANIFEST_TYPES: dict[type, str] = {int: "a positive integer", str: "a non-empty string", dict: "a JSON object"}


def _typed(value: Any, kind: type) -> bool:
    if isinstance(value, bool) or not isinstance(value, kind):
        return False
    return value > 0 if isinstance(value, int) else bool(value)


def check_manifest(manifest: Any, path: Path, fields: dict[str, type], advice: str) -> dict[str, Any]:
    """`manifest` if it is a JSON object whose `fields` have their types (`MANIFEST_TYPES`: integers positive, strings
    non-empty), else a `HyperguideError` naming the file and the field, ending with `advice`."""
    if not isinstance(manifest, dict):
        got = type(manifest).__name__
        raise HyperguideError(f"universe manifest {path} is not a JSON object (got {got}): {advice}")
    for key, kind in fields.items():
        value = manifest.get(key)
        if not _typed(value, kind):
            got = "it is missing" if key not in manifest else f"got {value!r}"
            raise HyperguideError(
                f"universe manifest {path}: field {key!r} must be {MANIFEST_TYPES[kind]} ({got}): {advice}"
            )
    return manifest


def no_encoders(name: str) -> HyperguideError:
    return HyperguideError(
        f"universe {name!r} has no text encoder (its questions are not text): generate works on runs of a universe "
        "with encoders (easyvqa, metavqa)"
    )
