"""The flags of the commands that read a trained run (generate, export, eval, tasks, compare). The universe is the
run's, so these take the flags of every universe's options (`universes.add_every_universe`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hyperguide.cli.flags import Subparsers, precision_arg, quiet_arg
from hyperguide.cli.universes import add_every_universe


def _row_flags(p: argparse.ArgumentParser, *, fold: int | None) -> None:
    """Which trained row of a run: its method, seed and fold (`fold`: the default, None for one not asked for)."""
    p.add_argument(
        "--method", default=None, help="a row of the run, e.g. hnet+hyperldm@2 (default: its best conditional row)"
    )
    p.add_argument("--run-seed", type=int, default=None, help="which trained seed to use (default: the run's first)")
    p.add_argument("--fold", type=int, default=fold, help="which fold's models to use (default 0)")


def add_generate(sub: Subparsers) -> None:
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
    _row_flags(gen, fold=None)
    inputs = gen.add_mutually_exclusive_group()
    inputs.add_argument("--images", nargs="+", type=Path, default=None, metavar="IMAGE", help="images to answer about")
    inputs.add_argument(
        "--features",
        type=Path,
        default=None,
        help="safetensors file with an (N, D) tensor 'features' instead of images",
    )
    gen.add_argument("--out", type=Path, default=Path("generated"), help="output folder (default ./generated)")
    add_every_universe(gen)


def add_export(sub: Subparsers) -> None:
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
    _row_flags(export, fold=0)
    export.add_argument("--out", type=Path, required=True, help="a new or empty folder for the bundle")
    add_every_universe(export)


def add_eval(sub: Subparsers) -> None:
    ev = sub.add_parser(
        "eval",
        help="evaluate a run folder: zero-shot and k-shot accuracy with 95%% CIs, into results.json",
        description="Evaluate every row of a run on the meta-test tasks of every seed and fold: zero-shot "
        "accuracy and balanced accuracy, and k-shot accuracy after fine-tuning (docs/design.md §P8). Writes "
        "RUN_DIR/results.json and prints the table.",
    )
    ev.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    quiet_arg(ev)
    precision_arg(ev)
    add_every_universe(ev)


def add_tasks(sub: Subparsers) -> None:
    own = sub.add_parser(
        "tasks",
        help="your own tasks (a task file): prepare their features with a run's encoders, evaluate the run on them",
        description="A task file (.json or .jsonl; docs/own-tasks.md) lists tasks: a question, its answers, optional "
        "answer prompts and a kind, and examples (image, answer, support or query). `prepare` embeds them with the "
        "encoders of a trained run's universe; `eval` scores every question-conditioned row of the run on them, "
        "zero-shot (k-shot where tasks have support examples), and writes the report.",
    )
    own_sub = own.add_subparsers(dest="tasks_command", required=True, metavar="COMMAND")
    _add_tasks_prepare(own_sub)
    _add_tasks_eval(own_sub)


def _add_tasks_prepare(sub: Subparsers) -> None:
    prep = sub.add_parser(
        "prepare",
        help="check a task file and embed its questions, answer prompts and images with a run's encoders",
        description="Check every task of TASK_FILE (a bad one is refused with its number, question and field; nothing "
        "is written), check that the universe prepared here is the data the run was trained on, then embed the "
        "questions (pooled and token states), the answer prompts (the file's, or the run's rule) and the images with "
        "the encoders of the run's universe (easyvqa: MiniLM and the image tower; metavqa: CLIP). A universe without "
        "encoders (synthetic) reads texts and image ids from its own feature tables.",
    )
    prep.set_defaults(command="tasks prepare")
    prep.add_argument("task_file", type=Path, metavar="TASK_FILE", help="a .json or .jsonl task file")
    prep.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="a trained run folder")
    prep.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FEATURES_DIR",
        help="default: TASK_FILE's stem + .features/ beside it",
    )
    prep.add_argument(
        "--images-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="the folder TASK_FILE's relative image paths start from (default: its folder); a run of taskfile reads "
        "it as its own --images-root too",
    )
    quiet_arg(prep)
    add_every_universe(prep)


def _add_tasks_eval(sub: Subparsers) -> None:
    ev = sub.add_parser(
        "eval",
        help="evaluate a run's question-conditioned rows on prepared tasks: the report, by kind of task",
        description="For every seed and fold of the run, score every question-conditioned row (and chance; majority "
        "when every task has support examples) on the prepared tasks: zero-shot, and the run's k-shot settings where "
        "the tasks have support examples. A fold's models each score every task; a task's score per seed is their "
        "mean. Writes REPORT_DIR/results.json and results.md and prints the tables.",
    )
    ev.set_defaults(command="tasks eval")
    ev.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    ev.add_argument("features_dir", type=Path, metavar="FEATURES_DIR", help="what `tasks prepare` wrote")
    ev.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="ROW",
        help="rows of the run (comma-separated or several; a sweeping method stands for its rows); default: every "
        "question-conditioned row and chance",
    )
    ev.add_argument(
        "--out", type=Path, default=None, metavar="REPORT_DIR", help="default: <stem>-<run>-report beside FEATURES_DIR"
    )
    ev.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default cpu)")
    quiet_arg(ev)


def add_compare(sub: Subparsers) -> None:
    cmp = sub.add_parser("compare", help="paired comparison of two methods of an evaluated run")
    cmp.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    cmp.add_argument("a", metavar="METHOD_A")
    cmp.add_argument("b", metavar="METHOD_B")
