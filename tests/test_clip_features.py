"""CLIP features end to end, offline, on a tiny randomly initialised CLIPModel with a hand-built tokenizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hyperguide.data.metavqa import IMAGE_FEATURES, IMAGE_SHARDS, MANIFEST, TEXT_FEATURES
from hyperguide.data.tokens import QUESTION_TOKENS_FILE
from hyperguide.encoders.clip import ClipEncoder
from hyperguide.errors import HyperguideError
from hyperguide.universes.metavqa import load_metavqa, prepare_metavqa
from tests.helpers import MEAN, STD, write_fixture


@pytest.fixture(scope="module")
def encoder(model_dir: Path) -> ClipEncoder:
    return ClipEncoder(model_dir)


def reference_pixels(path: Path) -> torch.Tensor:
    """docs/design.md §2.5, written out: direct bicubic resize to 32x32 (no crop), RGB, the folder's mean/std."""
    image = Image.open(path).resize((32, 32), Image.Resampling.BICUBIC).convert("RGB")
    x = torch.tensor(np.asarray(image), dtype=torch.float32).permute(2, 0, 1) / 255
    return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def count_calls(enc: ClipEncoder, monkeypatch: pytest.MonkeyPatch, fail_on: int | None = None) -> list[int]:
    """Record the batch size of every model call; with `fail_on`, the fail_on-th call ever raises (once)."""
    calls: list[int] = []
    total = [0]
    original = enc.image_features

    def wrapped(pixels: torch.Tensor) -> torch.Tensor:
        calls.append(len(pixels))
        total[0] += 1
        if total[0] == fail_on:
            raise RuntimeError("simulated interruption")
        return original(pixels)

    monkeypatch.setattr(enc, "image_features", wrapped)
    return calls


def test_features_equal_a_direct_model_call(encoder: ClipEncoder, images, tmp_path: Path) -> None:
    from transformers import CLIPModel

    table = encoder.encode_images(images, tmp_path, batch_size=2)
    assert table.keys == [name for name, _ in images] and table.values.shape == (5, 16)
    assert table.values.dtype == torch.float32
    model = CLIPModel.from_pretrained(encoder.name, local_files_only=True).eval()
    with torch.no_grad():
        out = model.get_image_features(pixel_values=torch.stack([reference_pixels(p) for _, p in images]))
    direct = out if isinstance(out, torch.Tensor) else out.pooler_output
    torch.testing.assert_close(table.values, direct, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(table.values.norm(dim=-1), torch.ones(5))  # not L2-normalised

    texts = ["What color is the bus?", "the bus is red", "2 dogs"]
    batched = encoder.encode_texts(texts, batch_size=3)
    assert batched.shape == (3, 16)
    with torch.no_grad():
        tokens = encoder.tokenizer(texts[:1], return_tensors="pt")
        out = model.get_text_features(**tokens)
    alone = out if isinstance(out, torch.Tensor) else out.pooler_output
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-5)  # padding does not change features


def test_resume_reuses_shards_and_recomputes_bad_ones(encoder, images, tmp_path, monkeypatch) -> None:
    first = encoder.encode_images(images, tmp_path, batch_size=2, shard_size=2)
    shards = sorted((tmp_path / "shards").iterdir())
    assert [p.name for p in shards] == ["shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors"]
    calls = count_calls(encoder, monkeypatch)
    again = encoder.encode_images(images, tmp_path, batch_size=2, shard_size=2)
    assert calls == [] and torch.equal(first.values, again.values)

    (tmp_path / "shards" / "shard-00001.safetensors").write_bytes(b"torn")  # corrupt: recomputed
    other = ClipEncoder(encoder.name)  # wrong keys in shard 2: recomputed, not trusted
    other.encode_images(images[:4] + [("zzz", images[4][1])], tmp_path / "x", shard_size=2)
    shutil.copy(tmp_path / "x" / "shards" / "shard-00002.safetensors", tmp_path / "shards" / "shard-00002.safetensors")
    repaired = encoder.encode_images(images, tmp_path, batch_size=2, shard_size=2)
    assert calls == [2, 1] and torch.equal(first.values, repaired.values)


