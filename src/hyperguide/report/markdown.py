"""results.md of a bench: the table of every row with the bounds marked, the paired difference of each row against
the best baseline, the plots (or why one is missing) and the seconds per stage. A row's kind and bound come from
the row registry (`hyperguide.rows`); a row the registry does not know is of kind "other".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from hyperguide.eval.metrics import METRICS
from hyperguide.eval.results import metrics_of
from hyperguide.eval.statistics import ci_text, compare
from hyperguide.machine import describe
from hyperguide.report.concepts import render_concepts
from hyperguide.report.conditioning import render_controls, render_novelty
from hyperguide.report.fit_and_claim import best_paper_baseline, render_claim, render_fit_rows, render_fit_stages
from hyperguide.rows import RowKind, find_row

Kind = RowKind | Literal["other"]
BOUND_TEXT = {"lower": "lower bound", "upper": "upper bound"}


def row_kind(row: str) -> Kind:
    found = find_row(row)
    return "other" if found is None else found.spec.kind


def row_bound(row: str) -> Literal["lower", "upper"] | None:
    found = find_row(row)
    return None if found is None else found.spec.bound


def zero_shot_acc(results: Mapping[str, Any], row: str) -> float:
    return float(results["methods"][row]["zero_shot"]["acc"]["mean"])


def best_of(results: Mapping[str, Any], kind: Kind) -> str | None:
    """The row of this kind with the highest mean zero-shot accuracy (the first such row on ties), or None."""
    rows = [r for r in results["methods"] if row_kind(r) == kind]
    return max(rows, key=lambda r: zero_shot_acc(results, r)) if rows else None


def best_row(results: Mapping[str, Any]) -> str | None:
    """The best zero-shot row among baselines, ablations and guidance rows (no bound, no label-using reference)."""
    rows = [r for r in results["methods"] if row_kind(r) in ("baseline", "ablation", "guidance")]
    return max(rows, key=lambda r: zero_shot_acc(results, r)) if rows else None


def differences(results: Mapping[str, Any], reference: str) -> dict[str, dict[str, Any]]:
    """Per row other than `reference`: the paired difference row - reference of zero-shot accuracy, over seeds and
    over tasks (`eval.statistics.compare`); positive means the row is better."""
    return {row: compare(results, row, reference) for row in results["methods"] if row != reference}


def _mean_ci(stat: Mapping[str, Any]) -> str:
    return f"{stat['mean']:.2f} ± {ci_text(stat['ci95'])}"


def _signed(d: Mapping[str, Any]) -> str:
    return f"{d['mean']:+.2f} ± {ci_text(d['ci95'])}"


def k_settings(results: Mapping[str, Any]) -> list[str]:
    """The k-shot settings present in any row, numerically, with 'full' last."""
    ks = {k for m in results["methods"].values() for k in m["k_shot"]}
    return sorted(ks, key=lambda k: (k == "full", int(k) if k.isdigit() else 0))


def _label(row: str, entry: Mapping[str, Any]) -> str:
    label = f"`{row}`" + (" *" if entry.get("uses_support_labels") else "")
    bound = row_bound(row)
    return f"{label} ({BOUND_TEXT[bound]})" if bound else label


def ordered_rows(results: Mapping[str, Any]) -> list[str]:
    """The lower bounds first, then rows in the results' order, the upper bounds last."""
    rows = list(results["methods"])
    first = [r for r in rows if row_bound(r) == "lower"]
    last = [r for r in rows if row_bound(r) == "upper"]
    return first + [r for r in rows if row_bound(r) is None] + last


