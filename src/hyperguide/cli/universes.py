"""The universes on the command line, built from the registry each time the parser is built.

A command that names its universe (`hyperguide train METHOD synthetic`) has one sub-command per registered universe:
each takes the command's own flags, so that they may come before or after the name, and the flags of the universe's
own options (`universes/options.py`), which no other universe shows. A command that finds its universe in a run
folder (eval, generate, export, tasks prepare) takes the flags of every universe's options, each flag once. A
universe's flags record only what is given; its options dataclass holds every default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperguide.config import check_device
from hyperguide.errors import HyperguideError
from hyperguide.universes import UNIVERSES, OptionSpec, UniverseOptions, declared, source

COMMON_GROUP = "the universe (every universe's options)"
_COMMON_NAMES = {f.name for f in dataclasses.fields(UniverseOptions)}


def add_universes(
    parser: argparse.ArgumentParser, command_flags: Callable[[argparse.ArgumentParser], None], *, required: bool = True
) -> None:
    """The universe positional of `parser` as one sub-command per registered universe, each with `command_flags`
    and the universe's options that those do not hold already."""
    subs = parser.add_subparsers(
        dest="universe",
        metavar="UNIVERSE",
        required=required,
        title="universes (UNIVERSE --help: its options)",
        action=_IntoCommandNamespace,
    )
    for name, universe in UNIVERSES.items():
        flags = argparse.ArgumentParser(add_help=False)
        command_flags(flags)
        sub = subs.add_parser(name, help=universe.summary, description=f"{name}: {universe.summary}", parents=[flags])
        _option_group(sub, f"{name}'s options", declared(universe.Options), _flags_of(sub))


if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # generic to the type checker only
    _SubParsers = argparse._SubParsersAction


class _IntoCommandNamespace(_SubParsers):
    """Sub-commands that parse into their command's namespace, as one parser would. argparse's own parse into a
    namespace of their own that then replaces the command's values: its defaults would undo the flags given before
    the universe's name, and of a list flag (`--set`, `--log`) given on both sides one side would be lost."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        name, *rest = [str(value) for value in values or ()]  # nargs=PARSER: the name, then what follows it
        setattr(namespace, self.dest, name)
        self.choices[name].parse_args(rest, namespace)


def add_common(parser: argparse.ArgumentParser) -> None:
    """The flags of the options every universe reads (`--home`, `--seed`, `--device`)."""
    _option_group(parser, COMMON_GROUP, declared(UniverseOptions), _flags_of(parser))


def add_every_universe(parser: argparse.ArgumentParser) -> None:
    """The flags of every universe's options, for a command that finds its universe in a run folder: a flag that
    `parser` or an earlier universe has already is not added again."""
    taken = _flags_of(parser)
    _option_group(parser, COMMON_GROUP, declared(UniverseOptions), taken)
    for name, universe in UNIVERSES.items():
        _option_group(parser, f"a run of {name}", declared(universe.Options), taken)


def _option_group(parser: argparse.ArgumentParser, title: str, specs: Iterable[OptionSpec], taken: set[str]) -> None:
    """A group titled `title` with the flags of `specs` not in `taken` (then added to it), naming the universe's own
    flags that are there already; none if every flag is."""
    specs = list(specs)
    new = [spec for spec in specs if spec.flag not in taken]
    if not new:
        return
    shared = [spec.flag for spec in specs if spec.flag in taken and spec.name not in _COMMON_NAMES]
    group = parser.add_argument_group(title, f"and {', '.join(shared)} (above)" if shared else None)
    for spec in new:
        taken.add(spec.flag)
        if spec.kind is bool:
            group.add_argument(
                spec.flag, dest=spec.name, action="store_true", default=argparse.SUPPRESS, help=spec.help
            )
        else:
            group.add_argument(
                spec.flag,
                dest=spec.name,
                type=spec.kind,
                choices=spec.choices,
                metavar=spec.metavar,
                default=argparse.SUPPRESS,
                help=spec.help,
            )


def _flags_of(parser: argparse.ArgumentParser) -> set[str]:
    """The flags `parser` has (argparse keeps its actions in a list it names privately)."""
    return {flag for action in parser._actions for flag in action.option_strings}


def universe_options(args: argparse.Namespace, name: str | None) -> UniverseOptions:
    """The options of universe `name` (None: the common ones) that the command line gives, with the device checked."""
    options = _given(args, UniverseOptions if name is None else source(name).Options)
    check_device(options.device)
    return options


def _given(args: argparse.Namespace, options_type: type[UniverseOptions]) -> UniverseOptions:
    """`options_type` with each field that the command line gives (a flag of its name) set to what it gives."""
    fields = dataclasses.fields(options_type)
    return options_type(**{f.name: getattr(args, f.name) for f in fields if hasattr(args, f.name)})


def run_universe(path: Path) -> str | None:
    """The universe of the run folder `path`; None where `path` is not one (an exported generator, or a folder the
    command then refuses, saying what it is)."""
    from hyperguide.trained.folder import RunFolder

    try:
        return RunFolder(Path(path)).read_config().universe
    except HyperguideError:
        return None


def options_listing(args: argparse.Namespace, name: str | None) -> str:
    """The options of every universe at their defaults, or of universe `name` as the command line gives them, one a
    line as `hyperguide config` lists the run's knobs: `--FLAG = VALUE  # help  (default D)`."""
    common = _given(args, UniverseOptions if name is None else source(name).Options)
    heading = "[universe] the options every universe reads; a universe's flags follow its name on the command line"
    lines = [heading, *_lines(common, declared(UniverseOptions))]
    for universe in [source(name)] if name is not None else UNIVERSES.values():
        options = common if name is not None else universe.Options()
        own = [spec for spec in declared(universe.Options) if spec.name not in _COMMON_NAMES]
        lines += ["", f"[universe {universe.name}] {universe.summary}"]
        lines += _lines(options, own) if own else ["(no options of its own)"]
    return "\n".join(lines)


def _lines(options: UniverseOptions, specs: list[OptionSpec]) -> list[str]:
    """One line per option of `specs`: its flag, its value in `options`, its help, its default where it differs."""

    def shown(value: Any) -> str:
        return json.dumps(str(value) if isinstance(value, Path) else value)

    out = []
    for spec in specs:
        value = getattr(options, spec.name)
        changed = "" if value == spec.default else f"  (default {shown(spec.default)})"
        out.append(f"{f'{spec.flag} = {shown(value)}'.ljust(44)}  # {spec.help}{changed}")
    return out
