"""What the commands make of their flags beyond the universe's options: the run's config (preset, flags, `--set`),
its default run folder, and the callbacks that show progress to a person."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hyperguide.config import RunConfig
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback
from hyperguide.universes import UniverseOptions, source


def run_config(args: argparse.Namespace, methods: tuple[str, ...] | None = None) -> RunConfig:
    """The run config the arguments ask for: preset, then the flags, then --set."""
    from hyperguide.config import DEFAULT_PRESET, QUICK_PRESET, resolve_config

    if args.quick and args.config is not None:
        raise HyperguideError("give --quick or --config, not both (--quick is --config quick)")
    values: dict[str, Any] = {}
    if getattr(args, "universe", None) is not None:
        values["universe"] = args.universe
    for key in ("split", "folds", "prompts"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.held_out is not None:
        values["held_out"] = list(args.held_out)
    if args.seeds is not None:
        values["seeds"] = list(args.seeds)
    if methods is not None:
        values["methods"] = list(methods)
    if getattr(args, "precision", None) is not None:
        values["precision"] = args.precision
    preset = QUICK_PRESET if args.quick else (args.config or DEFAULT_PRESET)
    return resolve_config(preset, values, args.overrides)


def run_folder(args: argparse.Namespace, config: RunConfig, options: UniverseOptions, prefix: str = "") -> Path:
    """`--out`, else `runs/<prefix><the universe's run name>-<split>[-quick]`."""
    quick = "-quick" if args.quick else ""
    name = source(config.universe).run_name(options)
    return args.out or Path("runs") / f"{prefix}{name}-{config.split}{quick}"


def seeds_hint(args: argparse.Namespace) -> None:
    """`--seeds N` once meant seeds 0..N-1 in bench; it lists seeds now. Say so when one seed above 0 is given."""
    if args.seeds is not None and len(args.seeds) == 1 and args.seeds[0] > 0:
        s = args.seeds[0]
        print(
            f"hyperguide {args.command}: note: --seeds lists seeds: this runs seed {s} alone "
            f"(seeds 0..{s - 1} are --seeds {' '.join(map(str, range(s)))})",
            file=sys.stderr,
        )


def progress(args: argparse.Namespace, lines: bool = True) -> list[Callback]:
    """Progress for a person: bars on an interactive terminal (unless --quiet), lines on stderr."""
    from hyperguide.callbacks import Lines, ProgressBars
    from hyperguide.distributed import world

    if not world().main:  # under torchrun, the main process alone shows progress
        return []
    out: list[Callback] = [Lines()] if lines else []
    if not getattr(args, "quiet", False) and sys.stderr.isatty():
        out.append(ProgressBars())
    return out
