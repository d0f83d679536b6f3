"""The training stages of a run, for one seed and fold, and the assembly of a table row from their checkpoints.

Every stage writes one checkpoint `<run>/<stage>/seed<S>-fold<F>.safetensors` + `.json` (the JSON last: it marks the
stage done) and a `.metrics.jsonl` log that grows as it trains. A stage runs only when its checkpoint is missing,
after the stages it needs. The table of stages:

    a meta-trained row (cond-multitask, ..., uncond-hnet-maml): its own stage, no dependencies (see `stage`)
    latents          <- uncond-hnet-maml      adapted HNet latents of the meta-train tasks (docs/design.md §P2)
    hvae             <- latents               a VAE over HNet(z) (§P3)
    hyperclip-hnet   <- latents               HyperCLIP over HNet(z) (§P4)
    hyperclip-hvae   <- hvae                  HyperCLIP over Dec(u)
    hyperldm-hnet    <- latents               HyperLDM over z (§P6)
    hyperldm-hvae    <- hvae                  HyperLDM over u
    question-bank    <- latents               the meta-train tasks' mean latents and questions (retrieval)

and the same chain over the HNet with the pointer (`uncond-hnet-maml-pointer` -> `latents-pointer` -> `hvae-pointer`,
`hyperldm-hnet-pointer`, ...): a stage reads its latent space from the stages its `Chain` names.

Each stage is seeded from its own identity (name, seed, fold), so a resumed run gives the same numbers as an
uninterrupted one, and a stage's result does not depend on which other stages or rows a run has.

A checkpoint's JSON records its fingerprint (`stage_fingerprint`): a hash of each config section that shapes the
stage (`DATA_KEYS`, its own `shaped_by`, and its dependencies' sections, knobs marked `evaluation_only` left out),
of the universe's data, and the sha256 of each checkpoint it was trained from. A checkpoint whose fingerprint or
tensors hash differs from what the run expects is retrained by `ensure_stage` and refused by `load_row`.

Under torchrun every process runs every stage on its share of each batch (`hyperguide.distributed`); the main
process decides which stages to run and writes their checkpoints, and the others wait for it before going on.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from hyperguide import distributed
from hyperguide.checkpoint import (
    checkpoint_problem,
    load_checkpoint,
    load_tensors,
    read_metadata,
    save_checkpoint,
    save_tensors,
)
from hyperguide.config import HyperLDMConfig, RunConfig, apply_overrides, to_dict, training_keys, training_view
from hyperguide.data.batch import Questions, collate
from hyperguide.data.splits import TaskSplit
from hyperguide.data.tasks import Task, Universe
from hyperguide.diffusion.noise import Noise
from hyperguide.errors import HyperguideError
from hyperguide.eval.evaluate import evaluate_method
from hyperguide.eval.fit import cluster_fit, latent_scores, mean
from hyperguide.events import Callback, Note, StageFinished, StageStarted, emit
from hyperguide.io import non_finite
from hyperguide.meta.collect import collect_latents
from hyperguide.meta.guided import latent_space
from hyperguide.meta.hvae import train_hvae
from hyperguide.meta.hyperclip import hard_negative_identification, retrieval, task_identification, train_hyperclip
from hyperguide.meta.hyperldm import sample_latents, train_hyperldm
from hyperguide.meta.inner_loop import adapt, support_loss_fn
from hyperguide.meta.methods import Method, UncondHNetMAML
from hyperguide.meta.regressor import train_regressor
from hyperguide.meta.retrieval import question_bank
from hyperguide.meta.spaces import HNetSpace, HVAESpace, LatentSpace, SpaceKind, SpaceLatents
from hyperguide.meta.train import train_method
from hyperguide.models.adapter import AdapterShape
from hyperguide.models.hyperclip import HyperCLIP
from hyperguide.models.hyperldm import HyperLDM
from hyperguide.models.regressor import LatentRegressor
from hyperguide.models.vae import WeightVAE
from hyperguide.rows import BASE, POINTER, POINTER_SETTING, ROWS, Row, RowSpec, row_spec, table_rows
from hyperguide.run.folder import RunFolder
from hyperguide.train.loop import NonFiniteLoss, Probing

M = TypeVar("M", bound=nn.Module)


def run_seed(name: str, seed: int, fold: int) -> int:
    """A seed for one (stage, seed, fold), independent of which other stages or methods run."""
    return (zlib.crc32(name.encode()) + 1_000_003 * seed + 7919 * fold) % 2**31


def adapter_shape(tasks: Sequence[Task], config: RunConfig) -> AdapterShape:
    return adapter_shape_for(int(tasks[0].support_x.shape[1]), config)


def adapter_shape_for(feature_dim: int, config: RunConfig) -> AdapterShape:
    """The adapter's shape on `feature_dim`-d features: `method.adapter_hidden` hidden units, else a third of D."""
    return AdapterShape(feature_dim, config.method.adapter_hidden or feature_dim // 3)


def question_dim(tasks: Sequence[Task]) -> int:
    return int(tasks[0].question_emb.shape[0])


@dataclass(frozen=True)
class Chain:
    """The stages a latent-space stage reads: the HNet (`base`), its adapted latents and the HVAE over them."""

    base: str = BASE
    latents: str = "latents"
    hvae: str = "hvae"


DEFAULT_CHAIN = Chain()
POINTER_CHAIN = Chain(BASE + POINTER, "latents" + POINTER, "hvae" + POINTER)  # over the HNet with the pointer
CHAINS = {chain.base: chain for chain in (DEFAULT_CHAIN, POINTER_CHAIN)}


def row_chain(spec: RowSpec) -> Chain:
    """The chain a guidance row's latent space comes from (its first stage is the chain's HNet)."""
    return CHAINS.get(spec.stages[0], DEFAULT_CHAIN) if spec.stages else DEFAULT_CHAIN


@dataclass
class StageContext:
    """Everything a stage of one (seed, fold) needs."""

    folder: RunFolder
    seed: int
    split: TaskSplit
    tasks: list[Task]
    config: RunConfig
    device: str = "cpu"
    callbacks: Sequence[Callback] = ()
    agree: torch.Tensor | None = None  # (n_tasks, n_tasks) `data.tasks.agreement` of the universe's tasks
    data: str | None = None  # the universe's fingerprint (`Universe.fingerprint`); None: not checked
    chain: Chain = DEFAULT_CHAIN  # where the latent space is read from (the running stage's `StageSpec.chain`)

    def stem(self, stage: str) -> Path:
        return self.folder.stem(stage, self.seed, self.split.fold)

    @property
    def train_tasks(self) -> list[Task]:
        return [self.tasks[i] for i in self.split.train]

    @property
    def test_tasks(self) -> list[Task]:
        return [self.tasks[i] for i in self.split.test]

    @property
    def shape(self) -> AdapterShape:
        return adapter_shape(self.tasks, self.config)

    def probing(self, measure: Callable[[M], Mapping[str, float]]) -> Probing[M]:
        """`measure` (its first measure is the one a plateau is watched on) with the run's probe settings."""
        p = self.config.probes
        return Probing(measure, p.count, p.patience, p.min_delta)

    def agreement(self, rows: Sequence[int], cols: Sequence[int]) -> torch.Tensor:
        """Which tasks of `rows` agree with which of `cols` (identity where the universe's agreement is unknown)."""
        if self.agree is None:
            return torch.tensor([[r == c for c in cols] for r in rows])
        return self.agree[torch.tensor(list(rows))[:, None], torch.tensor(list(cols))[None, :]]

    def load_base(self) -> UncondHNetMAML:
        base = UncondHNetMAML(self.shape, question_dim(self.tasks), self.config.method)
        load_checkpoint(self.stem(self.chain.base), base)
        return base.to(self.device)

    def load_latents(self) -> torch.Tensor:
        return load_tensors(self.stem(self.chain.latents))[0]["latents"]

    def load_space(self, kind: SpaceKind) -> LatentSpace:
        space = latent_space(kind, self.load_base(), self.config.hvae)
        if isinstance(space, HVAESpace):
            load_checkpoint(self.stem(self.chain.hvae), space.vae)
        return space.to(self.device)


@dataclass
class StageOutput:
    """What a stage produced: a module to checkpoint, or plain tensors; metadata for its JSON."""

    module: nn.Module | None = None
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Diagnostic:
    """A per-stage number for results.json's diagnostics: two checkpoint metadata fields (meta-train, meta-test)
    summarised over seeds, under the key `<stage>_<key>`, with `extra(config)` beside them."""

    key: str
    train: str
    test: str
    extra: Callable[[RunConfig], dict[str, Any]] = lambda config: {}


@dataclass(frozen=True)
class StageSpec:
    name: str
    deps: tuple[str, ...]
    run: Callable[[StageContext, torch.Generator], StageOutput]
    summary: str
    diagnostic: Diagnostic | None = None
    fit: tuple[str, ...] = ()  # checkpoint metadata fields that measure the stage's fit, for results.json's "fit"
    # The config sections (or dotted knobs) that shape it beyond DATA_KEYS and its dependencies'; None (a stage that
    # declares nothing): every section but the evaluation-only ones, so that no setting it reads is left out.
    shaped_by: tuple[str, ...] | None = None
    overrides: tuple[str, ...] = ()  # `key=value` settings of this stage on top of the run's (a row's variant)
    chain: Chain = DEFAULT_CHAIN  # the stages it reads its latent space from


def pointer_stage(spec: StageSpec) -> StageSpec:
    """`spec` over the HNet with the pointer: named NAME-pointer, its dependencies and chain renamed to the pointer
    chain's, with the pointer's setting (and `spec`'s own)."""
    renamed = {DEFAULT_CHAIN.base: POINTER_CHAIN.base, "latents": POINTER_CHAIN.latents, "hvae": POINTER_CHAIN.hvae}
    return replace(
        spec,
        name=spec.name + POINTER,
        deps=tuple(renamed.get(d, d) for d in spec.deps),
        summary=f"{spec.summary}, over the HNet with the pointer",
        overrides=(POINTER_SETTING, *spec.overrides),
        chain=POINTER_CHAIN,
    )


# What every stage is trained on: the config's keys that choose the tasks and their texts (the data's own hash is
# the fingerprint's "data"). Meta-trained rows are shaped by `META_TRAINING`.
DATA_KEYS: tuple[str, ...] = (
    "universe", "split", "folds", "held_out", "tune_folds", "prompts", "probes"  # probes may stop a stage early
)  # fmt: skip
META_TRAINING: tuple[str, ...] = ("method", "train")


def _at_most(task: Task, limit: int | None, generator: torch.Generator) -> Task:
    """The task with at most `limit` of its support examples, drawn at random (all of them for None)."""
    if limit is None:
        return task
    keep = torch.randperm(len(task.support_y), generator=generator)[:limit].sort().values
    return replace(task, support_x=task.support_x[keep], support_y=task.support_y[keep])


def _method_fit(ctx: StageContext) -> Callable[[Method], dict[str, float]]:
    """The fit of a meta-trained method on its meta-train tasks' query sets: for MAML first the accuracy after its
    inner loop on at most `train.max_examples` support examples per task, as meta-training adapts
    (`fit_adapted_acc`, what MAML trains for), then for every method its zero-shot accuracy (`fit_acc`)."""
    generator = torch.Generator().manual_seed(0)
    limit = ctx.config.train.max_examples
    adapted_tasks = [_at_most(t, limit, generator) for t in ctx.train_tasks]

    def measure(method: Method) -> dict[str, float]:
        batch = ctx.config.eval.batch_size
        out = {}
        if method.trained_by == "maml":
            adapted = evaluate_method(
                method, adapted_tasks, finetune=ctx.config.method.inner, batch_size=batch, device=ctx.device
            )
            out["fit_adapted_acc"] = mean(adapted["acc"])
        out["fit_acc"] = mean(evaluate_method(method, ctx.train_tasks, batch_size=batch, device=ctx.device)["acc"])
        return out

    return measure


def _meta_training(spec: RowSpec) -> Callable[[StageContext, torch.Generator], StageOutput]:
    def run(ctx: StageContext, generator: torch.Generator) -> StageOutput:
        method = Row(spec).build(ctx.shape, question_dim(ctx.tasks), ctx.config)
        measure = _method_fit(ctx)
        train_method(
            method,
            ctx.train_tasks,
            ctx.config.train,
            generator=generator,
            name=spec.name,
            device=ctx.device,
            probing=ctx.probing(measure),
            callbacks=ctx.callbacks,
        )
        return StageOutput(method, metadata={"method": spec.name, **measure(method)})  # train_method left it in eval

    return run


def _collect(ctx: StageContext, generator: torch.Generator) -> StageOutput:
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
        callbacks=ctx.callbacks,
    )
    return StageOutput(
        tensors={"latents": latents, "tasks": torch.tensor(ctx.split.train)}, metadata={"n_aug": cfg.n_aug}
    )


