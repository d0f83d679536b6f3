"""`--precision`: float32 (the default) leaves every number as it was; bf16 autocasts on CUDA and is refused on the
CPU; tf32 is refused where there is no CUDA, and its switches are restored after a GPU run. The precision is part of
the run: config.json, every checkpoint's JSON and results.json record it, and a folder refuses to mix precisions."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from hyperguide.cli import main
from hyperguide.config.precision import check_precision, precision
from hyperguide.errors import HyperguideError
from tests.helpers import small_bench
from tests.test_trust import one_thread, results  # noqa: F401 (one_thread: an autouse fixture)


def bench(out: Path, *extra: str) -> dict[str, Any]:
    """The small bench of test_trust.py (one thread, its `one_thread` fixture) and its results, wall clock aside."""
    assert small_bench(out, *extra) == 0
    return results(out)


def switches() -> tuple[bool, bool, bool]:
    return torch.is_autocast_enabled("cpu"), torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.mark.integration
def test_float32_changes_no_switch_and_no_number(small_run: Path, tmp_path: Path) -> None:
    before = switches()
    with precision("fp32", "cpu"):
        assert switches() == before
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32
    assert switches() == before
    assert bench(tmp_path / "flag", "--precision", "fp32") == results(small_run)  # the same bench without the flag


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_autocasts_inside_on_a_gpu() -> None:
    layer = torch.nn.Linear(4, 4).cuda()
    with precision("bf16", "cuda"):
        assert layer(torch.randn(2, 4, device="cuda")).dtype == torch.bfloat16
    assert layer(torch.randn(2, 4, device="cuda")).dtype == torch.float32


def test_bf16_is_refused_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(HyperguideError, match="bf16 is for CUDA GPUs; on --device cpu it ruins training"):
        check_precision("bf16", "cpu")
    for command in (
        ["bench", "synthetic", "--quick", "--precision", "bf16", "--out", str(tmp_path / "never")],
        ["bench", "synthetic", "--quick", "--set", "precision=bf16", "--out", str(tmp_path / "never")],
        ["train", "cond-multitask", "synthetic", "--quick", "--precision", "bf16", "--out", str(tmp_path / "never")],
    ):
        assert main(command) == 2
        assert "use fp32" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()  # refused before anything is written


@pytest.fixture
def bf16_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let bfloat16 run on the CPU (refused there by default), to show what a run records without a GPU."""
    import hyperguide.config.precision as module
    import hyperguide.run.train as train

    def allow(name: str, device: str) -> str:
        return name

    monkeypatch.setattr(module, "check_precision", allow)
    monkeypatch.setattr(train, "check_precision", allow)


@pytest.mark.integration
def test_a_run_records_its_precision_and_a_folder_holds_one(
    bf16_on_cpu: None, small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from hyperguide.checkpoint import read_metadata

    bf16 = tmp_path / "bf16"
    assert small_bench(bf16, "--precision", "bf16") == 0
    assert json.loads((bf16 / "config.json").read_text())["precision"] == "bf16"
    assert json.loads((bf16 / "results.json").read_text())["machine"]["precision"] == "bf16"
    meta = read_metadata(bf16 / "cond-multitask" / "seed0-fold0")
    assert meta["precision"] == "bf16" and meta["fingerprint"]["config.precision"] == "bf16"
    # a float32 checkpoint keeps the fingerprint it had before precision was recorded: no key for it
    fp32 = read_metadata(small_run / "cond-multitask" / "seed0-fold0")
    assert fp32["precision"] == "fp32" and "config.precision" not in fp32["fingerprint"]
    assert json.loads((small_run / "results.json").read_text())["machine"]["precision"] == "fp32"
    capsys.readouterr()

    # the probe's case: a float32 bench on the bf16 folder reused its checkpoints and reported them as its own
    assert small_bench(bf16) == 2
    assert "differs in: precision" in capsys.readouterr().err
    copy = tmp_path / "fp32"
    shutil.copytree(small_run, copy)
    assert small_bench(copy, "--precision", "bf16") == 2
    assert "differs in: precision" in capsys.readouterr().err
    assert main(["eval", str(copy), "--precision", "bf16"]) == 2
    assert "was computed in fp32 (its config.json)" in capsys.readouterr().err


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
