"""Trackers (`--log`): TensorBoard event files hold the numbers of the run folder's metrics.jsonl and are read back
with the tensorboard package's own reader; W&B (a stub module here) gets the same numbers, offline unless asked;
neither package is imported by a run that did not ask; a bad `--log` is refused before anything is trained."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hyperguide.cli import build_parser, main
from hyperguide.config import RunConfig
from hyperguide.errors import HyperguideError
from hyperguide.events import EpochEnded, RowEvaluated, RowStarted, StageStarted
from hyperguide.trackers import TensorBoardTracker, TrackerSpec, parse_tracker, tracking

pytest.importorskip("tensorboard")  # in the dev extra, which CI installs; W&B is a stub module here
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

STAGE = "cond-multitask"
TRAIN = ["train", STAGE, "synthetic", "--quick", "--seeds", "0", "--set", "train.epochs=3", "--quiet"]


def records(run: Path) -> list[dict[str, float]]:
    lines = (run / STAGE / "seed0-fold0.metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard run folder, read with TensorBoard's own reader: tag -> [(step, value)]."""
    reader = EventAccumulator(str(folder))
    reader.Reload()
    return {tag: [(e.step, e.value) for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}


def assert_same_numbers(logged: dict[str, list[tuple[int, float]]], jsonl: list[dict[str, float]]) -> None:
    assert set(logged) == {f"{STAGE}/{key}" for key in jsonl[0] if key != "step"}
    for key in jsonl[0]:
        if key != "step":
            expected = [(int(r["step"]), pytest.approx(r[key], rel=1e-6)) for r in jsonl]  # event files hold float32
            assert logged[f"{STAGE}/{key}"] == expected


def test_train_with_tensorboard_writes_event_files_holding_the_jsonl_numbers(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run), "--log", "tensorboard"]) == 0
    jsonl = records(run)
    assert len(jsonl) == 3 and {"loss", "fit_acc"} <= set(jsonl[0])
    folder = run / "tensorboard" / STAGE / "seed0-fold0"  # one TensorBoard run per (stage, seed, fold)
    assert list(folder.glob("events.out.tfevents.*"))
    assert_same_numbers(scalars(folder), jsonl)


def test_tensorboard_dir_writes_where_asked(tmp_path: Path) -> None:
    run, board = tmp_path / "run", tmp_path / "boards" / "mine"
    assert main([*TRAIN, "--out", str(run), "--log", f"tensorboard:{board}"]) == 0
    assert not (run / "tensorboard").exists()
    assert_same_numbers(scalars(board / STAGE / "seed0-fold0"), records(run))


def test_a_stage_that_starts_again_starts_its_tensorboard_run_again(tmp_path: Path) -> None:
    def stage(loss: float) -> None:
        tracker = TensorBoardTracker(tmp_path)
        tracker(StageStarted(STAGE, 1, 2, tasks=5))
        tracker(EpochEnded(STAGE, 1, 1, {"epoch": 1, "step": 4, "loss": loss}))
        tracker.close()  # killed before StageFinished: close() still flushes

    stage(9.0)
    stage(1.5)
    folder = tmp_path / STAGE / "seed1-fold2"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    assert scalars(folder)[f"{STAGE}/loss"] == [(4, 1.5)]

    tracker = TensorBoardTracker(tmp_path)
    tracker(RowStarted("hnet+hyperldm@2"))
    tracker(RowEvaluated("hnet+hyperldm@2", 2.5))
    tracker.close()
    assert scalars(tmp_path / "evaluate") == {"evaluate/seconds/hnet+hyperldm@2": [(0, 2.5)]}


class FakeRun:
    def __init__(self, calls: list[tuple[str, Any]]) -> None:
        self.calls = calls

    def define_metric(self, name: str, step_metric: str | None = None) -> None:
        self.calls.append(("define_metric", (name, step_metric)))

    def log(self, data: dict[str, float]) -> None:
        self.calls.append(("log", dict(data)))

    def finish(self, exit_code: int | None = None) -> None:
        self.calls.append(("finish", exit_code))


@pytest.fixture
def wandb_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """A stub `wandb` module recording init, define_metric, log and finish; WANDB_MODE unset."""
    calls: list[tuple[str, Any]] = []
    stub = ModuleType("wandb")

    def init(**kwargs: Any) -> FakeRun:
        calls.append(("init", kwargs))
        return FakeRun(calls)

    stub.init = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", stub)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return calls