def render_table(results: Mapping[str, Any], reference: str | None) -> str:
    """One row per method: each metric zero-shot, k-shot acc, and the paired difference of acc against
    `reference`."""
    ks, metrics = k_settings(results), metrics_of(results)
    diffs = differences(results, reference) if reference else {}
    head = ["method", *[f"zero-shot {m}" for m in metrics], *[f"{k}-shot acc" for k in ks]]
    if reference:
        head.append(f"Δ acc vs `{reference}`")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ordered_rows(results):
        entry = results["methods"][row]
        zs = entry["zero_shot"]
        cells = [_label(row, entry), *[_mean_ci(zs[m]) if m in zs else "" for m in metrics]]
        cells += [_mean_ci(entry["k_shot"][k]["acc"]) if k in entry["k_shot"] else "" for k in ks]
        if reference:
            cells.append("best baseline" if row == reference else _signed(diffs[row]["over_seeds"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metrics_legend(results: Mapping[str, Any]) -> str:
    """What each metric of the results is (the registry's description; the bare name for one not registered)."""
    described = [f"`{m}`: {METRICS[m].description}" if m in METRICS else f"`{m}`" for m in metrics_of(results)]
    return "Metrics, per task: " + "; ".join(described) + "."


def render_differences(results: Mapping[str, Any], reference: str) -> str:
    """The paired differences against `reference` in full: over seeds and over tasks, with p-values."""
    lines = [
        f"| method - `{reference}` | over seeds (n) | p | over tasks (n) | p |",
        "|---|---|---|---|---|",
    ]
    for row, d in differences(results, reference).items():
        s, t = d["over_seeds"], d["over_tasks"]
        ps, pt = ci_text(s["p_value"], ".3g"), ci_text(t["p_value"], ".3g")
        lines.append(f"| `{row}` | {_signed(s)} ({s['n']}) | {ps} | {_signed(t)} ({t['n']}) | {pt} |")
    return "\n".join(lines)


def render_timing(timing: Mapping[str, Any]) -> str:
    """Seconds per training stage, the evaluation (all rows; per row in results.json), the report, and the total."""
    lines = ["| stage | seconds |", "|---|---|"]
    for name, seconds in timing.get("train", {}).items():
        lines.append(f"| train `{name}` | {seconds:.1f} |")
    evaluate = timing.get("evaluate", {})
    lines.append(f"| evaluate ({len(evaluate)} rows) | {sum(evaluate.values()):.1f} |")
    lines.append(f"| report | {timing.get('report', 0.0):.1f} |")
    lines.append(f"| **total** | **{timing.get('total', 0.0):.1f}** |")
    return "\n".join(lines)


def render_diagnostics(diagnostics: Mapping[str, Any]) -> str:
    """Per-stage diagnostics that carry train/test summaries (HyperCLIP task identification), as a table."""
    lines = ["| diagnostic | meta-train | meta-test |", "|---|---|---|"]
    for name, d in diagnostics.items():
        if isinstance(d, Mapping) and {"train", "test"} <= set(d):
            among = f" (among {d['candidates']})" if "candidates" in d else ""
            lines.append(f"| `{name}`{among} | {_mean_ci(d['train'])} | {_mean_ci(d['test'])} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def caption(results: Mapping[str, Any]) -> str:
    folds = f", {results['folds']} folds" if results["folds"] > 1 else ""
    if results.get("tune_folds"):
        return (
            f"TUNING RUN: {results['universe']}, split {results['split']}, its meta-test tasks set aside; "
            f"{results['tune_folds']} folds of its meta-train tasks, each tested once ({len(results['test_tasks'])} "
            f"tasks over all folds), {len(results['seeds'])} seeds. Accuracy in %: mean over seeds ± 95% CI."
        )
    return (
        f"{results['universe']}, split {results['split']}, {len(results['seeds'])} seeds{folds}, "
        f"{len(results['test_tasks'])} meta-test tasks (over all folds). Accuracy in %: the mean over seeds of the "
        "mean over meta-test tasks ± the 95% Student-t CI over seeds. * uses support labels (not zero-shot)."
    )


WHAT_IT_TESTS = (
    "What this split tests: every meta-test question names a concept that no meta-train question names, so a row "
    "scores above chance only if its generator passes the encoders' alignment of questions and images through to the "
    "weights for words the meta-learner never saw. The encoders may know those words (easyvqa's image tower was "
    "trained on captions that name every colour and shape; CLIP was trained on the web): it is no test of a concept "
    "the encoders do not know. Balanced accuracy is the measure: on unbalanced yes/no tasks the majority answer scores "
    "high accuracy at chance balance."
)


def what_it_tests(results: Mapping[str, Any]) -> str:
    """A paragraph saying what a split of held-out concepts tests, '' for the other splits."""
    return WHAT_IT_TESTS if results.get("split") in ("compositional", "concepts") else ""


def _reference_text(results: Mapping[str, Any], reference: str) -> str:
    headline = results.get("headline") or {}
    if headline.get("chosen_on") and headline.get("paper_baseline") == reference and not results.get("tune_folds"):
        return "the baseline of the paper's table that scored best on the tune run (see the headline)"
    return "the best baseline on these very tasks (a best case: no tune run chose it)"


def machine_line(results: Mapping[str, Any]) -> str:
    """Where the numbers were computed (results.json's `machine`): another CPU or thread count moves them a little
    (docs/decisions.md, D17)."""
    if "machine" not in results:
        return "Machine: not recorded (this results.json predates the record)."
    return (
        f"Machine: {describe(results['machine'])}. Another CPU, thread count or torch version rounds differently and "
        "training amplifies it: expect the spread stated in docs/decisions.md (D17)."
    )


def render_markdown(results: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """The whole results.md. `plots` (from `plots.write_plots`) maps each plot's title to its PNG's file name in the
    run folder, or to a note starting with 'skipped:' that says why there is no such plot."""
    reference = best_paper_baseline(results) or best_of(results, "baseline")
    parts = [f"# Benchmark: {results['universe']}, split {results['split']}", "", caption(results), ""]
    parts += [machine_line(results), ""]
    if what_it_tests(results):
        parts += [what_it_tests(results), ""]
    parts += [render_table(results, reference), "", metrics_legend(results), ""]
    if reference:
        parts += [
            f"Δ: the paired difference of zero-shot accuracy against `{reference}` "
            f"({zero_shot_acc(results, reference):.2f}%), {_reference_text(results, reference)}, over seeds, with "
            "its 95% CI; positive is better.",
            "",
        ]
    claim = render_claim(results)
    if claim:
        parts += ["## The headline: a guidance row against the baselines", "", claim, ""]
    fit_rows, fit_stages = render_fit_rows(results), render_fit_stages(results)
    if fit_rows or fit_stages:
        parts += [
            "## Fit: the learned parts on their own training tasks",
            "",
            "Before generalisation, fit: each row's zero-shot procedure on its meta-train questions, scored on "
            "their query sets, beside its meta-test score (accuracy in %, mean over seeds ± 95% CI), then each "
            "guidance stage's own measures. Tasks that agree on every image they share (paraphrases) count as "
            "one where marked: no model can tell them apart from their data.",
            "",
            fit_rows,
            "",
            fit_stages,
            "",
        ]
    concepts = render_concepts(results)
    if concepts:
        parts += [
            "## Leave one concept out",
            "",
            "Zero-shot balanced accuracy (%) per held-out concept: each fold trains on every task whose question "
            "does not name the concept and tests on those that do (tasks per fold in parentheses); mean over seeds "
            "± 95% CI, and the mean over concepts.",
            "",
            concepts,
            "",
        ]
    controls, novelty = render_controls(results), render_novelty(results)
    if controls:
        parts += ["## Does the question drive the weights?", "", controls, ""]
    if novelty:
        parts += ["## Are the generated weights new?", "", novelty, ""]
    if reference:
        parts += ["## Paired differences against the best baseline", "", render_differences(results, reference), ""]
    else:
        parts += ["No baseline row in this run: no paired differences.", ""]
    diagnostics = render_diagnostics(results.get("diagnostics", {}))
    if diagnostics:
        parts += ["## Diagnostics", "", "Accuracy (%), mean over seeds ± 95% CI.", "", diagnostics, ""]
    parts += ["## Plots", ""]
    for title, value in plots.items():
        if value.startswith("skipped:"):
            parts += [f"- {title}: {value}", ""]
        else:
            parts += [f"### {title}", "", f"![{title}]({value})", ""]
    if "timing" in results:
        parts += [
            "## Time",
            "",
            "Seconds per stage: training as its checkpoints record it, summed over seeds and folds (also over "
            "earlier, interrupted runs); evaluation and report of the run that finished them.",
            "",
        ]
        parts += [render_timing(results["timing"]), ""]
    return "\n".join(parts)