def _hvae(ctx: StageContext, generator: torch.Generator) -> StageOutput:
    # The gate (docs/design.md §P3, step 3): the decoded encoder mean of each meta-train task's weights (its first
    # augmentation's) must score nearly what the weights themselves score on the task.
    base, latents = ctx.load_base(), ctx.load_latents()
    z = latents[0].to(ctx.device)
    hnet = mean(latent_scores(HNetSpace(base), ctx.train_tasks, z, device=ctx.device)["acc"])

    def measure(vae: WeightVAE) -> dict[str, float]:
        space = HVAESpace(base, vae).to(ctx.device)
        decoded = mean(latent_scores(space, ctx.train_tasks, space.from_hnet_latents(z)[0], device=ctx.device)["acc"])
        return {"fit_gate": 100.0 * decoded / hnet, "fit_decoded_acc": decoded}

    vae, _ = train_hvae(
        base, latents, ctx.config.hvae, generator=generator, device=ctx.device, probing=ctx.probing(measure),
        callbacks=ctx.callbacks,
    )  # fmt: skip
    fit = measure(vae)
    gate = {"hnet_acc": hnet, "decoded_acc": fit["fit_decoded_acc"], "gate_ratio": fit["fit_gate"]}
    emit(
        ctx.callbacks,
        Note(f"hvae: decoded encoder means score {gate['decoded_acc']:.1f}% on meta-train tasks, HNet(z) {hnet:.1f}%"),
    )
    return StageOutput(vae, metadata=gate)


