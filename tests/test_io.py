from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hyperguide.data.features import FeatureTable
from hyperguide.errors import HyperguideError
from hyperguide.io import atomic_path, read_json, read_tensors, write_json, write_tensors


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("crash mid-write")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left behind


def test_truncated_json_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "cut.json"
    bad.write_text('{"a": [1, 2')
    with pytest.raises(HyperguideError, match="cut.json.*not valid JSON"):
        read_json(bad)
    with pytest.raises(HyperguideError, match="not found.*missing.json"):
        read_json(tmp_path / "missing.json")


def test_truncated_safetensors_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    write_tensors(path, {"x": torch.arange(100.0)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(HyperguideError, match="t.safetensors"):
        read_tensors(path)


def test_feature_table_round_trip_and_dimension_check(tmp_path: Path) -> None:
    table = FeatureTable(["a", "b", "c"], torch.randn(3, 5))
    table.save(tmp_path / "f.safetensors")
    loaded = FeatureTable.load(tmp_path / "f.safetensors", dim=5)
    assert loaded.keys == ["a", "b", "c"]
    assert torch.equal(loaded.get(["c", "a"]), table.values[[2, 0]])
    with pytest.raises(HyperguideError, match="dimension 5, expected 768"):
        FeatureTable.load(tmp_path / "f.safetensors", dim=768)
    with pytest.raises(HyperguideError, match="no row for 'zz'"):
        loaded.get(["zz"])
    with pytest.raises(HyperguideError, match="expected a \\(2, dim\\) matrix"):
        FeatureTable(["a", "b"], torch.randn(3, 5))
