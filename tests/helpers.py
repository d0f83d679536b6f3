"""Helpers of the test suite: tiny configs and a tiny CLIP model with a hand-built tokenizer, made on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hyperguide.config import CollectConfig, EvalConfig, HyperLDMConfig, MethodConfig, RunConfig, TrainConfig
from hyperguide.data.tasks import Task
from hyperguide.meta.methods import Method
from hyperguide.rows import parse_row
from hyperguide.trained.folder import RunFolder
from hyperguide.trained.loading import load_row
from hyperguide.universes import MetaVQAOptions, prepare_universe

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)  # the tiny CLIP's preprocessing

# Every row that needs no guidance stage, trained in seconds on `synthetic`.
TINY = RunConfig(
    universe="synthetic",
    seeds=(0, 1),
    methods=(
        "chance", "majority", "clip-zeroshot", "uncond-multitask", "uncond-mnet-maml", "uncond-hnet-maml",
        "cond-multitask", "cond-multitask-film", "cond-hnet-maml", "oracle",
    ),
    method=MethodConfig(adapter_hidden=16, latent_dim=8, hnet_hidden=(32,)),
    train=TrainConfig(epochs=15, meta_batch_size=8, max_examples=32),
    eval=EvalConfig(k_shots=("1", "full")),
)  # fmt: skip


def byte_chars() -> list[str]:
    """The 256 printable characters that byte-level BPE uses for the 256 bytes (GPT-2 / CLIP)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def make_tiny_clip(folder: Path) -> Path:
    """A randomly initialised CLIPModel (16-d projections, 32x32 images) and its tokenizer files in `folder`."""
    from transformers import CLIPConfig, CLIPModel

    chars = byte_chars()
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": 256 + i for i, c in enumerate(chars)}
    bos, eos = len(vocab), len(vocab) + 1
    vocab |= {"<|startoftext|>": bos, "<|endoftext|>": eos}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")  # no merges: one token per character
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CLIPTokenizer"}))
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": MEAN, "image_std": STD}))
    torch.manual_seed(0)
    text = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=40,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    return folder


def make_images(folder: Path) -> list[tuple[str, Path]]:
    """Five small images of several sizes, modes and formats in `folder`, as (name, path)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    named = []
    for i, (size, mode, ext) in enumerate(
        [
            ((48, 40), "RGB", "jpg"),
            ((64, 32), "RGB", "png"),
            ((40, 40), "L", "png"),
            ((33, 50), "RGBA", "png"),
            ((32, 32), "RGB", "jpg"),
        ]
    ):
        channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
        array = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
        path = folder / f"img{i}.{ext}"
        Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode).save(path)
        named.append((f"img{i}", path))
    return named


def write_fixture(root: Path, images) -> tuple[Path, Path]:
    names = [
        "COCO_train2014_000000000001",
        "COCO_train2014_000000000002",
        "COCO_val2014_000000000003",
        "COCO_val2014_000000000004",
        "COCO_train2014_000000000005",
    ]
    coco = root / "coco"
    for i, name in enumerate(names):
        target = coco / (name.split("_")[1] if i < 4 else "") / f"{name}.jpg"  # the last one at the top level
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(images[i][1]).convert("RGB").save(target, format="JPEG")
    splits = root / "splits"
    splits.mkdir()
    train = {
        "What color is it?": {
            "train": [[names[0], "red"], [names[2], "blue"]],
            "test": [[names[1], "red"], [names[3], "blue"]],
            "answers": ["red", "blue"],
        }
    }
    test = {
        "How many cats?": {
            "train": [[names[4], "1"], [names[0], "2"]],
            "test": [[names[1], "1"], [names[2], "2"]],
            "answers": ["1", "2"],
        }
    }
    (splits / "meta_train.json").write_text(json.dumps(train))
    (splits / "meta_test.json").write_text(json.dumps(test))
    (splits / "prompt_meta.json").write_text(json.dumps({"What color is it?": "it is {}"}))
    return splits, coco


def tiny_metavqa(root: Path, model_dir: Path, images) -> tuple[MetaVQAOptions, RunConfig, Path]:
    """The fixture's metavqa universe prepared under `root` with the tiny CLIP of `model_dir`, a config of
    cond-multitask, hnet+hyperldm and oracle that trains on it in seconds, and one of its COCO images."""
    splits, coco = write_fixture(root, images)
    options = MetaVQAOptions(
        home=root / "home", splits_dir=splits, coco_root=coco, clip_model=str(model_dir), batch_size=2
    )
    prepare_universe("metavqa", options)
    config = RunConfig(
        universe="metavqa",
        seeds=(0,),
        methods=("cond-multitask", "hnet+hyperldm", "oracle"),
        method=MethodConfig(adapter_hidden=4, latent_dim=4, hnet_hidden=(8,)),
        train=TrainConfig(epochs=2, meta_batch_size=2),
        collect=CollectConfig(n_aug=2),
        hyperldm=HyperLDMConfig(num_steps=20, epochs=3, min_steps=0, hidden_dims=(8,), time_dim=8, gammas=(1.0,)),
    )
    return options, config, next(coco.rglob("*.jpg"))


def load_trained(row: str, tasks: list[Task], config: RunConfig, out: Path, seed: int, fold: int) -> Method:
    """The trained model of a table row of the run in `out` (its parts loaded from the stage checkpoints)."""
    return load_row(parse_row(row), tasks, config, RunFolder(out), seed, fold).method


# A small bench: a meta-trained row, a guidance row and its chain of stages (uncond-hnet-maml -> latents ->
# hyperldm-hnet), one gamma; about two seconds on `synthetic`.
SMALL = ["--set", 'methods=["chance","cond-multitask","hnet+hyperldm"]', "--set", "hyperldm.gammas=[1]"]


def small_bench(out: Path, *extra: str, small: bool = True) -> int:
    """`hyperguide bench synthetic --quick` into `out` (the small bench unless `small=False`), in this process."""
    from hyperguide.cli import main

    return main(["bench", "synthetic", "--quick", "--quiet", "--out", str(out), *(SMALL if small else []), *extra])