def _finetuned_latents(space: LatentSpace, tasks: list[Task], ctx: StageContext) -> torch.Tensor:
    """Each task's latent fine-tuned on its support set from the space's start (as the collection does)."""
    out = []
    for start in range(0, len(tasks), 32):
        batch = collate(tasks[start : start + 32]).to(ctx.device)
        x0 = space.start(len(batch), None).to(ctx.device)
        decoder = space.decoder(batch.questions.emb)
        out.append(adapt(support_loss_fn(space.base.shape, decoder, batch), x0, ctx.config.collect.inner))
    return torch.cat(out)


def _hard_negatives(ctx: StageContext, indices: Sequence[int], pool: Sequence[int]) -> torch.Tensor:
    """For each task of `indices`, the position in `pool` of the nearest question (pooled cosine) of a task that does
    not agree with it (its negation, typically)."""
    emb = torch.nn.functional.normalize(torch.stack([ctx.tasks[i].question_emb for i in pool]), dim=-1)
    own = torch.nn.functional.normalize(torch.stack([ctx.tasks[i].question_emb for i in indices]), dim=-1)
    cos = (own @ emb.T).masked_fill(ctx.agreement(indices, pool), -2.0)
    return cos.argmax(1)


def _hyperclip(space_kind: SpaceKind) -> Callable[[StageContext, torch.Generator], StageOutput]:
    def run(ctx: StageContext, generator: torch.Generator) -> StageOutput:
        cfg = ctx.config.hyperclip
        space = ctx.load_space(space_kind)
        latents = ctx.load_latents()
        cond = Questions.of(ctx.train_tasks)
        agree = ctx.agreement(ctx.split.train, ctx.split.train)
        with torch.no_grad():
            codes0 = space.code(space.from_hnet_latents(latents[0].to(ctx.device))[0])

        def measure(encoder: HyperCLIP) -> dict[str, float]:
            rank = retrieval(encoder, codes0, cond.to(ctx.device), agree)
            return {"fit_top1_agree": rank["top1_agree"], "fit_top1": rank["top1"]}

        encoder, _ = train_hyperclip(
            space, latents, cond, cfg, generator=generator, name=f"hyperclip-{space_kind}", device=ctx.device,
            probing=ctx.probing(measure), callbacks=ctx.callbacks,
        )  # fmt: skip
        # Fit: how it ranks its own training weights' questions; identification among `candidates` questions
        # (docs/design.md §P4, step 3) and against each task's hard negative, for meta-train tasks with the weights of
        # their first augmentation and meta-test tasks with latents fine-tuned on their support sets.
        train, test = ctx.split.train, ctx.split.test
        pool = [*train, *test]
        train_codes = codes0
        with torch.no_grad():
            test_codes = space.code(_finetuned_latents(space, ctx.test_tasks, ctx))
        cond, test_questions = cond.to(ctx.device), Questions.of(ctx.test_tasks).to(ctx.device)
        pool_questions = Questions.of([ctx.tasks[i] for i in pool]).to(ctx.device)
        rank = retrieval(encoder, train_codes, cond, agree)
        fit = {
            "task_id_train": task_identification(
                encoder, train_codes, cond, candidates=cfg.candidates, generator=generator
            ),
            "task_id_test": task_identification(
                encoder, test_codes, test_questions, candidates=cfg.candidates, generator=generator
            ),
            "retrieval_top1": rank["top1"],
            "retrieval_top1_agree": rank["top1_agree"],
            "retrieval_mean_rank": rank["mean_rank"],
            "hard_negative_train": hard_negative_identification(
                encoder, train_codes, cond, pool_questions, _hard_negatives(ctx, train, pool)
            ),
            "hard_negative_test": hard_negative_identification(
                encoder, test_codes, test_questions, pool_questions, _hard_negatives(ctx, test, pool)
            ),
        }
        emit(
            ctx.callbacks,
            Note(
                f"hyperclip-{space_kind}: its own question first for {rank['top1']:.1f}% of its training weights "
                f"({rank['top1_agree']:.1f}% counting agreeing tasks); hard negatives: train "
                f"{fit['hard_negative_train']:.1f}%, test {fit['hard_negative_test']:.1f}%"
            ),
        )
        return StageOutput(encoder, metadata=fit)

    return run


