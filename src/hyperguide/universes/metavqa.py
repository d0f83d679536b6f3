"""`metavqa`: the paper's Meta-VQA (docs/design.md §2) with frozen CLIP features of COCO 2014 images, questions and
answer prompts, computed offline by a `transformers` CLIPModel; and `metavqa-standin`, the same task structure with
deterministic random features for paper-scale benchmarks.

The split files are the authors' (`--splits-dir`) or built from VQA v2 (`--vqa-root`, `data/vqa_v2.py`). A features
folder prepared before question tokens existed lacks their file: loading then computes them with the manifest's CLIP
model and caches them there, or, when that model cannot be loaded offline, falls back to pooled questions.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hyperguide.data.features import MANIFEST, FeatureTable
from hyperguide.data.metavqa import (
    DEFAULT_CLIP_MODEL,
    IMAGE_FEATURES,
    IMAGE_SHARDS,
    MANIFEST_FORMAT,
    TEXT_FEATURES,
    check_covers,
    coco_image_path,
    image_keys,
    load_split_files,
    read_manifest,
    standin_universe,
    text_keys,
)
from hyperguide.data.tasks import Universe
from hyperguide.data.tokens import QUESTION_TOKENS_FILE, TokenTable, cached_question_tokens
from hyperguide.encoders.clip import ClipEncoder
from hyperguide.errors import HyperguideError, HyperguideWarning
from hyperguide.events import Callback
from hyperguide.io import read_json, write_json
from hyperguide.universes.base import EncoderParts, Encoders, UniverseSource, check_manifest, no_encoders
from hyperguide.universes.options import UniverseOptions, at_least, option

__all__ = ["MetaVQA", "MetaVQAOptions", "MetaVQAStandin", "clip_question_tokens", "load_metavqa", "prepare_metavqa"]


@dataclass(frozen=True)
class MetaVQAOptions(UniverseOptions):
    """Meta-VQA's options: where its split files, VQA v2 and COCO are, and the CLIP model that embeds them."""

    splits_dir: Path | None = option(
        None, help="folder with the authors' meta_train.json, meta_test.json and prompt_meta.json"
    )
    vqa_root: Path | None = option(
        None, help="folder with the VQA v2 question and annotation JSON files (builds the split files)"
    )
    prompts_file: Path | None = option(
        None, help="JSON {question: template with {}} for answer prompts (default: prompt_meta.json in --splits-dir)"
    )
    coco_root: Path | None = option(None, help="folder with COCO train2014/ and val2014/ images")
    clip_model: str = option(
        DEFAULT_CLIP_MODEL,
        help="transformers CLIPModel: a hub id in the local cache or a local folder (default: CLIP ViT-L/14@336px)",
    )
    batch_size: int = option(32, help="images per CLIP forward pass (default 32)")

    def __post_init__(self) -> None:
        at_least(self, "batch_size", 1)


def splits_dir(options: MetaVQAOptions) -> Path:
    """The split files: `--splits-dir`, or the ones `prepare --vqa-root` built."""
    if options.splits_dir is not None:
        return Path(options.splits_dir)
    built = options.folder("metavqa") / "splits"
    if (built / "meta_train.json").is_file():
        return built
    raise HyperguideError(
        "metavqa needs the Meta-VQA split files: pass --splits-dir DIR (the authors' meta_train.json, meta_test.json "
        "and prompt_meta.json), or build them from VQA v2 with `hyperguide prepare metavqa --vqa-root DIR`"
    )


class MetaVQA(UniverseSource[MetaVQAOptions]):
    name = "metavqa"
    summary = "the paper's Meta-VQA: 1,243 VQA v2 tasks, CLIP features of COCO images (needs the data)"
    Options = MetaVQAOptions

    def structure(self, options: MetaVQAOptions, prompts: str) -> Universe:
        return load_split_files(splits_dir(options), options.prompts_file)

    def prepare(self, options: MetaVQAOptions, callbacks: Sequence[Callback]) -> dict[str, Any]:
        folder = options.folder(self.name)
        if options.coco_root is None:  # before the split files are built: a refused command writes nothing
            raise HyperguideError("metavqa features need the COCO 2014 images: pass --coco-root DIR")
        if options.splits_dir is None and options.vqa_root is not None:
            from hyperguide.data.vqa_v2 import build_from_vqa_v2

            build_from_vqa_v2(options.vqa_root, folder / "splits")
        prepare_metavqa(
            splits_dir(options),
            options.coco_root,
            folder / "features",
            clip_model=options.clip_model,
            device=options.device,
            batch_size=options.batch_size,
            callbacks=callbacks,
            prompts_file=options.prompts_file,
        )
        manifest: dict[str, Any] = read_json(folder / "features" / MANIFEST, what="metavqa manifest")
        return manifest

    def load(self, options: MetaVQAOptions, prompts: str) -> Universe:
        return load_metavqa(
            splits_dir(options),
            options.folder(self.name) / "features",
            prompts_file=options.prompts_file,
            clip_model=options.clip_model,
        )

    def encoders(self, options: MetaVQAOptions, prompts: str) -> Encoders:
        return self.encoders_from_parts(self.encoder_parts(options), device=options.device, prompts=prompts)

    def encoder_parts(self, options: MetaVQAOptions) -> EncoderParts:
        """The CLIP model of `--clip-model` (a hub id in the local cache or a local folder), by reference only."""
        return EncoderParts({"clip_model": str(options.clip_model)})

    def encoders_from_parts(self, parts: EncoderParts, *, device: str, prompts: str) -> Encoders:
        return ClipEncoders(ClipEncoder(parts.name("clip_model"), device=device))


