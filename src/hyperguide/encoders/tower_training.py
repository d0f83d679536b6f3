"""Training the easy-VQA image tower LiT-style: the text tower is frozen, the image tower learns to meet it.

Each step draws a batch of images, one valid caption per image, augments the images (flips, shifts), and takes an
AdamW step on the multi-positive InfoNCE (`image_tower.multi_positive_info_nce`) under a warm-up + cosine learning
rate; the learnable temperature is clamped after each step. It runs in the project's one loop (`train.loop.fit`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from hyperguide.encoders.image_tower import MAX_LOGIT_SCALE, ImageTower, multi_positive_info_nce
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback
from hyperguide.train.loop import FitOptions, fit


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
    callbacks: Sequence[Callback] = (),
) -> tuple[ImageTower, list[dict[str, float]]]:
    """Train a tower so that each image's embedding matches its captions' frozen embeddings.

    `caption_ids[i]` lists the rows of `caption_embs` (C, D) valid for image i; images with none are skipped.
    Returns the tower (in eval mode) and one record per step: epoch, step, loss, lr, seconds, temperature.
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
    warmup = min(warmup_steps, total // 5 + 1)
    temperatures: list[float] = []
    tower.train()

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = usable[torch.randperm(len(usable), generator=generator)]
        for b in range(steps_per_epoch):
            rows = order[b * batch_size : (b + 1) * batch_size]
            ids = sample_captions(caption_ids, rows, generator)
            batch = images_uint8[rows]
            yield (augment(batch, generator) if augment_images else batch), ids

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor | float]:
        images, ids = batch
        image_embs = F.normalize(tower(images), dim=-1)
        return {
            "loss": multi_positive_info_nce(image_embs, text[ids], ids, tower.logit_scale),
            "lr": optimizer.param_groups[0]["lr"],
        }

    def clamp_temperature() -> None:
        with torch.no_grad():
            tower.logit_scale.clamp_(max=math.log(MAX_LOGIT_SCALE))
        temperatures.append(float(1.0 / tower.logit_scale.detach().exp()))

    history = fit(
        step,
        batches,
        optimizer,
        epochs=epochs,
        name="image tower",
        options=FitOptions(
            lr_at=lambda n: cosine_lr(n, total, lr, warmup), after_step=clamp_temperature, history="step"
        ),
        callbacks=callbacks,
    )
    for record, temperature in zip(history, temperatures, strict=True):
        record["temperature"] = temperature
    return tower.eval(), history
