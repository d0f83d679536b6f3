"""What a task universe is to the rest of the project: a `UniverseSource` with its options (`Options`, a dataclass:
`universes/options.py`) and four verbs, each given an instance of them; and its `Encoders`.

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
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch

from hyperguide.data.features import MANIFEST
from hyperguide.data.tasks import Universe
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback
from hyperguide.io import read_json
from hyperguide.universes.options import UniverseOptions

OptionsT = TypeVar("OptionsT", bound=UniverseOptions)  # a universe's options
PartsOptionsT = TypeVar("PartsOptionsT", bound=UniverseOptions, contravariant=True)


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


class UniverseSource(Protocol[OptionsT]):
    """A task universe: its `name`, a one-line `summary`, its options' dataclass `Options` (`UniverseOptions`, or a
    subclass with options of its own: `universes/options.py`) and the verbs, each given an instance of `Options`.
    A source that subclasses this protocol inherits `describe` and `run_name`."""

    name: str
    summary: str  # one line for `--help` and the reference pages
    Options: type[OptionsT]

    def structure(self, options: OptionsT, prompts: str) -> Universe: ...

    def prepare(self, options: OptionsT, callbacks: Sequence[Callback]) -> dict[str, Any]: ...

    def load(self, options: OptionsT, prompts: str) -> Universe: ...

    def encoders(self, options: OptionsT, prompts: str) -> Encoders: ...

    def describe(self, manifest: dict[str, Any]) -> list[str]:
        """What `hyperguide prepare` says of a preparation below its first line, one line each: here nothing."""
        return []

    def run_name(self, options: OptionsT) -> str:
        """The universe's part of a run folder's default name (`runs/<run_name>-<split>`): here its name."""
        return self.name


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
class PortableEncoders(Protocol[PartsOptionsT]):
    """A universe whose encoders can be built from their parts alone, with no prepared universe folder."""

    def encoder_parts(self, options: PartsOptionsT) -> EncoderParts:
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
