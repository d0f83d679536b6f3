"""Frozen CLIP features for Meta-VQA (docs/design.md §2.5): unnormalised float32 image and text projections,
offline only.

Images are preprocessed as the paper's code did: a direct bicubic resize to the model's image size (no aspect-ratio
resize, no centre crop, docs/design.md §8.12), RGB, then the CLIP mean/std. Image features are computed in
fixed-size shards written atomically to a cache folder, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hyperguide.data.features import FeatureTable
from hyperguide.data.images import decode_image
from hyperguide.encoders.text import check_lengths
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback, Progress, emit
from hyperguide.io import read_tensor_metadata

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SHARD_SIZE = 2048
PREPROCESSING = "direct-bicubic-resize,rgb,clip-mean-std"


def _model_file(model: str | Path, filename: str) -> Path | None:
    """A file of a local model folder, or of a hub id in the local cache; None if absent."""
    folder = Path(model)
    if folder.is_dir():
        return folder / filename if (folder / filename).is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return None
    try:
        found = try_to_load_from_cache(str(model), filename)
    except ValueError:  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None


def _features(output: object, what: str) -> torch.Tensor:
    """The projected features from get_*_features: a tensor (transformers 4) or a ModelOutput (transformers 5)."""
    if isinstance(output, torch.Tensor):
        return output
    for name in ("pooler_output", f"{what}_embeds"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise HyperguideError(f"unexpected output of CLIPModel.get_{what}_features: {type(output).__name__}")


def load_image(path: Path) -> Image.Image:
    """Decode an image fully (its header checked first: `data.images.decode_image`), or raise HyperguideError
    naming the file."""
    return decode_image(path)


class ClipEncoder:
    """A frozen CLIP-like dual encoder loaded offline from a local folder or the local hub cache: any `transformers`
    model with `get_text_features` and `get_image_features` into one space (CLIPModel, SiglipModel, ...)."""

    def __init__(self, model: str | Path, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer, CLIPTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # a bar for loading local weights is noise

        source = str(model)
        try:
            self.model = (
                AutoModel.from_pretrained(source, local_files_only=True, use_safetensors=True).to(device).eval()
            )
        except (OSError, ValueError) as e:
            raise HyperguideError(
                f"cannot load CLIP model {source!r} offline: {e}. Give a local folder or a hub id in the local cache, "
                "with safetensors weights (pickled pytorch_model.bin files are not loaded)."
            ) from None
        lacking = [m for m in ("get_text_features", "get_image_features") if not hasattr(self.model, m)]
        if lacking:
            raise HyperguideError(
                f"model {source!r} ({type(self.model).__name__}) is not a dual encoder: it has no {lacking[0]} (a "
                "CLIP-like model embeds texts and images into one space: CLIPModel, SiglipModel, ...)"
            )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError, KeyError):
            try:
                self.tokenizer = CLIPTokenizer.from_pretrained(source, local_files_only=True)
            except (OSError, ValueError) as e:
                raise HyperguideError(f"cannot load the tokenizer of CLIP model {source!r} offline: {e}") from None
        self.name = source
        self.device = device
        self.image_size = int(self.model.config.vision_config.image_size)
        self.max_length = int(self.model.config.text_config.max_position_embeddings)
        self.mean, self.std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
        config_file = _model_file(model, "preprocessor_config.json")
        if config_file is not None:
            try:
                config = json.loads(config_file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise HyperguideError(f"cannot read {config_file}: {e}") from None
            self.mean = tuple(config.get("image_mean", self.mean))
            self.std = tuple(config.get("image_std", self.std))
        self.preprocessing = f"{PREPROCESSING},size={self.image_size},mean={list(self.mean)},std={list(self.std)}"
        # SigLIP pools its last position and was trained on texts padded to the full length: padded to the batch's
        # longest, a text's feature would depend on its batch. CLIP pools its end token, so padding does not matter.
        siglip = str(getattr(self.model.config, "model_type", "")).startswith("siglip")
        self.padding: bool | str = "max_length" if siglip else True

    @property
    def dim(self) -> int:
        config = self.model.config
        return int(getattr(config, "projection_dim", None) or config.text_config.hidden_size)

    # ------------------------------------------------------------------------------------------------ texts

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) token ids and attention mask on the model's device, padded; a text longer than the text tower
        reads is refused (`check_lengths`), never cut."""
        check_lengths(self.tokenizer, texts, self.max_length, self.name)
        batch = self.tokenizer(
            list(texts), padding=self.padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)

    @torch.no_grad()
    def encode_texts(
        self, texts: Sequence[str], batch_size: int = 256, *, callbacks: Sequence[Callback] = ()
    ) -> torch.Tensor:
        """(len(texts), D) float32 text features, unnormalised."""
        chunks = []
        starts = range(0, len(texts), batch_size)
        for i, start in enumerate(starts):
            ids, mask = self.tokenize(texts[start : start + batch_size])
            out = self.model.get_text_features(input_ids=ids, attention_mask=mask)
            chunks.append(_features(out, "text").float().cpu())
            emit(callbacks, Progress("text features", i + 1, len(starts), "batch"))
        return torch.cat(chunks) if chunks else torch.zeros(0, self.dim)

    # ------------------------------------------------------------------------------------------------ images

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """(3, S, S) normalised pixels: direct bicubic resize to S, then RGB, then CLIP mean/std (no centre crop).

        The paper's order (resize, then convert); only palette and bilevel images, which PIL would resize with
        nearest-neighbour, are converted to RGB first. COCO's JPEGs are RGB, L or CMYK.
        """
        if image.mode in ("P", "1"):
            image = image.convert("RGB")
        image = image.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC).convert("RGB")
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return (pixels - mean) / std

    def load_pixels(self, path: Path) -> torch.Tensor:
        return self.preprocess(load_image(path))

    @torch.no_grad()
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, D) float32 image features of (B, 3, S, S) preprocessed pixels, unnormalised."""
        out = self.model.get_image_features(pixel_values=pixels.to(self.device))
        return _features(out, "image").float().cpu()

    def _encode_chunk(
        self, paths: Sequence[Path], batch_size: int, pool: ThreadPoolExecutor, on_batch: Callable[[int], object]
    ) -> torch.Tensor:
        rows = []
        for start in range(0, len(paths), batch_size):
            batch = list(pool.map(self.load_pixels, paths[start : start + batch_size]))
            rows.append(self.image_features(torch.stack(batch)))
            on_batch(len(batch))
        return torch.cat(rows) if rows else torch.zeros(0, self.dim)

    def _trusted_shard(self, path: Path, keys: list[str]) -> FeatureTable | None:
        """The shard at `path` if it is readable and holds exactly `keys` from this model; else None (recompute)."""
        if not path.is_file():
            return None
        try:
            meta = read_tensor_metadata(path)
            if meta.get("clip_model") != self.name or meta.get("preprocessing") != self.preprocessing:
                return None
            table = FeatureTable.load(path, dim=self.dim)
        except HyperguideError:
            return None
        return table if table.keys == keys else None

    def encode_images(
        self,
        named_paths: Sequence[tuple[str, Path]],
        cache_dir: str | Path,
        *,
        batch_size: int = 32,
        callbacks: Sequence[Callback] = (),
        shard_size: int = SHARD_SIZE,
        num_workers: int = 4,
    ) -> FeatureTable:
        """Features of every (name, path), rows sorted by name, computed in shards under `cache_dir/shards/`.

        Shard i holds the names i*shard_size .. (i+1)*shard_size-1 in sorted order. A shard already on disk with
        exactly those names, from this model and preprocessing, is reused; any other is recomputed.
        """
        if shard_size < 1 or batch_size < 1:
            raise HyperguideError(f"shard_size and batch_size must be >= 1, got {shard_size} and {batch_size}")
        by_name: dict[str, Path] = {}
        for name, path in named_paths:
            if by_name.setdefault(name, Path(path)) != Path(path):
                raise HyperguideError(f"image {name!r} is given two files: {by_name[name]} and {path}")
        names = sorted(by_name)
        shard_dir = Path(cache_dir) / "shards"
        tables: list[FeatureTable] = []
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            emit(callbacks, Progress("image features", done, len(names), "img"))

        with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
            for i in range(math.ceil(len(names) / shard_size)):
                keys = names[i * shard_size : (i + 1) * shard_size]
                path = shard_dir / f"shard-{i:05d}.safetensors"
                table = self._trusted_shard(path, keys)
                if table is None:
                    values = self._encode_chunk([by_name[k] for k in keys], batch_size, pool, advance)
                    table = FeatureTable(keys, values, source=str(path))
                    table.save(path, clip_model=self.name, preprocessing=self.preprocessing)
                else:
                    advance(len(keys))
                tables.append(table)
        values = torch.cat([t.values for t in tables]) if tables else torch.zeros(0, self.dim)
        return FeatureTable(names, values, source=f"<CLIP image features from {shard_dir}>")
