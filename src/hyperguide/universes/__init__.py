"""The registry of task universes: one `UniverseSource` per universe (`universes/base.py` says what one is).

| name | structure | features |
|---|---|---|
| easyvqa | the `easy-vqa` package, Meta-VQA rules (107 tasks) | MiniLM text, a LiT-trained CNN image tower |
| metavqa | the authors' split files, or built from VQA v2 JSON | a `transformers` CLIP model on COCO 2014 images |
| metavqa-standin | the authors' split files | deterministic random 768-d stand-ins (benchmarks only) |
| synthetic | generated | generated (tests and smoke runs) |
| synthetic-concepts | generated | generated, questions and images in one space (the pointer's test) |
| taskfile | your task file (`--tasks FILE`) | MiniLM + easyvqa's tower, a local dual encoder, or your own |

Add a universe by writing a source (a class with `structure`, `prepare`, `load`, `encoders`) and registering it;
with `encoder_parts` and `encoders_from_parts` as well (`base.PortableEncoders`), a generator trained on it can be
exported and used where the universe is not prepared.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hyperguide.data.tasks import Universe
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback
from hyperguide.io import sweep_temporaries
from hyperguide.universes.base import EncoderParts, Encoders, PortableEncoders, UniverseOptions, UniverseSource
from hyperguide.universes.easyvqa import EasyVQA
from hyperguide.universes.metavqa import MetaVQA, MetaVQAStandin
from hyperguide.universes.synthetic import Synthetic, SyntheticConcepts
from hyperguide.universes.taskfile import TaskFileUniverse

UNIVERSES: dict[str, UniverseSource] = {}


def register(source: UniverseSource) -> UniverseSource:
    if source.name in UNIVERSES:
        raise ValueError(f"universe {source.name!r} is registered already")
    UNIVERSES[source.name] = source
    return source


for _source in (EasyVQA(), MetaVQA(), MetaVQAStandin(), Synthetic(), SyntheticConcepts(), TaskFileUniverse()):
    register(_source)


def source(name: str) -> UniverseSource:
    try:
        return UNIVERSES[name]
    except KeyError:
        raise HyperguideError(f"unknown universe {name!r}; choose one of {', '.join(UNIVERSES)}") from None


def load_universe_structure(name: str, options: UniverseOptions | None = None, *, prompts: str = "answer") -> Universe:
    """Tasks and splits without features (enough for statistics)."""
    return source(name).structure(options or UniverseOptions(), prompts)


def prepare_universe(
    name: str, options: UniverseOptions | None = None, *, callbacks: Sequence[Callback] = ()
) -> dict[str, Any]:
    """Compute and cache a universe's frozen features; returns its manifest (with `"cached": True` if reused). The
    temporaries a killed preparation left in the universe's folder are swept first."""
    options, universe = options or UniverseOptions(), source(name)  # a registered name: its folder is ours
    # by path, not `options.folder`: a universe kept in memory (synthetic) prepares even where the home is not a folder
    sweep_temporaries(Path(options.home) / universe.name)
    return universe.prepare(options, callbacks)


def load_universe(name: str, options: UniverseOptions | None = None, *, prompts: str = "answer") -> Universe:
    """Tasks, splits and features. Raises if the universe has not been prepared."""
    return source(name).load(options or UniverseOptions(), prompts)


def universe_encoders(name: str, options: UniverseOptions | None = None, *, prompts: str = "answer") -> Encoders:
    """The universe's frozen encoders, for new questions and images."""
    return source(name).encoders(options or UniverseOptions(), prompts)


def portable(name: str) -> PortableEncoders:
    """The universe `name` as a source of encoders that travel without it, or a `HyperguideError`."""
    found = source(name)
    if not isinstance(found, PortableEncoders):
        raise HyperguideError(
            f"universe {name!r} has no encoders that can be built without it (no encoder_parts): a generator trained "
            "on it cannot be exported"
        )
    return found


def universe_encoder_parts(name: str, options: UniverseOptions | None = None) -> EncoderParts:
    """What the universe's frozen encoders are made of, for an exported generator (`base.EncoderParts`)."""
    return portable(name).encoder_parts(options or UniverseOptions())


def encoders_from_parts(name: str, parts: EncoderParts, *, device: str = "cpu", prompts: str = "answer") -> Encoders:
    """The universe's frozen encoders built from `parts` alone: no prepared universe is read."""
    return portable(name).encoders_from_parts(parts, device=device, prompts=prompts)


__all__ = [
    "UNIVERSES",
    "EncoderParts",
    "Encoders",
    "PortableEncoders",
    "UniverseOptions",
    "UniverseSource",
    "encoders_from_parts",
    "load_universe",
    "load_universe_structure",
    "prepare_universe",
    "register",
    "portable",
    "source",
    "universe_encoder_parts",
    "universe_encoders",
]
