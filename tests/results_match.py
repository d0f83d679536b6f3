"""Comparing a results.json with stored or twin numbers, within the tolerance another machine needs.

Two runs of the same code, config and seed agree bit for bit only on one machine at one thread count. Another CPU,
thread count or number of processes rounds sums differently (docs/decisions.md, D17), and training amplifies that:

- a continuous number (a loss, a distance, a mean rank) moves in its 5th-6th significant digit: `RTOL`;
- a count can flip where a score sits on a threshold: an accuracy by one query example, a rank or a cluster hit by
  one of the bench's 17 meta-train tasks. Such a number (one of the `COUNTED` measures) may move by at most
  `ONE_ITEM` points, in at most `FLIPS` places of the whole file; any other number only within `RTOL`;
- latent distances in within-task spreads move by at most `DISTANCE`;
- names, keys, counts (integers), flags and the structure are exact; a Summary's `mean` and `ci95` follow from its
  `per_seed` values, which are what is compared.

`exact_zero_shot=True` forbids flips in the zero-shot table, for two computations on the same machine that are
known to leave it untouched (two processes against one). Where both sides come from one machine and thread count,
tests compare with `==`, not with this.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

RTOL = 1e-3  # continuous numbers: 100x the largest rounding difference measured between machines (4.8e-5)
DISTANCE = 0.01  # within-task spreads
ONE_ITEM = 100 / 17  # points: one of the 17 meta-train tasks of `bench synthetic --quick`, the largest single item
FLIPS = 4
# measures that count items (a share of examples or tasks, a rank): where a score on a threshold can flip one item
COUNTED = {
    "acc", "bal_acc", "per_task_acc", "per_task_bal_acc", "agreement_best", "agreement_nearest", "copies",
    "own_cluster", "own_cluster_agree", "retrieval_top1", "retrieval_top1_agree", "retrieval_mean_rank",
    "hard_negative_train", "hard_negative_test", "task_id_train", "task_id_test", "train_acc", "decoded_acc",
    "hnet_acc", "gate_ratio", "fit_acc", "fit_adapted_acc", "top1", "top1_agree", "gate",
}  # fmt: skip
WALL_CLOCK = ("timing", "fingerprint", "machine")  # what a run records of how and where it ran, not what it computed


def without_wall_clock(results: dict[str, Any]) -> dict[str, Any]:
    """results.json without what differs between identical computations: seconds, fingerprints, the machine."""
    out = {k: v for k, v in results.items() if k not in WALL_CLOCK}
    if "methods" in results:
        out["methods"] = {
            name: {k: v for k, v in entry.items() if k != "train_seconds"} for name, entry in results["methods"].items()
        }
    return out


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        if not value:
            yield path, {}
        for key, item in value.items():
            yield from leaves(item, f"{path}/{key}")
    elif isinstance(value, list):
        if not value:
            yield path, []
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def _float(value: Any) -> bool:
    return isinstance(value, float)


def _counted(path: str) -> bool:
    """Whether the leaf at `path` is (a value of) one of the `COUNTED` measures."""
    names = (re.sub(r"(\[\d+\])+$", "", part) for part in path.split("/"))
    # curves name a measure fit_<measure>; diagnostics name HyperCLIP's task identification <stage>_task_id
    return any(name in COUNTED or name.removeprefix("fit_") in COUNTED or name.endswith("_task_id") for name in names)


def differences(reference: dict[str, Any], run: dict[str, Any], *, exact_zero_shot: bool = False) -> list[str]:
    """What differs between two results.json beyond the tolerance of the module's docstring; [] when they match."""
    ours, theirs = dict(leaves(without_wall_clock(reference))), dict(leaves(without_wall_clock(run)))
    if set(ours) != set(theirs):
        missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        return [f"keys differ: missing {missing[:10]}, extra {extra[:10]}"]
    problems, flips = [], []
    for path, a in ours.items():
        b = theirs[path]
        if a == b and type(a) is type(b):
            continue
        if not (_float(a) and _float(b)):  # names, integers, flags, nulls, or two types: exact
            problems.append(f"{path}: {a!r} != {b!r} (names, counts and structure are exact)")
            continue
        if not (math.isfinite(a) and math.isfinite(b)):
            problems.append(f"{path}: {a!r} != {b!r}")
        elif path.endswith(("/mean", "/ci95")) and f"{path.rsplit('/', 1)[0]}/per_seed[0]" in ours:
            continue  # a summary over seeds: its per-seed values are compared
        elif math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-9):
            continue
        elif "distance_in_spreads" in path:
            if abs(a - b) > DISTANCE:
                problems.append(f"{path}: {a} != {b} (more than {DISTANCE} spreads)")
        elif exact_zero_shot and "/zero_shot/" in path:
            problems.append(f"{path}: {a} != {b} (the zero-shot table must not move)")
        elif not _counted(path):
            problems.append(f"{path}: {a} != {b} (more than {RTOL} relative)")
        elif abs(a - b) > ONE_ITEM + 1e-9:
            problems.append(f"{path}: {a} != {b} (more than one item, {ONE_ITEM:.2f} points)")
        else:
            flips.append(path)
    if len(flips) > FLIPS:
        problems.append(f"{len(flips)} numbers moved by an item (at most {FLIPS}): {flips}")
    return problems
