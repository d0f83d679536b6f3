"""`--precision`: float32 (the default) leaves every number as it was; bf16 autocasts; tf32 is refused where there is
no CUDA, and its switches are restored after a GPU run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from hyperguide.cli import main
from hyperguide.config.precision import check_precision, precision
from hyperguide.errors import HyperguideError
from hyperguide.io import read_tensors
from tests.helpers import small_bench
from tests.test_trust import one_thread, results  # noqa: F401 (one_thread: an autouse fixture)


def bench(out: Path, *extra: str) -> dict[str, Any]:
    """The small bench of test_trust.py (one thread, its `one_thread` fixture) and its results, wall clock aside."""
    assert small_bench(out, *extra) == 0
    return results(out)


def switches() -> tuple[bool, bool, bool]:
    return torch.is_autocast_enabled("cpu"), torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_float32_changes_no_switch_and_no_number(small_run: Path, tmp_path: Path) -> None:
    before = switches()
    with precision("fp32", "cpu"):
        assert switches() == before
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32
    assert switches() == before
    assert bench(tmp_path / "flag", "--precision", "fp32") == results(small_run)  # the same bench without the flag


def test_bf16_autocasts_inside_and_trains_float32_weights(tmp_path: Path) -> None:
    layer = torch.nn.Linear(4, 4)
    with precision("bf16", "cpu"):
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    assert layer(torch.randn(2, 4)).dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
    results = bench(tmp_path / "bf16", "--precision", "bf16")
    acc = results["methods"]["cond-multitask"]["zero_shot"]["acc"]["mean"]
    assert 0.0 <= acc <= 100.0
    for path in (tmp_path / "bf16").glob("*/*.safetensors"):
        assert all(t.dtype in (torch.float32, torch.int64) for t in read_tensors(path).values()), path


def test_tf32_is_refused_without_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(HyperguideError, match="tf32 switches CUDA matrix products; --device cpu has none"):
        check_precision("tf32", "cpu")
    assert main(["bench", "synthetic", "--quick", "--precision", "tf32", "--out", str(tmp_path / "never")]) == 2
    assert "use fp32" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()  # refused before anything is written


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tf32_switches_are_restored() -> None:
    before = switches()
    with precision("tf32", "cuda"):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert switches() == before
