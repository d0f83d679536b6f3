"""A universe's options: what it needs to find, compute and load its data, as a typed dataclass.

`UniverseOptions` holds what every universe reads: where prepared universes live (`home`), the universe's own seed
(of whatever it generates or trains: synthetic tasks, easyvqa's image tower), the torch device, and whether a
preparation is computed again although one is cached (`force`). A universe with options of its own subclasses it
(`EasyVQAOptions` adds the image tower's epochs) and names the subclass as its source's `Options`.

Each field declared with `option` (a help line) is an option a person can set: the command line gives it the flag
`--` + its name with dashes (`tower_epochs` -> `--tower-epochs`) on the commands that take that universe, and
`hyperguide config` lists it. The field's type says how a flag's text is read (`declared`): int, float, str, Path or
a Literal of strings (its choices), each optionally `| None`, or bool (a switch).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hyperguide.errors import HyperguideError
from hyperguide.io import default_home

FLAG_TYPES: tuple[type, ...] = (int, float, str, Path, bool)


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    metavar: str | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A dataclass field that is an option with a one-line `help` (and, for the command line, a `metavar`):
    `seed: int = option(0, help="...")`."""
    metadata = {"help": help, "metavar": metavar}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class OptionSpec:
    """One declared option as the command line and `hyperguide config` show it."""

    name: str  # the field
    kind: type  # what a flag's text is read as: int, float, str, Path or bool (a switch)
    choices: tuple[str, ...] | None
    default: Any
    help: str
    metavar: str | None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def declared(options_type: type[UniverseOptions]) -> list[OptionSpec]:
    """The options of `options_type` (its fields declared with `option`, inherited ones first), or a `TypeError`
    naming a field whose type no flag can be read as."""
    hints = typing.get_type_hints(options_type)
    out = []
    for f in dataclasses.fields(options_type):
        if "help" not in f.metadata:
            continue
        kind, choices = _kind(hints[f.name], f"{options_type.__name__}.{f.name}")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out.append(OptionSpec(f.name, kind, choices, default, f.metadata["help"], f.metadata["metavar"]))
    return out


def _kind(hint: Any, where: str) -> tuple[type, tuple[str, ...] | None]:
    """The type a flag's text is read as, and its choices (a Literal's), for the type `hint` (`| None` dropped)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    members = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
    if len(members) == 1:
        (kind,) = members
        values = typing.get_args(kind)
        if typing.get_origin(kind) is Literal and all(isinstance(v, str) for v in values):
            return str, values
        if kind in FLAG_TYPES:
            return kind, None
    raise TypeError(
        f"universe option {where}: a flag cannot be read as {hint}; give it one of int, float, str, Path, bool or a "
        "Literal of strings (each optionally | None)"
    )


def at_least(options: UniverseOptions, name: str, low: int) -> None:
    """Refuse the option `name` of `options` below `low` (None, where allowed, is let through), naming it."""
    value = getattr(options, name)
    if value is not None and value < low:
        raise HyperguideError(f"universe option {name}: must be >= {low}, got {value}")


@dataclass(frozen=True)
class UniverseOptions:
    """The options every universe reads; a universe's own options subclass this (its source's `Options`)."""

    home: Path = option(
        factory=default_home,
        help="where prepared universes are cached (default: $HYPERGUIDE_HOME or ~/.cache/hyperguide)",
    )
    seed: int = option(
        0,
        help="the universe's own seed: the synthetic universe's tasks, the easyvqa image tower (default 0); the seeds "
        "of a run are --seeds",
    )
    device: str = option("cpu", help="torch device: cpu, cuda, cuda:1 (default cpu)")
    force: bool = False  # prepare again although a matching preparation is cached (`hyperguide prepare --force`)

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
