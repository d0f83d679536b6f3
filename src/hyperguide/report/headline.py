"""The headline of a report: which guidance row and which baseline it puts forward, chosen without meta-test.

A report that picks its "best guidance row" and "best baseline" by their meta-test scores reports a maximum over
rows as if it were one method's result. The headline rows are picked instead on a *tune run*: the same universe and
split with `tune_folds` set, whose "meta-test" tasks are folds of the split's meta-train tasks (for a compositional
split, folds that hold out concepts as the split does: `data.splits.concept_tuning_splits`). The rows with the
highest mean zero-shot balanced accuracy there are compared on the real meta-test; the meta-test maximum is shown
apart, as the best case. Balanced accuracy, not accuracy: on yes/no tasks whose answers are unbalanced, answering the
majority answer scores high accuracy and chance balanced accuracy.

Candidates are the rows of both runs that answer zero-shot (no support labels): `guidance` among the guidance rows
(each `@gamma` row is one candidate, so the guidance scale is chosen there too), `baseline` among all baselines,
`paper_baseline` among the baselines of the paper's table. A tune run is its own source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hyperguide.errors import HyperguideError
from hyperguide.eval.results import Headline
from hyperguide.rows import find_row

MEASURE = "bal_acc"


def _candidates(results: Mapping[str, Any], kind: str, paper_only: bool = False) -> list[str]:
    out = []
    for name, row in results["methods"].items():
        spec = None if (r := find_row(name)) is None else r.spec
        if spec is None or spec.kind != kind or row.get("uses_support_labels") or (paper_only and not spec.paper):
            continue
        out.append(name)
    return out


def _score(results: Mapping[str, Any], row: str) -> float:
    return float(results["methods"][row]["zero_shot"][MEASURE]["mean"])


def _best(results: Mapping[str, Any], rows: Sequence[str]) -> str | None:
    """The row of `rows` with the highest mean zero-shot balanced accuracy in `results` (the first on ties)."""
    return max(rows, key=lambda r: _score(results, r)) if rows else None


def best_case(results: Mapping[str, Any]) -> dict[str, str | None]:
    """The rows a choice on these very tasks would make: the meta-test maximum, shown apart from the headline."""
    return {
        "guidance": _best(results, _candidates(results, "guidance")),
        "baseline": _best(results, _candidates(results, "baseline")),
        "paper_baseline": _best(results, _candidates(results, "baseline", paper_only=True)),
    }


def check_tune_run(results: Mapping[str, Any], tune: Mapping[str, Any], source: str) -> None:
    """Refuse a tune run that could not have chosen for `results`: not a tune run, another universe or split, or one
    that tested on a task of this run's meta-test (then the choice saw it)."""
    if not tune.get("tune_folds"):
        raise HyperguideError(
            f"{source}: not a tune run (its tune_folds is not set); choose the headline on one made with "
            "`--set tune_folds=K` on the same universe and split"
        )
    for key in ("universe", "split"):
        if tune.get(key) != results.get(key):
            raise HyperguideError(f"{source}: its {key} is {tune.get(key)!r}, this run's {results.get(key)!r}")
    seen = sorted(set(tune["test_tasks"]) & set(results["test_tasks"]))
    if seen:
        raise HyperguideError(
            f"{source}: it tested on {len(seen)} of this run's meta-test tasks (e.g. {seen[0]!r}), so a choice "
            "made there saw meta-test"
        )


def choose_headline(results: Mapping[str, Any], tune: Mapping[str, Any] | None, source: str | None) -> Headline:
    """The headline of `results`: its rows picked on `tune` (a tune run's results, named `source`), or on `results`
    itself when it is a tune run; without either, no rows (the report then shows the best case alone)."""
    if tune is None and results.get("tune_folds"):
        tune, source = results, "this run (its tune folds of the meta-train tasks)"
    elif tune is not None:
        check_tune_run(results, tune, source or "the tune run")
    picked: dict[str, str | None] = {"guidance": None, "baseline": None, "paper_baseline": None}
    scores: dict[str, float] = {}
    chosen_on = None
    if tune is not None:
        shared = {**tune, "methods": {k: v for k, v in tune["methods"].items() if k in results["methods"]}}
        picked = best_case(shared)
        scores = {row: _score(tune, row) for row in picked.values() if row is not None}
        seeds = ", ".join(str(s) for s in tune["seeds"])
        chosen_on = f"{source}: {tune['tune_folds']} folds of the split's meta-train tasks, seeds {seeds}"
    return {
        "guidance": picked["guidance"],
        "baseline": picked["baseline"],
        "paper_baseline": picked["paper_baseline"],
        "measure": f"zero-shot {MEASURE}",
        "chosen_on": chosen_on,
        "tune_scores": scores,
        "best_case": best_case(results),
    }
