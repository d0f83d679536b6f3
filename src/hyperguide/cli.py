"""The `hyperguide` command line: it parses arguments, chooses the callbacks that show progress, and calls the
library; nothing more."""

from __future__ import annotations

import argparse
import errno
import json
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from hyperguide.errors import HyperguideError, HyperguideWarning
from hyperguide.events import Callback
from hyperguide.io import default_home

SPLITS = ("random", "compositional", "kfold", "concepts")
PROMPTS = ("answer", "declarative")


def _universe_names() -> str:
    from hyperguide.universes import UNIVERSES

    return ", ".join(UNIVERSES)


def _universes_epilog() -> str:
    from hyperguide.universes import UNIVERSES

    return "universes:\n" + "\n".join(f"  {name:<18} {u.summary}" for name, u in UNIVERSES.items())


def _train_epilog() -> str:
    from hyperguide.rows import ROWS
    from hyperguide.trained.stage_table import stage_groups, stage_table

    lines = ["methods (a method that sweeps a value is one table row per value, NAME@VALUE):"]
    lines += [f"  {name:<20} {spec.summary}" for name, spec in ROWS.items()]
    lines += ["stages (each brings the stages it needs):"]
    lines += [f"  {name:<20} {spec.summary} (needs {', '.join(spec.deps)})" for name, spec in stage_table().items()]
    lines += [f"  {name:<20} = {', '.join(group)}" for name, group in stage_groups().items()]
    return "\n".join(lines)


