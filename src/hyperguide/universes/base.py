"""What a task universe is to the rest of the project: a `UniverseSource` with four verbs, and its `Encoders`.

    structure(options, prompts) -> Universe   tasks and splits, no features (enough for statistics)
    prepare(options, callbacks) -> manifest   compute and cache the frozen features (a no-op for in-memory ones)
    load(options, prompts) -> Universe        tasks, splits and features
    encoders(options, prompts) -> Encoders    the frozen encoders, for questions and images the universe lacks

Prepared features live in `<home>/<universe>/` (home: `--home`, `$HYPERGUIDE_HOME` or `~/.cache/hyperguide`), and a
`manifest.json` written last marks a complete preparation; without it, nothing in the folder is trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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

    def __post_init__(self) -> None:
        for name, value, low in (("tower_epochs", self.tower_epochs, 1), ("batch_size", self.batch_size, 1)):
            if value is not None and value < low:
                flag = "--" + name.replace("_", "-")
                raise HyperguideError(f"{flag} must be >= {low}, got {value}")

    def folder(self, name: str) -> Path:
        """Where universe `name` keeps its prepared files."""
        return Path(self.home) / name


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


def manifest_matches(folder: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """The folder's manifest if it was prepared for `request` (every key equal), else None."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    manifest = read_json(path, what="universe manifest")
    recorded = manifest.get("request", {}) if isinstance(manifest, dict) else {}
    return manifest if all(recorded.get(k) == v for k, v in request.items()) else None


def no_encoders(name: str) -> HyperguideError:
    return HyperguideError(
        f"universe {name!r} has no text encoder (its questions are not text): generate works on runs of a universe "
        "with encoders (easyvqa, metavqa)"
    )