class ClipEncoders:
    """CLIP's two towers for new questions and images; an answer is scored against itself (no template is known)."""

    def __init__(self, clip: ClipEncoder) -> None:
        self.clip = clip

    def prompt(self, question: str, answer: str) -> str:
        return answer

    def texts(self, texts: list[str]) -> torch.Tensor:
        return self.clip.encode_texts(texts)

    def question_tokens(self, questions: list[str]) -> list[torch.Tensor]:
        return clip_question_tokens(self.clip, questions)

    def images(self, paths: Sequence[str | Path]) -> torch.Tensor:
        with torch.no_grad():
            return self.clip.image_features(torch.stack([self.clip.load_pixels(Path(p)) for p in paths]))


class MetaVQAStandin(UniverseSource[MetaVQAOptions]):
    name = "metavqa-standin"
    summary = "Meta-VQA's task structure with deterministic random 768-d features: paper-scale benchmarks only"
    Options = MetaVQAOptions

    def structure(self, options: MetaVQAOptions, prompts: str) -> Universe:
        universe = load_split_files(splits_dir(options), options.prompts_file)
        universe.name = self.name
        return universe

    def prepare(self, options: MetaVQAOptions, callbacks: Sequence[Callback]) -> dict[str, Any]:
        universe = self.structure(options, "answer")
        return {
            "universe": self.name,
            "cached": True,
            "note": "stand-in features are generated in memory",
            "tasks": len(universe.tasks),
        }

    def load(self, options: MetaVQAOptions, prompts: str) -> Universe:
        return standin_universe(splits_dir(options))  # fixed stand-ins, whatever the run's seed

    def encoders(self, options: MetaVQAOptions, prompts: str) -> Encoders:
        raise no_encoders(self.name)


def load_metavqa(
    splits_dir: str | Path,
    out_dir: str | Path,
    *,
    prompts_file: str | Path | None = None,
    clip_model: str | None = None,
) -> Universe:
    """The Meta-VQA universe with the CLIP features `prepare_metavqa` wrote to `out_dir`.

    With `clip_model`, features computed with another model are refused.
    """
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    if manifest is None:
        raise HyperguideError(
            f"no complete Meta-VQA features in {out_dir} ({MANIFEST} missing): run prepare for Meta-VQA first"
        )
    fields = {"clip_model": str, "image_dim": int, "text_dim": int}
    check_manifest(manifest, out_dir / MANIFEST, fields, "prepare the features again (hyperguide prepare metavqa)")
    if clip_model is not None and manifest.get("clip_model") != str(clip_model):
        raise HyperguideError(
            f"the features in {out_dir} were computed with {manifest.get('clip_model')!r}, not {str(clip_model)!r}"
        )
    universe = load_split_files(splits_dir, prompts_file)
    images = FeatureTable.load(out_dir / IMAGE_FEATURES, dim=manifest.get("image_dim"))
    texts = FeatureTable.load(out_dir / TEXT_FEATURES, dim=manifest.get("text_dim"))
    if images.dim != texts.dim:
        raise HyperguideError(
            f"image features ({out_dir / IMAGE_FEATURES}, dim {images.dim}) and text features "
            f"({out_dir / TEXT_FEATURES}, dim {texts.dim}) must have the same dimension"
        )
    check_covers(images, image_keys(universe), "image(s)")
    check_covers(texts, text_keys(universe), "question(s) or answer prompt(s)")
    universe.image_features, universe.text_features = images, texts
    universe.question_tokens = _load_question_tokens(out_dir, universe, manifest)
    universe.info.update(clip_model=manifest.get("clip_model"), feature_dim=images.dim)
    return universe


class _EncoderUnavailable(Exception):
    """The CLIP model that would compute missing question tokens cannot be loaded here."""


