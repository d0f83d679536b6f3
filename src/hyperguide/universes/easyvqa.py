"""`easyvqa`, the embedded default: Meta-VQA's rules applied to the `easy-vqa` package (`data/easyvqa.py`), with
all-MiniLM-L6-v2 embeddings of questions and answer prompts and a small image tower trained LiT-style on easy-VQA's
train images (`encoders/tower_training.py`).

`prepare` writes into `<home>/easyvqa/`: `text_features.safetensors` (every question and answer prompt of every
prompt style), `question_tokens.safetensors`, `image_features.safetensors`, `image_tower.safetensors` + `.json`, and
`manifest.json` last. A folder prepared before question tokens existed lacks their file: loading then computes them
with the manifest's text encoder and caches them there.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from hyperguide.data.easyvqa import PROMPT_STYLES, answer_prompt, easyvqa_structure
from hyperguide.data.easyvqa_images import (
    COLORS,
    SHAPES,
    caption_vocabulary,
    image_attributes,
    load_easyvqa_images,
    read_image,
)
from hyperguide.data.features import MANIFEST, FeatureTable
from hyperguide.data.tasks import Universe
from hyperguide.data.tokens import QUESTION_TOKENS_FILE, TokenTable, cached_question_tokens
from hyperguide.encoders.image_tower import (
    ImageTower,
    encode,
    load_tower_files,
    loss_summary,
    save_tower,
    zero_shot_accuracy,
)
from hyperguide.encoders.text import DEFAULT_TEXT_ENCODER, TextEncoder
from hyperguide.encoders.tower_training import train_image_tower
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback
from hyperguide.io import read_json, write_json
from hyperguide.universes.base import EncoderParts, Encoders, UniverseSource, check_manifest, manifest_matches
from hyperguide.universes.options import UniverseOptions, at_least, option

FORMAT = 1
TEXT_FEATURES = "text_features.safetensors"
FEATURES_FILE = "image_features.safetensors"
TOWER_NAME = "image_tower"
TOWER_FILES = (f"{TOWER_NAME}.safetensors", f"{TOWER_NAME}.json")  # the weights, then the architecture and record
COLOR_PROMPT = "a {color} shape"
SHAPE_PROMPT = "a {shape}"

# Tower defaults: a minute or so of training on 2 CPU cores, near-perfect zero-shot colour and shape on easy-VQA's
# test images (docs/decisions.md D2).
DEFAULT_EPOCHS = 20
DEFAULT_BATCH_SIZE = 128
DEFAULT_LR = 2e-3
DEFAULT_WIDTH = 16


class TextEncoderLike(Protocol):
    def encode(self, texts: list[str]) -> torch.Tensor: ...


@dataclass(frozen=True)
class EasyVQAOptions(UniverseOptions):
    """easyvqa's options: how long its image tower is trained (with the common `seed`; a preparation records both)."""

    tower_epochs: int | None = option(
        None, help=f"easyvqa's image tower: its training epochs (default {DEFAULT_EPOCHS})", metavar="N"
    )

    def __post_init__(self) -> None:
        at_least(self, "tower_epochs", 1)