def _universe_args(p: argparse.ArgumentParser, *, positional: bool = True) -> None:
    if positional:
        p.add_argument("universe", help=f"task universe: {_universe_names()}")
    p.add_argument(
        "--home",
        type=Path,
        default=None,
        help=f"where prepared universes are cached (default: $HYPERGUIDE_HOME or {default_home()})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the universe's own seed: the synthetic universe's tasks, the easyvqa image tower (default 0); the "
        "seeds of a run are --seeds",
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default cpu)")
    meta = p.add_argument_group("metavqa")
    meta.add_argument(
        "--splits-dir",
        type=Path,
        default=None,
        help="folder with the authors' meta_train.json, meta_test.json and prompt_meta.json",
    )
    meta.add_argument(
        "--vqa-root",
        type=Path,
        default=None,
        help="folder with the VQA v2 question and annotation JSON files (builds the split files)",
    )
    meta.add_argument(
        "--prompts-file",
        type=Path,
        default=None,
        help="JSON {question: template with {}} for answer prompts (default: prompt_meta.json in --splits-dir)",
    )
    meta.add_argument("--coco-root", type=Path, default=None, help="folder with COCO train2014/ and val2014/ images")
    meta.add_argument(
        "--clip-model",
        default=None,
        help="transformers CLIPModel: a hub id in the local cache or a local folder (default: CLIP ViT-L/14@336px)",
    )
    meta.add_argument("--batch-size", type=int, default=32, help="images per CLIP forward pass (default 32)")
    own = p.add_argument_group("taskfile (your own task family; docs/own-tasks.md)")
    own.add_argument("--tasks", type=Path, default=None, metavar="FILE", help="the .json or .jsonl task file")
    own.add_argument(
        "--images-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="the folder relative image paths start from (default: the task file's folder)",
    )
    own.add_argument(
        "--encoder",
        default=None,
        choices=("embedded", "transformers", "features"),
        help="prepare: how features are made: embedded (MiniLM + easyvqa's image tower; the default), transformers "
        "(--model), features (--features-file); other commands use the prepared one",
    )
    own.add_argument(
        "--model",
        default=None,
        metavar="DIR|HUB_ID",
        help="a local transformers dual encoder (CLIP, SigLIP, ...): a folder or a hub id in the local cache",
    )
    own.add_argument(
        "--features-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="your precomputed features: safetensors with image/<image>, text/<text>, optional tokens/<question>",
    )
    own.add_argument(
        "--min-examples", type=int, default=0, metavar="N", help="drop tasks with fewer examples (default 0: off)"
    )
    own.add_argument(
        "--min-answer-examples",
        type=int,
        default=0,
        metavar="N",
        help="drop answers with fewer examples (default 0: off; Meta-VQA's rules: --min-answer-examples 2 "
        "--min-examples 21)",
    )


def _options(args: argparse.Namespace) -> Any:
    from hyperguide.config import check_device
    from hyperguide.universes import UniverseOptions

    options = UniverseOptions(
        seed=getattr(args, "seed", 0),
        device=check_device(args.device),
        splits_dir=args.splits_dir,
        vqa_root=args.vqa_root,
        coco_root=args.coco_root,
        prompts_file=args.prompts_file,
        batch_size=args.batch_size,
        force=getattr(args, "force", False),
        tower_epochs=getattr(args, "tower_epochs", None),
        tasks=args.tasks,
        images_root=args.images_root,
        encoder=args.encoder,
        model=args.model,
        features_file=args.features_file,
        min_examples=args.min_examples,
        min_answer_examples=args.min_answer_examples,
    )
    if args.clip_model is not None:
        options.clip_model = args.clip_model
    if args.home is not None:
        options.home = args.home
    return options


def _run_args(p: argparse.ArgumentParser, *, out_default: str) -> None:
    from hyperguide.config import DEFAULT_PRESET, preset_names

    run = p.add_argument_group("the run's configuration (hyperguide config lists every knob)")
    run.add_argument(
        "--config",
        default=None,
        metavar="NAME|FILE",
        help=f"a preset ({', '.join(preset_names())}; default {DEFAULT_PRESET}) or a JSON config file, any part of "
        "the tree: the dataclass defaults (the paper's), then this, then the flags below, then --set",
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


def _run_config(args: argparse.Namespace, methods: tuple[str, ...] | None = None) -> Any:
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


def _out(args: argparse.Namespace, config: Any, prefix: str = "") -> Path:
    quick = "-quick" if args.quick else ""
    universe = config.universe
    if universe == "taskfile" and getattr(args, "tasks", None) is not None and Path(args.tasks).is_file():
        from hyperguide.io import file_sha256

        universe = f"taskfile-{Path(args.tasks).stem}-{file_sha256(args.tasks)[:8]}"  # one folder per task file
    return args.out or Path("runs") / f"{prefix}{universe}-{config.split}{quick}"


def _seeds_hint(args: argparse.Namespace) -> None:
    """`--seeds N` once meant seeds 0..N-1 in bench; it lists seeds now. Say so when one seed above 0 is given."""
    if args.seeds is not None and len(args.seeds) == 1 and args.seeds[0] > 0:
        s = args.seeds[0]
        print(
            f"hyperguide {args.command}: note: --seeds lists seeds: this runs seed {s} alone "
            f"(seeds 0..{s - 1} are --seeds {' '.join(map(str, range(s)))})",
            file=sys.stderr,
        )


def _callbacks(args: argparse.Namespace, lines: bool = True) -> list[Callback]:
    """Progress for a person: bars on an interactive terminal (unless --quiet), lines on stderr."""
    from hyperguide.callbacks import Lines, ProgressBars
    from hyperguide.distributed import world

    if not world().main:  # under torchrun, the main process alone shows progress
        return []
    out: list[Callback] = [Lines()] if lines else []
    if not getattr(args, "quiet", False) and sys.stderr.isatty():
        out.append(ProgressBars())
    return out


def _log_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log",
        action="append",
        default=[],
        metavar="TRACKER",
        help="also draw the training in a tracker (repeatable; metrics.jsonl is always written): tensorboard "
        "(into RUN_DIR/tensorboard), tensorboard:DIR, or wandb (offline into RUN_DIR/wandb unless WANDB_MODE=online); "
        "needs pip install 'hyperguide[tensorboard]' or 'hyperguide[wandb]'",
    )


def _precision_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        default=None,
        choices=("fp32", "tf32", "bf16"),
        help="GPU arithmetic (config key `precision`; default fp32: float32 throughout): tf32 (CUDA matrix products "
        "in TF32) or bf16 (CUDA bfloat16 autocast; weights, optimiser state and losses stay float32). A run folder "
        "holds one precision; eval uses the run's",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperguide",
        description="Zero-shot neural-network weights from a task's description (Nava et al., TMLR 2023).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prep = sub.add_parser(
        "prepare",
        help="compute a universe's frozen features and cache them on disk",
        description="Compute and cache a universe's frozen features. easyvqa: embeds questions and answer prompts "
        "with all-MiniLM-L6-v2 and trains the image tower (a few minutes on a CPU). metavqa: CLIP features of "
        "COCO images, questions and answer prompts (resumable). A finished preparation is reused unless --force.",
    )
    prep.epilog = _universes_epilog()
    prep.formatter_class = argparse.RawDescriptionHelpFormatter
    _universe_args(prep)
    prep.add_argument("--force", action="store_true", help="recompute even if a matching preparation is cached")
    prep.add_argument("--tower-epochs", type=int, default=None, help="easyvqa: image-tower training epochs")
    prep.add_argument("--quiet", action="store_true", help="no progress bars")
    prep.add_argument("--json", action="store_true", help="print the manifest as JSON")

    stats = sub.add_parser(
        "stats",
        help="print a universe's statistics (no features needed)",
        description="Tasks per side, pairs, answers per task, support/query sizes, chance and majority accuracy.",
    )
    _universe_args(stats)
    stats.add_argument("--split", default="random", choices=SPLITS, help="split kind (default random)")
    stats.add_argument("--folds", type=int, default=5, help="kfold: number of folds (default 5)")
    stats.add_argument("--fold", type=int, default=0, help="kfold: which fold to describe in detail (default 0)")
    stats.add_argument(
        "--held-out",
        nargs="+",
        default=None,
        metavar="CONCEPT",
        help="compositional: concepts whose questions go to meta-test (default: the universe's)",
    )
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    train = sub.add_parser(
        "train",
        help="meta-train methods or guidance stages over seeds (and folds) into a run folder",
        description="Train what one or more methods need on a prepared universe's meta-train tasks, for every seed "
        "and fold, into RUN_DIR/<stage>/seed<S>-fold<F>.{safetensors,json} with a metrics.jsonl log each. A "
        "stage's dependencies run first (hyperldm-hvae needs hvae, which needs the collected latents, which need "
        "uncond-hnet-maml); existing checkpoints are kept, so an interrupted run resumes and stages chain through "
        "the run folder. A row of a sweeping method (hnet+hyperldm@2) names the method. The same preset as bench "
        "(default: default), so that train then eval gives bench's numbers.",
        epilog=_train_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("methods", metavar="METHOD", help="a method or stage, a comma-separated list, or 'all'")
    _universe_args(train)
    _run_args(train, out_default="runs/<universe>-<split>[-quick]")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    _log_arg(train)
    _precision_arg(train)

    collect = sub.add_parser(
        "collect",
        help="collect the adapted HNet latents of every meta-train task (the guidance models' data)",
        description="docs/design.md §P2: for every seed and fold, fine-tune the meta-learned HNet latent on n_aug "
        "random subsets of each meta-train task's data (--set collect.n_aug=N; 10 SGD steps at lr 0.1), batched over "
        "tasks, into RUN_DIR/latents/. Trains uncond-hnet-maml first if the run folder lacks it. Same as "
        "`train collect`.",
    )
    _universe_args(collect)
    _run_args(collect, out_default="runs/<universe>-<split>[-quick]")
    collect.add_argument("--quiet", action="store_true", help="no progress bars")
    _log_arg(collect)
    _precision_arg(collect)

    gen = sub.add_parser(
        "generate",
        help="adapter weights (and predictions) for new questions, zero-shot, from a trained run",
        description="Embed each question with the run's text encoder, generate its adapter weights with a trained "
        "question-conditioned method (no labels, no fine-tuning), write OUT/weights.safetensors and "
        "OUT/generated.json, and, given images or features, print the answer the adapter picks for each. RUN_DIR may "
        "also be a folder `hyperguide export` wrote: it needs neither the run nor a prepared universe.",
    )
    gen.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder, or an exported generator's folder")
    gen.add_argument("questions", nargs="+", metavar="QUESTION", help="one or more questions")
    gen.add_argument(
        "--answers",
        nargs="+",
        default=None,
        metavar="ANSWER",
        help="candidate answers (for every question); default: the universe task's answers when it has the question",
    )
    gen.add_argument(
        "--method", default=None, help="a row of the run, e.g. hnet+hyperldm@2 (default: its best conditional row)"
    )
    gen.add_argument("--run-seed", type=int, default=None, help="which trained seed to use (default: the run's first)")
    gen.add_argument("--fold", type=int, default=None, help="which fold's models to use (default 0)")
    inputs = gen.add_mutually_exclusive_group()
    inputs.add_argument("--images", nargs="+", type=Path, default=None, metavar="IMAGE", help="images to answer about")
    inputs.add_argument(
        "--features",
        type=Path,
        default=None,
        help="safetensors file with an (N, D) tensor 'features' instead of images",
    )
    gen.add_argument("--out", type=Path, default=Path("generated"), help="output folder (default ./generated)")
    _universe_args(gen, positional=False)

    export = sub.add_parser(
        "export",
        help="write one trained row of a run as a self-contained folder to share (hub-ready)",
        description="Write OUT/config.json (the row, its config, every file's sha256 and tensors), one "
        "<stage>.safetensors per trained part, the universe's own encoder files (easyvqa's image tower) and a "
        "README.md model card (the row's training config and results). `hyperguide generate OUT ...` and "
        "hyperguide.load_generator(OUT) then need neither the run nor a prepared universe; loading never runs code "
        "from the folder. The universe options say where the run's universe is prepared, as for generate.",
    )
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    export.add_argument(
        "--method", default=None, help="a row of the run, e.g. hnet+hyperldm@2 (default: its best conditional row)"
    )
    export.add_argument("--run-seed", type=int, default=None, help="which trained seed (default: the run's first)")
    export.add_argument("--fold", type=int, default=0, help="which fold's models (default 0)")
    export.add_argument("--out", type=Path, required=True, help="a new or empty folder for the bundle")
    _universe_args(export, positional=False)

    ev = sub.add_parser(
        "eval",
        help="evaluate a run folder: zero-shot and k-shot accuracy with 95%% CIs, into results.json",
        description="Evaluate every row of a run on the meta-test tasks of every seed and fold: zero-shot "
        "accuracy and balanced accuracy, and k-shot accuracy after fine-tuning (docs/design.md §P8). Writes "
        "RUN_DIR/results.json and prints the table.",
    )
    ev.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    _precision_arg(ev)
    _universe_args(ev, positional=False)

    bench = sub.add_parser(
        "bench",
        help="the whole benchmark, resumable: train every method over seeds, evaluate, write the report",
        description="Train every row of the table over seeds and folds, evaluate them all, and write "
        "OUT/results.json (with seconds per stage), OUT/results.md and PNG plots. Finished stages in OUT are reused: "
        "a run killed at any point resumes when started again with the same arguments and ends with the same numbers. "
        "Without --config or --quick it runs the `default` preset (configs/default.json: 3 seeds, sized for 30 "
        "minutes on easyvqa's random split on 2 CPU cores; the README lists what it cuts and what each stage "
        "costs); --set overrides any knob of it.",
    )
    bench.add_argument("universe", help=f"task universe: {_universe_names()}")
    _run_args(bench, out_default="runs/bench-<universe>-<split>[-quick]; taskfile: bench-taskfile-<stem>-<sha8>-...")
    bench.add_argument("--quiet", action="store_true", help="no progress bars inside a stage")
    bench.add_argument(
        "--headline-from",
        type=Path,
        default=None,
        metavar="TUNE_RUN",
        help="a finished bench of the same universe and split made with --set tune_folds=K (folds of the "
        "meta-train tasks alone): the report puts forward the guidance row and the baseline that score best there, "
        "never a choice made on meta-test (results.json's `headline`; without it the report shows only the "
        "meta-test best case, marked as such)",
    )
    _log_arg(bench)
    _precision_arg(bench)
    _universe_args(bench, positional=False)

    cfg = sub.add_parser(
        "config",
        help="print the resolved configuration of a run: every knob with its value, default and help",
        description="Resolve the configuration exactly as train and bench do (the dataclass defaults, the preset "
        "or --config file, the flags, --set) and print every knob, one a line, with its default when it differs "
        "and its help. --json prints the config.json that a run would write.",
    )
    cfg.add_argument("universe", nargs="?", default=None, help=f"task universe ({_universe_names()})")
    _run_args(cfg, out_default="-")
    cfg.add_argument("--json", action="store_true", help="print the config as JSON (a valid --config file)")

    own = sub.add_parser(
        "tasks",
        help="your own tasks (a task file): prepare their features with a run's encoders, evaluate the run on them",
        description="A task file (.json or .jsonl; docs/own-tasks.md) lists tasks: a question, its answers, optional "
        "answer prompts and a kind, and examples (image, answer, support or query). `prepare` embeds them with the "
        "encoders of a trained run's universe; `eval` scores every question-conditioned row of the run on them, "
        "zero-shot (k-shot where tasks have support examples), and writes the report.",
    )
    own_sub = own.add_subparsers(dest="tasks_command", required=True, metavar="COMMAND")
    own_prep = own_sub.add_parser(
        "prepare",
        help="check a task file and embed its questions, answer prompts and images with a run's encoders",
        description="Check every task of TASK_FILE (a bad one is refused with its number, question and field; nothing "
        "is written), check that the universe prepared here is the data the run was trained on, then embed the "
        "questions (pooled and token states), the answer prompts (the file's, or the run's rule) and the images with "
        "the encoders of the run's universe (easyvqa: MiniLM and the image tower; metavqa: CLIP). A universe without "
        "encoders (synthetic) reads texts and image ids from its own feature tables.",
    )
    own_prep.set_defaults(command="tasks prepare")
    own_prep.add_argument("task_file", type=Path, metavar="TASK_FILE", help="a .json or .jsonl task file")
    own_prep.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="a trained run folder")
    own_prep.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FEATURES_DIR",
        help="default: TASK_FILE's stem + .features/ beside it",
    )
    own_prep.add_argument("--quiet", action="store_true", help="no progress bars")
    _universe_args(own_prep, positional=False)
    own_eval = own_sub.add_parser(
        "eval",
        help="evaluate a run's question-conditioned rows on prepared tasks: the report, by kind of task",
        description="For every seed and fold of the run, score every question-conditioned row (and chance; majority "
        "when every task has support examples) on the prepared tasks: zero-shot, and the run's k-shot settings where "
        "the tasks have support examples. A fold's models each score every task; a task's score per seed is their "
        "mean. Writes REPORT_DIR/results.json and results.md and prints the tables.",
    )
    own_eval.set_defaults(command="tasks eval")
    own_eval.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    own_eval.add_argument("features_dir", type=Path, metavar="FEATURES_DIR", help="what `tasks prepare` wrote")
    own_eval.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="ROW",
        help="rows of the run (comma-separated or several; a sweeping method stands for its rows); default: every "
        "question-conditioned row and chance",
    )
    own_eval.add_argument(
        "--out", type=Path, default=None, metavar="REPORT_DIR", help="default: <stem>-<run>-report beside FEATURES_DIR"
    )
    own_eval.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default cpu)")
    own_eval.add_argument("--quiet", action="store_true", help="no progress bars")

    cmp = sub.add_parser("compare", help="paired comparison of two methods of an evaluated run")
    cmp.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    cmp.add_argument("a", metavar="METHOD_A")
    cmp.add_argument("b", metavar="METHOD_B")
    return parser


