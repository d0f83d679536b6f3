"""The commands and their flags: `build_parser`, one function per command that names its universe (prepare, stats,
train, collect, bench, config); the commands that read a run folder are in `parser_runs.py`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from hyperguide.cli.flags import SPLITS, Subparsers, log_arg, precision_arg, quiet_arg, run_args, train_epilog
from hyperguide.cli.parser_runs import add_compare, add_eval, add_export, add_generate, add_tasks
from hyperguide.cli.universes import add_common, add_universes

Flags = Callable[[argparse.ArgumentParser], None]

RUN_OUT = "runs/<universe>-<split>[-quick]"


def build_parser() -> argparse.ArgumentParser:
    """The `hyperguide` parser, with a sub-command per universe the registry holds now."""
    parser = argparse.ArgumentParser(
        prog="hyperguide",
        description="Zero-shot neural-network weights from a task's description (Nava et al., TMLR 2023).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        add_prepare,
        add_stats,
        add_train,
        add_collect,
        add_generate,
        add_export,
        add_eval,
        add_bench,
        add_config,
        add_tasks,
        add_compare,
    ):
        add(sub)
    return parser


def _with_universe(parser: argparse.ArgumentParser, flags: Flags, *, required: bool = True) -> None:
    """`flags` on `parser` and on each of its universes' sub-commands, so that they may come before or after the
    universe's name."""
    flags(parser)
    add_universes(parser, flags, required=required)


def add_prepare(sub: Subparsers) -> None:
    prep = sub.add_parser(
        "prepare",
        help="compute a universe's frozen features and cache them on disk",
        description="Compute and cache a universe's frozen features. easyvqa: embeds questions and answer prompts "
        "with all-MiniLM-L6-v2 and trains the image tower (a few minutes on a CPU). metavqa: CLIP features of "
        "COCO images, questions and answer prompts (resumable). A finished preparation is reused unless --force.",
    )

    def flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--force", action="store_true", help="recompute even if a matching preparation is cached")
        quiet_arg(p)
        p.add_argument("--json", action="store_true", help="print the manifest as JSON")
        add_common(p)

    _with_universe(prep, flags)


def add_stats(sub: Subparsers) -> None:
    stats = sub.add_parser(
        "stats",
        help="print a universe's statistics (no features needed)",
        description="Tasks per side, pairs, answers per task, support/query sizes, chance and majority accuracy.",
    )

    def flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--split", default="random", choices=SPLITS, help="split kind (default random)")
        p.add_argument("--folds", type=int, default=5, help="kfold: number of folds (default 5)")
        p.add_argument("--fold", type=int, default=0, help="kfold: which fold to describe in detail (default 0)")
        p.add_argument(
            "--held-out",
            nargs="+",
            default=None,
            metavar="CONCEPT",
            help="compositional: concepts whose questions go to meta-test (default: the universe's)",
        )
        p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
        add_common(p)

    _with_universe(stats, flags)


def _training_flags(p: argparse.ArgumentParser) -> None:
    """train's and collect's flags."""
    run_args(p, out_default=RUN_OUT)
    quiet_arg(p)
    log_arg(p)
    precision_arg(p)
    add_common(p)


def add_train(sub: Subparsers) -> None:
    train = sub.add_parser(
        "train",
        help="meta-train methods or guidance stages over seeds (and folds) into a run folder",
        description="Train what one or more methods need on a prepared universe's meta-train tasks, for every seed "
        "and fold, into RUN_DIR/<stage>/seed<S>-fold<F>.{safetensors,json} with a metrics.jsonl log each. A "
        "stage's dependencies run first (hyperldm-hvae needs hvae, which needs the collected latents, which need "
        "uncond-hnet-maml); existing checkpoints are kept, so an interrupted run resumes and stages chain through "
        "the run folder. A row of a sweeping method (hnet+hyperldm@2) names the method. The same preset as bench "
        "(default: default), so that train then eval gives bench's numbers.",
        epilog=train_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("methods", metavar="METHOD", help="a method or stage, a comma-separated list, or 'all'")
    _with_universe(train, _training_flags)


def add_collect(sub: Subparsers) -> None:
    collect = sub.add_parser(
        "collect",
        help="collect the adapted HNet latents of every meta-train task (the guidance models' data)",
        description="docs/design.md §P2: for every seed and fold, fine-tune the meta-learned HNet latent on n_aug "
        "random subsets of each meta-train task's data (--set collect.n_aug=N; 10 SGD steps at lr 0.1), batched over "
        "tasks, into RUN_DIR/latents/. Trains uncond-hnet-maml first if the run folder lacks it. Same as "
        "`train collect`.",
    )
    _with_universe(collect, _training_flags)


def add_bench(sub: Subparsers) -> None:
    bench = sub.add_parser(
        "bench",
        help="the whole benchmark, resumable: train every method over seeds, evaluate, write the report",
        description="Train every row of the table over seeds and folds, evaluate them all, and write "
        "OUT/results.json (with seconds per stage), OUT/results.md and PNG plots. Finished stages in OUT are reused: "
        "a run killed at any point resumes when started again with the same arguments and ends with the same numbers. "
        "Without --config or --quick it runs the `default` preset (configs/default.json: 3 seeds, sized for about "
        "40 minutes on easyvqa's random split on 2 CPU cores; docs/benchmark.md lists what it cuts and what each "
        "stage costs); --set overrides any knob of it.",
    )

    def flags(p: argparse.ArgumentParser) -> None:
        run_args(p, out_default="runs/bench-<universe>-<split>[-quick]; taskfile: bench-taskfile-<stem>-<sha8>-...")
        quiet_arg(p, "no progress bars inside a stage")
        p.add_argument(
            "--headline-from",
            type=Path,
            default=None,
            metavar="TUNE_RUN",
            help="a finished bench of the same universe and split made with --set tune_folds=K (folds of the "
            "meta-train tasks alone): the report puts forward the guidance row and the baseline that score best "
            "there, never a choice made on meta-test (results.json's `headline`; without it the report shows only "
            "the meta-test best case, marked as such)",
        )
        log_arg(p)
        precision_arg(p)
        add_common(p)

    _with_universe(bench, flags)


def add_config(sub: Subparsers) -> None:
    cfg = sub.add_parser(
        "config",
        help="print the resolved configuration of a run: every knob with its value, default and help",
        description="Resolve the configuration exactly as train and bench do (the dataclass defaults, the preset "
        "or --config file, the flags, --set) and print every knob, one a line, with its default when it differs "
        "and its help, then the universes' options (a universe named: its options as its flags give them). --json "
        "prints the config.json that a run would write.",
    )

    def flags(p: argparse.ArgumentParser) -> None:
        run_args(p, out_default="-")
        p.add_argument("--json", action="store_true", help="print the config as JSON (a valid --config file)")

    _with_universe(cfg, flags, required=False)