def _hyperldm(space_kind: SpaceKind) -> Callable[[StageContext, torch.Generator], StageOutput]:
    def run(ctx: StageContext, generator: torch.Generator) -> StageOutput:
        cfg = ctx.config.hyperldm
        space, latents, questions = ctx.load_space(space_kind), ctx.load_latents(), Questions.of(ctx.train_tasks)
        data, agree = SpaceLatents.of(space, latents, ctx.device), ctx.agreement(ctx.split.train, ctx.split.train)

        def measure(model: HyperLDM, sampler: HyperLDMConfig = cfg) -> dict[str, float]:
            """Conditional samples (gamma 1) for the meta-train questions, against the training latents."""
            q = questions.to(ctx.device)
            samples = sample_latents(model, q, sampler, gamma=1.0, generator=Noise.for_rows(0, q.emb))
            fit = cluster_fit(samples, data, agree)
            fit["train_acc"] = mean(latent_scores(space, ctx.train_tasks, samples, device=ctx.device)["acc"])
            return fit

        # while it trains, a respaced sampler of at most PROBE_SAMPLE_STEPS steps keeps the probes cheap
        fast = replace(cfg, sample_steps=min(cfg.sample_steps or cfg.num_steps, PROBE_SAMPLE_STEPS))

        model, _ = train_hyperldm(
            space, latents, questions, cfg, generator=generator, name=f"hyperldm-{space_kind}", device=ctx.device,
            probing=ctx.probing(lambda m: _prefixed(measure(m, fast), HYPERLDM_PROBE)),
            callbacks=ctx.callbacks,
        )  # fmt: skip
        fit = measure(model)
        emit(
            ctx.callbacks,
            Note(
                f"hyperldm-{space_kind}: samples for meta-train questions score {fit['train_acc']:.1f}%, "
                f"{fit['own_cluster_agree']:.0f}% in their own task's cluster, "
                f"{fit['distance_in_spreads']:.2f} within-task spreads from a training latent"
            ),
        )
        return StageOutput(model, metadata=fit)

    return run


