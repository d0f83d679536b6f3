"""easy-VQA images, and their colour and shape read off their questions, and the captions true of them.

Each easy-VQA image holds one shape (circle, rectangle, triangle) of one colour. Neither is stored as a label; both
are derived from the image's question/answer pairs. Keys are "train/{id}" and "test/{id}" (the two id ranges
overlap). The image tower is trained on these captions by `hyperguide.universes.easyvqa`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

from hyperguide.data.images import decode_image

COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
SHAPES = ("circle", "rectangle", "triangle")
IMAGE_SIZE = 64
SPLITS = ("train", "test")


_FULL_TEMPLATES = (
    "a {color} {shape}",
    "a picture of a {color} {shape}",
    "a {color} {shape} on a white background",
    "an image of a {color} {shape}",
    "a drawing of a {color} {shape}",
)
_COLOR_TEMPLATES = ("a {color} shape", "something {color}")
_SHAPE_TEMPLATES = ("a {shape}", "a picture of a {shape}")

_WORD = re.compile(r"[a-z]+")


# ------------------------------------------------------------------------------------------------------ images


def read_image(path: str | Path) -> torch.Tensor:
    """A (3, 64, 64) uint8 RGB tensor; a file that does not decode, or has another size, raises HyperguideError."""
    rgb = decode_image(path, what="easy-VQA image", size=(IMAGE_SIZE, IMAGE_SIZE)).convert("RGB")
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def read_images(paths: Mapping[str, str | Path]) -> tuple[list[str], torch.Tensor]:
    """Keys in the mapping's order and an (N, 3, 64, 64) uint8 tensor of their images."""
    keys = list(paths)
    if not keys:
        return [], torch.zeros(0, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    return keys, torch.stack([read_image(paths[k]) for k in keys])


def easyvqa_image_paths() -> dict[str, str]:
    """{"train/{id}" | "test/{id}": png path}, train ids then test ids, each in increasing id order."""
    import easy_vqa

    out: dict[str, str] = {}
    for split, paths in (("train", easy_vqa.get_train_image_paths()), ("test", easy_vqa.get_test_image_paths())):
        out.update({f"{split}/{i}": str(paths[i]) for i in sorted(paths)})
    return out


def load_easyvqa_images() -> tuple[list[str], torch.Tensor]:
    """All 5,000 easy-VQA images (4,000 train then 1,000 test) as keys and a uint8 (N, 3, 64, 64) RGB tensor."""
    return read_images(easyvqa_image_paths())


# -------------------------------------------------------------------------------------------------- attributes


def _evidence(question: str, answer: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """What one question/answer pair says: values asserted and values ruled out, per attribute."""
    words = _WORD.findall(question.lower())
    answer = answer.strip().lower()
    named = {"color": {w for w in words if w in COLORS}, "shape": {w for w in words if w in SHAPES}}
    yes: dict[str, set[str]] = {"color": set(), "shape": set()}
    no: dict[str, set[str]] = {"color": set(), "shape": set()}
    if answer in ("yes", "no"):
        negated = "not" in words or (len(words) > 1 and words[1] == "no")  # "is there not a X", "is no X present"
        holds = (answer == "yes") != negated
        for attr, values in named.items():
            (yes if holds else no)[attr] |= values
        return yes, no
    # A wh-question: its answer is an attribute value, and any value it names is presupposed ("what color is the
    # triangle?" -> triangle; "what is the red shape?" -> red).
    for attr, vocab in (("color", COLORS), ("shape", SHAPES)):
        if answer in vocab:
            yes[attr].add(answer)
        yes[attr] |= named[attr]
    return yes, no


def _resolve(asserted: set[str], ruled_out: set[str], vocab: tuple[str, ...]) -> str | None:
    """The one consistent value, if the evidence pins it down; None when it is missing or contradictory."""
    if asserted:
        return next(iter(asserted)) if len(asserted) == 1 and not asserted & ruled_out else None
    remaining = [v for v in vocab if v not in ruled_out]
    return remaining[0] if len(remaining) == 1 else None


def attributes_from_qa(pairs: Iterable[tuple[str, str]]) -> dict[str, str | None]:
    """{"color", "shape"} of one image from its (question, answer) pairs; None where not derivable.

    Yes/no questions count both ways: "is there not a circle?" = no asserts a circle, "is there a red shape?" = no
    rules red out (so seven colours ruled out leave the eighth). Contradictory evidence gives None.
    """
    asserted: dict[str, set[str]] = {"color": set(), "shape": set()}
    ruled_out: dict[str, set[str]] = {"color": set(), "shape": set()}
    for question, answer in pairs:
        yes, no = _evidence(question, answer)
        for attr in asserted:
            asserted[attr] |= yes[attr]
            ruled_out[attr] |= no[attr]
    return {
        "color": _resolve(asserted["color"], ruled_out["color"], COLORS),
        "shape": _resolve(asserted["shape"], ruled_out["shape"], SHAPES),
    }


def image_attributes() -> dict[str, dict[str, str | None]]:
    """{"train/{id}" | "test/{id}": {"color": ..., "shape": ...}} for every easy-VQA image, from its questions."""
    import easy_vqa

    pairs: dict[str, list[tuple[str, str]]] = {key: [] for key in easyvqa_image_paths()}
    for split, (texts, answers, ids) in (
        ("train", easy_vqa.get_train_questions()),
        ("test", easy_vqa.get_test_questions()),
    ):
        for text, answer, image_id in zip(texts, answers, ids, strict=True):
            pairs.setdefault(f"{split}/{image_id}", []).append((text, answer))
    return {key: attributes_from_qa(qa) for key, qa in pairs.items()}


# ---------------------------------------------------------------------------------------------------- captions


def captions_for(color: str | None, shape: str | None) -> list[str]:
    """Caption phrasings true of an image: full ones when both are known, colour-only and shape-only ones too."""
    out: list[str] = []
    if color is not None and shape is not None:
        out += [t.format(color=color, shape=shape) for t in _FULL_TEMPLATES]
    if color is not None:
        out += [t.format(color=color) for t in _COLOR_TEMPLATES]
    if shape is not None:
        out += [t.format(shape=shape) for t in _SHAPE_TEMPLATES]
    return out


def caption_vocabulary(
    attributes: Iterable[Mapping[str, str | None]],
) -> tuple[list[str], list[list[int]]]:
    """All distinct captions (sorted) and, per image, the indices of those true of it."""
    per_image = [captions_for(a.get("color"), a.get("shape")) for a in attributes]
    vocab = sorted({c for caps in per_image for c in caps})
    index = {c: i for i, c in enumerate(vocab)}
    return vocab, [[index[c] for c in caps] for caps in per_image]
