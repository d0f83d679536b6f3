"""The training stages of a run, for one seed and fold, and how table rows are built from them.

Every stage writes one checkpoint `<run>/<stage>/seed<S>-fold<F>.safetensors` + `.json` (the JSON last: it marks the
stage done) and a `.metrics.jsonl` log. A stage runs only when its checkpoint is missing, after the stages it needs:

    baseline methods (uncond-multitask, cond-multitask, ..., uncond-hnet-maml): no dependencies
    latents          <- uncond-hnet-maml      adapted HNet latents of the meta-train tasks (SPEC P2)
    hvae             <- latents               a VAE over HNet(z) (SPEC P3)
    hyperclip-hnet   <- latents               HyperCLIP over HNet(z) (SPEC P4)
    hyperclip-hvae   <- hvae                  HyperCLIP over Dec(u)
    hyperldm-hnet    <- latents               HyperLDM over z (SPEC P6)
    hyperldm-hvae    <- hvae                  HyperLDM over u

Each stage is seeded from its own identity (name, seed, fold), so a resumed run gives the same numbers as an
uninterrupted one, and a stage's result does not depend on which other stages or rows a run has.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hyperguide.checkpoint import checkpoint_exists, load_checkpoint, load_tensors, save_checkpoint, save_tensors
from hyperguide.data.batch import Questions, collate
from hyperguide.data.splits import TaskSplit
from hyperguide.data.tasks import Task
from hyperguide.errors import HyperguideError
from hyperguide.meta.collect import collect_latents
from hyperguide.meta.guided import GAMMA_ROWS, GUIDED, GuidedMethod
from hyperguide.meta.hvae import train_hvae
from hyperguide.meta.hyperclip import task_identification, train_hyperclip
from hyperguide.meta.hyperldm import train_hyperldm
from hyperguide.meta.inner_loop import adapt, support_loss_fn
from hyperguide.meta.methods import METHODS, REFERENCE_ROWS, Method, UncondHNetMAML
from hyperguide.meta.spaces import HNetSpace, HVAESpace, LatentSpace
from hyperguide.meta.train import train_method
from hyperguide.models.adapter import AdapterShape
from hyperguide.models.vae import WeightVAE

if TYPE_CHECKING:
    from hyperguide.harness import RunConfig

Progress = Callable[[str], None]

STAGE_DEPS: dict[str, tuple[str, ...]] = {
    "latents": ("uncond-hnet-maml",),
    "hvae": ("latents",),
    "hyperclip-hnet": ("latents",),
    "hyperclip-hvae": ("hvae",),
    "hyperldm-hnet": ("latents",),
    "hyperldm-hvae": ("hvae",),
}
GUIDANCE_STAGES = tuple(STAGE_DEPS)


def run_seed(name: str, seed: int, fold: int) -> int:
    """A seed for one (stage, seed, fold), independent of which other stages or methods run."""
    return (zlib.crc32(name.encode()) + 1_000_003 * seed + 7919 * fold) % 2**31


# ---------------------------------------------------------------------------------------------------------------- rows


def trained_name(row: str) -> str:
    """The trained model behind a table row: `hnet+hyperldm@1.5` is `hnet+hyperldm` sampled at gamma 1.5."""
    return row.split("@", 1)[0]


def row_gamma(row: str) -> float | None:
    return float(row.split("@", 1)[1]) if "@" in row else None


def is_known_row(row: str) -> bool:
    name, at, gamma = row.partition("@")
    if not at:
        return name in REFERENCE_ROWS or name in METHODS or (name in GUIDED and name not in GAMMA_ROWS)
    try:
        return name in GAMMA_ROWS and float(gamma) >= 0
    except ValueError:
        return False


def method_class(name: str) -> type[Method]:
    return GUIDED[name] if name in GUIDED else METHODS[name]


def stages_of(name: str) -> tuple[str, ...]:
    """The stages whose checkpoints a trained model is assembled from (its own name for a baseline)."""
    if name in GUIDED:
        cls = GUIDED[name]
        return ("uncond-hnet-maml", *(("hvae",) if cls.space_kind == "hvae" else ()), cls.guide_stage())
    return (name,)


def adapter_shape(tasks: list[Task], config: RunConfig) -> AdapterShape:
    feature_dim = int(tasks[0].support_x.shape[1])
    return AdapterShape(feature_dim, config.method.adapter_hidden or feature_dim // 3)


def build_method(row: str, tasks: list[Task], config: RunConfig) -> Method:
    """An untrained model of the row's method, sized for the tasks; guidance rows get their gamma."""
    shape = adapter_shape(tasks, config)
    question_dim = int(tasks[0].question_emb.shape[0])
    name = trained_name(row)
    if name in GUIDED:
        method = GUIDED[name](
            shape, question_dim, config.method, hvae=config.hvae, hyperclip=config.hyperclip, hyperldm=config.hyperldm
        )
        gamma = row_gamma(row)
        method.gamma = 1.0 if gamma is None else gamma
        return method
    if name not in METHODS:
        raise HyperguideError(f"unknown method {name!r}")
    return METHODS[name](shape, question_dim, config.method)


