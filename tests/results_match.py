"""Comparing a results.json with stored or twin numbers, within the tolerance another machine needs.

Two runs of the same code, config and seed agree bit for bit only on one machine at one thread count. Another CPU,
thread count or number of processes rounds sums differently (docs/decisions.md, D17), and training amplifies that:

- a continuous number (a loss, a distance, a mean rank) moves in its 5th-6th significant digit: `RTOL`;
- a count can flip where a score sits on a threshold: an accuracy by one query example, a rank or a cluster hit by
  one of the bench's 17 meta-train tasks. Such a number may move by at most `ONE_ITEM` points, in at most `FLIPS`
  places of the whole file;
- latent distances in within-task spreads move by at most `DISTANCE`;
- names, keys, counts (integers), flags and the structure are exact; a Summary's `mean` and `ci95` follow from its
  `per_seed` values, which are what is compared.

`exact_zero_shot=True` forbids flips in the zero-shot table, for two computations on the same machine that are
known to leave it untouched (two processes against one). Where both sides come from one machine and thread count,
tests compare with `==`, not with this.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

RTOL = 1e-3  # continuous numbers: 100x the largest rounding difference measured between machines (4.8e-5)
DISTANCE = 0.01  # within-task spreads
ONE_ITEM = 100 / 17  # points: one of the 17 meta-train tasks of `bench synthetic --quick`, the largest single item
FLIPS = 4
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
        if not (_float(a) or _float(b)) or isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
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
        elif abs(a - b) > ONE_ITEM + 1e-9:
            problems.append(f"{path}: {a} != {b} (more than one item, {ONE_ITEM:.2f} points)")
        else:
            flips.append(path)
    if len(flips) > FLIPS:
        problems.append(f"{len(flips)} numbers moved by an item (at most {FLIPS}): {flips}")
    return problems