def _question_bank(ctx: StageContext, generator: torch.Generator) -> StageOutput:
    """Nothing to train: the meta-train tasks' adapted HNet latents and question embeddings, for `nearest-question`."""
    return StageOutput(question_bank(ctx.load_latents(), ctx.train_tasks))


TASK_ID = Diagnostic(
    "task_id", "task_id_train", "task_id_test", lambda config: {"candidates": config.hyperclip.candidates}
)


def _regressor(space_kind: SpaceKind) -> Callable[[StageContext, torch.Generator], StageOutput]:
    def run(ctx: StageContext, generator: torch.Generator) -> StageOutput:
        space, latents, questions = ctx.load_space(space_kind), ctx.load_latents(), Questions.of(ctx.train_tasks)

        def measure(model: LatentRegressor) -> dict[str, float]:
            with torch.no_grad():
                out = model(questions.to(ctx.device))
            return {"fit_train_acc": mean(latent_scores(space, ctx.train_tasks, out, device=ctx.device)["acc"])}

        model, _ = train_regressor(
            space, latents, questions, ctx.config.regressor, generator=generator, name=f"regressor-{space_kind}",
            device=ctx.device, probing=ctx.probing(measure), callbacks=ctx.callbacks,
        )  # fmt: skip
        return StageOutput(model, metadata={"train_acc": measure(model)["fit_train_acc"]})

    return run


def _prefixed(measures: Mapping[str, float], keys: Sequence[str]) -> dict[str, float]:
    """The `keys` of `measures`, in that order (the first is watched for a plateau), named `fit_<key>`."""
    return {f"fit_{k}": measures[k] for k in keys}


PROBE_SAMPLE_STEPS = 100
HYPERLDM_PROBE = ("own_cluster_agree", "train_acc")  # the first is watched for the plateau
HVAE_FIT = ("gate_ratio", "decoded_acc", "hnet_acc")
HYPERCLIP_FIT = (
    "retrieval_top1",
    "retrieval_top1_agree",
    "retrieval_mean_rank",
    "hard_negative_train",
    "hard_negative_test",
    "task_id_train",
    "task_id_test",
)
HYPERLDM_FIT = ("train_acc", "own_cluster", "own_cluster_agree", "distance_in_spreads")

# fmt: off
STAGES: dict[str, StageSpec] = {
    s.name: s
    for s in (
        StageSpec("latents", (BASE,), _collect, "adapted HNet latents of every meta-train task",
                  shaped_by=("collect",)),
        StageSpec("hvae", ("latents",), _hvae, "a VAE over the adapted weights HNet(z)", fit=HVAE_FIT,
                  shaped_by=("hvae",)),
        StageSpec("hyperclip-hnet", ("latents",), _hyperclip("hnet"), "HyperCLIP over HNet(z)", TASK_ID,
                  fit=HYPERCLIP_FIT, shaped_by=("hyperclip",)),
        StageSpec("hyperclip-hvae", ("hvae",), _hyperclip("hvae"), "HyperCLIP over Dec(u)", TASK_ID,
                  fit=HYPERCLIP_FIT, shaped_by=("hyperclip",)),
        StageSpec("hyperldm-hnet", ("latents",), _hyperldm("hnet"), "HyperLDM over z", fit=HYPERLDM_FIT,
                  shaped_by=("hyperldm",)),
        StageSpec("hyperldm-hvae", ("hvae",), _hyperldm("hvae"), "HyperLDM over u", fit=HYPERLDM_FIT,
                  shaped_by=("hyperldm",)),
        StageSpec("regressor-hnet", ("latents",), _regressor("hnet"), "a question -> z regressor (ablation)",
                  fit=("train_acc",), shaped_by=("regressor",)),
        StageSpec("question-bank", ("latents",), _question_bank, "the meta-train latents and questions (retrieval)",
                  shaped_by=()),
        # the question through attention over its tokens (the rows' `-attention` variants)
        StageSpec("hyperclip-hnet-attention", ("latents",), _hyperclip("hnet"), "HyperCLIP over HNet(z), attention",
                  TASK_ID, fit=HYPERCLIP_FIT, shaped_by=("hyperclip",), overrides=("hyperclip.question=attention",)),
        StageSpec("hyperldm-hnet-attention", ("latents",), _hyperldm("hnet"), "HyperLDM over z, attention",
                  fit=HYPERLDM_FIT, shaped_by=("hyperldm",), overrides=("hyperldm.question=attention",)),
        StageSpec("regressor-hnet-attention", ("latents",), _regressor("hnet"), "the regressor, attention",
                  fit=("train_acc",), shaped_by=("regressor",), overrides=("regressor.question=attention",)),
    )
}
# fmt: on
# The same chain over the HNet with the pointer (the guidance rows' `-pointer` variants, `hyperguide.rows`).
POINTER_STAGES = (
    "latents",
    "hvae",
    "hyperclip-hnet",
    "hyperclip-hvae",
    "hyperldm-hnet",
    "hyperldm-hvae",
    "regressor-hnet",
    "hyperldm-hnet-attention",
)  # fmt: skip
STAGES.update({s.name: s for s in (pointer_stage(STAGES[name]) for name in POINTER_STAGES)})
STAGE_GROUPS: dict[str, tuple[str, ...]] = {  # names `hyperguide train` accepts for several stages
    "collect": ("latents",),
    "hyperclip": ("hyperclip-hnet", "hyperclip-hvae", "hyperclip-hnet-attention"),
    "hyperldm": ("hyperldm-hnet", "hyperldm-hvae", "hyperldm-hnet-attention"),
    "regressor": ("regressor-hnet", "regressor-hnet-attention"),
}


