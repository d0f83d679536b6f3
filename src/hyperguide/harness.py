"""Runs: train methods over seeds and folds into a run folder, then evaluate them all into one results.json.

A run folder holds `config.json` (the resolved RunConfig), per method, seed and fold a checkpoint
(`<method>/seed<S>-fold<F>.safetensors` + `.json`) and a `metrics.jsonl` training log, and `results.json`.
Training skips checkpoints that exist, so an interrupted `train` picks up where it stopped; every (method, seed, fold)
is seeded from its own identity, so a resumed run ends with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hyperguide.config import from_dict, to_dict
from hyperguide.data.splits import TaskSplit, make_splits
from hyperguide.data.tasks import Task, Universe
from hyperguide.errors import HyperguideError
from hyperguide.eval.evaluate import Scores, evaluate_method, k_shot_tasks, reference_scores, zero_shot_phis
from hyperguide.eval.stats import paired_difference, summarize
from hyperguide.io import read_json, write_json
from hyperguide.meta.collect import CollectConfig
from hyperguide.meta.guided import GAMMA_ROWS, GUIDED
from hyperguide.meta.hvae import HVAEConfig
from hyperguide.meta.hyperclip import HyperCLIPConfig
from hyperguide.meta.hyperldm import HyperLDMConfig
from hyperguide.meta.inner_loop import InnerLoop
from hyperguide.meta.methods import ALL_ROWS, REFERENCE_ROWS, Method, MethodConfig
from hyperguide.meta.train import TrainConfig
from hyperguide.stages import (  # noqa: F401  (build_method, row_gamma, run_seed: part of this module's API)
    GUIDANCE_STAGES,
    StageContext,
    build_method,
    ensure_stage,
    is_known_row,
    load_trained,
    method_class,
    row_gamma,
    run_seed,
    stage_stem,
    stages_of,
    trained_name,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EvalConfig:
    """k-shot settings (SPEC P8: 10 SGD steps at lr 0.1 from the zero-shot inner parameters)."""

    k_shots: tuple[str, ...] = ("1", "2", "4", "8", "full")
    k_shot_methods: tuple[str, ...] = ()  # rows that get the k-shot curve; empty: all
    finetune: InnerLoop = field(default_factory=InnerLoop)
    batch_size: int = 32


@dataclass(frozen=True)
class RunConfig:
    universe: str = "easyvqa"
    split: str = "random"
    folds: int = 5
    held_out: tuple[str, ...] = ()
    prompts: str = "answer"
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = field(default_factory=lambda: default_rows())
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    hvae: HVAEConfig = field(default_factory=HVAEConfig)
    hyperclip: HyperCLIPConfig = field(default_factory=HyperCLIPConfig)
    hyperldm: HyperLDMConfig = field(default_factory=HyperLDMConfig)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if not is_known_row(m)]
        if unknown:
            raise HyperguideError(
                f"unknown method(s) {unknown}; choose from {', '.join(ALL_ROWS)}, {', '.join(GUIDED)} "
                f"(rows of {', '.join(GAMMA_ROWS)} need a guidance scale: NAME@GAMMA)"
            )
        for k in self.eval.k_shots:
            if k != "full" and not (k.isdigit() and int(k) > 0):
                raise HyperguideError(f"k-shot value {k!r} must be a positive integer or 'full'")


def default_rows(gammas: tuple[float, ...] = HyperLDMConfig().gammas) -> tuple[str, ...]:
    """Every row of the table: the references and baselines, then the guidance rows, HyperLDM at each gamma."""
    rows = [*ALL_ROWS, "hnet+hyperclip", "hvae+hyperclip"]
    rows += [f"{name}@{gamma:g}" for name in GAMMA_ROWS for gamma in gammas]
    return tuple(rows)


STAGE_ALIASES: dict[str, tuple[str, ...]] = {
    "collect": ("latents",),
    "hyperclip": ("hyperclip-hnet", "hyperclip-hvae"),
    "hyperldm": ("hyperldm-hnet", "hyperldm-hvae"),
}


def resolve_targets(names: Sequence[str], gammas: Sequence[float]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What `hyperguide train` was asked for -> (table rows, extra stages). Names are rows (`cond-multitask`,
    `hvae+hyperldm@2`), `all`, a guidance method without gamma (`hnet+hyperldm`: every gamma of the sweep), or stages
    (`latents`/`collect`, `hvae`, `hyperclip`, `hyperldm` and their `-hnet`/`-hvae` forms)."""
    rows: list[str] = []
    stages: list[str] = []
    for name in names:
        if name == "all":
            rows += default_rows(tuple(gammas))
        elif name in STAGE_ALIASES or name in GUIDANCE_STAGES:
            for stage in STAGE_ALIASES.get(name, (name,)):
                stages.append(stage)
                kind, _, space = stage.partition("-")
                if kind in ("hyperclip", "hyperldm"):
                    rows += [r for r in default_rows(tuple(gammas)) if r.startswith(f"{space}+{kind}")]
        elif name in GAMMA_ROWS:
            rows += [f"{name}@{g:g}" for g in gammas]
        else:
            rows.append(name)
    unknown = [r for r in rows if not is_known_row(r)]
    if unknown:
        raise HyperguideError(
            f"unknown method or stage {unknown}; methods: {', '.join(ALL_ROWS)}, {', '.join(GUIDED)} "
            f"(NAME@GAMMA for {', '.join(GAMMA_ROWS)}); stages: {', '.join([*STAGE_ALIASES, *GUIDANCE_STAGES])}"
        )
    return tuple(dict.fromkeys(rows)), tuple(dict.fromkeys(stages))


