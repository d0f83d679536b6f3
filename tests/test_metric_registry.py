"""The per-task metrics as one registry (`hyperguide.eval.metrics`): a metric added by its function and one
registration reaches every row, setting, control and fit of results.json, its reader and results.md; acc and
bal_acc equal their formulas written out."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hyperguide.data.synthetic import synthetic_universe
from hyperguide.eval.metrics import (
    METRICS,
    Metric,
    Predictions,
    from_logits,
    hits,
    register_metric,
    task_accuracy,
    task_balanced_accuracy,
    unregister_metric,
)
from hyperguide.eval.results import metrics_of, read_results
from hyperguide.eval.scoring import chance_scores, majority_scores
from hyperguide.eval.statistics import compare
from hyperguide.report.markdown import render_markdown
from hyperguide.run.evaluate import evaluate_run
from hyperguide.run.train import train_run
from hyperguide.trained.folder import RunFolder
from tests.helpers import TINY


def expected_calibration_error(p: Predictions, bins: int = 10) -> torch.Tensor:
    """(B,) expected calibration error in %: over equal-width bins of the confidence (the probability stated for the
    answer given), the share of a task's query examples in a bin times |their accuracy - their mean confidence|."""
    confidence = (p.probs * p.given).sum(-1)  # (B, N)
    index = (confidence * bins).long().clamp(0, bins - 1)
    in_bin = torch.nn.functional.one_hot(index, bins).to(confidence.dtype) * p.mask.unsqueeze(-1)  # (B, N, bins)
    gap = (in_bin * (hits(p) - confidence).unsqueeze(-1)).sum(1).abs()  # (B, bins)
    return 100.0 * gap.sum(1) / p.mask.sum(1).clamp_min(1)


ECE = Metric(
    "ece", "expected calibration error (%, 10 bins of confidence), lower is better", expected_calibration_error
)


@pytest.fixture
def ece() -> Iterator[Metric]:
    yield register_metric(ECE)
    unregister_metric(ECE.name)


def test_the_calibration_error_of_a_hand_computed_task() -> None:
    # four query examples of two answers and a padded fifth; confidences .75 (right), .75 (wrong), .95, .65 (right)
    probs = torch.tensor([[[0.75, 0.25], [0.75, 0.25], [0.05, 0.95], [0.65, 0.35], [0.5, 0.5]]])
    labels = torch.tensor([[0, 1, 1, 0, 1]])
    mask = torch.tensor([[True, True, True, True, False]])
    p = from_logits(probs.log(), labels, mask)
    # bin [.7, .8): 2 of 4 examples, accuracy .5 at confidence .75; [.9, 1]: 1, 1 at .95; [.6, .7): 1, 1 at .65
    expected = 100 * (2 / 4 * 0.25 + 1 / 4 * 0.05 + 1 / 4 * 0.35)
    assert expected_calibration_error(p).tolist() == [pytest.approx(expected, abs=1e-4)]
    assert task_accuracy(p).tolist() == [75.0] and task_balanced_accuracy(p).tolist() == [75.0]


def test_acc_and_bal_acc_equal_their_formulas() -> None:
    """Against the formulas written out: top-1 hits over the real examples, and the mean recall of the answers
    present, on padded tasks of several answer counts (padded answers -inf), ties included."""
    generator = torch.Generator().manual_seed(0)
    b, n, k = 64, 12, 5
    logits = torch.randn(b, n, k, generator=generator).round(decimals=1)  # rounding makes ties
    answers = torch.randint(2, k + 1, (b,), generator=generator)
    logits = logits.masked_fill(torch.arange(k) >= answers[:, None, None], float("-inf"))
    labels = (torch.rand(b, n, generator=generator) * answers[:, None]).long()
    mask = torch.arange(n) < torch.randint(1, n + 1, (b, 1), generator=generator)
    p = from_logits(logits, labels, mask)

    correct = (logits.argmax(-1) == labels) & mask
    acc = 100.0 * correct.sum(1) / mask.sum(1).clamp_min(1)
    onehot = torch.nn.functional.one_hot(labels, k).bool() & mask.unsqueeze(-1)
    support, right = onehot.sum(1), (onehot & correct.unsqueeze(-1)).sum(1)
    recall = torch.where(support > 0, right / support.clamp_min(1), torch.zeros_like(right, dtype=torch.float))
    bal = 100.0 * recall.sum(1) / (support > 0).sum(1).clamp_min(1)
    assert torch.equal(task_accuracy(p), acc) and torch.equal(task_balanced_accuracy(p), bal)


