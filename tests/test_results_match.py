"""The tolerance of stored-number tests (tests/results_match.py) holds what rounding moves and catches real changes.

The golden file is the reference: moved by rounding, it still matches; moved by a real change (a number beyond the
tolerance, a key missing or added, a count, a name, too many flips), it does not.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.results_match import DISTANCE, FLIPS, ONE_ITEM, RTOL, differences

GOLDEN = Path(__file__).resolve().parent / "golden" / "bench_synthetic_quick.json"


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLDEN.read_text())
    return data


def scaled(value: Any, factor: float) -> Any:
    """Every float of `value` times `factor` (what rounding on another machine does, at most)."""
    if isinstance(value, dict):
        return {k: scaled(v, factor) for k, v in value.items()}
    if isinstance(value, list):
        return [scaled(v, factor) for v in value]
    return value * factor if isinstance(value, float) else value


def zero_shot(results: dict[str, Any], row: str = "cond-multitask") -> dict[str, Any]:
    entry: dict[str, Any] = results["methods"][row]["zero_shot"]
    return entry


def test_a_file_matches_itself_and_its_rounding(golden: dict[str, Any]) -> None:
    assert differences(golden, copy.deepcopy(golden)) == []
    assert differences(golden, scaled(golden, 1 + RTOL / 10)) == []  # every float in its 5th digit
    moved = copy.deepcopy(golden)
    moved["timing"], moved["machine"] = {"total": 1.0}, {"cpu": "another"}  # how and where it ran: not compared
    assert differences(golden, moved) == []


def test_numbers_beyond_the_tolerance_fail(golden: dict[str, Any]) -> None:
    assert differences(golden, scaled(golden, 1 + 10 * RTOL)) != []  # every float moved in its 3rd digit

    far = copy.deepcopy(golden)
    zero_shot(far)["acc"]["per_seed"][0] += 2 * ONE_ITEM  # more than one item
    assert any("more than one item" in p for p in differences(golden, far))

    flipped = copy.deepcopy(golden)
    zero_shot(flipped)["acc"]["per_seed"][0] += ONE_ITEM / 2  # one item: a flip, allowed on another machine ...
    assert differences(golden, flipped) == []
    assert differences(golden, flipped, exact_zero_shot=True) != []  # ... not where the zero-shot table is exact

    many = copy.deepcopy(golden)
    for row in list(many["methods"])[: FLIPS + 1]:
        zero_shot(many, row)["acc"]["per_seed"][0] += ONE_ITEM / 2
    assert any(f"at most {FLIPS}" in p for p in differences(golden, many))

    distant = copy.deepcopy(golden)
    path = distant["methods"]["hnet+hyperldm@1"]["novelty"]["distance_in_spreads"]["per_seed"]
    path[0] += 2 * DISTANCE
    assert any("spreads" in p for p in differences(golden, distant))


def test_keys_counts_and_names_are_exact(golden: dict[str, Any]) -> None:
    missing = copy.deepcopy(golden)
    del missing["methods"]["cond-multitask"]["k_shot"]
    assert any("keys differ" in p for p in differences(golden, missing))

    extra = copy.deepcopy(golden)
    extra["methods"]["new-row"] = extra["methods"]["cond-multitask"]
    assert any("keys differ" in p for p in differences(golden, extra))

    count = copy.deepcopy(golden)
    count["methods"]["cond-multitask"]["k_shot"]["1"]["tasks"] += 1
    assert any("exact" in p for p in differences(golden, count))

    renamed = copy.deepcopy(golden)
    renamed["test_tasks"][0] = "another question?"
    assert any("exact" in p for p in differences(golden, renamed))


def test_a_number_that_counts_nothing_moves_only_by_rounding(golden: dict[str, Any]) -> None:
    """A one-item move is allowed only to measures that count items (an accuracy, a rank): a p-value, a loss or a
    distance that moves beyond rounding is a change."""
    moved = copy.deepcopy(golden)
    entry = moved["methods"]["cond-multitask"]
    entry["zero_shot"]["acc"]["per_seed"][0] += 1.0  # one query example: a flip
    assert differences(golden, moved) == []
    ratio = copy.deepcopy(golden)
    ratio["fit"]["stages"]["hvae"]["gate_ratio"]["per_seed"][0] += 1.0  # counted too (a ratio of accuracies)
    assert differences(golden, ratio) == []
    timing = copy.deepcopy(golden)
    stage = next(iter(timing["fit"]["curves"]))
    measure = next(iter(timing["fit"]["curves"][stage]))
    timing["fit"]["curves"][stage][measure][0]["step"][0] += 1  # an integer: exact
    assert any("exact" in p for p in differences(golden, timing))
    typed = copy.deepcopy(golden)
    typed["methods"]["cond-multitask"]["k_shot"]["1"]["tasks"] = 17.5  # an integer that became a float
    assert any("exact" in p for p in differences(golden, typed))
    text = copy.deepcopy(golden)
    text["methods"]["cond-multitask"]["zero_shot"]["acc"]["per_seed"][0] = "73.2"  # reported, no crash
    assert any("exact" in p for p in differences(golden, text))
    for key, before, after in (("loss", 0.5, 5.0), ("p_value", 0.01, 0.9), ("seconds_per_step", 7.0, 1.2)):
        problems = differences({"methods": {"a": {key: before}}}, {"methods": {"a": {key: after}}})
        assert any("relative" in p for p in problems), (key, problems)  # not a counted measure: no flip allowed
