"""The flags several commands share: the run's configuration (a preset, the split, the seeds, `--set`), `--log`,
`--precision` and `--quiet`; and the list of methods and stages that `train --help` ends with."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeAlias, get_args

from hyperguide.config.sections import Precision, PromptStyle, SplitKind

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # what `add_subparsers` returns
SPLITS: tuple[str, ...] = get_args(SplitKind)
PROMPTS: tuple[str, ...] = tuple(sorted(get_args(PromptStyle)))  # the bare answer, the default, first


def run_args(p: argparse.ArgumentParser, *, out_default: str) -> None:
    """The run's configuration (preset, split, seeds, `--set`) and its folder, `--out`."""
    from hyperguide.config import DEFAULT_PRESET, preset_names

    run = p.add_argument_group("the run's configuration (hyperguide config lists every knob)")
    run.add_argument(
        "--config",
        default=None,
        metavar="NAME|FILE",
        help=f"a preset ({', '.join(preset_names())}; default {DEFAULT_PRESET}) or a JSON config file, any part of "
        "the tree: the dataclass defaults (the paper's, unless a knob's help says otherwise), then this, then the "
        "flags below, then --set",
    )
    run.add_argument("--quick", action="store_true", help="the quick preset (= --config quick): smoke runs")
    run.add_argument("--split", default=None, choices=SPLITS, help="meta-train / meta-test split (default random)")
    run.add_argument("--folds", type=int, default=None, help="kfold: number of folds (default 5)")
    run.add_argument(
        "--held-out",
        nargs="+",
        default=None,
        metavar="CONCEPT",
        help="compositional: held-out concepts; concepts: one fold each, several joined by + (red+teal)",
    )
    run.add_argument(
        "--prompts", default=None, choices=PROMPTS, help="easyvqa answer prompts: bare answers (default) or statements"
    )
    run.add_argument(
        "--seeds", type=int, nargs="+", default=None, metavar="SEED", help="the run's seeds (default: the preset's)"
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='override one knob, e.g. --set method.inner.steps=5 --set eval.k_shots=\'["1","full"]\'',
    )
    p.add_argument("--out", type=Path, default=None, help=f"run folder (default: {out_default})")


def quiet_arg(p: argparse.ArgumentParser, help: str = "no progress bars") -> None:
    p.add_argument("--quiet", action="store_true", help=help)


def log_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log",
        action="append",
        default=[],
        metavar="TRACKER",
        help="also draw the training in a tracker (repeatable; metrics.jsonl is always written): tensorboard "
        "(into RUN_DIR/tensorboard), tensorboard:DIR, or wandb (offline into RUN_DIR/wandb unless WANDB_MODE=online); "
        "needs pip install 'hyperguide[tensorboard]' or 'hyperguide[wandb]'",
    )


def precision_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        default=None,
        choices=get_args(Precision),
        help="GPU arithmetic (config key `precision`; default fp32: float32 throughout): tf32 (CUDA matrix products "
        "in TF32) or bf16 (CUDA bfloat16 autocast; weights, optimiser state and losses stay float32). A run folder "
        "holds one precision; eval uses the run's",
    )


def train_epilog() -> str:
    """The methods and stages `train` can be given, one a line with its summary."""
    from hyperguide.rows import ROWS
    from hyperguide.trained.stage_table import stage_groups, stage_table

    lines = ["methods (a method that sweeps a value is one table row per value, NAME@VALUE):"]
    lines += [f"  {name:<20} {spec.summary}" for name, spec in ROWS.items()]
    lines += ["stages (each brings the stages it needs):"]
    lines += [f"  {name:<20} {spec.summary} (needs {', '.join(spec.deps)})" for name, spec in stage_table().items()]
    lines += [f"  {name:<20} = {', '.join(group)}" for name, group in stage_groups().items()]
    return "\n".join(lines)
