"""Statistics over seeds: mean with a 95% Student-t confidence interval, and paired comparisons of two methods."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scipy import stats as scipy_stats


def t_interval(values: Sequence[float], level: float = 0.95) -> float:
    """Half-width of the two-sided `level` confidence interval of the mean; 0 for fewer than two values."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return float(scipy_stats.t.ppf(0.5 + level / 2, df=n - 1)) * sd / math.sqrt(n)


def summarize(per_seed: Sequence[float]) -> dict[str, Any]:
    """{"mean", "ci95", "per_seed"} of per-seed values (each already a mean over tasks)."""
    values = [float(v) for v in per_seed]
    return {"mean": sum(values) / len(values), "ci95": t_interval(values), "per_seed": values}


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Mean of a - b over paired units (seeds, or tasks), its 95% CI and the two-sided paired t-test p-value."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired comparison needs two equally long, non-empty lists, got {len(a)} and {len(b)}")
    diff = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    mean = sum(diff) / len(diff)
    p = float("nan")
    if len(diff) >= 2 and any(d != diff[0] for d in diff):
        p = float(scipy_stats.ttest_1samp(diff, 0.0).pvalue)
    elif len(diff) >= 2:
        p = 1.0 if diff[0] == 0 else 0.0
    return {"mean": mean, "ci95": t_interval(diff), "p_value": p, "n": len(diff)}