def splits_of(universe: Universe, config: RunConfig) -> list[TaskSplit]:
    return make_splits(universe, config.split, folds=config.folds, held_out=config.held_out or None)


def write_config(out_dir: Path, config: RunConfig) -> None:
    """Write config.json, or check that the folder's existing one is the same run."""
    path = out_dir / "config.json"
    data = to_dict(config)
    if path.is_file():
        existing = read_json(path, what="run config")
        methods = list(dict.fromkeys([*existing.get("methods", []), *data["methods"]]))
        if {**existing, "methods": methods} == {**data, "methods": methods}:
            if methods != existing.get("methods"):  # a run folder gathers the methods trained into it
                write_json(path, {**data, "methods": methods})
            return
        if existing != data:
            changed = sorted(k for k in data if existing.get(k) != data[k])
            raise HyperguideError(
                f"{out_dir} holds a run with a different config (differs in: {', '.join(changed)}); "
                "use another --out folder"
            )
        return
    write_json(path, data)


def read_config(out_dir: Path) -> RunConfig:
    return from_dict(RunConfig, read_json(out_dir / "config.json", what="run config"))


def train_run(
    universe: Universe,
    config: RunConfig,
    out_dir: Path,
    *,
    device: str = "cpu",
    progress: bool = False,
    say: Progress = print,
    stages: tuple[str, ...] = (),
) -> dict[str, float]:
    """Train every stage the config's rows need (plus `stages`) for every seed and fold, skipping stages whose
    checkpoints exist; returns seconds spent per stage (0 where everything was already there)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_config(out_dir, config)
    tasks = universe.materialize(range(len(universe.tasks)))
    splits = splits_of(universe, config)
    needed: list[str] = []
    for row in config.methods:
        name = trained_name(row)
        if name in REFERENCE_ROWS or method_class(name).trained_by == "none":
            continue
        needed += stages_of(name)
    needed = list(dict.fromkeys([*needed, *stages]))
    seconds: dict[str, float] = {}
    for stage in needed:
        for seed in config.seeds:
            for split in splits:
                ctx = StageContext(out_dir, seed, split, tasks, config, device, progress, say)
                for name, spent in ensure_stage(stage, ctx).items():
                    seconds[name] = seconds.get(name, 0.0) + spent
        seconds.setdefault(stage, 0.0)
    return seconds


def _method_scores(
    name: str,
    method: Method | None,
    tasks: list[Task],
    k: str | None,
    config: RunConfig,
    seed: int,
    device: str,
    zero_shot: torch.Tensor | None = None,
) -> tuple[list[int], Scores]:
    """Indices (into `tasks`) of the evaluated tasks and their scores, zero-shot (k None) or k-shot. `zero_shot`: the
    tasks' zero-shot inner parameters, computed once and shared by every setting (None: each setting computes them)."""
    if k is None:
        kept, chosen = list(range(len(tasks))), tasks
    else:
        kept, chosen = k_shot_tasks(
            tasks, None if k == "full" else int(k), seed=1000 * seed + (0 if k == "full" else int(k))
        )
    if not chosen:
        return [], {"acc": [], "bal_acc": []}
    if method is None:
        return kept, reference_scores(name, chosen)
    finetune = config.eval.finetune if k is not None else None
    start = None if zero_shot is None else zero_shot[kept]
    scores = evaluate_method(
        method, chosen, finetune=finetune, start=start, batch_size=config.eval.batch_size, device=device
    )
    return kept, scores


