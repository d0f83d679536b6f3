"""The registry of task universes: how each one's structure is read, its features prepared, and both loaded.

| name | structure | features |
|---|---|---|
| easyvqa | the `easy-vqa` package, Meta-VQA rules (107 tasks) | MiniLM text, a LiT-trained CNN image tower |
| metavqa | the authors' split files, or built from VQA v2 JSON | a `transformers` CLIP model on COCO 2014 images |
| metavqa-standin | the authors' split files | deterministic random 768-d stand-ins (benchmarks only) |
| synthetic | generated | generated (tests and smoke runs) |

Prepared features live in `<home>/<universe>/` (home: `--home`, `$HYPERGUIDE_HOME` or `~/.cache/hyperguide`), and a
`manifest.json` written last marks a complete preparation; without it, nothing in the folder is trusted.

Every prepared universe also carries its questions' token states (`question_tokens.safetensors`, see
`hyperguide.data.tokens`), written at prepare time before the manifest. A folder prepared before token features
existed lacks the file: loading then computes the tokens with the universe's text encoder and caches them there.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hyperguide.data.features import FeatureTable
from hyperguide.data.tasks import Universe
from hyperguide.data.tokens import QUESTION_TOKENS_FILE, TokenTable, cached_question_tokens
from hyperguide.errors import HyperguideError
from hyperguide.io import default_home, read_json, write_json

UNIVERSES: tuple[str, ...] = ("easyvqa", "metavqa", "metavqa-standin", "synthetic")
MANIFEST = "manifest.json"
EASYVQA_FORMAT = 1
DEFAULT_CLIP = "openai/clip-vit-large-patch14-336"


@dataclass
class UniverseOptions:
    """Everything a universe may need; each universe reads the fields it uses."""

    home: Path = field(default_factory=default_home)
    seed: int = 0
    device: str = "cpu"
    prompts: str = "answer"  # easyvqa: answer-prompt style
    tower_epochs: int | None = None  # easyvqa: image-tower training epochs (None: the tower's default)
    splits_dir: Path | None = None  # metavqa: the authors' split files
    vqa_root: Path | None = None  # metavqa: VQA v2 question/annotation JSON, to build the split files
    coco_root: Path | None = None  # metavqa: COCO 2014 images
    prompts_file: Path | None = (
        None  # metavqa: {question: template} answer prompts (default: splits_dir/prompt_meta.json)
    )
    clip_model: str = DEFAULT_CLIP
    batch_size: int = 32
    progress: bool = True
    force: bool = False


def check_universe(name: str) -> str:
    if name not in UNIVERSES:
        raise HyperguideError(f"unknown universe {name!r}; choose one of {', '.join(UNIVERSES)}")
    return name


def universe_dir(name: str, options: UniverseOptions) -> Path:
    return Path(options.home) / name


def _metavqa_splits_dir(options: UniverseOptions) -> Path:
    if options.splits_dir is not None:
        return Path(options.splits_dir)
    built = universe_dir("metavqa", options) / "splits"
    if (built / "meta_train.json").is_file():
        return built
    raise HyperguideError(
        "metavqa needs the Meta-VQA split files: pass --splits-dir DIR (the authors' meta_train.json, meta_test.json "
        "and prompt_meta.json), or build them from VQA v2 with `hyperguide prepare metavqa --vqa-root DIR`"
    )


def load_universe_structure(name: str, options: UniverseOptions | None = None) -> Universe:
    """Tasks and splits without features (enough for statistics)."""
    options = options or UniverseOptions()
    check_universe(name)
    if name == "easyvqa":
        from hyperguide.data.easyvqa import easyvqa_structure

        return easyvqa_structure(options.prompts)
    if name == "synthetic":
        from hyperguide.data.synthetic import synthetic_universe

        return synthetic_universe(seed=options.seed)
    from hyperguide.data.metavqa import load_split_files

    universe = load_split_files(_metavqa_splits_dir(options), options.prompts_file)
    universe.name = name
    return universe


def _easyvqa_request(options: UniverseOptions) -> dict[str, Any]:
    from hyperguide.encoders.text import DEFAULT_TEXT_ENCODER

    return {
        "universe": "easyvqa",
        "format": EASYVQA_FORMAT,
        "text_encoder": DEFAULT_TEXT_ENCODER,
        "seed": options.seed,
        "tower_epochs": options.tower_epochs,
    }


def _manifest_matches(folder: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    manifest = read_json(path, what="universe manifest")
    recorded = manifest.get("request", {})
    return manifest if all(recorded.get(k) == v for k, v in request.items()) else None


def prepare_universe(name: str, options: UniverseOptions | None = None) -> dict[str, Any]:
    """Compute and cache a universe's frozen features; returns its manifest (with `"cached": True` if reused)."""
    options = options or UniverseOptions()
    check_universe(name)
    if name == "synthetic":
        return {"universe": name, "cached": True, "note": "synthetic universes are generated in memory"}
    if name == "metavqa-standin":
        universe = load_universe_structure(name, options)
        return {
            "universe": name,
            "cached": True,
            "note": "stand-in features are generated in memory",
            "tasks": len(universe.tasks),
        }
    if name == "metavqa":
        return _prepare_metavqa(options)
    return _prepare_easyvqa(options)