def cmd_bench(args: argparse.Namespace) -> int:
    from hyperguide.config.precision import check_precision
    from hyperguide.distributed import joined, world
    from hyperguide.run.bench import run_bench, summary_line
    from hyperguide.trackers import tracking
    from hyperguide.trained.folder import RunFolder
    from hyperguide.universes import load_universe

    config = _run_config(args)
    _seeds_hint(args)
    out = _out(args, config, prefix="bench-")
    check_precision(config.precision, args.device)
    with joined(args.device) as device, tracking(args.log if world().main else [], out, config) as trackers:
        universe = load_universe(config.universe, _options(args), prompts=config.prompts)
        callbacks = [*_callbacks(args, lines=False), *trackers]
        result = run_bench(
            universe,
            config,
            RunFolder(out),
            device=device,
            callbacks=callbacks,
            stream=sys.stderr,
            headline_from=args.headline_from,
        )
        if world().main:
            print(summary_line(result), file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from hyperguide.config.precision import check_precision
    from hyperguide.distributed import joined, world
    from hyperguide.run.train import resolve_targets, train_run
    from hyperguide.trackers import tracking
    from hyperguide.trained.folder import RunFolder
    from hyperguide.universes import load_universe

    names = [m.strip() for m in getattr(args, "methods", "collect").split(",") if m.strip()]
    methods, stages = resolve_targets(names)
    config = _run_config(args, methods)
    _seeds_hint(args)
    out = _out(args, config)
    check_precision(config.precision, args.device)
    with joined(args.device) as device, tracking(args.log if world().main else [], out, config) as trackers:
        universe = load_universe(config.universe, _options(args), prompts=config.prompts)
        callbacks = [*_callbacks(args), *trackers]
        seconds = train_run(universe, config, RunFolder(out), device=device, callbacks=callbacks, stages=stages)
        main = world().main
    if main:
        trained = ", ".join(f"{m} {s:.0f} s" for m, s in seconds.items()) or "nothing to train"
        print(f"trained into {out}: {trained}")
        print(f"next: hyperguide eval {out}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from hyperguide.bundle import open_generator

    generator = open_generator(
        args.run_dir,
        method=args.method,
        seed=args.run_seed,
        fold=args.fold,
        options=_options(args),
        encoders={"clip_model": args.clip_model} if args.clip_model is not None else None,
    )
    answers = [args.answers] if args.answers else None
    out = generator.generate(args.questions, answers, images=args.images, features=args.features)
    folder = out.save(args.out)
    for i, question in enumerate(out.questions):
        print(f"{question}  [{out.method}; answers: {', '.join(out.answers[i])}]")
        if out.predictions is not None and out.probabilities is not None and out.inputs is not None:
            for name, pred, probs in zip(out.inputs, out.predictions[i], out.probabilities[i], strict=True):
                print(f"  {name}: {pred} ({100 * float(probs.max()):.1f}%)")
    print(
        f"wrote {folder / 'weights.safetensors'} and {folder / 'generated.json'} ({out.weights.shape[1]} weights each)"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hyperguide.bundle import export_generator

    out = export_generator(
        args.run_dir, args.out, method=args.method, seed=args.run_seed, fold=args.fold, options=_options(args)
    )
    print(f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    print(f'next: hyperguide generate {out} "a question?" --answers ANSWER ANSWER [--images IMAGE ...]')
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from hyperguide.config.precision import check_precision
    from hyperguide.distributed import joined, world
    from hyperguide.report.markdown import best_of, caption, render_table
    from hyperguide.run.evaluate import evaluate_run
    from hyperguide.trained.folder import RunFolder
    from hyperguide.universes import load_universe

    folder = RunFolder(args.run_dir)
    config = folder.read_config()
    if args.precision is not None and args.precision != config.precision:
        raise HyperguideError(
            f"{args.run_dir} was computed in {config.precision} (its config.json); --precision {args.precision} would "
            f"mix precisions in one run folder: leave the flag out, or train a run in {args.precision}"
        )
    check_precision(config.precision, args.device)
    universe = load_universe(config.universe, _options(args), prompts=config.prompts)
    with joined(args.device) as device:
        results = evaluate_run(universe, folder, device=device, callbacks=_callbacks(args))
        if not world().main:
            return 0
    print(render_table(results, best_of(results, "baseline")))
    print()
    print(caption(results))
    print(f"wrote {folder.results}")
    return 0


def cmd_tasks_prepare(args: argparse.Namespace) -> int:
    from hyperguide.run.own_tasks import prepare_tasks

    out = prepare_tasks(
        args.task_file,
        args.run,
        images_root=args.images_root,
        out=args.out,
        options=_options(args),
        callbacks=_callbacks(args),
    )
    print(f"wrote {out}")
    print(f"next: hyperguide tasks eval {args.run} {out}")
    return 0


def cmd_tasks_eval(args: argparse.Namespace) -> int:
    from hyperguide.config import check_device
    from hyperguide.report.markdown import render_table
    from hyperguide.report.own_tasks import caption, render_by_kind
    from hyperguide.run.own_tasks import check_report_dir, default_report_dir, evaluate_tasks, write_task_report

    methods = None if args.methods is None else [m.strip() for a in args.methods for m in a.split(",") if m.strip()]
    out_dir = check_report_dir(args.out or default_report_dir(args.features_dir, args.run_dir))  # before evaluating
    results = evaluate_tasks(
        args.run_dir, args.features_dir, methods=methods, device=check_device(args.device), callbacks=_callbacks(args)
    )
    out = write_task_report(results, out_dir)
    print(render_table(results, None))
    print()
    print(render_by_kind(results))
    print()
    print(caption(results))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from hyperguide.eval.results import read_results
    from hyperguide.eval.stats import ci_text, compare

    results = read_results(args.run_dir / "results.json")
    for name in (args.a, args.b):
        if name not in results["methods"]:
            raise HyperguideError(f"{name!r} is not in {args.run_dir}/results.json; it has {list(results['methods'])}")
    c = compare(results, args.a, args.b)
    for unit, d in c.items():
        print(
            f"{args.a} - {args.b}, paired {unit.replace('_', ' ')} (n={d['n']}): "
            f"{d['mean']:+.2f} ± {ci_text(d['ci95'])} points (95% CI), p = {ci_text(d['p_value'], '.3g')}"
        )
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from hyperguide.config import render, to_dict
    from hyperguide.run.train import resolve_config

    config = resolve_config(_run_config(args))
    print(json.dumps(to_dict(config), indent=1) if args.json else render(config))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from hyperguide.universes import prepare_universe

    manifest = prepare_universe(args.universe, _options(args), callbacks=_callbacks(args, lines=False))
    if args.json:
        print(json.dumps(manifest, indent=1))
        return 0
    state = "reused cached preparation" if manifest.get("cached") else "prepared"
    print(f"{args.universe}: {state}")
    tower = manifest.get("image_tower")
    if isinstance(tower, dict):
        for key in ("test_color_accuracy", "test_shape_accuracy", "train_color_accuracy", "train_shape_accuracy"):
            if key in tower:
                print(f"  image tower zero-shot {key.replace('_', ' ')}: {tower[key]:.2f}%")
        print(f"  image tower training: {tower.get('train_seconds', 0):.0f} s")
    if "folder" in manifest:  # taskfile: where, and what
        counts = ", ".join(f"{manifest[k]:,} {k}" for k in ("tasks", "examples", "images", "texts") if k in manifest)
        print(f"  {counts}; {manifest['request']['encoder']} features of dimension {manifest['image_dim']}")
        print(f"  into {manifest['folder']}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from hyperguide.data.splits import make_splits
    from hyperguide.data.stats import format_stats, universe_stats
    from hyperguide.universes import load_universe_structure

    universe = load_universe_structure(args.universe, _options(args))
    splits = make_splits(universe, args.split, folds=args.folds, held_out=args.held_out)
    stats = universe_stats(universe, splits, args.fold)
    found = universe.info.get("dropped")  # taskfile: the tasks the filters dropped, with why
    dropped: list[dict[str, Any]] = found if isinstance(found, list) else []
    if isinstance(found, list):
        stats["dropped"] = dropped
    print(json.dumps(stats) if args.json else format_stats(stats))
    if dropped and not args.json:
        print(f"dropped by the filters: {len(dropped)} task(s)")
        for entry in dropped:
            print(f"  task {entry['task']} ({entry['question']!r}): {entry['why']}")
    return 0


COMMANDS = {
    "prepare": cmd_prepare,
    "stats": cmd_stats,
    "train": cmd_train,
    "collect": cmd_train,
    "generate": cmd_generate,
    "export": cmd_export,
    "eval": cmd_eval,
    "compare": cmd_compare,
    "bench": cmd_bench,
    "config": cmd_config,
    "tasks prepare": cmd_tasks_prepare,
    "tasks eval": cmd_tasks_eval,
}


WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
                errno.EEXIST}  # fmt: skip


def _os_error(e: OSError) -> str:
    path = e.filename if e.filename is not None else "a file"
    reason = e.strerror or str(e)
    return f"cannot write {path}: {reason}" if e.errno in WRITE_ERRNOS else f"{path}: {reason}"


@contextmanager
def warnings_as_lines(command: str) -> Iterator[None]:
    """The library's own warnings shown as one line, `hyperguide CMD: warning: TEXT` (not Python's `FILE:LINE:
    UserWarning: TEXT` and a source line); other packages' warnings as Python shows them."""
    with warnings.catch_warnings():
        default = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if issubclass(category, HyperguideWarning):
                print(f"hyperguide {command}: warning: {message}", file=sys.stderr)
            else:
                default(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings_as_lines(args.command):
            return COMMANDS[args.command](args)
    except HyperguideError as e:
        print(f"hyperguide {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except OSError as e:  # what the library did not name itself: a full disk, a read-only folder, a file in the way
        print(f"hyperguide {args.command}: error: {_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"hyperguide {args.command}: interrupted; finished work is kept and reused on the next run", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
