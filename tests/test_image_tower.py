"""The image tower: its contrastive loss, training on a tiny synthetic set, persistence, and easy-VQA attributes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from hyperguide.data.easyvqa_images import attributes_from_qa, caption_vocabulary, captions_for, read_image
from hyperguide.encoders.image_tower import (
    ImageTower,
    encode,
    load_tower,
    multi_positive_info_nce,
    positive_targets,
    save_tower,
    zero_shot_accuracy,
)
from hyperguide.encoders.tower_training import augment, train_image_tower
from hyperguide.errors import HyperguideError

# ------------------------------------------------------------------------------------------------------- the loss


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_multi_positive_equals_plain_info_nce_when_captions_differ() -> None:
    img, txt = _unit(8, 16, 0), _unit(8, 16, 1)
    scale = torch.tensor(math.log(10.0))
    logits = 10.0 * img @ txt.T
    labels = torch.arange(8)
    plain = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    ours = multi_positive_info_nce(img, txt, torch.arange(8) * 3 + 5, scale)
    torch.testing.assert_close(ours, plain)


def test_multi_positive_info_nce_is_symmetric() -> None:
    img, txt = _unit(10, 16, 2), _unit(10, 16, 3)
    ids = torch.tensor([0, 1, 1, 2, 0, 3, 3, 3, 4, 1])
    scale = torch.tensor(2.0)
    torch.testing.assert_close(
        multi_positive_info_nce(img, txt, ids, scale), multi_positive_info_nce(txt, img, ids, scale)
    )


def test_positive_targets_are_uniform_over_shared_captions() -> None:
    targets = positive_targets(torch.tensor([7, 2, 7, 7]))
    expected = torch.tensor(
        [[1 / 3, 0, 1 / 3, 1 / 3], [0, 1, 0, 0], [1 / 3, 0, 1 / 3, 1 / 3], [1 / 3, 0, 1 / 3, 1 / 3]]
    )
    torch.testing.assert_close(targets, expected)


def test_shared_captions_are_not_penalised_as_negatives() -> None:
    """Two images with the same caption, both matched perfectly: multi-positive loss is near its minimum."""
    txt = _unit(3, 16, 4)
    ids = torch.tensor([0, 0, 1, 2])
    batch_txt = txt[ids]
    loss = multi_positive_info_nce(batch_txt, batch_txt, ids, torch.tensor(math.log(100.0)))
    # The best achievable: uniform over the two identical columns for the shared caption.
    floor = 0.5 * math.log(2.0)
    assert loss.item() == pytest.approx(floor, abs=1e-3)


def test_zero_shot_accuracy_is_cosine_argmax() -> None:
    classes = torch.eye(3)
    feats = torch.tensor([[5.0, 0.1, 0.0], [0.0, 0.2, 0.1], [0.0, 0.0, -1.0], [0.1, 0.0, 3.0]])
    assert zero_shot_accuracy(feats, torch.tensor([0, 1, 2, 2]), classes) == pytest.approx(75.0)


# ------------------------------------------------------------------------------------- a tiny synthetic world


COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}
SHAPES = ("square", "circle")


def _draw(colour: str, shape: str, rng: torch.Generator) -> torch.Tensor:
    im = Image.new("RGB", (64, 64), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    size = int(torch.randint(18, 34, (1,), generator=rng))
    x0, y0 = (int(v) for v in torch.randint(2, 62 - size, (2,), generator=rng))
    box = (x0, y0, x0 + size, y0 + size)
    (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=COLOURS[colour])
    return torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous()


@pytest.fixture(scope="module")
def toy() -> dict:
    rng = torch.Generator().manual_seed(0)
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    labels = [combos[i % 4] for i in range(64)]
    images = torch.stack([_draw(c, s, rng) for c, s in labels])
    captions = [f"{c} {s}" for c, s in combos] + list(COLOURS) + list(SHAPES)
    index = {t: i for i, t in enumerate(captions)}
    caption_ids = [[index[f"{c} {s}"], index[c], index[s]] for c, s in labels]
    embs = _unit(len(captions), 32, 123)  # random but fixed "text tower"
    return {"images": images, "labels": labels, "captions": captions, "ids": caption_ids, "embs": embs}


def _train(toy: dict, seed: int = 0, epochs: int = 25) -> tuple[ImageTower, list[dict]]:
    return train_image_tower(
        toy["images"],
        toy["ids"],
        toy["embs"],
        epochs=epochs,
        batch_size=32,
        lr=3e-3,
        seed=seed,
        width=16,
        depth=3,
        warmup_steps=5,
    )


@pytest.fixture(scope="module")
def trained(toy: dict) -> tuple[ImageTower, list[dict]]:
    return _train(toy)


def test_tiny_tower_learns_colour_and_shape(toy: dict, trained: tuple[ImageTower, list[dict]]) -> None:
    tower, history = trained
    losses = [h["loss"] for h in history]
    assert len(losses) == 25 * 2
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    feats = encode(tower, toy["images"])
    assert feats.shape == (64, 32) and feats.dtype == torch.float32
    colour_embs = toy["embs"][[toy["captions"].index(c) for c in COLOURS]]
    shape_embs = toy["embs"][[toy["captions"].index(s) for s in SHAPES]]
    colour_labels = torch.tensor([list(COLOURS).index(c) for c, _ in toy["labels"]])
    shape_labels = torch.tensor([SHAPES.index(s) for _, s in toy["labels"]])
    assert zero_shot_accuracy(feats, colour_labels, colour_embs) >= 95.0  # chance is 50
    assert zero_shot_accuracy(feats, shape_labels, shape_embs) >= 85.0  # chance is 50


def test_training_is_deterministic_for_a_seed(toy: dict, trained: tuple[ImageTower, list[dict]]) -> None:
    tower, history = trained
    again, history_again = _train(toy, seed=0)
    assert [h["loss"] for h in history_again] == [h["loss"] for h in history]
    for (name, a), (_, b) in zip(tower.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    _, other = _train(toy, seed=1, epochs=1)
    assert [h["loss"] for h in other] != [h["loss"] for h in history[:2]]


def test_save_load_round_trips_bit_exactly(toy: dict, trained: tuple[ImageTower, list[dict]], tmp_path) -> None:
    tower, _ = trained
    save_tower(tmp_path / "tower", tower, {"seed": 0, "note": "toy"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tower.json", "tower.safetensors"]
    loaded = load_tower(tmp_path / "tower")
    assert loaded.architecture() == tower.architecture()
    for (name, a), (_, b) in zip(tower.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert torch.equal(encode(loaded, toy["images"]), encode(tower, toy["images"]))
    meta = json.loads((tmp_path / "tower.json").read_text())
    assert meta["config"] == {"seed": 0, "note": "toy"}


def test_load_tower_names_a_bad_file(trained: tuple[ImageTower, list[dict]], tmp_path) -> None:
    with pytest.raises(HyperguideError, match="not found"):
        load_tower(tmp_path / "missing")
    save_tower(tmp_path / "t", trained[0], {})
    (tmp_path / "t.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(HyperguideError, match="t.safetensors"):
        load_tower(tmp_path / "t")


def test_augment_keeps_shape_dtype_and_is_seeded(toy: dict) -> None:
    x = toy["images"][:8]
    a = augment(x, torch.Generator().manual_seed(5))
    b = augment(x, torch.Generator().manual_seed(5))
    assert a.shape == x.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    assert augment(x, torch.Generator().manual_seed(5), max_shift=0).sum() == x.sum()  # flips only: same pixels


def test_training_rejects_bad_caption_indices(toy: dict) -> None:
    with pytest.raises(HyperguideError, match="caption index"):
        train_image_tower(
            toy["images"][:4], [[0], [1], [99], [2]], toy["embs"], epochs=1, batch_size=2, lr=1e-3, seed=0
        )


# ------------------------------------------------------------------------------------------ easy-VQA attributes


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("what color is the shape?", "red"), ("what shape is in the image?", "circle")], ("red", "circle")),
        ([("what is the color of the triangle?", "teal")], ("teal", "triangle")),
        ([("what is the blue shape?", "rectangle")], ("blue", "rectangle")),
        ([("what shape does the image contain?", "triangle")], (None, "triangle")),
        ([("is there a red shape?", "yes"), ("is a circle present?", "yes")], ("red", "circle")),
        ([("is there not a circle?", "no"), ("is no gray shape present?", "no")], ("gray", "circle")),
        ([("does the image not contain a triangle?", "no")], (None, "triangle")),
        ([("does the image contain a yellow shape?", "yes")], ("yellow", None)),
        ([("is there a red shape?", "no"), ("is there not a circle in the image?", "yes")], (None, None)),
        # Ruling out all colours but one leaves that one.
        (
            [(f"is there a {c} shape?", "no") for c in ("red", "green", "blue", "black", "gray", "teal", "brown")]
            + [("is there not a rectangle?", "yes"), ("is a triangle present?", "no")],
            ("yellow", "circle"),
        ),
        # Contradictions give None rather than a guess.
        ([("what color is the shape?", "red"), ("is there a red shape?", "no")], (None, None)),
        ([], (None, None)),
    ],
)
def test_attributes_from_questions(pairs: list[tuple[str, str]], expected: tuple[str | None, str | None]) -> None:
    attrs = attributes_from_qa(pairs)
    assert (attrs["color"], attrs["shape"]) == expected


def test_captions_cover_full_and_partial_phrasings() -> None:
    caps = captions_for("red", "circle")
    for wanted in ("a red circle", "a picture of a red circle", "a red circle on a white background", "a red shape"):
        assert wanted in caps
    assert "a circle" in caps and len(caps) == len(set(caps))
    assert captions_for("red", None) == [c for c in caps if "circle" not in c]
    assert captions_for(None, None) == []
    vocab, ids = caption_vocabulary([{"color": "red", "shape": "circle"}, {"color": None, "shape": "circle"}])
    assert [vocab[i] for i in ids[1]] == captions_for(None, "circle")
    assert set(ids[1]) < set(ids[0])


def test_read_image_names_a_broken_png(tmp_path) -> None:
    bad = tmp_path / "7.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(HyperguideError, match="7.png"):
        read_image(bad)
    good = tmp_path / "8.png"
    Image.new("RGBA", (64, 64), (1, 2, 3, 255)).save(good)
    img = read_image(good)
    assert img.shape == (3, 64, 64) and img.dtype == torch.uint8 and img[:, 0, 0].tolist() == [1, 2, 3]


@pytest.mark.slow
def test_full_easyvqa_tower_reaches_high_zero_shot_accuracy(tmp_path) -> None:
    from hyperguide.data.features import FeatureTable
    from hyperguide.encoders.text import TextEncoder
    from hyperguide.universes.easyvqa import prepare_easyvqa_image_features

    report = prepare_easyvqa_image_features(tmp_path, TextEncoder(), seed=0)
    assert report["test_color_accuracy"] > 95.0 and report["test_shape_accuracy"] > 95.0
    table = FeatureTable.load(tmp_path / "image_features.safetensors", dim=384)
    assert len(table) == 5000 and "train/0" in table and "test/0" in table
    assert load_tower(tmp_path / "image_tower").out_dim == 384