def test_wandb_is_offline_by_default_gets_the_config_and_the_jsonl_numbers(
    tmp_path: Path, wandb_calls: list[tuple[str, Any]]
) -> None:
    run = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run), "--log", "wandb"]) == 0
    (kind, init), *rest = wandb_calls
    assert kind == "init"
    assert init["mode"] == "offline" and init["project"] == "hyperguide" and Path(init["dir"]) == run
    assert init["config"]["universe"] == "synthetic" and init["config"]["seeds"] == [0]
    assert init["config"]["train"]["epochs"] == 3
    prefix = f"{STAGE}/seed0-fold0"
    assert ("define_metric", (f"{prefix}/*", f"{prefix}/step")) in rest  # each stage its own step axis
    logged = [data for kind, data in rest if kind == "log"]
    expected = [{f"{prefix}/{k}": v for k, v in r.items()} for r in records(run)]
    assert logged == [pytest.approx(e) for e in expected]
    assert rest[-1] == ("finish", 0)
    assert not (run / "tensorboard").exists()


def test_trackers_are_closed_when_the_command_fails(
    tmp_path: Path, wandb_calls: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    config = RunConfig(universe="synthetic")
    with pytest.raises(KeyboardInterrupt), tracking(["wandb", "tensorboard"], tmp_path, config) as trackers:
        for tracker in trackers:
            tracker(StageStarted(STAGE, 0, 0, tasks=5))
            tracker(EpochEnded(STAGE, 1, 2, {"epoch": 1, "step": 3, "loss": 0.5}))
        raise KeyboardInterrupt
    assert wandb_calls[0][1]["mode"] == "online"  # the user's WANDB_MODE wins
    assert wandb_calls[-1] == ("finish", 1)  # marked failed
    flushed = scalars(tmp_path / "tensorboard" / STAGE / "seed0-fold0")
    assert flushed == {f"{STAGE}/epoch": [(3, 1.0)], f"{STAGE}/loss": [(3, 0.5)]}


@pytest.mark.integration  # trains a run in a fresh interpreter
def test_a_run_without_log_imports_no_tracker(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from hyperguide.cli import main\n"
        f"assert main({[*TRAIN, '--set', 'train.epochs=1', '--out', str(tmp_path / 'run')]!r}) == 0\n"
        "loaded = [m for m in ('tensorboard', 'wandb', 'torch.utils.tensorboard') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / STAGE / "seed0-fold0.metrics.jsonl").is_file()


def test_log_values_are_parsed_and_bad_ones_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse_tracker("tensorboard") == TrackerSpec("tensorboard")
    assert parse_tracker("tensorboard:tb/x") == TrackerSpec("tensorboard", Path("tb/x"))
    assert parse_tracker("wandb") == TrackerSpec("wandb")
    for bad, message in [
        ("mlflow", "unknown tracker 'mlflow' in --log: choose tensorboard[:DIR] or wandb"),
        ("tensorboard:", "give the folder after the colon"),
        ("wandb:somewhere", "wandb takes no folder"),
    ]:
        with pytest.raises(HyperguideError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_tracker(bad)

    for command in (["train", STAGE], ["collect"], ["bench"]):
        args = build_parser().parse_args([*command, "synthetic", "--log", "tensorboard", "--log", "wandb"])
        assert args.log == ["tensorboard", "wandb"]

    run = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run), "--log", "mlflow"]) == 2
    assert "unknown tracker 'mlflow'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    assert main([*TRAIN, "--out", str(run), "--log", "tensorboard"]) == 2
    assert "pip install 'hyperguide[tensorboard]'" in capsys.readouterr().err
    assert not run.exists()  # refused before the run folder was touched


def outside_with_precious(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "events.out.tfevents.precious").write_text("precious")
    return outside


def assert_untouched(outside: Path) -> None:
    assert [p.name for p in outside.iterdir()] == ["events.out.tfevents.precious"]
    assert (outside / "events.out.tfevents.precious").read_text() == "precious"


