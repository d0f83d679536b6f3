"""The headline (report/headline.py): the report's guidance row and baselines are chosen on a tune run's folds of the
meta-train tasks, never on meta-test; the meta-test maximum is shown apart as the best case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hyperguide.cli import main
from hyperguide.errors import HyperguideError
from hyperguide.report.headline import choose_headline
from tests.test_trust import one_thread  # noqa: F401 (an autouse fixture: one thread)


def _results(scores: dict[str, float], *, tune_folds: int | None = None, tasks: tuple[str, ...] = ("q1",)) -> Any:
    row = lambda s: {"zero_shot": {"bal_acc": {"mean": s}, "acc": {"mean": s}}, "uses_support_labels": False}  # noqa: E731
    methods = {name: row(s) for name, s in scores.items()}
    return {"universe": "easyvqa", "split": "compositional", "tune_folds": tune_folds, "seeds": [0],
            "test_tasks": list(tasks), "methods": methods}  # fmt: skip


META_TEST = {"cond-multitask": 60.0, "cond-multitask-film-pointer": 70.0, "hnet+hyperldm@1": 80.0,
             "hnet+hyperldm-pointer@1.5": 50.0, "oracle": 99.0}  # fmt: skip
TUNE = {"cond-multitask": 75.0, "cond-multitask-film-pointer": 65.0, "hnet+hyperldm@1": 55.0,
        "hnet+hyperldm-pointer@1.5": 90.0, "oracle": 99.0, "uncond-multitask": 99.0}  # fmt: skip


def test_the_headline_is_chosen_on_the_tune_run_and_the_meta_test_best_is_shown_apart() -> None:
    results = _results(META_TEST)
    headline = choose_headline(results, _results(TUNE, tune_folds=3, tasks=("t1", "t2")), "runs/tune")
    # the rows that score best on the tune folds, though meta-test would pick others
    assert (headline["guidance"], headline["baseline"]) == ("hnet+hyperldm-pointer@1.5", "cond-multitask")
    assert headline["paper_baseline"] == "cond-multitask"  # -film-pointer is ours; the paper's table has cond-multitask
    assert headline["tune_scores"] == {"hnet+hyperldm-pointer@1.5": 90.0, "cond-multitask": 75.0}
    assert headline["best_case"] == {"guidance": "hnet+hyperldm@1", "baseline": "cond-multitask-film-pointer",
                                     "paper_baseline": "cond-multitask"}  # fmt: skip
    assert headline["chosen_on"] is not None and "runs/tune: 3 folds" in headline["chosen_on"]
    # a row only the tune run has (uncond-multitask) is no candidate; nor is a bound (oracle)
    assert "uncond-multitask" not in headline["tune_scores"] and "oracle" not in headline["tune_scores"]


def test_without_a_tune_run_nothing_is_chosen_and_a_tune_run_chooses_on_itself() -> None:
    plain = choose_headline(_results(META_TEST), None, None)
    assert plain["chosen_on"] is None and plain["guidance"] is None and plain["baseline"] is None
    assert plain["best_case"]["guidance"] == "hnet+hyperldm@1"
    itself = choose_headline(_results(TUNE, tune_folds=3), None, None)
    assert itself["guidance"] == "hnet+hyperldm-pointer@1.5" and "this run" in str(itself["chosen_on"])


def test_a_tune_run_that_could_not_have_chosen_is_refused() -> None:
    results = _results(META_TEST, tasks=("q1", "q2"))
    with pytest.raises(HyperguideError, match="not a tune run"):
        choose_headline(results, _results(TUNE), "runs/x")
    with pytest.raises(HyperguideError, match="tested on 1 of this run's meta-test tasks"):
        choose_headline(results, _results(TUNE, tune_folds=3, tasks=("t1", "q2")), "runs/x")
    other = {**_results(TUNE, tune_folds=3), "split": "random"}
    with pytest.raises(HyperguideError, match="its split is 'random'"):
        choose_headline(results, other, "runs/x")


@pytest.mark.integration
def test_a_bench_reports_the_headline_its_tune_run_chose(tmp_path: Path, capsys) -> None:
    rows = json.dumps(["uncond-multitask", "cond-multitask", "hnet+hyperclip"])
    base = ["bench", "synthetic", "--quick", "--quiet", "--seeds", "0", "--set", f"methods={rows}",
            "--set", "eval.k_shots=[]"]  # fmt: skip
    assert main([*base, "--set", "tune_folds=2", "--out", str(tmp_path / "tune")]) == 0
    tune = json.loads((tmp_path / "tune" / "results.json").read_text())
    assert tune["headline"]["chosen_on"].startswith("this run")
    assert main([*base, "--out", str(tmp_path / "run"), "--headline-from", str(tmp_path / "tune")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    headline = results["headline"]
    assert headline["guidance"] == "hnet+hyperclip"  # the one guidance row
    baselines = ["uncond-multitask", "cond-multitask"]
    tuned = {r: tune["methods"][r]["zero_shot"]["bal_acc"]["mean"] for r in baselines}
    assert headline["baseline"] == max(baselines, key=lambda r: tuned[r])
    report = (tmp_path / "run" / "results.md").read_text()
    assert "Chosen without meta-test" in report and "No tune run chose these rows" not in report
    # the same universe, another split: refused before anything trains
    capsys.readouterr()
    command = [*base, "--split", "kfold", "--out", str(tmp_path / "never"), "--headline-from", str(tmp_path / "tune")]
    assert main(command) == 2
    assert "its split is 'random', this run's 'kfold'" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
