"""A small CNN image tower trained LiT-style: the text tower is frozen, the image tower learns to meet it.

Training uses a symmetric InfoNCE loss with a learnable temperature. Many images in a batch share a caption, so the
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
from tqdm.auto import tqdm

from hyperguide.errors import HyperguideError
from hyperguide.io import read_json, read_tensors, write_json, write_tensors

TOWER_FORMAT = "hyperguide.image_tower/1"
_MEAN = 0.5
_STD = 0.25
_MAX_LOGIT_SCALE = 100.0


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
    scale = logit_scale.exp().clamp(max=_MAX_LOGIT_SCALE)
    logits = scale * image_embs @ text_embs.T
    targets = positive_targets(caption_ids)  # symmetric, so it serves both directions
    loss_i2t = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t2i = -(targets * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_i2t + loss_t2i)


def cosine_lr(step: int, total: int, lr: float, warmup: int) -> float:
    """Linear warm-up for `warmup` steps, then cosine decay to zero at `total`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * lr * (1.0 + math.cos(math.pi * min(1.0, progress)))


def augment(images: torch.Tensor, generator: torch.Generator, *, max_shift: int = 4) -> torch.Tensor:
    """Random horizontal/vertical flips and translations up to `max_shift` pixels (edge-replicated), per image."""
    n, _, h, w = images.shape
    x = images.float()
    flip_h = torch.rand(n, generator=generator) < 0.5
    flip_v = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip_h[:, None, None, None], x.flip(3), x)
    x = torch.where(flip_v[:, None, None, None], x.flip(2), x)
    if max_shift > 0:
        padded = F.pad(x, (max_shift,) * 4, mode="replicate")
        dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
        rows = (torch.arange(h)[None, :] + dy[:, None])[:, None, :, None]  # (n, 1, h, 1)
        cols = (torch.arange(w)[None, :] + dx[:, None])[:, None, None, :]  # (n, 1, 1, w)
        batch = torch.arange(n)[:, None, None, None]
        chans = torch.arange(x.shape[1])[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    return x.to(images.dtype) if images.dtype == torch.uint8 else x


def sample_captions(
    caption_ids: Sequence[Sequence[int]], rows: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """One caption index per image row, drawn uniformly from that image's valid captions."""
    picks = torch.rand(len(rows), generator=generator)
    out = [caption_ids[r][int(p * len(caption_ids[r]))] for r, p in zip(rows.tolist(), picks.tolist(), strict=True)]
    return torch.tensor(out, dtype=torch.long)


# -------------------------------------------------------------------------------------------------- training


def train_image_tower(
    images_uint8: torch.Tensor,
    caption_ids: list[list[int]],
    caption_embs: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    width: int = 16,
    depth: int = 4,
    stem_stride: int = 2,
    weight_decay: float = 0.05,
    warmup_steps: int = 20,
    augment_images: bool = True,
    progress: bool = True,
) -> tuple[ImageTower, list[dict[str, float]]]:
    """Train a tower so that each image's embedding matches its captions' frozen embeddings.

    `caption_ids[i]` lists the rows of `caption_embs` (C, D) valid for image i; images with none are skipped.
    Returns the tower (in eval mode) and one record per step: epoch, step, loss, lr, temperature.
    """
    if images_uint8.ndim != 4 or images_uint8.shape[1] != 3:
        raise HyperguideError(f"train_image_tower: expected (N, 3, H, W) images, got shape {tuple(images_uint8.shape)}")
    if len(caption_ids) != images_uint8.shape[0]:
        raise HyperguideError(f"train_image_tower: {images_uint8.shape[0]} images but {len(caption_ids)} caption lists")
    n_captions = caption_embs.shape[0]
    if any(c < 0 or c >= n_captions for ids in caption_ids for c in ids):
        raise HyperguideError(f"train_image_tower: a caption index is outside 0..{n_captions - 1}")
    usable = torch.tensor([i for i, ids in enumerate(caption_ids) if ids], dtype=torch.long)
    if len(usable) < 2:
        raise HyperguideError("train_image_tower: need at least 2 images with a valid caption")
    if epochs < 1 or batch_size < 2:
        raise HyperguideError(f"train_image_tower: need epochs >= 1 and batch_size >= 2, got {epochs}, {batch_size}")

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tower = ImageTower(width=width, depth=depth, out_dim=int(caption_embs.shape[1]), stem_stride=stem_stride)
    text = F.normalize(caption_embs.detach().float(), dim=-1)
    decay = [p for n, p in tower.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in tower.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    batch_size = min(batch_size, len(usable))
    steps_per_epoch = len(usable) // batch_size  # the ragged tail of each shuffled epoch is dropped
    total = epochs * steps_per_epoch
    history: list[dict[str, float]] = []
    tower.train()
    bar = tqdm(total=total, desc="image tower", unit="step", disable=not progress)
    step = 0
    for epoch in range(epochs):
        order = usable[torch.randperm(len(usable), generator=generator)]
        for b in range(steps_per_epoch):
            rows = order[b * batch_size : (b + 1) * batch_size]
            ids = sample_captions(caption_ids, rows, generator)
            batch = images_uint8[rows]
            if augment_images:
                batch = augment(batch, generator)
            step_lr = cosine_lr(step, total, lr, min(warmup_steps, total // 5 + 1))
            for group in optimizer.param_groups:
                group["lr"] = step_lr
            image_embs = F.normalize(tower(batch), dim=-1)
            loss = multi_positive_info_nce(image_embs, text[ids], ids, tower.logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                tower.logit_scale.clamp_(max=math.log(_MAX_LOGIT_SCALE))
            record = {
                "epoch": epoch,
                "step": step,
                "loss": loss.item(),
                "lr": step_lr,
                "temperature": float(1.0 / tower.logit_scale.detach().exp()),
            }
            history.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", T=f"{record['temperature']:.3f}")
            step += 1
    bar.close()
    return tower.eval(), history


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
    meta_path = base.with_name(base.name + ".json")
    meta = read_json(meta_path, what="image tower metadata")
    valid = isinstance(meta, dict) and meta.get("format") == TOWER_FORMAT and isinstance(meta.get("architecture"), dict)
    if not valid:
        raise HyperguideError(f"{meta_path} is not image tower metadata (expected format {TOWER_FORMAT!r})")
    try:
        tower = ImageTower(**{k: int(v) for k, v in meta["architecture"].items()})
    except (TypeError, ValueError) as e:
        raise HyperguideError(f"{meta_path}: bad architecture {meta['architecture']!r}: {e}") from None
    weights_path = base.with_name(base.name + ".safetensors")
    state = read_tensors(weights_path, what="image tower weights")
    try:
        tower.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise HyperguideError(f"{weights_path} does not fit the architecture in {meta_path}: {e}") from None
    return tower.eval()