def _prepare_easyvqa(options: UniverseOptions) -> dict[str, Any]:
    from hyperguide.data.easyvqa import PROMPT_STYLES, easyvqa_structure
    from hyperguide.data.easyvqa_images import prepare_easyvqa_image_features
    from hyperguide.encoders.text import TextEncoder

    folder = universe_dir("easyvqa", options)
    request = _easyvqa_request(options)
    if not options.force and (manifest := _manifest_matches(folder, request)):
        return {**manifest, "cached": True}
    (folder / MANIFEST).unlink(missing_ok=True)  # whatever happens next, the old preparation is no longer trusted
    start = time.perf_counter()
    encoder = TextEncoder(device=options.device)
    texts: list[str] = []
    questions: list[str] = []
    for style in PROMPT_STYLES:
        for task in easyvqa_structure(style).tasks:
            texts.extend([task.question, *task.prompts])
            questions.append(task.question)
    texts, questions = list(dict.fromkeys(texts)), list(dict.fromkeys(questions))
    FeatureTable(texts, encoder.encode(texts, progress=options.progress)).save(folder / "text_features.safetensors")
    tokens = TokenTable.from_rows(questions, encoder.question_tokens(questions))
    tokens.save(folder / QUESTION_TOKENS_FILE, encoder=request["text_encoder"])
    kwargs: dict[str, Any] = {"seed": options.seed, "progress": options.progress}
    if options.tower_epochs is not None:
        kwargs["epochs"] = options.tower_epochs
    tower_report = prepare_easyvqa_image_features(folder, encoder, **kwargs)
    manifest = {
        "request": request,
        "universe": "easyvqa",
        "text_dim": encoder.dim,
        "image_dim": encoder.dim,
        "texts": len(texts),
        "question_tokens": {
            "file": QUESTION_TOKENS_FILE,
            "questions": len(tokens),
            "tokens": int(tokens.tokens.shape[0]),
        },
        "image_tower": tower_report,
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json(folder / MANIFEST, manifest)
    return {**manifest, "cached": False}


def _prepare_metavqa(options: UniverseOptions) -> dict[str, Any]:
    from hyperguide.data.metavqa import prepare_metavqa

    folder = universe_dir("metavqa", options)
    if options.splits_dir is None and options.vqa_root is not None:
        from hyperguide.data.vqa_v2 import build_from_vqa_v2

        build_from_vqa_v2(options.vqa_root, folder / "splits")
    splits_dir = _metavqa_splits_dir(options)
    if options.coco_root is None:
        raise HyperguideError("metavqa features need the COCO 2014 images: pass --coco-root DIR")
    prepare_metavqa(
        splits_dir,
        options.coco_root,
        folder / "features",
        clip_model=options.clip_model,
        device=options.device,
        batch_size=options.batch_size,
        progress=options.progress,
        prompts_file=options.prompts_file,
    )
    return read_json(folder / "features" / MANIFEST, what="metavqa manifest")


def load_universe(name: str, options: UniverseOptions | None = None) -> Universe:
    """Tasks, splits and features. Raises if the universe has not been prepared."""
    options = options or UniverseOptions()
    check_universe(name)
    if name == "synthetic":
        return load_universe_structure(name, options)
    if name == "metavqa-standin":
        from hyperguide.data.metavqa import standin_universe

        return standin_universe(_metavqa_splits_dir(options))  # fixed stand-ins, whatever the run's seed
    if name == "metavqa":
        from hyperguide.data.metavqa import load_metavqa

        return load_metavqa(
            _metavqa_splits_dir(options),
            universe_dir("metavqa", options) / "features",
            prompts_file=options.prompts_file,
            clip_model=options.clip_model,
        )
    folder = universe_dir("easyvqa", options)
    if not (folder / MANIFEST).is_file():
        raise HyperguideError(f"easyvqa is not prepared in {folder}; run `hyperguide prepare easyvqa` first")
    manifest = read_json(folder / MANIFEST, what="universe manifest")
    universe = load_universe_structure(name, options)
    universe.text_features = FeatureTable.load(folder / "text_features.safetensors", dim=manifest["text_dim"])
    universe.image_features = FeatureTable.load(folder / "image_features.safetensors", dim=manifest["image_dim"])
    universe.question_tokens = _easyvqa_question_tokens(folder, universe, manifest, options)
    universe.info["manifest"] = manifest
    return universe


def _easyvqa_question_tokens(
    folder: Path, universe: Universe, manifest: dict[str, Any], options: UniverseOptions
) -> TokenTable:
    """The prepared question tokens, or (a folder prepared before they existed) computed now and cached."""
    from hyperguide.encoders.text import DEFAULT_TEXT_ENCODER, TextEncoder

    name = str(manifest.get("request", {}).get("text_encoder", DEFAULT_TEXT_ENCODER))
    return cached_question_tokens(
        folder / QUESTION_TOKENS_FILE,
        [t.question for t in universe.tasks],
        lambda questions: TextEncoder(name, device=options.device).question_tokens(questions),
        encoder=name,
        dim=manifest["text_dim"],
    )


def options_dict(options: UniverseOptions) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}
