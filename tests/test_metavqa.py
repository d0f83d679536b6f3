"""Meta-VQA loader: the authors' split files (when shared/ has them), stand-in features, and file errors."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

from hyperguide.data.features import FeatureTable
from hyperguide.data.metavqa import (
    IMAGE_FEATURES,
    MANIFEST,
    TEXT_FEATURES,
    image_keys,
    load_split_files,
    standin_universe,
    text_keys,
)
from hyperguide.data.metavqa_rules import split_meta_train_test
from hyperguide.errors import HyperguideError
from hyperguide.io import write_json
from hyperguide.universes.metavqa import load_metavqa

SHARED = Path(__file__).resolve().parents[2] / "shared/data/metavqa"
needs_shared = pytest.mark.skipif(not (SHARED / "meta_train.json").is_file(), reason="shared Meta-VQA files absent")


# ------------------------------------------------------------------------------------------ the authors' files


@pytest.fixture(scope="module")
def real():
    return load_split_files(SHARED)


@needs_shared
def test_real_split_files_match_the_paper(real) -> None:
    assert real.name == "metavqa"
    assert len(real.meta_train) == 870 and len(real.meta_test) == 373
    assert real.meta_train == tuple(range(870)) and real.meta_test == tuple(range(870, 1243))
    assert sum(t.n_pairs for t in real.tasks) == 104_112
    assert sum(len(real.tasks[i].support_images) for i in real.meta_train) == 51_491
    assert round(statistics.fmean(t.n_answers for t in real.tasks), 2) == 9.14
    assert real.info["prompt_fallbacks"] == 0 and real.info["label_order_checked"]
    assert real.held_out_concepts == ("dog", "cat")


@needs_shared
def test_real_label_order_is_ques_ans_count(real) -> None:
    counts = json.loads((SHARED / "ques_ans_count.json").read_text())
    train = json.loads((SHARED / "meta_train.json").read_text())
    assert [t.question for t in real.tasks[:870]] == list(train)
    for spec in real.tasks:
        assert list(counts[spec.question]) == list(spec.answers)
    spec = real.tasks[0]
    pairs = train[spec.question]["train"]
    assert [spec.answers[y] for y in spec.support_labels] == [answer for _, answer in pairs]
    template = json.loads((SHARED / "prompt_meta.json").read_text())[spec.question]
    assert spec.prompts[0] == template.format(spec.answers[0])


@needs_shared
def test_real_task_split_is_the_seeded_shuffle_of_ques_ans_count_order() -> None:
    order = list(json.loads((SHARED / "ques_ans_count.json").read_text()))
    train, test = split_meta_train_test(order)
    assert train == list(json.loads((SHARED / "meta_train.json").read_text()))
    assert test == list(json.loads((SHARED / "meta_test.json").read_text()))


@needs_shared
def test_real_standin_features_are_768_d() -> None:
    universe = standin_universe(SHARED)
    assert universe.name == "metavqa-standin" and universe.has_features
    assert universe.image_features.dim == universe.text_features.dim == 768
    assert len(universe.image_features) == 64_665
    assert universe.image_features.values.dtype == torch.float32
    task = universe.task(0)
    assert task.support_x.shape == (len(universe.tasks[0].support_images), 768)
    assert task.answer_emb.shape == (universe.tasks[0].n_answers, 768)


# ------------------------------------------------------------------------------------------ small fixtures

TASKS_TRAIN = {
    "What color is the bus?": {
        "train": [
            ["COCO_train2014_000000000001", "red"],
            ["COCO_train2014_000000000002", "red"],
            ["COCO_val2014_000000000003", "blue"],
        ],
        "test": [["COCO_train2014_000000000004", "red"], ["COCO_val2014_000000000005", "blue"]],
        "answers": ["red", "blue"],
    },
    "How many dogs?": {
        "train": [["COCO_train2014_000000000001", "2"], ["COCO_train2014_000000000006", "3"]],
        "test": [["COCO_train2014_000000000007", "2"], ["COCO_train2014_000000000008", "3"]],
        "answers": ["2", "3"],
    },
}
TASKS_TEST = {
    "What is the cat on?": {
        "train": [["COCO_val2014_000000000009", "bed"], ["COCO_val2014_000000000010", "couch"]],
        "test": [["COCO_val2014_000000000011", "couch"], ["COCO_val2014_000000000012", "bed"]],
        "answers": ["bed", "couch"],
    }
}
PROMPTS = {"What color is the bus?": "the bus is {}", "How many dogs?": "{} dogs", "What is the cat on?": "on {}"}


def write_splits(folder: Path, *, prompts: dict | None = PROMPTS, counts: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta_train.json").write_text(json.dumps(TASKS_TRAIN))
    (folder / "meta_test.json").write_text(json.dumps(TASKS_TEST))
    if prompts is not None:
        (folder / "prompt_meta.json").write_text(json.dumps(prompts))
    if counts:
        qa = {}
        for q, t in {**TASKS_TRAIN, **TASKS_TEST}.items():
            pairs = t["train"] + t["test"]
            qa[q] = {a: sum(b == a for _, b in pairs) for a in t["answers"]}
        (folder / "ques_ans_count.json").write_text(json.dumps(qa))
    return folder


def test_small_split_files_load(tmp_path: Path) -> None:
    universe = load_split_files(write_splits(tmp_path))
    assert [t.question for t in universe.tasks] == [*TASKS_TRAIN, *TASKS_TEST]
    assert universe.meta_train == (0, 1) and universe.meta_test == (2,)
    bus = universe.tasks[0]
    assert bus.prompts == ("the bus is red", "the bus is blue")
    assert bus.support_labels == (0, 0, 1) and bus.query_labels == (0, 1)
    assert universe.tasks[2].query_images == ("COCO_val2014_000000000011", "COCO_val2014_000000000012")
    assert len(image_keys(universe)) == 12 and "How many dogs?" in text_keys(universe)


def test_missing_template_falls_back_to_the_answer(tmp_path: Path) -> None:
    universe = load_split_files(write_splits(tmp_path, prompts={"How many dogs?": "{} dogs"}))
    assert universe.info["prompt_fallbacks"] == 2
    assert universe.tasks[0].prompts == ("red", "blue") and universe.tasks[1].prompts == ("2 dogs", "3 dogs")


def test_absent_default_prompt_file_warns_and_falls_back(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="prompt_meta.json"):
        universe = load_split_files(write_splits(tmp_path, prompts=None))
    assert universe.info["prompt_fallbacks"] == 3 and universe.info["prompts_file"] is None


def test_explicit_prompt_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(HyperguideError, match="elsewhere.json"):
        load_split_files(write_splits(tmp_path), tmp_path / "elsewhere.json")


def test_missing_split_file_names_it(tmp_path: Path) -> None:
    write_splits(tmp_path)
    (tmp_path / "meta_test.json").unlink()
    with pytest.raises(HyperguideError, match="meta_test.json"):
        load_split_files(tmp_path)


def test_truncated_split_file_names_it(tmp_path: Path) -> None:
    write_splits(tmp_path)
    text = (tmp_path / "meta_train.json").read_text()
    (tmp_path / "meta_train.json").write_text(text[: len(text) // 2])
    with pytest.raises(HyperguideError, match="meta_train.json is not valid JSON"):
        load_split_files(tmp_path)


def test_label_order_disagreement_is_an_error(tmp_path: Path) -> None:
    write_splits(tmp_path)
    qa = json.loads((tmp_path / "ques_ans_count.json").read_text())
    qa["How many dogs?"] = {"3": 2, "2": 2}
    (tmp_path / "ques_ans_count.json").write_text(json.dumps(qa))
    with pytest.raises(HyperguideError, match="ques_ans_count.json.*How many dogs"):
        load_split_files(tmp_path)


def test_unknown_answer_and_bad_template_are_errors(tmp_path: Path) -> None:
    write_splits(tmp_path, counts=False)
    (tmp_path / "prompt_meta.json").write_text(json.dumps({**PROMPTS, "How many dogs?": "dogs"}))
    with pytest.raises(HyperguideError, match="template of 'How many dogs\\?'"):
        load_split_files(tmp_path)
    bad = json.loads(json.dumps(TASKS_TRAIN))
    bad["How many dogs?"]["test"].append(["COCO_train2014_000000000099", "4"])
    (tmp_path / "meta_train.json").write_text(json.dumps(bad))
    (tmp_path / "prompt_meta.json").write_text(json.dumps(PROMPTS))
    with pytest.raises(HyperguideError, match="meta_train.json.*answer '4'"):
        load_split_files(tmp_path)


def test_standin_is_deterministic(tmp_path: Path) -> None:
    write_splits(tmp_path)
    a, b, c = standin_universe(tmp_path, dim=8), standin_universe(tmp_path, dim=8), standin_universe(tmp_path, 8, 1)
    assert torch.equal(a.image_features.values, b.image_features.values)
    assert torch.equal(a.text_features.values, b.text_features.values)
    assert not torch.equal(a.image_features.values, c.image_features.values)
    g = torch.Generator().manual_seed(0)
    images, texts = image_keys(a), text_keys(a)
    assert a.image_features.keys == images and a.text_features.keys == texts
    assert torch.equal(a.image_features.values, torch.randn(len(images), 8, generator=g))
    assert torch.equal(a.text_features.values, torch.randn(len(texts), 8, generator=g))


# ------------------------------------------------------------------------------------------ prepared features


def write_features(folder: Path, splits: Path, *, image_dim: int = 4, text_dim: int = 4, drop_image: bool = False):
    universe = load_split_files(splits)
    images, texts = image_keys(universe), text_keys(universe)
    if drop_image:
        images = images[1:]
    FeatureTable(images, torch.ones(len(images), image_dim)).save(folder / IMAGE_FEATURES)
    FeatureTable(texts, torch.ones(len(texts), text_dim)).save(folder / TEXT_FEATURES)
    write_json(folder / MANIFEST, {"format": 1, "clip_model": "tiny", "image_dim": image_dim, "text_dim": text_dim})


def test_load_metavqa_checks_manifest_dims_and_keys(tmp_path: Path) -> None:
    splits, out = write_splits(tmp_path / "splits"), tmp_path / "out"
    with pytest.raises(HyperguideError, match="manifest.json missing"):
        load_metavqa(splits, out)
    write_features(out, splits)
    with pytest.warns(UserWarning, match="questions fall back to their pooled features"):  # no model 'tiny' here
        universe = load_metavqa(splits, out)
    assert universe.has_features and universe.question_tokens is None and universe.task(2).query_x.shape == (2, 4)
    with pytest.raises(HyperguideError, match="computed with 'tiny', not 'other'"):
        load_metavqa(splits, out, clip_model="other")
    write_features(out, splits, text_dim=5)
    with pytest.raises(HyperguideError, match="same dimension"):
        load_metavqa(splits, out)
    write_features(out, splits, drop_image=True)
    with pytest.raises(HyperguideError, match="lacks 1 image"):
        load_metavqa(splits, out)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"text_dim": None}, "field 'text_dim' must be a positive integer (it is missing)"),
        ({"text_dim": "4"}, "field 'text_dim' must be a positive integer (got '4')"),
        ({"image_dim": 0}, "field 'image_dim' must be a positive integer (got 0)"),
        ({"clip_model": 7}, "field 'clip_model' must be a non-empty string (got 7)"),
    ],
)
def test_load_metavqa_checks_the_manifest_types(tmp_path: Path, change: dict, message: str) -> None:
    """Probe N32: a manifest of the wrong shape gave a KeyError, or `"text_dim": "384"` the message "dimension 384,
    expected 384"; now the file and the field are named."""
    splits, out = write_splits(tmp_path / "splits"), tmp_path / "out"
    write_features(out, splits)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest = {k: v for k, v in {**manifest, **change}.items() if v is not None}
    write_json(out / MANIFEST, manifest)
    with pytest.raises(HyperguideError) as e:
        load_metavqa(splits, out)
    assert str(e.value) == (
        f"universe manifest {out / MANIFEST}: {message}: prepare the features again (hyperguide prepare metavqa)"
    )
    write_json(out / MANIFEST, [1, 2])
    with pytest.raises(HyperguideError, match="is not a format-1 manifest"):
        load_metavqa(splits, out)


def test_prepare_metavqa_without_coco_root_writes_nothing(isolated_home: Path, tmp_path: Path) -> None:
    """Probe N55: `prepare metavqa --vqa-root D` without --coco-root built and wrote the split files, then refused."""
    from hyperguide.universes import MetaVQAOptions, prepare_universe
    from tests.test_vqa_v2 import fixture_records, write_vqa

    write_vqa(tmp_path / "vqa", fixture_records(), subfolders=True)
    with pytest.raises(HyperguideError, match=r"metavqa features need the COCO 2014 images: pass --coco-root DIR"):
        prepare_universe("metavqa", MetaVQAOptions(vqa_root=tmp_path / "vqa"))
    assert not (isolated_home / "metavqa").exists()
