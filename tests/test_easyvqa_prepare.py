"""End to end: prepare the embedded default universe (with a one-epoch image tower), load it, and crash safety."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hyperguide.cli import main
from hyperguide.errors import HyperguideError
from hyperguide.universes import EasyVQAOptions, load_universe, prepare_universe
from hyperguide.universes.base import manifest_matches


@pytest.mark.integration  # trains easyvqa's image tower
def test_prepare_then_load_easyvqa(isolated_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "easyvqa", "--tower-epochs", "1", "--quiet"]) == 0
    assert "easyvqa: prepared" in capsys.readouterr().out
    universe = load_universe("easyvqa")
    manifest = universe.info["manifest"]
    assert manifest["image_tower"]["test_color_accuracy"] > 50.0  # 8 colours: chance is 12.5%
    task = universe.task(universe.meta_test[0])
    assert task.support_x.shape == (len(universe.tasks[universe.meta_test[0]].support_images), 384)
    assert task.answer_emb.shape == (task.n_answers, 384) and task.question_emb.shape == (384,)
    assert torch.allclose(task.answer_emb.norm(dim=-1), torch.ones(task.n_answers), atol=1e-5)

    # A second run with the same request reuses the cache; a different request does not trust it.
    assert main(["prepare", "easyvqa", "--tower-epochs", "1", "--quiet"]) == 0
    assert "reused cached preparation" in capsys.readouterr().out
    assert manifest_matches(isolated_home / "easyvqa", {"tower_epochs": 2}) is None

    # The answer-prompt style only changes which prepared texts are used.
    bare = load_universe("easyvqa", prompts="declarative")
    assert bare.task(0).answer_emb.shape == universe.task(0).answer_emb.shape


def test_crash_during_prepare_leaves_nothing_trusted(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hyperguide.universes.easyvqa as easyvqa

    def crash(*args: object, **kwargs: object) -> dict:
        raise KeyboardInterrupt

    monkeypatch.setattr(easyvqa, "prepare_easyvqa_image_features", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_universe("easyvqa", EasyVQAOptions(tower_epochs=1))
    assert (isolated_home / "easyvqa" / "text_features.safetensors").is_file()  # finished work is on disk
    assert not (isolated_home / "easyvqa" / "manifest.json").exists()  # but not trusted
    with pytest.raises(HyperguideError, match="not prepared"):
        load_universe("easyvqa")


def test_wrong_feature_dimension_is_reported(isolated_home: Path) -> None:
    from hyperguide.data.features import FeatureTable
    from hyperguide.io import write_json

    folder = isolated_home / "easyvqa"
    FeatureTable(["a"], torch.zeros(1, 512)).save(folder / "text_features.safetensors")
    write_json(folder / "manifest.json", {"request": {"universe": "easyvqa"}, "text_dim": 384, "image_dim": 384})
    with pytest.raises(HyperguideError, match="text_features.safetensors has features of dimension 512, expected 384"):
        load_universe("easyvqa")
