"""The `hyperguide` command line: it parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from hyperguide.data.splits import SPLIT_KINDS
from hyperguide.data.universes import UNIVERSES, UniverseOptions
from hyperguide.errors import HyperguideError
from hyperguide.io import default_home
from hyperguide.meta.methods import ALL_ROWS


def _universe_args(p: argparse.ArgumentParser, *, positional: bool = True) -> None:
    if positional:
        p.add_argument("universe", help=f"task universe: {', '.join(UNIVERSES)}")
    p.add_argument(
        "--home",
        type=Path,
        default=None,
        help=f"where prepared universes are cached (default: $HYPERGUIDE_HOME or {default_home()})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for everything random in this command (default 0)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default cpu)")
    p.add_argument(
        "--prompts",
        default="answer",
        choices=("answer", "declarative"),
        help="easyvqa: answer prompts as bare answers ('red', 'yes'; default) or statements ('the circle is red')",
    )
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
        default="openai/clip-vit-large-patch14-336",
        help="transformers CLIPModel: a hub id in the local cache or a local folder",
    )
    meta.add_argument("--batch-size", type=int, default=32, help="images per CLIP forward pass (default 32)")


def _options(args: argparse.Namespace) -> UniverseOptions:
    options = UniverseOptions(
        seed=getattr(args, "seed", 0),
        device=args.device,
        prompts=args.prompts,
        splits_dir=args.splits_dir,
        vqa_root=args.vqa_root,
        coco_root=args.coco_root,
        prompts_file=args.prompts_file,
        clip_model=args.clip_model,
        batch_size=args.batch_size,
        progress=not getattr(args, "quiet", False) and sys.stderr.isatty(),
        force=getattr(args, "force", False),
        tower_epochs=getattr(args, "tower_epochs", None),
    )
    if args.home is not None:
        options.home = args.home
    return options


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
    stats.add_argument("--split", default="random", choices=SPLIT_KINDS, help="split kind (default random)")
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
        "the run folder. Methods: " + ", ".join(ALL_ROWS) + ", hnet+hyperclip, hvae+hyperclip, "
        "hnet+hyperldm@GAMMA, hvae+hyperldm@GAMMA (without @GAMMA: the sweep hyperldm.gammas). Stages: collect "
        "(= latents), hvae, hyperclip, hyperldm (both spaces), or hyperclip-hnet, hyperclip-hvae, hyperldm-hnet, "
        "hyperldm-hvae.",
    )
    train.add_argument("methods", metavar="METHOD", help="a method or stage, a comma-separated list, or 'all'")
    _universe_args(train)
    _run_args(train)
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    collect = sub.add_parser(
        "collect",
        help="collect the adapted HNet latents of every meta-train task (the guidance models' data)",
        description="SPEC P2: for every seed and fold, fine-tune the meta-learned HNet latent on n_aug random subsets "
        "of each meta-train task's data (--set collect.n_aug=N; 10 SGD steps at lr 0.1), batched over tasks, into "
        "RUN_DIR/latents/. Trains uncond-hnet-maml first if the run folder lacks it. Same as `train collect`.",
    )
    _universe_args(collect)
    _run_args(collect)
    collect.add_argument("--quiet", action="store_true", help="no progress bars")

    gen = sub.add_parser(
        "generate",
        help="adapter weights (and predictions) for new questions, zero-shot, from a trained run",
        description="Embed each question with the run's text encoder, generate its adapter weights with a trained "
        "question-conditioned method (no labels, no fine-tuning), write OUT/weights.safetensors and "
        "OUT/generated.json, and, given images or features, print the answer the adapter picks for each.",
    )
    gen.add_argument("run_dir", type=Path, metavar="RUN_DIR")
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
    gen.add_argument("--fold", type=int, default=0, help="which fold's models to use (default 0)")
    gen.add_argument("--images", nargs="+", type=Path, default=None, metavar="IMAGE", help="images to answer about")
    gen.add_argument(
        "--features",
        type=Path,
        default=None,
        help="safetensors file with an (N, D) tensor 'features' instead of images",
    )
    gen.add_argument("--out", type=Path, default=Path("generated"), help="output folder (default ./generated)")
    _universe_args(gen, positional=False)

    ev = sub.add_parser(
        "eval",
        help="evaluate a run folder: zero-shot and k-shot accuracy with 95%% CIs, into results.json",
        description="Evaluate every method of a run on the meta-test tasks of every seed and fold: zero-shot "
        "accuracy and balanced accuracy, and k-shot accuracy after fine-tuning (SPEC P8). Writes RUN_DIR/results.json "
        "and prints the table.",
    )
    ev.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    _universe_args(ev, positional=False)

    bench = sub.add_parser(
        "bench",
        help="the whole benchmark, resumable: train every method over seeds, evaluate, write the report",
        description="Train every method (RunConfig's rows) over seeds and folds, evaluate them all, and write "
        "OUT/results.json (with seconds per stage), OUT/results.md and PNG plots. Finished stages in OUT are reused: "
        "a run killed at any point resumes when started again with the same arguments and ends with the same numbers. "
        "Without --quick it runs 3 seeds with the DEFAULT preset of hyperguide.bench (sized for 30 minutes on "
        "easyvqa's random split on 2 CPU cores; the README lists what it cuts and what each stage costs); --set "
        "overrides any field of it.",
    )
    bench.add_argument("universe", help=f"task universe: {', '.join(UNIVERSES)}")
    _bench_args(bench)
    _universe_args(bench, positional=False)

    cmp = sub.add_parser("compare", help="paired comparison of two methods of an evaluated run")
    cmp.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    cmp.add_argument("a", metavar="METHOD_A")
    cmp.add_argument("b", metavar="METHOD_B")
    return parser


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<universe>-<split>)")
    p.add_argument("--split", default="random", choices=SPLIT_KINDS, help="split kind (default random)")
    p.add_argument("--folds", type=int, default=5, help="kfold: number of folds (default 5)")
    p.add_argument("--held-out", nargs="+", default=None, metavar="CONCEPT", help="compositional: held-out concepts")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds (default: just --seed)")
    p.add_argument("--epochs", type=int, default=None, help="meta-training epochs (same as --set train.epochs=N)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='override a config field, e.g. --set method.inner.steps=5 --set eval.k_shots=\'["1","full"]\'',
    )


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="random", choices=SPLIT_KINDS, help="split kind (default random)")
    p.add_argument("--folds", type=int, default=5, help="kfold: number of folds (default 5)")
    p.add_argument("--held-out", nargs="+", default=None, metavar="CONCEPT", help="compositional: held-out concepts")
    p.add_argument("--seeds", type=int, default=None, metavar="N", help="seeds 0..N-1 (default 3; --quick: 2)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/bench-<universe>-<split>)")
    p.add_argument("--quick", action="store_true", help="a reduced configuration for smoke runs: fewer steps, seeds")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config field"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars inside a stage")


def cmd_bench(args: argparse.Namespace) -> int:
    from hyperguide.bench import bench_config, run_bench, summary_line
    from hyperguide.data.universes import load_universe

    config = bench_config(
        args.universe,
        split=args.split,
        folds=args.folds,
        held_out=tuple(args.held_out or ()),
        prompts=args.prompts,
        seeds=args.seeds,
        quick=args.quick,
        overrides=args.overrides,
    )
    out = args.out or Path("runs") / f"bench-{args.universe}-{args.split}{'-quick' if args.quick else ''}"
    universe = load_universe(args.universe, _options(args))
    result = run_bench(universe, config, out, device=args.device, progress=not args.quiet and sys.stderr.isatty())
    print(summary_line(result), file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from hyperguide.config import apply_overrides
    from hyperguide.data.universes import load_universe
    from hyperguide.harness import RunConfig, resolve_targets, train_run

    names = [m.strip() for m in getattr(args, "methods", "collect").split(",") if m.strip()]
    seeds = tuple(args.seeds) if args.seeds else (args.seed,)
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    config = RunConfig(
        universe=args.universe,
        split=args.split,
        folds=args.folds,
        held_out=tuple(args.held_out or ()),
        prompts=args.prompts,
        seeds=seeds,
        methods=(),
    )
    config = apply_overrides(config, overrides)
    rows, stages = resolve_targets(names, config.hyperldm.gammas)
    config = replace(config, methods=rows)
    out = args.out or Path("runs") / f"{args.universe}-{args.split}"
    universe = load_universe(args.universe, _options(args))
    seconds = train_run(
        universe, config, out, device=args.device, progress=not args.quiet and sys.stderr.isatty(), stages=stages
    )
    trained = ", ".join(f"{m} {s:.0f} s" for m, s in seconds.items()) or "nothing to train"
    print(f"trained into {out}: {trained}")
    print(f"next: hyperguide eval {out}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from hyperguide.generate import generate

    out = generate(
        args.run_dir,
        args.questions,
        [args.answers] if args.answers else None,
        method=args.method,
        seed=args.run_seed,
        fold=args.fold,
        images=args.images,
        features=args.features,
        options=_options(args),
    )
    folder = out.save(args.out)
    for i, question in enumerate(out.questions):
        print(f"{question}  [{out.method}; answers: {', '.join(out.answers[i])}]")
        if out.predictions is not None and out.probabilities is not None:
            names = [str(p) for p in (args.images or range(len(out.predictions[i])))]
            for name, pred, probs in zip(names, out.predictions[i], out.probabilities[i], strict=True):
                print(f"  {name}: {pred} ({100 * float(probs.max()):.1f}%)")
    print(
        f"wrote {folder / 'weights.safetensors'} and {folder / 'generated.json'} ({out.weights.shape[1]} weights each)"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from hyperguide.data.universes import load_universe
    from hyperguide.harness import evaluate_run, format_results, read_config

    config = read_config(args.run_dir)
    options = _options(args)
    options.prompts = config.prompts
    universe = load_universe(config.universe, options)
    results = evaluate_run(universe, args.run_dir, device=args.device)
    print(format_results(results))
    print(f"wrote {args.run_dir / 'results.json'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from hyperguide.harness import compare
    from hyperguide.io import read_json

    results = read_json(args.run_dir / "results.json", what="results")
    for name in (args.a, args.b):
        if name not in results["methods"]:
            raise HyperguideError(f"{name!r} is not in {args.run_dir}/results.json; it has {list(results['methods'])}")
    c = compare(results, args.a, args.b)
    for unit, d in c.items():
        print(
            f"{args.a} - {args.b}, paired {unit.replace('_', ' ')} (n={d['n']}): "
            f"{d['mean']:+.2f} ± {d['ci95']:.2f} points (95% CI), p = {d['p_value']:.3g}"
        )
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from hyperguide.data.universes import prepare_universe

    manifest = prepare_universe(args.universe, _options(args))
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
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from hyperguide.data.splits import make_splits
    from hyperguide.data.stats import format_stats, universe_stats
    from hyperguide.data.universes import load_universe_structure

    universe = load_universe_structure(args.universe, _options(args))
    splits = make_splits(universe, args.split, folds=args.folds, held_out=args.held_out)
    stats = universe_stats(universe, splits, args.fold)
    print(json.dumps(stats) if args.json else format_stats(stats))
    return 0


COMMANDS = {
    "prepare": cmd_prepare,
    "stats": cmd_stats,
    "train": cmd_train,
    "collect": cmd_train,
    "generate": cmd_generate,
    "eval": cmd_eval,
    "compare": cmd_compare,
    "bench": cmd_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except HyperguideError as e:
        print(f"hyperguide {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(
            f"hyperguide {args.command}: interrupted; finished work is kept and reused on the next run", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
