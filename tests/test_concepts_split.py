"""The leave-one-concept-out split (`--split concepts`): a fold per concept, whose meta-test tasks are every task
naming it and whose meta-train questions never do; results.json says which tasks each fold held out and results.md
has the per-concept table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperguide.cli import main
from hyperguide.data.splits import make_splits, mentions
from hyperguide.data.synthetic import concepts_universe, synthetic_universe
from hyperguide.errors import HyperguideError
from hyperguide.eval.statistics import summarize
from hyperguide.report.concepts import concept_scores
from tests.test_trust import one_thread  # noqa: F401 (an autouse fixture: one thread)


def test_a_fold_per_concept_holds_out_every_task_naming_it() -> None:
    universe = concepts_universe()
    folds = make_splits(universe, "concepts")
    assert [f.fold for f in folds] == list(range(8)) and universe.concepts[0] == "concept 0"
    for fold, concept in zip(folds, universe.concepts, strict=True):
        assert {universe.tasks[i].question for i in fold.test} == {
            t.question for t in universe.tasks if mentions(t.question, concept)
        }
        assert len(fold.test) == 6 and not any(mentions(universe.tasks[i].question, concept) for i in fold.train)
        assert sorted(fold.train + fold.test) == list(range(len(universe.tasks)))
    chosen = make_splits(universe, "concepts", held_out=["concept 3", "concept 5"])  # --held-out picks the folds
    assert [len(f.test) for f in chosen] == [6, 6]
    pairs = make_splits(universe, "concepts", held_out=["concept 3+concept 5", "concept 0"])  # a fold of two
    assert [len(f.test) for f in pairs] == [12, 6]
    assert set(pairs[0].test) == set(chosen[0].test) | set(chosen[1].test)
    with pytest.raises(HyperguideError, match="joined by '\\+' must be non-empty"):
        make_splits(universe, "concepts", held_out=["concept 3+"])


def test_concepts_that_leave_a_side_empty_or_none_at_all_are_refused() -> None:
    with pytest.raises(HyperguideError, match="'concept 9' leaves 48 train and 0 test tasks"):
        make_splits(concepts_universe(), "concepts", held_out=["concept 9"])
    universe = synthetic_universe()
    universe.concepts = ()
    with pytest.raises(HyperguideError, match="lists none: pass them with --held-out"):
        make_splits(universe, "concepts")


@pytest.mark.integration
def test_a_concepts_bench_reports_each_concept(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = ["bench", "synthetic-concepts", "--split", "concepts", "--quick", "--quiet", "--seeds", "0", "1"]
    assert main([*command, "--set", 'methods=["chance","cond-multitask"]', "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["held_out"] == [f"concept {c}" for c in range(8)]  # resolved: config.json names each fold's
    results = json.loads((out / "results.json").read_text())
    assert results["concept_folds"] == [{"concept": f"concept {c}", "tasks": 6} for c in range(8)]
    assert results["folds"] == 8 and len(results["test_tasks"]) == 48
    scores = concept_scores(results, "cond-multitask")
    assert scores is not None
    per_concept, mean = scores
    assert list(per_concept) == [f"concept {c}" for c in range(8)]
    overall = results["methods"]["cond-multitask"]["zero_shot"]["bal_acc"]["per_seed"]
    assert mean == pytest.approx(overall)  # equal folds: the mean over concepts is the mean over tasks
    report = (out / "results.md").read_text()
    assert "## Leave one concept out" in report and "| concept 7 (6) |" in report
    assert "What this split tests" in report and "no test of a concept the encoders do not know" in report
    assert f"{summarize(per_concept['concept 0'])['mean']:.1f} ±" in report
    bad = {**results, "concept_folds": [{"concept": "concept 0", "tasks": 0}]}
    (out / "results.json").write_text(json.dumps(bad))
    assert main(["compare", str(out), "chance", "cond-multitask"]) == 2  # read_results checks the folds
