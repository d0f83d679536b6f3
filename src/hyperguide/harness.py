"""Runs: train methods over seeds and folds into a run folder, then evaluate them all into one results.json.

A run folder holds `config.json` (the resolved RunConfig), per method, seed and fold a checkpoint
(`<method>/seed<S>-fold<F>.safetensors` + `.json`) and a `metrics.jsonl` training log, and `results.json`.
Training skips checkpoints that exist, so an interrupted `train` picks up where it stopped; every (method, seed, fold)
is seeded from its own identity, so a resumed run ends with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hyperguide.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
from hyperguide.config import from_dict, to_dict
from hyperguide.data.splits import TaskSplit, make_splits
from hyperguide.data.tasks import Task, Universe
from hyperguide.errors import HyperguideError
from hyperguide.eval.evaluate import Scores, evaluate_method, k_shot_tasks, reference_scores
from hyperguide.eval.stats import paired_difference, summarize
from hyperguide.io import read_json, write_json
from hyperguide.meta.collect import collect_latents
from hyperguide.meta.hyperldm import HNetHyperLDM, HyperLDMConfig, LatentData, train_hyperldm
from hyperguide.meta.inner_loop import InnerLoop
from hyperguide.meta.methods import ALL_ROWS, METHODS, REFERENCE_ROWS, Method, MethodConfig
from hyperguide.meta.train import TrainConfig, train_method
from hyperguide.models.adapter import AdapterShape

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
    methods: tuple[str, ...] = ALL_ROWS
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hyperldm: HyperLDMConfig = field(default_factory=HyperLDMConfig)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in ALL_ROWS and not _is_guidance_row(m)]
        if unknown:
            raise HyperguideError(f"unknown method(s) {unknown}; choose from {', '.join(ALL_ROWS)}")
        for k in self.eval.k_shots:
            if k != "full" and not (k.isdigit() and int(k) > 0):
                raise HyperguideError(f"k-shot value {k!r} must be a positive integer or 'full'")


def _is_guidance_row(row: str) -> bool:
    name, _, gamma = row.partition("@")
    try:
        return name == HNetHyperLDM.name and gamma != "" and float(gamma) >= 0
    except ValueError:
        return False


def run_seed(method: str, seed: int, fold: int) -> int:
    """A seed for one (method, seed, fold), independent of which other methods run."""
    return (zlib.crc32(method.encode()) + 1_000_003 * seed + 7919 * fold) % 2**31


def splits_of(universe: Universe, config: RunConfig) -> list[TaskSplit]:
    return make_splits(universe, config.split, folds=config.folds, held_out=config.held_out or None)


def trained_name(row: str) -> str:
    """The trained model behind a table row: `hnet+hyperldm@1.5` is `hnet+hyperldm` sampled at gamma 1.5."""
    return row.split("@", 1)[0]


def row_gamma(row: str) -> float | None:
    return float(row.split("@", 1)[1]) if "@" in row else None


def method_class(name: str) -> type[Method]:
    return HNetHyperLDM if name == HNetHyperLDM.name else METHODS[name]


def build_method(row: str, universe_tasks: list[Task], config: RunConfig) -> Method:
    example = universe_tasks[0]
    feature_dim = int(example.support_x.shape[1])
    shape = AdapterShape(feature_dim, config.method.adapter_hidden or feature_dim // 3)
    question_dim = int(example.question_emb.shape[0])
    name = trained_name(row)
    if name == HNetHyperLDM.name:
        method = HNetHyperLDM(shape, question_dim, config.method, config.hyperldm)
        method.gamma = row_gamma(row) if row_gamma(row) is not None else 1.0
        return method
    return METHODS[name](shape, question_dim, config.method)


def _checkpoint_stem(out_dir: Path, method: str, seed: int, fold: int) -> Path:
    return out_dir / method / f"seed{seed}-fold{fold}"


def write_config(out_dir: Path, config: RunConfig) -> None:
    """Write config.json, or check that the folder's existing one is the same run."""
    path = out_dir / "config.json"
    data = to_dict(config)
    if path.is_file():
        existing = read_json(path, what="run config")
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


def _log_to(path: Path) -> Callable[[dict[str, float]], None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)

    def log(record: dict[str, float]) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    return log