class EasyVQA(UniverseSource[EasyVQAOptions]):
    name = "easyvqa"
    summary = "107 easy-VQA tasks, MiniLM text features, a LiT-trained CNN image tower (the embedded default)"
    Options = EasyVQAOptions

    def structure(self, options: EasyVQAOptions, prompts: str) -> Universe:
        return easyvqa_structure(prompts)

    def request(self, options: EasyVQAOptions) -> dict[str, Any]:
        """What a preparation depends on; a cached one is reused only if its manifest records the same."""
        return {
            "universe": self.name,
            "format": FORMAT,
            "text_encoder": DEFAULT_TEXT_ENCODER,
            "seed": options.seed,
            "tower_epochs": options.tower_epochs,
        }

    def prepare(self, options: EasyVQAOptions, callbacks: Sequence[Callback]) -> dict[str, Any]:
        folder = options.folder(self.name)
        request = self.request(options)
        if not options.force and (manifest := manifest_matches(folder, request)):
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
        FeatureTable(texts, encoder.encode(texts, callbacks=callbacks)).save(folder / TEXT_FEATURES)
        tokens = TokenTable.from_rows(questions, encoder.question_tokens(questions))
        tokens.save(folder / QUESTION_TOKENS_FILE, encoder=request["text_encoder"])
        kwargs: dict[str, Any] = {"seed": options.seed, "callbacks": callbacks}
        if options.tower_epochs is not None:
            kwargs["epochs"] = options.tower_epochs
        tower_report = prepare_easyvqa_image_features(folder, encoder, **kwargs)
        manifest = {
            "request": request,
            "universe": self.name,
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

    def manifest(self, folder: Path) -> dict[str, Any]:
        """The manifest of the easyvqa universe prepared in `folder`: a `request` object whose `universe` (and the
        manifest's, where given) is easyvqa, positive integer feature dimensions; anything else is refused."""
        path = folder / MANIFEST
        advice = "prepare it again with `hyperguide prepare easyvqa`"
        if not path.is_file():
            raise HyperguideError(f"easyvqa is not prepared in {folder}; run `hyperguide prepare easyvqa` first")
        manifest = read_json(path, what="universe manifest")
        if not self._prepared_by_us(manifest):
            raise HyperguideError(
                f"universe manifest {path} is not a manifest of the easyvqa universe (it lacks a 'request' object, "
                f"or names another universe: another command wrote into {folder}?): {advice}"
            )
        return check_manifest(manifest, path, {"text_dim": int, "image_dim": int}, advice)

    def _prepared_by_us(self, manifest: Any) -> bool:
        """A manifest `prepare` wrote: a `request` object naming this universe, and no other universe beside it."""
        if not isinstance(manifest, dict) or not isinstance(manifest.get("request"), dict):
            return False
        return manifest["request"].get("universe") == self.name and manifest.get("universe", self.name) == self.name

    def load(self, options: EasyVQAOptions, prompts: str) -> Universe:
        folder = options.folder(self.name)
        manifest = self.manifest(folder)
        universe = self.structure(options, prompts)
        universe.text_features = FeatureTable.load(folder / TEXT_FEATURES, dim=manifest["text_dim"])
        universe.image_features = FeatureTable.load(folder / FEATURES_FILE, dim=manifest["image_dim"])
        universe.question_tokens = _question_tokens(folder, universe, manifest, options)
        universe.info["manifest"] = manifest
        return universe

    def encoders(self, options: EasyVQAOptions, prompts: str) -> Encoders:
        return self.encoders_from_parts(self.encoder_parts(options), device=options.device, prompts=prompts)

    def describe(self, manifest: dict[str, Any]) -> list[str]:
        """The image tower's zero-shot colour and shape accuracies and its training time."""
        tower = manifest.get("image_tower")
        if not isinstance(tower, dict):
            return []
        keys = ("test_color_accuracy", "test_shape_accuracy", "train_color_accuracy", "train_shape_accuracy")
        lines = [f"image tower zero-shot {key.replace('_', ' ')}: {tower[key]:.2f}%" for key in keys if key in tower]
        return [*lines, f"image tower training: {tower.get('train_seconds', 0):.0f} s"]

    def encoder_parts(self, options: EasyVQAOptions) -> EncoderParts:
        """The prepared text encoder's name (its package, or the folder or hub id it was prepared with) and the
        prepared image tower's two files."""
        folder = options.folder(self.name)
        name = self.manifest(folder)["request"].get("text_encoder", DEFAULT_TEXT_ENCODER)
        return EncoderParts({"text_encoder": str(name)}, {f: folder / f for f in TOWER_FILES})

    def encoders_from_parts(self, parts: EncoderParts, *, device: str, prompts: str) -> Encoders:
        """MiniLM (or the named text encoder) and the image tower of `parts`, loaded now: a tower file that does
        not fit its architecture is refused here."""
        tower = load_tower_files(parts.file(TOWER_FILES[0]), parts.file(TOWER_FILES[1]))
        return EasyVQAEncoders(TextEncoder(parts.name("text_encoder"), device=device), tower, prompts)


class EasyVQAEncoders:
    """MiniLM for questions and answers (answer prompts by easy-VQA's rule), the prepared tower for images."""

    def __init__(self, text: TextEncoder, tower: ImageTower, prompts: str) -> None:
        self.text = text
        self.tower = tower
        self.prompts = prompts

    def prompt(self, question: str, answer: str) -> str:
        return answer_prompt(question, answer, self.prompts)

    def texts(self, texts: list[str]) -> torch.Tensor:
        return self.text.encode(texts)

    def question_tokens(self, questions: list[str]) -> list[torch.Tensor]:
        return self.text.question_tokens(questions)

    def images(self, paths: Sequence[str | Path]) -> torch.Tensor:
        with torch.no_grad():
            return encode(self.tower, torch.stack([read_image(p) for p in paths]))


def _question_tokens(folder: Path, universe: Universe, manifest: dict[str, Any], options: EasyVQAOptions) -> TokenTable:
    """The prepared question tokens, or (a folder prepared before they existed) computed now and cached."""
    name = str(manifest.get("request", {}).get("text_encoder", DEFAULT_TEXT_ENCODER))
    return cached_question_tokens(
        folder / QUESTION_TOKENS_FILE,
        [t.question for t in universe.tasks],
        lambda questions: TextEncoder(name, device=options.device).question_tokens(questions),
        encoder=name,
        dim=manifest["text_dim"],
    )


def _zero_shot(
    features: torch.Tensor, values: list[str | None], classes: tuple[str, ...], class_embs: torch.Tensor
) -> tuple[float, int]:
    """Accuracy (percent) over the rows whose value is known, and how many there were."""
    rows = [i for i, v in enumerate(values) if v is not None]
    if not rows:
        return float("nan"), 0
    labels = torch.tensor([classes.index(str(values[i])) for i in rows], dtype=torch.long)
    return round(zero_shot_accuracy(features[rows], labels, class_embs), 2), len(rows)


def prepare_easyvqa_image_features(
    out_dir: str | Path,
    text_encoder: TextEncoderLike,
    *,
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    width: int = DEFAULT_WIDTH,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Train the easy-VQA image tower on train images, encode all images, write features and tower; report.

    Writes `out_dir/image_features.safetensors` (a FeatureTable keyed "train/{id}"/"test/{id}") and
    `out_dir/image_tower.safetensors` + `image_tower.json`. Returns zero-shot colour ("a {color} shape") and shape
    ("a {shape}") accuracies in percent on test and train images, counts, and the training wall time.
    """
    out_dir = Path(out_dir)
    keys, images = load_easyvqa_images()
    attrs = image_attributes()
    image_attrs = [attrs[k] for k in keys]
    is_train = [k.startswith("train/") for k in keys]
    train_rows = [i for i, t in enumerate(is_train) if t]
    test_rows = [i for i, t in enumerate(is_train) if not t]

    vocab, per_image = caption_vocabulary(image_attrs)
    caption_embs = text_encoder.encode(vocab).float()
    color_embs = text_encoder.encode([COLOR_PROMPT.format(color=c) for c in COLORS]).float()
    shape_embs = text_encoder.encode([SHAPE_PROMPT.format(shape=s) for s in SHAPES]).float()

    train_config = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "width": width, "seed": seed}
    start = time.perf_counter()
    tower, history = train_image_tower(
        images[train_rows],
        [per_image[i] for i in train_rows],
        caption_embs,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        width=width,
        callbacks=callbacks,
    )
    train_seconds = time.perf_counter() - start
    features = encode(tower, images)

    report: dict[str, Any] = {
        "n_images": len(keys),
        "n_train_images": len(train_rows),
        "n_test_images": len(test_rows),
        "n_with_both_attributes": sum(a["color"] is not None and a["shape"] is not None for a in image_attrs),
        "n_captions": len(vocab),
        "train_seconds": round(train_seconds, 2),
    }
    for split, rows in (("test", test_rows), ("train", train_rows)):
        colors = [image_attrs[i]["color"] for i in rows]
        shapes = [image_attrs[i]["shape"] for i in rows]
        report[f"{split}_color_accuracy"], report[f"{split}_n_color"] = _zero_shot(
            features[rows], colors, COLORS, color_embs
        )
        report[f"{split}_shape_accuracy"], report[f"{split}_n_shape"] = _zero_shot(
            features[rows], shapes, SHAPES, shape_embs
        )

    FeatureTable(keys, features, source=str(out_dir / FEATURES_FILE)).save(
        out_dir / FEATURES_FILE, encoder="easyvqa-image-tower", seed=str(seed), trained_on="train"
    )
    save_tower(
        out_dir / TOWER_NAME,
        tower,
        {
            "train": train_config,
            "seed": seed,
            "epochs": epochs,
            "trained_on": "easy-VQA train images",
            "text_encoder": getattr(text_encoder, "name", type(text_encoder).__name__),
            "color_prompt": COLOR_PROMPT,
            "shape_prompt": SHAPE_PROMPT,
            "loss": loss_summary(history),
            "report": report,
        },
    )
    return report
