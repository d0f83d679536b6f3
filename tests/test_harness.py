"""Every method trains and evaluates on `synthetic` in seconds; results.json has the promised shape; resuming a run
gives the same numbers; statistics and config overrides behave."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hyperguide.cli import main
from hyperguide.config import RunConfig, apply_overrides
from hyperguide.data.synthetic import synthetic_universe
from hyperguide.errors import HyperguideError
from hyperguide.eval.scoring import chance_scores, k_shot_task, majority_scores
from hyperguide.eval.statistics import compare, paired_difference, summarize, t_interval
from hyperguide.run.evaluate import evaluate_run
from hyperguide.run.train import train_run
from hyperguide.trained.folder import RunFolder
from tests.helpers import TINY


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    universe = synthetic_universe()
    train_run(universe, TINY, RunFolder(out))
    return out, evaluate_run(universe, RunFolder(out))


@pytest.mark.integration  # the tiny run (module fixture)
def test_every_method_trains_and_evaluates(tiny_run: tuple[Path, dict]) -> None:
    out, results = tiny_run
    assert set(results["methods"]) == set(TINY.methods)
    assert results["seeds"] == [0, 1] and results["universe"] == "synthetic" and results["split"] == "random"
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["methods"].keys() == results["methods"].keys()
    for name, m in results["methods"].items():
        for metric in ("acc", "bal_acc"):
            s = m["zero_shot"][metric]
            assert set(s) >= {"mean", "ci95", "per_seed"} and len(s["per_seed"]) == 2
            assert 0.0 <= s["mean"] <= 100.0 and s["ci95"] >= 0.0
        assert set(m["k_shot"]) == {"1", "full"}, name
    chance = results["methods"]["chance"]["zero_shot"]["acc"]["mean"]
    assert results["methods"]["cond-multitask"]["zero_shot"]["acc"]["mean"] > chance + 20
    assert results["methods"]["oracle"]["zero_shot"]["acc"]["mean"] > chance + 20
    trained = [m for m in results["methods"].values() if m["train_seconds"] > 0]
    assert len(trained) == 6  # the six meta-trained rows


@pytest.mark.integration  # the tiny run (module fixture)
def test_resumed_training_ends_with_the_same_numbers(tiny_run: tuple[Path, dict], tmp_path: Path) -> None:
    _, results = tiny_run
    universe = synthetic_universe()
    config = RunConfig(**{**TINY.__dict__, "methods": ("uncond-hnet-maml", "cond-multitask")})
    train_run(universe, config, RunFolder(tmp_path))
    for f in (tmp_path / "cond-multitask").glob("seed1-fold0.*"):
        f.unlink()  # as if killed before this checkpoint was written
    train_run(universe, config, RunFolder(tmp_path))
    resumed = evaluate_run(universe, RunFolder(tmp_path))
    for name in config.methods:
        assert resumed["methods"][name]["zero_shot"] == results["methods"][name]["zero_shot"]


@pytest.mark.integration  # the tiny run (module fixture)
def test_a_run_folder_refuses_a_different_config(tiny_run: tuple[Path, dict]) -> None:
    out, _ = tiny_run
    with pytest.raises(HyperguideError, match="different config"):
        train_run(synthetic_universe(), RunConfig(universe="synthetic", seeds=(5,)), RunFolder(out))


def test_cli_train_eval_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    common = ["--set", "method.adapter_hidden=8", "--set", "method.hnet_hidden=[16]", "--set", 'eval.k_shots=["2"]']
    common += ["--set", "train.epochs=2", "--seeds", "0"]
    assert main(["train", "clip-zeroshot,cond-multitask", "synthetic", "--out", str(run), *common]) == 0
    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert "| `cond-multitask` |" in out and "2-shot acc" in out and "1 seeds" in out
    assert main(["compare", str(run), "cond-multitask", "clip-zeroshot"]) == 0
    assert "paired over tasks" in capsys.readouterr().out
    assert main(["train", "nonsense", "synthetic", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'nonsense'" in err and "or a stage: collect" in err


def test_confidence_interval_known_case() -> None:
    # mean 3, sd sqrt(2.5), t(0.975, 4) = 2.776445: half-width 2.776445 * 1.581139 / sqrt(5) = 1.963243
    assert t_interval([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(1.963243, abs=1e-5)
    assert summarize([2.0, 4.0]) == {
        "mean": 3.0,
        "ci95": pytest.approx(12.706205 * 2**0.5 / 2**0.5),
        "per_seed": [2.0, 4.0],
    }
    assert t_interval([7.0]) is None  # one value has no interval: null in results.json, "n/a" in print
    assert summarize([7.0])["ci95"] is None and paired_difference([7.0], [6.0])["p_value"] is None
    d = paired_difference([3.0, 5.0, 7.0], [1.0, 2.0, 3.0])
    assert d["mean"] == 3.0 and d["n"] == 3 and 0 < d["p_value"] < 0.1


@pytest.mark.integration  # the tiny run (module fixture)
def test_paired_comparison_of_identical_rows_is_zero(tiny_run: tuple[Path, dict]) -> None:
    _, results = tiny_run
    c = compare(results, "cond-multitask", "cond-multitask")
    assert c["over_seeds"]["mean"] == 0.0 and c["over_tasks"]["ci95"] == 0.0


def test_reference_rows_and_k_shot_filtering() -> None:
    task = synthetic_universe().task(0)
    task.support_y = torch.tensor([0, 0, 1, 1, 1, 2])
    task.support_x = torch.zeros(6, task.support_x.shape[1])
    task.query_y = torch.tensor([1, 1, 0, 2])
    task.query_x = torch.zeros(4, task.support_x.shape[1])
    task.answers = ("a", "b", "c")
    task.answer_emb = torch.randn(3, task.support_x.shape[1])
    scores = majority_scores([task])
    assert scores["acc"] == [50.0] and scores["bal_acc"] == [pytest.approx(100 / 3)]
    assert chance_scores([task])["acc"] == [pytest.approx(100 / 3)]
    two = k_shot_task(task, 2, torch.Generator().manual_seed(0))
    assert two is not None and sorted(two.support_y.tolist()) == [0, 0, 1, 1]
    assert sorted(two.query_y.tolist()) == [0, 1, 1]  # answer 2 has one support example: dropped from both sets
    assert k_shot_task(task, 3, torch.Generator()) is None  # only one answer has 3 examples


def test_config_overrides_are_type_checked() -> None:
    c = apply_overrides(RunConfig(), ["train.epochs=7", "method.inner.lr=0.5", "method.hnet_hidden=[64,64]"])
    assert c.train.epochs == 7 and c.method.inner.lr == 0.5 and c.method.hnet_hidden == (64, 64)
    with pytest.raises(HyperguideError, match="unknown key 'train.epoch'"):
        apply_overrides(RunConfig(), ["train.epoch=7"])
    with pytest.raises(HyperguideError, match="expected int"):
        apply_overrides(RunConfig(), ["train.epochs=many"])
    with pytest.raises(HyperguideError, match="not one of 'sgd', 'adam'"):
        apply_overrides(RunConfig(), ["method.inner.optimizer=rmsprop"])