def stage(name: str) -> StageSpec:
    """The stage of this name: one of `STAGES`, or the meta-training of a row trained as a whole."""
    if name in STAGES:
        if name in ROWS or name in STAGE_GROUPS:
            raise HyperguideError(f"{name!r} names a stage and a row (or a group of stages); rename the row")
        return STAGES[name]
    try:
        spec = row_spec(name)
    except HyperguideError:
        spec = None
    if spec is None or not spec.trained_as_a_whole:
        raise HyperguideError(f"unknown stage {name!r}; stages: {', '.join(STAGES)} and the meta-trained methods")
    return StageSpec(
        name, (), _meta_training(spec), f"meta-training of {name}", shaped_by=META_TRAINING, overrides=spec.overrides
    )


def stage_config(name: str, config: RunConfig) -> RunConfig:
    """The run's config as stage `name` sees it: with the stage's own settings."""
    overrides = stage(name).overrides
    return apply_overrides(config, overrides) if overrides else config


def stage_order(names: Iterable[str]) -> list[str]:
    """The stages `names` need, dependencies included, each once and after what it needs."""
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in visiting:
            raise HyperguideError(f"stages depend on each other in a cycle: {' -> '.join([*visiting, name])}")
        visiting.append(name)
        for dep in stage(name).deps:
            visit(dep)
        visiting.pop()
        if name not in order:
            order.append(name)

    for name in names:
        visit(name)
    return order


def row_stages(rows: Iterable[Row]) -> list[str]:
    """Every stage the rows' trained parts come from, dependencies included, in the order they run."""
    return stage_order(s for row in rows for s in row.spec.stages)


def shaping_keys(name: str) -> list[str]:
    """The config keys that shape stage `name`: `DATA_KEYS`, its own `shaped_by` and its dependencies', sorted."""
    spec = stage(name)
    keys = {*DATA_KEYS, *(training_keys(RunConfig) if spec.shaped_by is None else spec.shaped_by)}
    for dep in spec.deps:
        keys.update(shaping_keys(dep))
    keys.discard("precision")  # every stage's: `stage_fingerprint` adds it when it is not float32
    return sorted(keys)