@pytest.mark.parametrize("planted", [f"{STAGE}/seed0-fold0", STAGE])
def test_a_tensorboard_folder_planted_as_a_symlink_is_refused_not_followed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], planted: str
) -> None:
    """N35: a link planted for a stage's TensorBoard folder had the event file it pointed at deleted and a new one
    written there; it is refused as a stage folder that is a link is, and nothing outside the run is touched."""
    run = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run), "--log", "tensorboard"]) == 0
    outside = outside_with_precious(tmp_path)
    link = run / "tensorboard" / planted
    shutil.rmtree(link)
    link.symlink_to(outside, target_is_directory=True)
    (run / STAGE / "seed0-fold0.json").unlink()  # the stage is trained again
    capsys.readouterr()
    assert main([*TRAIN, "--out", str(run), "--log", "tensorboard"]) == 2
    err = capsys.readouterr().err
    assert f"error: {link} is a symlink: a run's TensorBoard folders must be its own (remove the link)" in err
    assert_untouched(outside)


def test_a_run_tensorboard_folder_that_is_a_symlink_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    outside = outside_with_precious(tmp_path)
    (run / "tensorboard").symlink_to(outside, target_is_directory=True)
    assert main([*TRAIN, "--out", str(run), "--log", "tensorboard"]) == 2
    assert f"error: {run / 'tensorboard'} is a symlink: a run's TensorBoard folders" in capsys.readouterr().err
    assert [p.name for p in run.iterdir()] == ["tensorboard"]  # no config.json, no log
    assert_untouched(outside)


def test_a_tensorboard_dir_given_as_a_symlink_is_the_users_to_point_anywhere(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "board").symlink_to(target, target_is_directory=True)
    tracker = TensorBoardTracker(tmp_path / "board", own=False)
    tracker(StageStarted(STAGE, 0, 0, tasks=5))
    tracker(EpochEnded(STAGE, 1, 1, {"epoch": 1, "step": 1, "loss": 0.5}))
    tracker.close()
    assert scalars(target / STAGE / "seed0-fold0") == {f"{STAGE}/epoch": [(1, 1.0)], f"{STAGE}/loss": [(1, 0.5)]}


def test_an_old_event_file_that_is_a_symlink_is_removed_never_followed(tmp_path: Path) -> None:
    outside = outside_with_precious(tmp_path)
    folder = tmp_path / "tb" / STAGE / "seed0-fold0"
    folder.mkdir(parents=True)
    (folder / "events.out.tfevents.planted").symlink_to(outside / "events.out.tfevents.precious")
    (folder / "events.out.tfevents.folder").mkdir()  # not an event file: left alone
    tracker = TensorBoardTracker(tmp_path / "tb")
    tracker(StageStarted(STAGE, 0, 0, tasks=5))
    tracker(EpochEnded(STAGE, 1, 1, {"epoch": 1, "step": 1, "loss": 0.5}))
    tracker.close()
    assert not (folder / "events.out.tfevents.planted").is_symlink()
    assert (folder / "events.out.tfevents.folder").is_dir()
    assert_untouched(outside)


@pytest.mark.parametrize("where", ["file", "file/sub", "run/tensorboard"])
def test_a_tensorboard_folder_that_cannot_be_written_is_refused_before_the_run_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """N33: `--log tensorboard:FILE` failed only at the first epoch record, after config.json and a log were
    written; the folder is now checked when the tracker is built."""
    run = tmp_path / "run"
    blocker = tmp_path / where.split("/")[0] if where != "run/tensorboard" else run / "tensorboard"
    blocker.parent.mkdir(exist_ok=True)
    blocker.write_text("in the way")
    board = tmp_path / where
    log = "tensorboard" if where == "run/tensorboard" else f"tensorboard:{board}"
    assert main([*TRAIN, "--out", str(run), "--log", log]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot write {board}: Not a directory ({blocker} is in the way: not a folder)" in err
    assert not (run / "config.json").exists() and not (run / STAGE).exists()


def test_a_tensorboard_folder_without_permission_is_refused_when_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The suite may run as root, to whom every folder is writable: os.access says what a user would be told.
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: access(path, mode) and Path(path) != tmp_path)
    config = RunConfig(universe="synthetic")
    with pytest.raises(HyperguideError, match=f"^cannot write {tmp_path / 'tb'}: Permission denied$"):
        tracking([f"tensorboard:{tmp_path / 'tb'}"], tmp_path / "run", config).__enter__()
    assert not (tmp_path / "tb").exists()
