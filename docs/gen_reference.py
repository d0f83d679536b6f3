"""The site's generated reference pages, written at build time (mkdocs-gen-files) from the code itself, so that they
cannot drift from it: the configuration (every knob of the config dataclasses with its default, its value in each
preset and its help line, and every universe's options) and the command line (every command's `--help`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mkdocs_gen_files

from hyperguide.cli import build_parser
from hyperguide.config import RunConfig, preset_names, resolve_config
from hyperguide.config.typed import knobs, sections
from hyperguide.universes import UNIVERSES, UniverseOptions, declared

WIDTH = "88"  # the --help texts are wrapped as in a terminal this wide: the width of a code block


def cell(value: Any) -> str:
    """A JSON value as a table cell: code, with `|` escaped."""
    return "`" + json.dumps(str(value) if isinstance(value, Path) else value).replace("|", "\\|") + "`"


HOME_DEFAULT = "`$HYPERGUIDE_HOME`, else `~/.cache/hyperguide`"  # computed where it runs: not the build machine's


def prose(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def configuration_page() -> str:
    base = RunConfig()
    heads = sections(base)
    lines = [
        "# Configuration reference",
        "",
        "Every knob of a run's configuration, generated from the config dataclasses (`src/hyperguide/config/`) when",
        "the site is built. The default is the dataclass default: the paper's setting where the paper gives one,",
        "unless the help line names a departure ([decisions](../decisions.md) has the measurements behind each);",
        "[the presets](#presets) change some of them. A knob marked *evaluation only* changes how trained models are",
        "used and nothing training produces: changing it retrains nothing (it is left out of the checkpoints'",
        "fingerprints). Set any knob with `--set key=value` or a config file (see",
        "[Configuration](../configuration.md)); `hyperguide config UNIVERSE` prints the configuration a command",
        "would run.",
    ]
    section = None
    for k in knobs(base):
        parent = k.key.rpartition(".")[0]
        if parent != section:
            section = parent
            title = f"`{parent}`" if parent else "The run"
            help_line = heads.get(parent, "what the run is: its universe, split, seeds and rows")
            lines += ["", f"## {title}", "", prose(help_line[:1].upper() + help_line[1:]) + ".", ""]
            lines += ["| knob | default | what it sets |", "|---|---|---|"]
        tag = " *Evaluation only.*" if k.evaluation_only else ""
        lines.append(f"| `{k.key}` | {cell(k.default)} | {prose(k.help)}.{tag} |")
    lines += ["", "## Presets", ""]
    lines += [
        "A preset is a config file shipped with the package (`--config NAME`; `configs/` links to them); `default` is",
        "what `hyperguide bench` and `train` use when no `--config` is given. What each changes from the defaults:",
    ]
    for name in preset_names():
        changed = [k for k in knobs(resolve_config(name, {})) if k.value != k.default]
        lines += ["", f"### `{name}`", ""]
        lines += ["| knob | value | default |", "|---|---|---|"]
        lines += [f"| `{k.key}` | {cell(k.value)} | {cell(k.default)} |" for k in changed]
    lines += ["", "## Universe options", ""]
    lines += [
        "Options of the task universes, given as flags after the universe's name on the command line",
        "(`hyperguide bench taskfile --tasks mine.jsonl`); every universe reads the common ones.",
        "",
    ]
    common = {f.name for f in dataclasses.fields(UniverseOptions)}
    groups = [("Every universe", "The options every universe reads.", declared(UniverseOptions))]
    for u in UNIVERSES.values():
        own = [s for s in declared(u.Options) if s.name not in common]
        groups.append((f"`{u.name}`", prose(u.summary[:1].upper() + u.summary[1:]) + ".", own))
    for title, summary, specs in groups:
        lines += [f"### {title}", "", summary, ""]
        if not specs:
            lines += ["No options of its own.", ""]
            continue
        lines += ["| flag | default | what it sets |", "|---|---|---|"]
        for spec in specs:
            default = HOME_DEFAULT if spec.name == "home" else cell(spec.default)
            lines.append(f"| `{spec.flag}` | {default} | {prose(spec.help)}. |")
        lines.append("")
    return "\n".join(lines) + "\n"


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse keeps sub-commands in a private action; sphinx-argparse reads it too
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def cli_page() -> str:
    os.environ["COLUMNS"] = WIDTH
    parser = build_parser()
    lines = [
        "# Command-line reference",
        "",
        "Every command of `hyperguide`, with its `--help`, generated from the argument parser when the site is built.",
        "A command that names a universe (`hyperguide bench easyvqa`) takes that universe's own options after its",
        "name: they are listed under [Universe options](configuration.md#universe-options).",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    universes = set(UNIVERSES)
    for name, command in subcommands(parser):
        lines += ["", f"## hyperguide {name}", "", "```text", command.format_help().rstrip(), "```"]
        for sub, subparser in subcommands(command):
            if sub in universes:
                continue
            lines += ["", f"### hyperguide {name} {sub}", "", "```text", subparser.format_help().rstrip(), "```"]
    return "\n".join(lines) + "\n"


with mkdocs_gen_files.open("reference/configuration.md", "w") as f:
    f.write(configuration_page())
with mkdocs_gen_files.open("reference/cli.md", "w") as f:
    f.write(cli_page())