def load_trained(row: str, tasks: list[Task], config: RunConfig, out_dir: Path, seed: int, fold: int) -> Method:
    """The row's model with every part loaded from its stage checkpoint; `train_seconds` sums the parts'."""
    name = trained_name(row)
    torch.manual_seed(run_seed(name, seed, fold))
    method = build_method(row, tasks, config)
    method.sample_seed = run_seed(name, seed, fold)  # type: ignore[assignment]
    parts: dict[str, torch.nn.Module] = method.parts() if isinstance(method, GuidedMethod) else {name: method}
    seconds = 0.0
    if method.trained_by != "none":
        for stage, module in parts.items():
            stem = stage_stem(out_dir, stage, seed, fold)
            if not checkpoint_exists(stem):
                raise HyperguideError(f"no checkpoint {stem}.safetensors: run `hyperguide train` first")
            seconds += float(load_checkpoint(stem, module).get("train_seconds", 0.0))
    method.train_seconds = seconds  # type: ignore[assignment]
    return method


# -------------------------------------------------------------------------------------------------------------- stages


def stage_stem(out_dir: Path, stage: str, seed: int, fold: int) -> Path:
    return out_dir / stage / f"seed{seed}-fold{fold}"


@dataclass
class StageContext:
    """Everything a stage of one (seed, fold) needs."""

    out_dir: Path
    seed: int
    split: TaskSplit
    tasks: list[Task]
    config: RunConfig
    device: str = "cpu"
    progress: bool = False
    say: Progress = print

    def stem(self, stage: str) -> Path:
        return stage_stem(self.out_dir, stage, self.seed, self.split.fold)

    @property
    def train_tasks(self) -> list[Task]:
        return [self.tasks[i] for i in self.split.train]

    @property
    def test_tasks(self) -> list[Task]:
        return [self.tasks[i] for i in self.split.test]

    def questions(self, tasks: list[Task]) -> Questions:
        return Questions.of(tasks)

    def load_base(self) -> UncondHNetMAML:
        base = build_method("uncond-hnet-maml", self.tasks, self.config)
        load_checkpoint(self.stem("uncond-hnet-maml"), base)
        assert isinstance(base, UncondHNetMAML)
        return base.to(self.device)

    def load_latents(self) -> torch.Tensor:
        return load_tensors(self.stem("latents"))[0]["latents"]

    def load_space(self, kind: str) -> LatentSpace:
        base = self.load_base()
        if kind == "hnet":
            return HNetSpace(base)
        cfg = self.config.hvae
        vae = WeightVAE(base.shape.n_params, cfg.hidden_dims, cfg.latent_dim)
        load_checkpoint(self.stem("hvae"), vae)
        return HVAESpace(base, vae).to(self.device)


def ensure_stage(name: str, ctx: StageContext) -> dict[str, float]:
    """Run the stage (after its dependencies) unless its checkpoint exists; returns seconds spent per stage run."""
    stem = ctx.stem(name)
    if checkpoint_exists(stem):
        return {}
    spent: dict[str, float] = {}
    for dep in STAGE_DEPS.get(name, ()):
        spent.update(ensure_stage(dep, ctx))
    ctx.say(f"train {name} seed {ctx.seed} fold {ctx.split.fold} ({len(ctx.split.train)} tasks)")
    s = run_seed(name, ctx.seed, ctx.split.fold)
    torch.manual_seed(s)
    generator = torch.Generator().manual_seed(s)
    log_path = stem.parent / f"{stem.name}.metrics.jsonl"
    start = time.perf_counter()
    run = _STAGES.get(name, _train_baseline)
    module, tensors, extra, history = run(name, ctx, generator, log_path)
    elapsed = time.perf_counter() - start
    metadata = {"stage": name, "seed": ctx.seed, "fold": ctx.split.fold, "run_seed": s, "train_seconds": elapsed}
    metadata.update(extra)
    _write_log(log_path, history)
    if module is not None:
        save_checkpoint(stem, module, metadata)
    else:
        save_tensors(stem, tensors, metadata)
    spent[name] = elapsed
    return spent