def _train_one(
    name: str,
    seed: int,
    split: TaskSplit,
    tasks: list[Task],
    config: RunConfig,
    out_dir: Path,
    *,
    device: str,
    progress: bool,
    say: Progress,
) -> float:
    """Train one (method, seed, fold) unless its checkpoint exists; returns the seconds spent."""
    stem = _checkpoint_stem(out_dir, name, seed, split.fold)
    if checkpoint_exists(stem):
        return 0.0
    spent = 0.0
    if name == HNetHyperLDM.name:  # needs the HNet it diffuses in: train that first
        spent += _train_one(
            "uncond-hnet-maml", seed, split, tasks, config, out_dir, device=device, progress=progress, say=say
        )
    say(f"train {name} seed {seed} fold {split.fold} ({len(split.train)} tasks)")
    s = run_seed(name, seed, split.fold)
    torch.manual_seed(s)
    method = build_method(name, tasks, config)
    train_tasks = [tasks[i] for i in split.train]
    generator = torch.Generator().manual_seed(s)
    log = _log_to(stem.parent / f"seed{seed}-fold{split.fold}.metrics.jsonl")
    start = time.perf_counter()
    if isinstance(method, HNetHyperLDM):
        load_checkpoint(_checkpoint_stem(out_dir, "uncond-hnet-maml", seed, split.fold), method.base)
        method.base.to(device)
        latents = collect_latents(
            method.base,
            train_tasks,
            n_aug=config.hyperldm.n_aug,
            inner=config.method.inner,
            generator=generator,
            device=device,
            progress=progress,
        )
        data = LatentData(latents, torch.stack([t.question_emb for t in train_tasks]))
        denoiser, history = train_hyperldm(data, config.hyperldm, generator=generator, progress=progress)
        for record in history:
            log(record)
        method.denoiser.load_state_dict(denoiser.state_dict())
        method.latent_mean.copy_(data.mean)
        method.latent_std.copy_(data.std)
    else:
        train_method(method, train_tasks, config.train, generator=generator, device=device, log=log, progress=progress)
    elapsed = time.perf_counter() - start
    save_checkpoint(
        stem, method, {"method": name, "seed": seed, "fold": split.fold, "run_seed": s, "train_seconds": elapsed}
    )
    return spent + elapsed


def train_run(
    universe: Universe,
    config: RunConfig,
    out_dir: Path,
    *,
    device: str = "cpu",
    progress: bool = False,
    say: Progress = print,
) -> dict[str, float]:
    """Train every trainable method for every seed and fold; returns seconds spent per method (skipped: 0)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_config(out_dir, config)
    tasks = universe.materialize(range(len(universe.tasks)))
    splits = splits_of(universe, config)
    seconds: dict[str, float] = {}
    for row in config.methods:
        name = trained_name(row)
        if name in REFERENCE_ROWS or method_class(name).trained_by == "none" or name in seconds:
            continue
        seconds[name] = sum(
            _train_one(name, seed, split, tasks, config, out_dir, device=device, progress=progress, say=say)
            for seed in config.seeds
            for split in splits
        )
    return seconds


def _method_scores(
    name: str,
    method: Method | None,
    tasks: list[Task],
    k: str | None,
    config: RunConfig,
    seed: int,
    device: str,
) -> tuple[list[int], Scores]:
    """Indices (into `tasks`) of the evaluated tasks and their scores, zero-shot (k None) or k-shot."""
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
    return kept, evaluate_method(method, chosen, finetune=finetune, batch_size=config.eval.batch_size, device=device)


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
        for seed in config.seeds:
            seed_scores: dict[str | None, Scores] = {s: {"acc": [], "bal_acc": []} for s in settings}
            for split in splits:
                method = None
                if name not in REFERENCE_ROWS:
                    trained = trained_name(name)
                    torch.manual_seed(run_seed(trained, seed, split.fold))
                    method = build_method(name, tasks, config).to(device)
                    method.sample_seed = run_seed(trained, seed, split.fold)  # type: ignore[assignment]
                    stem = _checkpoint_stem(out_dir, trained, seed, split.fold)
                    if method_class(trained).trained_by != "none":
                        if not checkpoint_exists(stem):
                            raise HyperguideError(f"no checkpoint {stem}.safetensors: run `hyperguide train` first")
                        train_seconds += float(load_checkpoint(stem, method).get("train_seconds", 0.0))
                test_tasks = [tasks[i] for i in split.test]
                for setting in settings:
                    if setting is not None and not wants_k:
                        continue
                    _, scores = _method_scores(name, method, test_tasks, setting, config, seed, device)
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
            "uses_support_labels": name in ("majority", "oracle"),
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
    write_json(out_dir / "results.json", results)
    return results


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