def _config_value(config: RunConfig, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return training_view(value)


def digest(value: Any) -> str:
    """The sha256 of a JSON-able value (keys sorted): how fingerprints hash what they cover."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def stage_fingerprint(
    name: str, config: RunConfig, folder: RunFolder, seed: int, fold: int, data: str | None
) -> dict[str, str]:
    """What stage `name` of (seed, fold) is made from, as {what: hash}: `config.<key>` for each of its
    `shaping_keys` (evaluation-only knobs left out), `data` (the universe's fingerprint, when known) and
    `checkpoint <dep>` (the recorded sha256 of each checkpoint it is trained from; "missing" when there is none),
    and `config.precision` unless the run computes in float32."""
    config = stage_config(name, config)
    out = {f"config.{key}": digest(_config_value(config, key)) for key in shaping_keys(name)}
    if config.precision != "fp32":  # float32 checkpoints keep the fingerprints they had before precision was a knob
        out["config.precision"] = config.precision
    if config.split == "compositional" and config.tune_folds is not None:  # its tune folds hold out concepts now
        out["tune folds"] = "concepts where the universe lists them"
    if data is not None:
        out["data"] = data
    for dep in stage(name).deps:
        try:
            out[f"checkpoint {dep}"] = str(read_metadata(folder.stem(dep, seed, fold)).get("sha256", "missing"))
        except HyperguideError:
            out[f"checkpoint {dep}"] = "missing"
    return out


def learning_rates(name: str, config: RunConfig) -> list[str]:
    """`key = value` of each learning rate (a training knob `lr`, nested ones included) of the config sections that
    shape stage `name` itself (its `shaped_by`; none for a stage that declares nothing)."""
    view = training_view(stage_config(name, config))

    def walk(prefix: str, node: Any) -> list[str]:
        if not isinstance(node, dict):
            return []
        rates = [f"{prefix}lr = {node['lr']}"] if "lr" in node and not isinstance(node["lr"], dict) else []
        return rates + [r for key, value in node.items() for r in walk(f"{prefix}{key}.", value)]

    return [r for section in stage(name).shaped_by or () for r in walk(f"{section}.", view.get(section))]


def divergence_hint(name: str, config: RunConfig) -> str:
    """A guess at why stage `name`'s training diverged, for `NonFiniteLoss.hinted`: its own learning rate, or, for a
    stage trained on earlier stages' output, values those stages produced (finite but extreme: an HNet meta-trained
    at too high a `train.lr` gives latents that make the HVAE's first loss NaN)."""
    own = learning_rates(name, config)
    hint = f"is {' or '.join(own)} too high for it?" if own else "is a learning rate too high for it?"
    upstream, todo = [], list(stage(name).deps)
    while todo:
        dep = todo.pop(0)
        if dep not in upstream:
            upstream.append(dep)
            todo += stage(dep).deps
    if not upstream:
        return hint
    chain = ", computed from ".join(
        f"stage {dep}" + (f", at {' and '.join(rates)}" if (rates := learning_rates(dep, config)) else "")
        for dep in upstream
    )
    return f"{hint} Or the cause may lie upstream, in what it trains on: the output of {chain}"


def stage_identity(name: str, seed: int, fold: int) -> dict[str, str | int]:
    """What the JSON of stage `name`'s checkpoint of (seed, fold) records of where it belongs (`ensure_stage`
    writes it): one that records another stage, seed or fold is not trusted there (`checkpoint_problem`'s
    `expect`)."""
    return {"stage": name, "seed": seed, "fold": fold}


def ensure_stage(name: str, ctx: StageContext) -> dict[str, float]:
    """Run the stage (after its dependencies) unless its checkpoint exists with the fingerprint this run expects
    (one that differs is retrained, with a note saying why); returns seconds spent per stage run."""
    spec = stage(name)
    spent: dict[str, float] = {}
    for dep in spec.deps:
        spent.update(ensure_stage(dep, ctx))
    stem = ctx.stem(name)
    fingerprint = stage_fingerprint(name, ctx.config, ctx.folder, ctx.seed, ctx.split.fold, ctx.data)
    main = distributed.world().main
    expect = stage_identity(name, ctx.seed, ctx.split.fold)
    problem = distributed.share(checkpoint_problem(stem, fingerprint, expect=expect) if main else None)  # main decides
    if problem is None:
        return spent
    where = f"stage {name}, seed {ctx.seed}, fold {ctx.split.fold}"
    if main and stem.with_suffix(".json").is_file():
        emit(ctx.callbacks, Note(f"retraining {where}: {problem}"))
        stem.with_suffix(".json").unlink()  # no longer trusted, whatever happens next
    emit(ctx.callbacks, StageStarted(name, ctx.seed, ctx.split.fold, len(ctx.split.train)))
    ctx = replace(ctx, config=stage_config(name, ctx.config), chain=spec.chain)
    s = run_seed(name, ctx.seed, ctx.split.fold)
    torch.manual_seed(s)
    generator = torch.Generator().manual_seed(s)
    start = time.perf_counter()
    try:
        out = spec.run(ctx, generator)
    except NonFiniteLoss as e:
        raise HyperguideError(f"{where}: {e.hinted(divergence_hint(name, ctx.config))}") from None
    bad = non_finite(dict(out.module.state_dict()) if out.module is not None else out.tensors)
    if bad is not None:
        raise HyperguideError(
            f"{where}: the trained {bad!r} holds NaN or infinity (the training diverged); nothing saved"
        )
    elapsed = time.perf_counter() - start
    metadata = {
        "stage": name,
        "seed": ctx.seed,
        "fold": ctx.split.fold,
        "run_seed": s,
        "train_seconds": elapsed,
        "precision": ctx.config.precision,
        **out.metadata,
        "config": to_dict(ctx.config),
    }
    if main:  # under torchrun the processes hold the same model: the main one writes it, the others wait for it
        if out.module is not None:
            save_checkpoint(stem, out.module, metadata, fingerprint)
        else:
            save_tensors(stem, out.tensors, metadata, fingerprint)
    distributed.barrier()
    emit(ctx.callbacks, StageFinished(name, ctx.seed, ctx.split.fold, elapsed))
    spent[name] = elapsed
    return spent


# ---------------------------------------------------------------------------------------------------------- rows


@dataclass
class LoadedRow:
    """A table row's model with its trained parts loaded, and the seconds its stages took to train them."""

    row: Row
    method: Method
    train_seconds: float


def load_row(
    row: Row, tasks: list[Task], config: RunConfig, folder: RunFolder, seed: int, fold: int, data: str | None = None
) -> LoadedRow:
    """The row's model for `tasks` (their feature and question sizes), every trained part loaded from its stage's
    checkpoint: `load_row_shaped`."""
    return load_row_shaped(row, adapter_shape(tasks, config), question_dim(tasks), config, folder, seed, fold, data)


def trained_data(folder: RunFolder, config: RunConfig) -> set[str]:
    """The universe fingerprints that the run's checkpoints record as their training data."""
    found: set[str] = set()
    for stage in row_stages(table_rows(config)):
        for path in sorted((folder.path / stage).glob("seed*-fold*.json")):
            data = read_metadata(path.with_suffix("")).get("fingerprint", {}).get("data")
            if isinstance(data, str):
                found.add(data)
    return found


def check_trained_on(universe: Universe, folder: RunFolder, config: RunConfig, prepared: Path) -> str:
    """The fingerprint of `universe` (prepared in `prepared`), refused unless the run's checkpoints were trained on
    it: the encoders of another preparation (another seed, another task file) embed what the run never saw."""
    data = universe.fingerprint()
    trained_on = trained_data(folder, config)
    if not trained_on:
        raise HyperguideError(
            f"{folder.path} has no trained checkpoint: train the run first (hyperguide train or bench)"
        )
    if data not in trained_on:
        also = " and the --tasks FILE" if config.universe == "taskfile" else ""
        raise HyperguideError(
            f"the {config.universe} universe prepared in {prepared} is not the data run {folder.path} was trained "
            f"on (their fingerprints differ), so its encoders are not the run's; give the --home (and --seed){also} "
            "the run was trained with"
        )
    return data


def check_row(row: Row, config: RunConfig, folder: RunFolder, seed: int, fold: int, data: str | None = None) -> None:
    """Refuse (`HyperguideError`, saying which and why) a row whose stage checkpoints are missing, were made from
    something else than `config` (and `data`, the universe's fingerprint, when given) expects, or no longer have
    their recorded sha256. Nothing is read but the checkpoints' JSON and hashes."""
    for stage_name in row.spec.stages:
        expected = stage_fingerprint(stage_name, config, folder, seed, fold, data)
        problem = checkpoint_problem(
            folder.stem(stage_name, seed, fold),
            expected,
            ignore=("data",) if data is None else (),
            expect=stage_identity(stage_name, seed, fold),
        )
        if problem is not None:
            raise HyperguideError(
                f"row {row.name!r} (seed {seed}, fold {fold}): {problem}; retrain it with `hyperguide train` or "
                "`hyperguide bench` on this run folder"
            )


def build_row(row: Row, shape: AdapterShape, question_dim: int, config: RunConfig, seed: int, fold: int) -> Method:
    """The row's untrained model as its (seed, fold) builds it: the global seed and the sampler's seed are the
    row's own (`run_seed`), so what is not loaded (clip-zeroshot's random W1) and what is sampled are the same
    wherever the row is built."""
    s = run_seed(row.spec.name, seed, fold)
    torch.manual_seed(s)
    return row.build(shape, question_dim, config, sample_seed=s)


def row_parts(row: Row, method: Method) -> list[tuple[str, nn.Module]]:
    """(stage, module) for each trained part of the row's model, in the order of `spec.stages`."""
    parts = method.trained_parts() if row.spec.stages else []
    if len(parts) != len(row.spec.stages):
        raise HyperguideError(
            f"row {row.spec.name!r}: its model has {len(parts)} trained parts but the row lists stages "
            f"{row.spec.stages}"
        )
    return list(zip(row.spec.stages, parts, strict=True))


def load_row_shaped(
    row: Row,
    shape: AdapterShape,
    question_dim: int,
    config: RunConfig,
    folder: RunFolder,
    seed: int,
    fold: int,
    data: str | None = None,
) -> LoadedRow:
    """The row's model for adapters of `shape` and `question_dim`-d questions, every trained part loaded from its
    stage's checkpoint (in the order of `spec.stages`). Each checkpoint must carry the fingerprint `config` (and
    `data`, the universe's fingerprint, when given) expects and its recorded sha256 (`check_row`, before anything
    is built: a crafted config cannot allocate first); else a `HyperguideError` says which and why."""
    check_row(row, config, folder, seed, fold, data)
    method = build_row(row, shape, question_dim, config, seed, fold)
    seconds = 0.0
    for stage_name, module in row_parts(row, method):
        seconds += float(load_checkpoint(folder.stem(stage_name, seed, fold), module).get("train_seconds", 0.0))
    return LoadedRow(row, method, seconds)
