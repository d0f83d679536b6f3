"""The parts of results.md that say whether the learned parts fit and whether the paper's claim holds: each row's
zero-shot procedure on its own meta-train questions beside meta-test, each guidance stage's fit measures with the
HVAE gate, and the headline: the guidance row against the baselines, chosen on a tune run (`report.headline`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hyperguide.eval.results import metrics_of
from hyperguide.eval.statistics import ci_text, compare
from hyperguide.report.headline import choose_headline
from hyperguide.rows import find_row
from hyperguide.trained.stage_table import stage_families, stage_table

FIT_BAR = 95.0  # % a guidance row must score on its meta-train questions, and the HVAE gate (decoded / HNet(z))
GATE = "gate_ratio"  # the HVAE's gate: decoded / HNet(z) accuracy, in %


def _cell(stat: Mapping[str, Any] | None, spec: str = ".2f") -> str:
    if stat is None:
        return ""
    return f"{format(stat['mean'], spec)} ± {ci_text(stat['ci95'], spec)}"


def _rows(results: Mapping[str, Any], kind: str, *, paper_only: bool = False) -> list[str]:
    """The results' rows of a kind (of the paper's table only, with `paper_only`)."""
    out = []
    for row in results["methods"]:
        found = find_row(row)
        if found is not None and found.spec.kind == kind and (found.spec.paper or not paper_only):
            out.append(row)
    return out


def render_fit_rows(results: Mapping[str, Any]) -> str:
    """Every row's zero-shot value of each metric on its meta-train questions (their query sets) beside meta-test,
    and a flag on guidance rows whose accuracy on meta-train is below `FIT_BAR`."""
    fit = results.get("fit", {}).get("rows", {})
    if not fit:
        return ""
    metrics = metrics_of(results)
    head = ["method", *[f"meta-train {m}" for m in metrics], *[f"meta-test {m}" for m in metrics], "fits"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, f in fit.items():
        test = results["methods"][row]["zero_shot"]
        found = find_row(row)
        guided = found is not None and found.spec.kind == "guidance"
        flag = ("yes" if f["acc"]["mean"] >= FIT_BAR else f"**no** (< {FIT_BAR:g}%)") if guided else ""
        if guided and found is not None and found.value == 0 and found.spec.sweep is not None:
            flag = "unconditional (γ = 0): reads no question"
        cells = [f"`{row}`", *[_cell(f.get(m)) for m in metrics], *[_cell(test.get(m)) for m in metrics], flag]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_fit_stages(results: Mapping[str, Any]) -> str:
    """One table per family of stages (the HVAE's, each guide's: `trained.stage_table.stage_families`) with its fit
    measures (mean over seeds ± 95% CI); the HVAE's with its gate."""
    stages = results.get("fit", {}).get("stages", {})
    table = stage_table()
    parts: list[str] = []
    for family, fit in stage_families().items():
        measures = [(m.key, m.title) for m in fit if m.title is not None]
        names = [s for s in stages if s in table and table[s].family == family]
        if not names or not measures:
            continue
        gated = any(key == GATE for key, _ in measures)
        head = ["stage", *(title for _, title in measures), *([f"gate (>= {FIT_BAR:g}%)"] if gated else [])]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name in names:
            cells = [f"`{name}`", *(_cell(stages[name].get(key)) for key, _ in measures)]
            if gated and GATE in stages[name]:
                passed = all(v >= FIT_BAR for v in stages[name][GATE]["per_seed"])
                cells.append("met on every seed" if passed else "**not met**: the HVAE rows inherit an HVAE that "
                             "does not reproduce its training weights")  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        parts += [*lines, ""]
    return "\n".join(parts).rstrip()


def _headline(results: Mapping[str, Any]) -> Mapping[str, Any]:
    """results.json's `headline`, or the one a results.json without it would get (no tune run: no chosen rows)."""
    return results.get("headline") or choose_headline(results, None, None)


def chosen(results: Mapping[str, Any], key: str) -> str | None:
    """The report's `key` row (guidance, baseline, paper_baseline): the headline's, chosen on a tune run; else the
    meta-test best case (marked as such wherever it is shown)."""
    headline = _headline(results)
    row = headline[key] if headline["chosen_on"] else headline["best_case"][key]
    return row if row in results["methods"] else None


