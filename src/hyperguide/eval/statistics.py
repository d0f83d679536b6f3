"""Statistics over seeds: mean with a 95% Student-t confidence interval, and paired comparisons of two methods.

Below two values an interval (and a p-value) does not exist: it is None in results.json (`null`) and "n/a" in print
(`ci_text`), never 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from scipy import stats as scipy_stats

from hyperguide.errors import HyperguideError
from hyperguide.eval.results import PER_TASK, Summary


def t_interval(values: Sequence[float], level: float = 0.95) -> float | None:
    """Half-width of the two-sided `level` confidence interval of the mean; None for fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return float(scipy_stats.t.ppf(0.5 + level / 2, df=n - 1)) * sd / math.sqrt(n)


def summarize(per_seed: Sequence[float]) -> Summary:
    """{"mean", "ci95", "per_seed"} of per-seed values (each already a mean over tasks)."""
    values = [float(v) for v in per_seed]
    return {"mean": sum(values) / len(values), "ci95": t_interval(values), "per_seed": values}


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Mean of a - b over paired units (seeds, or tasks), its 95% CI and the two-sided paired t-test p-value."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired comparison needs two equally long, non-empty lists, got {len(a)} and {len(b)}")
    diff = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    mean = sum(diff) / len(diff)
    p: float | None = None
    if len(diff) >= 2 and any(d != diff[0] for d in diff):
        p = float(scipy_stats.ttest_1samp(diff, 0.0).pvalue)
    elif len(diff) >= 2:
        p = 1.0 if diff[0] == 0 else 0.0
    return {"mean": mean, "ci95": t_interval(diff), "p_value": p, "n": len(diff)}


def ci_text(value: float | None, spec: str = ".2f") -> str:
    """A CI half-width or a p-value as printed: "n/a" where it does not exist (fewer than two values)."""
    return "n/a" if value is None else format(value, spec)


def per_task_means(per_task: Sequence[Sequence[float]]) -> list[float]:
    """A zero-shot metric per meta-test task, averaged over seeds ([seed][task] -> [task])."""
    return [sum(col) / len(col) for col in zip(*per_task, strict=True)]


def compare(results: Mapping[str, Any], a: str, b: str, metric: str = "acc") -> dict[str, dict[str, Any]]:
    """Paired comparison of the zero-shot `metric` (one of the results', `eval.metrics.METRICS`) of rows a and b:
    over seeds (the mean over tasks per seed) and over tasks (the mean over seeds per task). Positive means a scores
    higher."""
    ma, mb = results["methods"][a]["zero_shot"], results["methods"][b]["zero_shot"]
    key = f"{PER_TASK}{metric}"
    if key not in ma or key not in mb:
        raise HyperguideError(f"rows {a!r} and {b!r} cannot be compared in {metric}: no {key} in the results")
    try:
        return {
            "over_seeds": paired_difference(ma[metric]["per_seed"], mb[metric]["per_seed"]),
            "over_tasks": paired_difference(per_task_means(ma[key]), per_task_means(mb[key])),
        }
    except ValueError as e:  # rows of different seeds or tasks (a results.json edited or merged by hand)
        raise HyperguideError(f"rows {a!r} and {b!r} cannot be paired: {e}") from None
