"""What each command does with its parsed arguments (`COMMANDS`): it builds the universe's options and the run's
config from them, calls the library, and prints what came of it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from hyperguide.cli.runs import progress, run_config, run_folder, seeds_hint
from hyperguide.cli.universes import options_listing, run_universe, universe_options
from hyperguide.errors import HyperguideError


def cmd_bench(args: argparse.Namespace) -> int:
    from hyperguide.config.precision import check_precision
    from hyperguide.distributed import joined, world
    from hyperguide.run.bench import run_bench, summary_line
    from hyperguide.trackers import tracking
    from hyperguide.trained.folder import RunFolder
    from hyperguide.universes import load_universe

    config = run_config(args)
    options = universe_options(args, config.universe)
    seeds_hint(args)
    out = run_folder(args, config, options, prefix="bench-")
    check_precision(config.precision, options.device)
    with joined(options.device) as device, tracking(args.log if world().main else [], out, config) as trackers:
        universe = load_universe(config.universe, options, prompts=config.prompts)
        callbacks = [*progress(args, lines=False), *trackers]
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
    config = run_config(args, methods)
    options = universe_options(args, config.universe)
    seeds_hint(args)
    out = run_folder(args, config, options)
    check_precision(config.precision, options.device)
    with joined(options.device) as device, tracking(args.log if world().main else [], out, config) as trackers:
        universe = load_universe(config.universe, options, prompts=config.prompts)
        callbacks = [*progress(args), *trackers]
        seconds = train_run(universe, config, RunFolder(out), device=device, callbacks=callbacks, stages=stages)
        main = world().main
    if main:
        trained = ", ".join(f"{m} {s:.0f} s" for m, s in seconds.items()) or "nothing to train"
        print(f"trained into {out}: {trained}")
        print(f"next: hyperguide eval {out}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from hyperguide.bundle import open_generator

    clip_model = getattr(args, "clip_model", None)  # an exported generator's CLIP model, found elsewhere here
    generator = open_generator(
        args.run_dir,
        method=args.method,
        seed=args.run_seed,
        fold=args.fold,
        options=universe_options(args, run_universe(args.run_dir)),
        encoders={"clip_model": clip_model} if clip_model is not None else None,
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

    options = universe_options(args, run_universe(args.run_dir))
    out = export_generator(
        args.run_dir, args.out, method=args.method, seed=args.run_seed, fold=args.fold, options=options
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
    options = universe_options(args, config.universe)
    check_precision(config.precision, options.device)
    universe = load_universe(config.universe, options, prompts=config.prompts)
    with joined(options.device) as device:
        results = evaluate_run(universe, folder, device=device, callbacks=progress(args))
        if not world().main:
            return 0
    print(render_table(results, best_of(results, "baseline")))
    print()
    print(caption(results))
    print(f"wrote {folder.results}")
    return 0


def cmd_tasks_prepare(args: argparse.Namespace) -> int:
    from hyperguide.run.task_features import prepare_tasks

    out = prepare_tasks(
        args.task_file,
        args.run,
        images_root=args.images_root,
        out=args.out,
        options=universe_options(args, run_universe(args.run)),
        callbacks=progress(args),
    )
    print(f"wrote {out}")
    print(f"next: hyperguide tasks eval {args.run} {out}")
    return 0


def cmd_tasks_eval(args: argparse.Namespace) -> int:
    from hyperguide.config import check_device
    from hyperguide.report.markdown import render_table
    from hyperguide.report.task_report import caption, render_by_kind
    from hyperguide.run.task_eval import check_report_dir, default_report_dir, evaluate_tasks, write_task_report

    methods = None if args.methods is None else [m.strip() for a in args.methods for m in a.split(",") if m.strip()]
    out_dir = check_report_dir(args.out or default_report_dir(args.features_dir, args.run_dir))  # before evaluating
    results = evaluate_tasks(
        args.run_dir, args.features_dir, methods=methods, device=check_device(args.device), callbacks=progress(args)
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
    from hyperguide.eval.statistics import ci_text, compare

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
    from hyperguide.run.train import expand_config

    config = expand_config(run_config(args))
    if args.json:
        print(json.dumps(to_dict(config), indent=1))
        return 0
    print(render(config))
    print()
    print(options_listing(args, args.universe))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from hyperguide.universes import prepare_universe, source

    manifest = prepare_universe(
        args.universe, universe_options(args, args.universe), callbacks=progress(args, lines=False)
    )
    if args.json:
        print(json.dumps(manifest, indent=1))
        return 0
    state = "reused cached preparation" if manifest.get("cached") else "prepared"
    print(f"{args.universe}: {state}")
    for line in source(args.universe).describe(manifest):
        print(f"  {line}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from hyperguide.data.splits import make_splits
    from hyperguide.data.stats import format_stats, universe_stats
    from hyperguide.universes import load_universe_structure

    universe = load_universe_structure(args.universe, universe_options(args, args.universe))
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


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
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