def test_interrupted_run_resumes_to_the_same_features(encoder, images, tmp_path, monkeypatch) -> None:
    expected = encoder.encode_images(images, tmp_path / "full", batch_size=2)
    calls = count_calls(encoder, monkeypatch, fail_on=2)
    with pytest.raises(RuntimeError, match="simulated"):
        encoder.encode_images(images, tmp_path / "cut", batch_size=2, shard_size=2)
    assert [p.name for p in (tmp_path / "cut" / "shards").iterdir()] == ["shard-00000.safetensors"]  # no temp file
    calls.clear()
    resumed = encoder.encode_images(images, tmp_path / "cut", batch_size=2, shard_size=2)
    assert calls == [2, 1]  # shard 0 was reused
    torch.testing.assert_close(resumed.values, expected.values, atol=1e-6, rtol=1e-6)


def test_corrupt_image_is_named_and_nothing_half_written(encoder, images, tmp_path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(HyperguideError, match="broken.jpg"):
        encoder.encode_images([*images[:2], ("zbroken", bad)], tmp_path / "cache", shard_size=2)
    assert [p.name for p in (tmp_path / "cache" / "shards").iterdir()] == ["shard-00000.safetensors"]


def test_model_that_cannot_load_offline_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HyperguideError, match="cannot load CLIP model"):
        ClipEncoder(tmp_path / "no-such-model")


# ------------------------------------------------------------------------------------------ prepare + load


def test_prepare_and_load_metavqa(model_dir, encoder, images, tmp_path) -> None:
    splits, coco = write_fixture(tmp_path, images)
    out = tmp_path / "features"
    prepare_metavqa(splits, coco, out, clip_model=str(model_dir), batch_size=2)
    assert sorted(p.name for p in out.iterdir()) == [IMAGE_FEATURES, MANIFEST, QUESTION_TOKENS_FILE, TEXT_FEATURES]
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["clip_model"] == str(model_dir) and manifest["image_dim"] == manifest["text_dim"] == 16
    assert manifest["n_images"] == 5 and manifest["n_tasks"] == 2 and manifest["n_texts"] == 2 + 2 + 2

    universe = load_metavqa(splits, out, clip_model=str(model_dir))
    assert universe.name == "metavqa" and universe.info["prompt_fallbacks"] == 1
    task = universe.task(0)
    assert task.support_x.shape == (2, 16) and task.answer_emb.shape == (2, 16) and task.question_emb.shape == (16,)
    torch.testing.assert_close(task.answer_emb, encoder.encode_texts(["it is red", "it is blue"]), atol=1e-5, rtol=0)
    direct = encoder.image_features(encoder.load_pixels(coco / "train2014" / "COCO_train2014_000000000001.jpg")[None])
    torch.testing.assert_close(task.support_x[:1], direct, atol=1e-5, rtol=1e-5)

    stamp = (out / IMAGE_FEATURES).stat().st_mtime_ns
    prepare_metavqa(splits, coco, out, clip_model=str(model_dir))  # complete: nothing to do
    assert (out / IMAGE_FEATURES).stat().st_mtime_ns == stamp
    with pytest.raises(HyperguideError, match="not 'another/model'"):
        load_metavqa(splits, out, clip_model="another/model")

    copy = tmp_path / "tiny-clip-copy"
    shutil.copytree(model_dir, copy)
    prepare_metavqa(splits, coco, out, clip_model=str(copy))  # another model: recomputed
    assert json.loads((out / MANIFEST).read_text())["clip_model"] == str(copy)
    assert not (out / IMAGE_SHARDS).exists()


def test_prepare_names_a_missing_image(model_dir, images, tmp_path) -> None:
    splits, coco = write_fixture(tmp_path, images)
    (coco / "val2014" / "COCO_val2014_000000000004.jpg").unlink()
    with pytest.raises(HyperguideError, match="COCO_val2014_000000000004 not found"):
        prepare_metavqa(splits, coco, tmp_path / "features", clip_model=str(model_dir))
    assert not (tmp_path / "features" / MANIFEST).exists()