def evaluate_run(
    universe: Universe,
    out_dir: Path,
    *,
    device: str = "cpu",
    say: Progress = print,
) -> dict[str, Any]:
    """Evaluate every method of the run on every seed and fold; write and return results.json."""
    config = read_config(out_dir)
    tasks = universe.materialize(range(len(universe.tasks)))
    splits = splits_of(universe, config)
    results: dict[str, Any] = {
        "universe": config.universe,
        "split": config.split,
        "folds": len(splits),
        "seeds": list(config.seeds),
        "test_tasks": [universe.tasks[i].question for s in splits for i in s.test],
        "methods": {},
    }
    settings: list[str | None] = [None, *config.eval.k_shots]
    for name in config.methods:
        say(f"evaluate {name}")
        wants_k = not config.eval.k_shot_methods or name in config.eval.k_shot_methods
        per_setting: dict[str | None, dict[str, list]] = {s: {"acc": [], "bal_acc": [], "n": []} for s in settings}
        per_task_acc: list[list[float]] = []
        train_seconds = 0.0
        uses_labels = name in ("majority", "oracle")
        for seed in config.seeds:
            seed_scores: dict[str | None, Scores] = {s: {"acc": [], "bal_acc": []} for s in settings}
            for split in splits:
                method = None
                if name not in REFERENCE_ROWS:
                    method = load_trained(name, tasks, config, out_dir, seed, split.fold).to(device)
                    train_seconds += float(method.train_seconds)  # type: ignore[arg-type]
                    uses_labels = uses_labels or method.uses_support_for_zero_shot
                test_tasks = [tasks[i] for i in split.test]
                zero_shot = None  # a question-only zero-shot value is computed once, and k-shot starts from it
                if method is not None and not method.uses_support_for_zero_shot:
                    zero_shot = zero_shot_phis(method, test_tasks, batch_size=config.eval.batch_size, device=device)
                for setting in settings:
                    if setting is not None and not wants_k:
                        continue
                    _, scores = _method_scores(name, method, test_tasks, setting, config, seed, device, zero_shot)
                    seed_scores[setting]["acc"].extend(scores["acc"])
                    seed_scores[setting]["bal_acc"].extend(scores["bal_acc"])
            per_task_acc.append(seed_scores[None]["acc"])
            for setting in settings:
                s = seed_scores[setting]
                if s["acc"]:
                    per_setting[setting]["acc"].append(sum(s["acc"]) / len(s["acc"]))
                    per_setting[setting]["bal_acc"].append(sum(s["bal_acc"]) / len(s["bal_acc"]))
                    per_setting[setting]["n"].append(len(s["acc"]))
        zero = per_setting[None]
        entry: dict[str, Any] = {
            "zero_shot": {
                "acc": summarize(zero["acc"]),
                "bal_acc": summarize(zero["bal_acc"]),
                "per_task_acc": per_task_acc,
            },
            "k_shot": {},
            "uses_support_labels": uses_labels,
            "train_seconds": train_seconds,
        }
        for setting in config.eval.k_shots:
            s = per_setting[setting]
            if s["acc"]:
                entry["k_shot"][setting] = {
                    "acc": summarize(s["acc"]),
                    "bal_acc": summarize(s["bal_acc"]),
                    "tasks": s["n"][0],
                }
        results["methods"][name] = entry
    results["diagnostics"] = _diagnostics(out_dir, config, splits)
    write_json(out_dir / "results.json", results)
    return results


