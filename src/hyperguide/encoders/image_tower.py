"""A small CNN image tower for easy-VQA, trained LiT-style (`encoders/tower_training.py`): the network, its
contrastive loss, encoding, zero-shot scoring and persistence.

The loss is a symmetric InfoNCE with a learnable temperature. Many images in a batch share a caption, so the
targets are multi-positive: every (image, caption) pair whose sampled captions are equal is a positive, and the
target distribution is uniform over the positives, in both directions. With all captions distinct this is plain
CLIP InfoNCE. Towers are stored as safetensors (weights) plus JSON (architecture and training record), never pickle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hyperguide.errors import HyperguideError
from hyperguide.io import read_json, read_tensor_shapes, read_tensors, write_json, write_tensors

TOWER_FORMAT = "hyperguide.image_tower/1"
_MEAN = 0.5
_STD = 0.25
MAX_LOGIT_SCALE = 100.0


# --------------------------------------------------------------------------------------------------- the network


class ImageTower(nn.Module):
    """Conv blocks (3x3 conv, BatchNorm, ReLU, 2x2 max-pool), global average pooling, a linear projection.

    Block i has `width * 2**i` channels; the first conv has stride `stem_stride` (2 quarters the compute on 64x64).

    Takes (N, 3, H, W) images, uint8 in [0, 255] or float in [0, 1], and returns (N, out_dim) unnormalised
    embeddings. `logit_scale` is the learnable inverse temperature of the contrastive loss (log-parameterised).
    """

    def __init__(self, *, width: int = 16, depth: int = 4, out_dim: int = 384, stem_stride: int = 2) -> None:
        super().__init__()
        if width < 1 or depth < 1 or out_dim < 1 or stem_stride < 1:
            raise HyperguideError(f"image tower: width, depth, out_dim must be > 0, got {width}, {depth}, {out_dim}")
        self.width, self.depth, self.out_dim, self.stem_stride = width, depth, out_dim, stem_stride
        blocks: list[nn.Module] = []
        c_in = 3
        for i in range(depth):
            c_out = width * 2**i
            blocks += [
                nn.Conv2d(c_in, c_out, 3, stride=stem_stride if i == 0 else 1, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.proj = nn.Linear(c_in, out_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def architecture(self) -> dict[str, int]:
        return {"width": self.width, "depth": self.depth, "out_dim": self.out_dim, "stem_stride": self.stem_stride}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        x = (x - _MEAN) / _STD
        return self.proj(self.features(x).mean(dim=(2, 3)))


# ------------------------------------------------------------------------------------------------------ the math


def positive_targets(caption_ids: torch.Tensor) -> torch.Tensor:
    """(B, B) row-stochastic targets: row i is uniform over the j whose caption equals i's."""
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def multi_positive_info_nce(
    image_embs: torch.Tensor, text_embs: torch.Tensor, caption_ids: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of (image, caption) pairs with multi-positive targets.

    `image_embs` and `text_embs` are (B, D) and L2-normalised; `caption_ids` (B,) says which caption each pair
    drew; `logit_scale` is the log inverse temperature. Returns the mean of the image->text and text->image losses.
    """
    scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    logits = scale * image_embs @ text_embs.T
    targets = positive_targets(caption_ids)  # symmetric, so it serves both directions
    loss_i2t = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t2i = -(targets * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_i2t + loss_t2i)


# ------------------------------------------------------------------------------------------ inference and scores


@torch.no_grad()
def encode(tower: ImageTower, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """(N, out_dim) float32 embeddings (not normalised), computed in eval mode."""
    was_training = tower.training
    tower.eval()
    chunks = [tower(images[s : s + batch_size]) for s in range(0, images.shape[0], batch_size)]
    tower.train(was_training)
    return torch.cat(chunks).float() if chunks else torch.zeros(0, tower.out_dim)


def zero_shot_accuracy(features: torch.Tensor, labels: torch.Tensor, class_embs: torch.Tensor) -> float:
    """Percent of rows whose highest-cosine class embedding is the labelled one."""
    if features.shape[0] != labels.shape[0]:
        raise HyperguideError(f"zero_shot_accuracy: {features.shape[0]} feature rows but {labels.shape[0]} labels")
    if features.shape[0] == 0:
        raise HyperguideError("zero_shot_accuracy: no examples to score")
    sims = F.normalize(features.float(), dim=-1) @ F.normalize(class_embs.float(), dim=-1).T
    return 100.0 * float((sims.argmax(dim=1) == labels.long()).float().mean())


def loss_summary(history: Sequence[dict[str, float]], *, points: int = 20) -> dict[str, Any]:
    """A compact loss curve: first/last loss, final temperature and the mean loss over `points` equal spans."""
    if not history:
        return {"steps": 0}
    losses = [h["loss"] for h in history]
    spans = [losses[i * len(losses) // points : (i + 1) * len(losses) // points] for i in range(points)]
    return {
        "steps": len(losses),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "final_temperature": history[-1]["temperature"],
        "curve": [round(sum(s) / len(s), 4) for s in spans if s],
    }


# -------------------------------------------------------------------------------------------------- persistence


def save_tower(path_without_ext: str | Path, tower: ImageTower, config: dict[str, Any]) -> None:
    """Write `<path>.safetensors` (weights and buffers) and `<path>.json` (architecture plus `config`), atomically."""
    base = Path(path_without_ext)
    arch = tower.architecture()
    write_tensors(
        base.with_name(base.name + ".safetensors"),
        tower.state_dict(),
        {"format": TOWER_FORMAT, "architecture": json.dumps(arch)},
    )
    write_json(base.with_name(base.name + ".json"), {"format": TOWER_FORMAT, "architecture": arch, "config": config})


def load_tower(path_without_ext: str | Path) -> ImageTower:
    """Rebuild a tower saved by `save_tower`, in eval mode; a missing or mismatched file raises HyperguideError."""
    base = Path(path_without_ext)
    return load_tower_files(base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json"))


def load_tower_files(weights_path: str | Path, meta_path: str | Path) -> ImageTower:
    """`load_tower` from its two files wherever they are: the weights' shapes are checked against the architecture
    in `meta_path` from the file's header, before anything is loaded."""
    weights_path, meta_path = Path(weights_path), Path(meta_path)
    meta = read_json(meta_path, what="image tower metadata")
    valid = isinstance(meta, dict) and meta.get("format") == TOWER_FORMAT and isinstance(meta.get("architecture"), dict)
    if not valid:
        raise HyperguideError(f"{meta_path} is not image tower metadata (expected format {TOWER_FORMAT!r})")
    arch = meta["architecture"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in arch.values()):
        raise HyperguideError(f"{meta_path}: bad architecture {arch!r}: every size must be an integer")
    try:
        with torch.device("meta"):  # the shapes the architecture implies, with nothing allocated
            expected = {k: tuple(v.shape) for k, v in ImageTower(**arch).state_dict().items()}
    except (TypeError, ValueError) as e:
        raise HyperguideError(f"{meta_path}: bad architecture {arch!r}: {e}") from None
    found = read_tensor_shapes(weights_path, what="image tower weights")
    if found != expected:
        differ = sorted(k for k in {*found, *expected} if found.get(k) != expected.get(k))[:3]
        raise HyperguideError(
            f"{weights_path} does not fit the architecture in {meta_path} (e.g. {differ}); nothing was built"
        )
    tower = ImageTower(**arch)
    state = read_tensors(weights_path, what="image tower weights")
    try:
        tower.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise HyperguideError(f"{weights_path} does not fit the architecture in {meta_path}: {e}") from None
    return tower.eval()
