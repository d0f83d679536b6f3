"""The bench's figures, as PNG: zero-shot accuracy against the swept value (the guidance scale), k-shot curves, and
per-task accuracy of the best guidance row against the best baseline. Matplotlib's Agg canvas, no pyplot (no global
figure state), and every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hyperguide.eval.statistics import per_task_means
from hyperguide.io import atomic_path
from hyperguide.report.fit_and_claim import best_guidance, best_paper_baseline
from hyperguide.report.markdown import best_of, k_settings, row_bound, row_kind, zero_shot_acc
from hyperguide.rows import find_row

GAMMA_SWEEP = "gamma_sweep.png"
K_SHOT = "k_shot.png"
PER_TASK = "per_task.png"
FIT_CURVES = "fit_curves.png"
BOUND_COLORS = {"lower": "0.55", "upper": "black"}


def _bound_color(row: str) -> str | None:
    bound = row_bound(row)
    return None if bound is None else BOUND_COLORS[bound]


def _figure(width: float = 7.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def _line_with_band(
    ax: Any, x: list[float], stats: list[Mapping[str, float]], *, alpha: float = 0.15, **style: Any
) -> None:
    """A line through the means and a translucent band of ± the 95% CI, in the same colour."""
    (line,) = ax.plot(x, [s["mean"] for s in stats], **style)
    lower = [max(0.0, s["mean"] - (s["ci95"] or 0.0)) for s in stats]  # accuracy lives in [0, 100]; so does its band
    upper = [min(100.0, s["mean"] + (s["ci95"] or 0.0)) for s in stats]  # no band where there is no interval
    ax.fill_between(x, lower, upper, color=line.get_color(), alpha=alpha, lw=0)


def gamma_families(results: Mapping[str, Any]) -> dict[str, list[tuple[float, str]]]:
    """The rows of each sweeping method (`NAME@VALUE`), by method, each sorted by the swept value."""
    families: dict[str, list[tuple[float, str]]] = {}
    for name in results["methods"]:
        row = find_row(name)
        if row is not None and row.value is not None:
            families.setdefault(row.spec.name, []).append((row.value, name))
    return {f: sorted(points) for f, points in families.items()}


def plot_gamma_sweep(results: Mapping[str, Any], path: Path) -> bool:
    """Zero-shot accuracy against gamma, one line per family with its 95% CI band; False (no file) without gamma
    rows. The best baseline is drawn as a horizontal reference, and the best of the paper's table beside it where that
    is another row."""
    families = gamma_families(results)
    if not families:
        return False
    fig = _figure()
    ax = fig.add_subplot()
    for family, points in families.items():
        gammas = [g for g, _ in points]
        stats = [results["methods"][row]["zero_shot"]["acc"] for _, row in points]
        _line_with_band(ax, gammas, stats, marker="o", label=family)
    baseline = best_of(results, "baseline")
    if baseline:
        ax.axhline(zero_shot_acc(results, baseline), color="tab:gray", ls="--", label=f"{baseline} (best baseline)")
    paper = best_paper_baseline(results)
    if paper and paper != baseline:
        label = f"{paper} (the paper's table's {_how(results)} baseline)"
        ax.axhline(zero_shot_acc(results, paper), color="tab:gray", ls="-.", label=label)
    for row in results["methods"]:
        if row_bound(row) == "lower":
            ax.axhline(zero_shot_acc(results, row), color=BOUND_COLORS["lower"], ls=":", label=row)
    ax.set_xlabel("guidance scale γ (0: unconditional, 1: conditional)")
    ax.set_ylabel("zero-shot accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"Guidance sweep, {results['universe']} ({results['split']}); band: 95% CI over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, path)
    return True


def k_shot_panels(results: Mapping[str, Any]) -> dict[str, list[str]]:
    """The rows of each k-shot panel (rows without k-shot results are left out): the bounds, references and baselines
    in one; in the other the guidance rows, a gamma family at its best gamma (zero-shot) only, drawn against the
    bounds and the best baseline."""
    with_k = [r for r, m in results["methods"].items() if m["k_shot"]]
    best_gamma = {
        max(points, key=lambda p: zero_shot_acc(results, p[1]))[1] for points in gamma_families(results).values()
    }
    swept = {row for points in gamma_families(results).values() for _, row in points}
    guidance = [r for r in with_k if row_kind(r) == "guidance" and (r not in swept or r in best_gamma)]
    panels = {"baselines": [r for r in with_k if row_kind(r) != "guidance"]}
    if guidance:
        baseline = best_of(results, "baseline")
        context = [r for r in with_k if row_kind(r) == "bound" or r == baseline]
        panels["guidance (a gamma family at its best gamma)"] = [*context, *guidance]
    return panels


def plot_k_shot(results: Mapping[str, Any], path: Path) -> bool:
    """Accuracy against labelled examples per answer (zero-shot first, 'full' last) with 95% CI bands, one panel for
    the baselines and one for the guidance rows. Bounds are gray and black, and the rows a panel shows for context
    are dashed. False (no file) when no row has k-shot results."""
    ks = k_settings(results)
    panels = k_shot_panels(results)
    if not ks or not any(panels.values()):
        return False
    ticks = ["0", *ks]
    fig = _figure(6.0 * len(panels) + 2.5, 5.0)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (title, rows) in zip(axes, panels.items(), strict=True):
        own = "baseline" if title == "baselines" else "guidance"
        colors = iter(_colors(len(rows)))
        for row in rows:
            entry = results["methods"][row]
            points: list[tuple[float, Any]] = [(0, entry["zero_shot"]["acc"])]
            points += [(i + 1, entry["k_shot"][k]["acc"]) for i, k in enumerate(ks) if k in entry["k_shot"]]
            color = _bound_color(row) or next(colors)
            style = {"marker": "o", "ms": 3, "ls": "-" if row_kind(row) == own else "--", "color": color, "label": row}
            _line_with_band(ax, [p for p, _ in points], [s for _, s in points], alpha=0.1, **style)
        ax.set_xticks(range(len(ticks)), ticks)
        ax.set_xlabel("labelled examples per answer (0: zero-shot; full: whole support set)")
        ax.set_title(title, fontsize="medium")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="lower right")
    axes[0].set_ylabel("accuracy (%)")
    fig.suptitle(f"k-shot accuracy, {results['universe']} ({results['split']}); band: 95% CI over seeds")
    _save(fig, path)
    return True


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]  # tab20 pairs a dark and a light shade: only for many rows
    return [cmap(i % cmap.N) for i in range(n)]


def plot_per_task(results: Mapping[str, Any], row: str, path: Path, base: str) -> None:
    """One point per meta-test task: `base`'s zero-shot accuracy (x) against `row`'s (y), means over seeds."""
    x = per_task_means(results["methods"][base]["zero_shot"]["per_task_acc"])
    y = per_task_means(results["methods"][row]["zero_shot"]["per_task_acc"])
    fig = _figure(5.5, 5.5)
    ax = fig.add_subplot()
    ax.plot([0, 100], [0, 100], color="gray", ls="--", lw=1)
    ax.scatter(x, y, s=18, alpha=0.7)
    above = sum(b > a + 1e-6 for a, b in zip(x, y, strict=True))  # means over seeds: equal up to rounding
    below = sum(b < a - 1e-6 for a, b in zip(x, y, strict=True))
    ties = len(x) - above - below
    ax.set_xlim(-2, 102)
    ax.set_ylim(-2, 102)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{base} zero-shot accuracy (%)")
    ax.set_ylabel(f"{row} zero-shot accuracy (%)")
    ax.set_title(
        f"{len(x)} meta-test tasks, mean over seeds:\n{above} above, {below} below, {ties} on the diagonal",
        fontsize="medium",
    )
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_fit_curves(results: Mapping[str, Any], path: Path) -> bool:
    """One panel per training stage: its fit measures (metrics.jsonl's `fit_*`, in %) against its steps, a line per
    seed and fold, a colour per measure. False (no file) when no stage logged any."""
    curves = results.get("fit", {}).get("curves", {})
    if not curves:
        return False
    cols = min(4, len(curves))
    rows = -(-len(curves) // cols)
    fig = _figure(3.6 * cols + 0.5, 2.9 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax, (stage, measures) in zip(axes, curves.items(), strict=False):
        colors = iter(_colors(len(measures)))
        for measure, lines in measures.items():
            color = next(colors)
            for i, line in enumerate(lines):
                label = measure.removeprefix("fit_") if i == 0 else None
                ax.plot(line["step"], line["value"], marker="o", ms=2.5, lw=1, color=color, alpha=0.8, label=label)
        ax.set_title(stage, fontsize="small")
        ax.set_xlabel("step", fontsize="x-small")
        ax.tick_params(labelsize="x-small")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="xx-small", loc="lower right")
    for ax in axes[len(curves) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"Fit while training, {results['universe']} ({results['split']}): each stage's own measure on its "
        "meta-train tasks (%), a line per seed",
        fontsize="medium",
    )
    _save(fig, path)
    return True


def write_plots(results: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    """Write every plot that the results allow; returns title -> the PNG's file name, or a 'skipped: why' note."""
    out: dict[str, str] = {}
    title = "Zero-shot accuracy against the guidance scale"
    ok = plot_gamma_sweep(results, out_dir / GAMMA_SWEEP)
    out[title] = GAMMA_SWEEP if ok else "skipped: no gamma rows (`X@G`) in this run"
    title = "k-shot accuracy"
    out[title] = K_SHOT if plot_k_shot(results, out_dir / K_SHOT) else "skipped: no row has k-shot results"
    title = "Fit curves of every training stage"
    ok = plot_fit_curves(results, out_dir / FIT_CURVES)
    out[title] = FIT_CURVES if ok else "skipped: no stage logged fit probes (probes.count = 0, or an older run)"
    guidance = best_guidance(results)
    baseline = best_paper_baseline(results) or best_of(results, "baseline")
    if guidance is None:
        out["Per-task accuracy of the headline guidance row"] = "skipped: no guidance row in this run"
    elif baseline is None:
        out["Per-task accuracy of the headline guidance row"] = "skipped: no baseline row in this run"
    else:
        plot_per_task(results, guidance, out_dir / PER_TASK, baseline)
        how = _how(results)
        out[f"Per-task accuracy: `{guidance}` (the {how} guidance row) against `{baseline}` (the {how} baseline)"] = (
            PER_TASK
        )
    return out


def _how(results: Mapping[str, Any]) -> str:
    """How the report's rows were picked, in a word: on a tune run (`headline`), or the best on these tasks."""
    headline = results.get("headline") or {}
    return "headline" if headline.get("chosen_on") and not results.get("tune_folds") else "best-case"