StageResult = tuple[torch.nn.Module | None, dict[str, torch.Tensor], dict[str, Any], list[dict[str, float]]]


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")


def _train_baseline(name: str, ctx: StageContext, generator: torch.Generator, log_path: Path) -> StageResult:
    method = build_method(name, ctx.tasks, ctx.config)
    history = train_method(
        method, ctx.train_tasks, ctx.config.train, generator=generator, device=ctx.device, progress=ctx.progress
    )
    return method, {}, {"method": name}, history


def _collect(name: str, ctx: StageContext, generator: torch.Generator, log_path: Path) -> StageResult:
    cfg = ctx.config.collect
    latents = collect_latents(
        ctx.load_base(),
        ctx.train_tasks,
        n_aug=cfg.n_aug,
        inner=cfg.inner,
        generator=generator,
        batch_size=cfg.batch_size,
        max_examples=cfg.max_examples,
        device=ctx.device,
        progress=ctx.progress,
    )
    return None, {"latents": latents, "tasks": torch.tensor(ctx.split.train)}, {"n_aug": cfg.n_aug}, []


def _hvae(name: str, ctx: StageContext, generator: torch.Generator, log_path: Path) -> StageResult:
    vae, history = train_hvae(
        ctx.load_base(),
        ctx.load_latents(),
        ctx.config.hvae,
        generator=generator,
        device=ctx.device,
        progress=ctx.progress,
    )
    return vae, {}, {}, history


def _finetuned_latents(space: LatentSpace, tasks: list[Task], ctx: StageContext) -> torch.Tensor:
    """Each task's latent fine-tuned on its support set from the space's start (as the collection does)."""
    out = []
    for start in range(0, len(tasks), 32):
        batch = collate(tasks[start : start + 32]).to(ctx.device)
        x0 = space.start(len(batch), None).to(ctx.device)
        out.append(adapt(support_loss_fn(space.base.shape, space.decode, batch), x0, ctx.config.collect.inner))
    return torch.cat(out)


def _hyperclip(name: str, ctx: StageContext, generator: torch.Generator, log_path: Path) -> StageResult:
    cfg = ctx.config.hyperclip
    space = ctx.load_space(name.split("-", 1)[1])
    latents = ctx.load_latents()
    cond = ctx.questions(ctx.train_tasks)
    encoder, history = train_hyperclip(
        space, latents, cond, cfg, generator=generator, device=ctx.device, progress=ctx.progress
    )
    # Task identification among `candidates` questions (SPEC P4 step 3): meta-train tasks with the weights of their
    # first augmentation, meta-test tasks with latents fine-tuned on their support sets.
    with torch.no_grad():
        train_weights = space.decode(space.from_hnet_latents(latents[0].to(ctx.device))[0])
        test_weights = space.decode(_finetuned_latents(space, ctx.test_tasks, ctx))
    ident = {
        "task_id_train": task_identification(
            encoder, train_weights, cond.to(ctx.device), candidates=cfg.candidates, generator=generator
        ),
        "task_id_test": task_identification(
            encoder,
            test_weights,
            ctx.questions(ctx.test_tasks).to(ctx.device),
            candidates=cfg.candidates,
            generator=generator,
        ),
    }
    ctx.say(
        f"{name}: task identification among {cfg.candidates}: train {ident['task_id_train']:.1f}%, "
        f"test {ident['task_id_test']:.1f}%"
    )
    return encoder, {}, ident, history


def _hyperldm(name: str, ctx: StageContext, generator: torch.Generator, log_path: Path) -> StageResult:
    space = ctx.load_space(name.split("-", 1)[1])
    model, history = train_hyperldm(
        space,
        ctx.load_latents(),
        ctx.questions(ctx.train_tasks),
        ctx.config.hyperldm,
        generator=generator,
        device=ctx.device,
        progress=ctx.progress,
    )
    return model, {}, {}, history


_STAGES: dict[str, Callable[[str, StageContext, torch.Generator, Path], StageResult]] = {
    "latents": _collect,
    "hvae": _hvae,
    "hyperclip-hnet": _hyperclip,
    "hyperclip-hvae": _hyperclip,
    "hyperldm-hnet": _hyperldm,
    "hyperldm-hvae": _hyperldm,
}
