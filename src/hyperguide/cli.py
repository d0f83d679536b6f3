"""The `hyperguide` command line: it parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from hyperguide.data.splits import SPLIT_KINDS
from hyperguide.data.universes import UNIVERSES, UniverseOptions
from hyperguide.errors import HyperguideError
from hyperguide.io import default_home


def _universe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("universe", help=f"task universe: {', '.join(UNIVERSES)}")
    p.add_argument(
        "--home",
        type=Path,
        default=None,
        help=f"where prepared universes are cached (default: $HYPERGUIDE_HOME or {default_home()})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for everything random in this command (default 0)")
    p.add_argument("--device", default="cpu", help="torch device for encoders: cpu, cuda, cuda:1 (default cpu)")
    p.add_argument(
        "--prompts",
        default="declarative",
        choices=("declarative", "answer"),
        help="easyvqa: answer prompts as statements ('the circle is red') or bare answers ('red')",
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
        seed=args.seed,
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
    return parser


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


COMMANDS = {"prepare": cmd_prepare, "stats": cmd_stats}


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