def _load_question_tokens(out_dir: Path, universe: Universe, manifest: dict[str, Any]) -> TokenTable | None:
    """The prepared question tokens, or (a folder prepared before they existed) computed now and cached.

    If they must be computed but the manifest's CLIP model cannot be loaded offline (features copied from another
    machine), warn and return None: batches then carry each question's pooled feature as its one token.
    """
    model = str(manifest.get("clip_model"))

    def compute(questions: list[str]) -> list[torch.Tensor]:
        try:
            encoder = ClipEncoder(model)
        except HyperguideError as e:
            raise _EncoderUnavailable(str(e)) from None
        return clip_question_tokens(encoder, questions)

    questions = [t.question for t in universe.tasks]
    try:
        return cached_question_tokens(
            out_dir / QUESTION_TOKENS_FILE, questions, compute, encoder=model, dim=manifest.get("text_dim")
        )
    except _EncoderUnavailable as e:
        warnings.warn(
            f"no question tokens in {out_dir} and none can be computed ({e}); questions fall back to their pooled "
            "features",
            HyperguideWarning,
            stacklevel=3,
        )
        return None


@torch.no_grad()
def clip_question_tokens(encoder: ClipEncoder, texts: list[str], batch_size: int = 256) -> list[torch.Tensor]:
    """One (L_i, D) matrix per text: CLIP's final-layer-normed text states of its real tokens (start and end tokens
    included), each through the text projection, so they live in the joint space of the text features. The last row
    (the end token) is the text's feature itself: CLIP pools by taking the end token's state. A dual encoder
    without CLIP's text projection (SigLIP, ...) gives each text its pooled feature as its one token.
    """
    model = encoder.model
    if not (hasattr(model, "text_model") and hasattr(model, "text_projection")):  # not CLIP: no projected states
        return [row[None] for row in encoder.encode_texts(texts, batch_size)]
    rows: list[torch.Tensor] = []
    for start in range(0, len(texts), batch_size):
        ids, mask = encoder.tokenize(texts[start : start + batch_size])
        states = model.text_projection(model.text_model(input_ids=ids, attention_mask=mask).last_hidden_state)
        rows.extend(s[m.bool()].float().cpu() for s, m in zip(states, mask, strict=True))
    return rows


def prepare_metavqa(
    splits_dir: str | Path,
    coco_root: str | Path,
    out_dir: str | Path,
    *,
    clip_model: str | Path = DEFAULT_CLIP_MODEL,
    device: str = "cpu",
    batch_size: int = 32,
    callbacks: Sequence[Callback] = (),
    prompts_file: str | Path | None = None,
) -> None:
    """Compute CLIP features of every image, question and answer prompt into `out_dir` (docs/design.md §2.5).

    Resumable: image features are written in shards that a restart reuses. Does nothing if `out_dir` already
    holds complete features from the same model for these split files.
    """
    out_dir = Path(out_dir)
    manifest_path = out_dir / MANIFEST
    try:
        manifest = read_manifest(out_dir)
    except HyperguideError:
        manifest = None
    if manifest is not None and manifest.get("clip_model") == str(clip_model):
        try:
            load_metavqa(splits_dir, out_dir, prompts_file=prompts_file, clip_model=str(clip_model))
            return
        except HyperguideError:
            pass  # incomplete or stale: recompute below
    if manifest_path.exists():
        manifest_path.unlink()  # the folder is incomplete until a new manifest is written

    universe = load_split_files(splits_dir, prompts_file)
    names = image_keys(universe)
    named_paths = [(name, coco_image_path(coco_root, name)) for name in names]
    texts = text_keys(universe)

    encoder = ClipEncoder(clip_model, device=device)
    images = encoder.encode_images(named_paths, out_dir / IMAGE_SHARDS, batch_size=batch_size, callbacks=callbacks)
    images.save(out_dir / IMAGE_FEATURES, clip_model=str(clip_model))
    text_table = FeatureTable(texts, encoder.encode_texts(texts, batch_size=max(batch_size, 256), callbacks=callbacks))
    text_table.save(out_dir / TEXT_FEATURES, clip_model=str(clip_model))
    questions = list(dict.fromkeys(t.question for t in universe.tasks))
    tokens = TokenTable.from_rows(questions, clip_question_tokens(encoder, questions, max(batch_size, 256)))
    tokens.save(out_dir / QUESTION_TOKENS_FILE, encoder=str(clip_model))
    write_json(
        manifest_path,
        {
            "format": MANIFEST_FORMAT,
            "clip_model": str(clip_model),
            "image_dim": images.dim,
            "text_dim": text_table.dim,
            "image_size": encoder.image_size,
            "preprocessing": encoder.preprocessing,
            "n_images": len(images),
            "n_texts": len(text_table),
            "n_question_tokens": int(tokens.tokens.shape[0]),
            "n_tasks": len(universe.tasks),
            "n_meta_train": len(universe.meta_train),
            "n_meta_test": len(universe.meta_test),
        },
    )
    shutil.rmtree(out_dir / IMAGE_SHARDS, ignore_errors=True)