def test_the_registry_guards_its_names() -> None:
    assert list(METRICS) == ["acc", "bal_acc"]
    with pytest.raises(ValueError, match="registered already"):
        register_metric(Metric("acc", "again", task_accuracy))
    for name in ("tasks", "per_task_x", "not a name"):
        with pytest.raises(ValueError, match="must be an identifier"):
            register_metric(Metric(name, "", task_accuracy))
    with pytest.raises(ValueError, match="required"):
        unregister_metric("bal_acc")
    assert list(METRICS) == ["acc", "bal_acc"]


def test_the_rows_without_logits_under_a_metric_of_probabilities(ece: Metric) -> None:
    """chance states and gives 1/K per answer: perfectly calibrated; majority states its answer with certainty:
    calibration error 100 - accuracy."""
    tasks = [synthetic_universe().task(i) for i in range(4)]
    chance, majority = chance_scores(tasks), majority_scores(tasks)
    assert list(chance) == ["acc", "bal_acc", "ece"]
    assert chance["acc"] == pytest.approx([100 / t.n_answers for t in tasks])
    assert chance["ece"] == pytest.approx([0.0] * len(tasks), abs=1e-9)
    assert majority["ece"] == pytest.approx([100 - a for a in majority["acc"]])


@pytest.mark.integration
def test_a_metric_added_by_its_registration_alone_reaches_results_and_report(ece: Metric, tmp_path: Path) -> None:
    universe = synthetic_universe()
    config = replace(TINY, methods=("chance", "majority", "cond-multitask", "uncond-multitask"))
    folder = RunFolder(tmp_path / "run")
    train_run(universe, config, folder)
    results = evaluate_run(universe, folder)

    def check(summary: dict, where: str) -> None:
        values = summary["per_seed"]
        assert len(values) == len(config.seeds), where
        assert all(math.isfinite(v) and 0 <= v <= 100 for v in [*values, summary["mean"]]), where

    for row, entry in results["methods"].items():
        zero_shot = entry["zero_shot"]
        assert list(zero_shot)[:3] == ["acc", "bal_acc", "ece"], row
        check(zero_shot["ece"], f"{row} zero-shot")
        assert all(0 <= v <= 100 for seed in zero_shot["per_task_ece"] for v in seed)
        assert len(zero_shot["per_task_ece"]) == len(config.seeds)
        assert set(entry["k_shot"]) == {"1", "full"}
        for k, shot in entry["k_shot"].items():
            check(shot["ece"], f"{row} {k}-shot")
        for name, control in entry.get("controls", {}).items():
            if name != "shuffled_tasks":
                assert set(control) == {"acc", "bal_acc", "ece"}, name
    assert "controls" in results["methods"]["cond-multitask"]
    assert set(results["fit"]["rows"]) == {"cond-multitask", "uncond-multitask"}
    for row, fit in results["fit"]["rows"].items():
        check(fit["ece"], f"{row} fit")

    read = read_results(folder.results)
    assert metrics_of(read) == ["acc", "bal_acc", "ece"]
    assert (
        read["methods"]["cond-multitask"]["zero_shot"]["ece"]
        == results["methods"]["cond-multitask"]["zero_shot"]["ece"]
    )
    assert compare(read, "cond-multitask", "chance", "ece")["over_tasks"]["n"] == len(results["test_tasks"])

    report = render_markdown(read, {})
    assert "| method | zero-shot acc | zero-shot bal_acc | zero-shot ece | 1-shot acc |" in report
    assert "| method | meta-train acc | meta-train bal_acc | meta-train ece | meta-test acc |" in report
    assert "| question effect (bal_acc) | question effect (ece) | no-question effect (acc) |" in report
    assert f"`ece`: {ECE.description}" in report

    # the metric's registration added it and moved nothing else: without it, the same run gives the same numbers
    unregister_metric(ECE.name)
    without = evaluate_run(universe, folder)
    for row, entry in without["methods"].items():
        assert "ece" not in entry["zero_shot"] and "per_task_ece" not in entry["zero_shot"]
        for metric in ("acc", "bal_acc"):
            assert entry["zero_shot"][metric] == results["methods"][row]["zero_shot"][metric]
            assert (
                entry["zero_shot"][f"per_task_{metric}"] == results["methods"][row]["zero_shot"][f"per_task_{metric}"]
            )
    assert "ece" not in render_markdown(without, {})
    # a results.json with a metric the registry does not know (any more) still renders it, under its bare name
    unknown = render_markdown(read, {})
    assert "| zero-shot ece |" in unknown and "; `ece`." in unknown