def best_paper_baseline(results: Mapping[str, Any]) -> str | None:
    return chosen(results, "paper_baseline")


def best_guidance(results: Mapping[str, Any]) -> str | None:
    return chosen(results, "guidance")


def render_claim(results: Mapping[str, Any]) -> str:
    """The headline guidance row against the headline baselines (the best of all, and the best of the paper's
    table): paired differences of each zero-shot metric over seeds and over tasks, per seed, and the share of the
    gap to the oracle it closes; how the rows were chosen, and the meta-test best case apart."""
    headline = _headline(results)
    guidance = chosen(results, "guidance")
    baselines = list(dict.fromkeys(b for b in (chosen(results, "baseline"), chosen(results, "paper_baseline")) if b))
    if guidance is None or not baselines:
        return ""
    n = len(_rows(results, "guidance"))
    if headline["chosen_on"] and results.get("tune_folds"):
        lines = [
            f"This is a tune run: its rows were chosen on {headline['chosen_on']}, the very tasks shown here, so the "
            "differences below are a best case; a run on the split's meta-test names this folder in "
            "`--headline-from` and compares them there.",
        ]
    elif headline["chosen_on"]:
        scores = ", ".join(f"`{r}` {v:.2f}" for r, v in headline["tune_scores"].items())
        lines = [
            f"Chosen without meta-test: on {headline['chosen_on']}, by {headline['measure']} there ({scores}), "
            f"among the rows both runs have; compared here on the meta-test tasks.",
        ]
    else:
        lines = [
            "**No tune run chose these rows** (`hyperguide bench ... --headline-from TUNE_RUN`): they are the best "
            f"case, each the best of its kind by {headline['measure']} on these very meta-test tasks ({n} guidance "
            "rows), so every difference below is a maximum over rows, not one method's result.",
        ]
    best = headline["best_case"]
    lines += [
        "",
        f"Best case on these tasks (a maximum over rows, shown apart): guidance `{best['guidance']}`, baseline "
        f"`{best['baseline']}`, baseline of the paper's table `{best['paper_baseline']}`.",
    ]
    for baseline in baselines:
        lines += ["", *_pair(results, guidance, baseline)]
    return "\n".join(lines)


def _pair(results: Mapping[str, Any], guidance: str, baseline: str) -> list[str]:
    methods = results["methods"]
    spec = find_row(baseline)
    which = "the paper's table" if spec is not None and spec.spec.paper else "all baselines"
    lines = [
        f"`{guidance}` against `{baseline}` (the headline baseline of {which}):",
        "",
        "| metric | difference over seeds (n) | p | difference over tasks (n) | p | per seed, guidance - baseline |",
        "|---|---|---|---|---|---|",
    ]
    for metric in metrics_of(results):
        try:
            d = compare(results, guidance, baseline, metric)
        except Exception:  # an older results.json without per-task values of the metric
            continue
        s, t = d["over_seeds"], d["over_tasks"]
        ours, theirs = (methods[r]["zero_shot"][metric]["per_seed"] for r in (guidance, baseline))
        seeds = [f"{a - b:+.1f}" for a, b in zip(ours, theirs, strict=True)]
        lines.append(
            f"| {metric} | {s['mean']:+.2f} ± {ci_text(s['ci95'])} ({s['n']}) | {ci_text(s['p_value'], '.3g')} | "
            f"{t['mean']:+.2f} ± {ci_text(t['ci95'])} ({t['n']}) | {ci_text(t['p_value'], '.3g')} | "
            f"{', '.join(seeds)} |"
        )
    oracle = next((r for r in _rows(results, "bound") if (f := find_row(r)) and f.spec.bound == "upper"), None)
    if oracle is not None:
        g, b, o = (methods[r]["zero_shot"]["acc"]["mean"] for r in (guidance, baseline, oracle))
        if o - b >= 1.0 and g > b:  # a share of a gap of less than a point, or a loss, says nothing
            lines += ["", f"Share of the gap from `{baseline}` to `{oracle}` that `{guidance}` closes: "
                      f"{100 * (g - b) / (o - b):.0f}% (accuracy {b:.2f} -> {g:.2f}, oracle {o:.2f})."]  # fmt: skip
    return lines