def _diagnostics(out_dir: Path, config: RunConfig, splits: list[TaskSplit]) -> dict[str, Any]:
    """HyperCLIP task identification accuracy (among `hyperclip.candidates` questions) over seeds, per space."""
    out: dict[str, Any] = {}
    for stage in ("hyperclip-hnet", "hyperclip-hvae"):
        per_seed: dict[str, list[float]] = {"train": [], "test": []}
        for seed in config.seeds:
            values: dict[str, list[float]] = {"train": [], "test": []}
            for split in splits:
                stem = stage_stem(out_dir, stage, seed, split.fold)
                if not stem.with_suffix(".json").is_file():
                    continue
                meta = read_json(stem.with_suffix(".json"), what="checkpoint metadata")
                for key in values:
                    values[key].append(float(meta[f"task_id_{key}"]))
            for key, v in values.items():
                if v:
                    per_seed[key].append(sum(v) / len(v))
        if per_seed["train"]:
            out[f"{stage}_task_id"] = {
                "candidates": config.hyperclip.candidates,
                "train": summarize(per_seed["train"]),
                "test": summarize(per_seed["test"]),
            }
    return out


def compare(results: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    """Paired comparison of rows a and b: over seeds (the mean over tasks per seed) and over tasks (the mean over
    seeds per task). Positive means a is better."""
    ma, mb = results["methods"][a]["zero_shot"], results["methods"][b]["zero_shot"]
    per_task_a = [sum(col) / len(col) for col in zip(*ma["per_task_acc"], strict=True)]
    per_task_b = [sum(col) / len(col) for col in zip(*mb["per_task_acc"], strict=True)]
    return {
        "over_seeds": paired_difference(ma["acc"]["per_seed"], mb["acc"]["per_seed"]),
        "over_tasks": paired_difference(per_task_a, per_task_b),
    }


def format_results(results: dict[str, Any]) -> str:
    """A Markdown table: zero-shot acc and bal_acc with 95% CI, and the k-shot accuracies."""
    ks = sorted({k for m in results["methods"].values() for k in m["k_shot"]}, key=lambda k: (k == "full", k.zfill(4)))
    head = ["method", "zero-shot acc", "zero-shot bal_acc", *[f"{k}-shot acc" for k in ks]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in results["methods"].items():
        zs = m["zero_shot"]
        label = name + (" *" if m.get("uses_support_labels") else "")
        cells = [
            label,
            f"{zs['acc']['mean']:.2f} ± {zs['acc']['ci95']:.2f}",
            f"{zs['bal_acc']['mean']:.2f} ± {zs['bal_acc']['ci95']:.2f}",
        ]
        for k in ks:
            v = m["k_shot"].get(k)
            cells.append(f"{v['acc']['mean']:.2f} ± {v['acc']['ci95']:.2f}" if v else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"{results['universe']}, split {results['split']}, {len(results['seeds'])} seeds"
        + (f", {results['folds']} folds" if results["folds"] > 1 else "")
        + "; mean over seeds of the mean over meta-test tasks, ± 95% CI over seeds. * uses support labels."
    )
    return "\n".join(lines)
