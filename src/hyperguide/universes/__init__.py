"""The registry of task universes: one `UniverseSource` per universe (`universes/base.py` says what one is).

| name | structure | features |
|---|---|---|
| easyvqa | the `easy-vqa` package, Meta-VQA rules (107 tasks) | MiniLM text, a LiT-trained CNN image tower |
| metavqa | the authors' split files, or built from VQA v2 JSON | a `transformers` CLIP model on COCO 2014 images |
| metavqa-standin | the authors' split files | deterministic random 768-d stand-ins (benchmarks only) |
| synthetic | generated | generated (tests and smoke runs) |
| synthetic-concepts | generated | generated, questions and images in one space (the pointer's test) |
| taskfile | your task file (`--tasks FILE`) | MiniLM + easyvqa's tower, a local dual encoder, or your own |

Add a universe by writing a source (a subclass of `base.UniverseSource` with `name`, `summary`, `Options`,
`structure`, `prepare`, `load`, `encoders`) and registering it; its options are a dataclass (`options.py`: the fields
declared with `option` get a flag on the commands that take the universe, and `hyperguide config` lists them). With
`encoder_parts` and `encoders_from_parts` as well (`base.PortableEncoders`), a generator trained on it can be exported
and used where the universe is not prepared.

The functions below take any `UniverseOptions`: a universe is given its own options as they are, and other options
as its `Options` with their common fields (home, seed, device, force) and its own fields at their defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hyperguide.data.tasks import Universe
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback
from hyperguide.io import sweep_temporaries
from hyperguide.universes.base import EncoderParts, Encoders, OptionsT, PortableEncoders, UniverseSource
from hyperguide.universes.easyvqa import EasyVQA, EasyVQAOptions
from hyperguide.universes.metavqa import MetaVQA, MetaVQAOptions, MetaVQAStandin
from hyperguide.universes.options import OptionSpec, UniverseOptions, declared, option
from hyperguide.universes.synthetic import Synthetic, SyntheticConcepts
from hyperguide.universes.taskfile import TaskFileOptions, TaskFileUniverse

UNIVERSES: dict[str, UniverseSource[Any]] = {}


def register(source: UniverseSource[Any]) -> UniverseSource[Any]:
    """Add `source` to the registry. Its options must be readable from flags (`options.declared`), and an option that
    shares its name with another universe's must be read alike: a command that takes any universe (eval, generate)
    has one flag for both."""
    if source.name in UNIVERSES:
        raise ValueError(f"universe {source.name!r} is registered already")
    _check_shared_options(source)
    UNIVERSES[source.name] = source
    return source


def _check_shared_options(new: UniverseSource[Any]) -> None:
    """A `ValueError` where `new` declares an option that a registered universe reads in another way."""
    mine = {spec.name: spec for spec in declared(new.Options)}
    for other in UNIVERSES.values():
        for spec in declared(other.Options):
            own = mine.get(spec.name)
            if own is not None and (own.kind, own.choices) != (spec.kind, spec.choices):
                raise ValueError(
                    f"universe {new.name!r}: option {spec.name!r} is read as {own.kind.__name__} "
                    f"{own.choices or ''}, but universe {other.name!r} reads its {spec.name!r} as "
                    f"{spec.kind.__name__} {spec.choices or ''}: rename one"
                )


for _source in (EasyVQA(), MetaVQA(), MetaVQAStandin(), Synthetic(), SyntheticConcepts(), TaskFileUniverse()):
    register(_source)


def source(name: str) -> UniverseSource[Any]:
    try:
        return UNIVERSES[name]
    except KeyError:
        raise HyperguideError(f"unknown universe {name!r}; choose one of {', '.join(UNIVERSES)}") from None


def options_for(universe: UniverseSource[OptionsT], options: UniverseOptions | None) -> OptionsT:
    """`options` as `universe`'s own: themselves where they are, else its `Options` with their common fields."""
    if isinstance(options, universe.Options):
        return options
    common = options or UniverseOptions()
    return universe.Options(**{f.name: getattr(common, f.name) for f in dataclasses.fields(UniverseOptions)})


def load_universe_structure(name: str, options: UniverseOptions | None = None, *, prompts: str = "answer") -> Universe:
    """Tasks and splits without features (enough for statistics)."""
    universe = source(name)
    return universe.structure(options_for(universe, options), prompts)


def prepare_universe(
    name: str, options: UniverseOptions | None = None, *, callbacks: Sequence[Callback] = ()
) -> dict[str, Any]:
    """Compute and cache a universe's frozen features; returns its manifest (with `"cached": True` if reused). The
    temporaries a killed preparation left in the universe's folder are swept first."""
    universe = source(name)  # a registered name: its folder is ours
    own = options_for(universe, options)
    # by path, not `options.folder`: a universe kept in memory (synthetic) prepares even where the home is not a folder
    sweep_temporaries(Path(own.home) / universe.name)
    return universe.prepare(own, callbacks)


def load_universe(name: str, options: UniverseOptions | None = None, *, prompts: str = "answer") -> Universe:
    """Tasks, splits and features. Raises if the universe has not been prepared."""
    universe = source(name)
    return universe.load(options_for(universe, options), prompts)


def universe_encoders(name: str, options: UniverseOptions | None = None, *, prompts: str = "answer") -> Encoders:
    """The universe's frozen encoders, for new questions and images."""
    universe = source(name)
    return universe.encoders(options_for(universe, options), prompts)


def portable(name: str) -> PortableEncoders[Any]:
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
    return portable(name).encoder_parts(options_for(source(name), options))


def encoders_from_parts(name: str, parts: EncoderParts, *, device: str = "cpu", prompts: str = "answer") -> Encoders:
    """The universe's frozen encoders built from `parts` alone: no prepared universe is read."""
    return portable(name).encoders_from_parts(parts, device=device, prompts=prompts)


__all__ = [
    "UNIVERSES",
    "EasyVQAOptions",
    "EncoderParts",
    "Encoders",
    "MetaVQAOptions",
    "OptionSpec",
    "PortableEncoders",
    "TaskFileOptions",
    "UniverseOptions",
    "UniverseSource",
    "declared",
    "encoders_from_parts",
    "load_universe",
    "load_universe_structure",
    "option",
    "options_for",
    "prepare_universe",
    "register",
    "portable",
    "source",
    "universe_encoder_parts",
    "universe_encoders",
]
