"""The stage bodies of the guides: the generic one, which trains a guide by its `trainer` and measures its fit as the
accuracy of its zero-shot weights on the meta-train tasks, and the built-in guides' own (`guides.builtin`). Each trains
its guide over the running stage's latent space (`StageContext.space_kind`), watching its fit on the meta-train
tasks, and records its final fit measures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch

from hyperguide.config import HyperLDMConfig
from hyperguide.data.batch import Questions, collate
from hyperguide.data.tasks import Task
from hyperguide.diffusion.noise import Noise
from hyperguide.eval.fit import cluster_fit, latent_scores, mean
from hyperguide.eval.scoring import evaluate_method
from hyperguide.events import Note, emit
from hyperguide.guides.spec import GUIDES, ZERO_SHOT_FIT, BuildContext, GuideSpec
from hyperguide.meta.guided import GuidedMethod
from hyperguide.meta.hyperclip import hard_negative_identification, retrieval, task_identification, train_hyperclip
from hyperguide.meta.hyperldm import sample_latents, train_hyperldm
from hyperguide.meta.inner_loop import adapt, support_loss_fn
from hyperguide.meta.spaces import LatentSpace, SpaceLatents
from hyperguide.models.hyperclip import HyperCLIP
from hyperguide.models.hyperldm import HyperLDM
from hyperguide.run.stages.context import StageContext, StageOutput
from hyperguide.trained.loading import question_dim

PROBE_SAMPLE_STEPS = 100


def _guide(ctx: StageContext) -> GuideSpec:
    name = ctx.running.guide
    if name is None or name not in GUIDES:
        raise ValueError(f"stage {ctx.running.name!r} trains no registered guide")
    return GUIDES[name]


def train_guide_stage(ctx: StageContext, generator: torch.Generator) -> StageOutput:
    """A guide trained by its `trainer`; its fit is the accuracy of its zero-shot weights (one member, its
    procedure's defaults) on the meta-train tasks' query sets."""
    guide, space_kind = _guide(ctx), ctx.space_kind
    trainer = guide.trainer
    if trainer is None:
        raise ValueError(f"guide {guide.name!r} has no trainer: its stages name their own body")
    space, latents, questions = ctx.load_space(space_kind), ctx.load_latents(), Questions.of(ctx.train_tasks)
    build = BuildContext(ctx.shape, question_dim(ctx.tasks), ctx.config)

    def measure(model: torch.nn.Module) -> dict[str, float]:
        method = GuidedMethod(
            build.shape,
            build.question_dim,
            ctx.config.method,
            space=space,
            guide=model,
            zero_shot=guide.zero_shot(build),
        ).to(ctx.device)
        scores = evaluate_method(method, ctx.train_tasks, batch_size=ctx.config.eval.batch_size, device=ctx.device)
        return {f"fit_{ZERO_SHOT_FIT.key}": mean(scores["acc"])}

    section = getattr(ctx.config, guide.config_section) if guide.config_section else None
    model, _ = trainer(
        space, latents, questions, section, generator=generator, name=f"{guide.name}-{space_kind}", device=ctx.device,
        probing=ctx.probing(measure), callbacks=ctx.callbacks,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):  # the network a row loads the checkpoint into, drawing no one's noise
        expected = type(guide.build(build, space))
    if type(model) is not expected:
        raise ValueError(
            f"guide {guide.name!r}: its trainer returned a {type(model).__name__}, but its build makes the "
            f"{expected.__name__} its rows load the checkpoint into"
        )
    return StageOutput(model, metadata={ZERO_SHOT_FIT.key: measure(model)[f"fit_{ZERO_SHOT_FIT.key}"]})


HYPERLDM_PROBE = ("own_cluster_agree", "train_acc")  # the first is watched for the plateau


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


def train_hyperclip_stage(ctx: StageContext, generator: torch.Generator) -> StageOutput:
    space_kind = ctx.space_kind
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


def train_hyperldm_stage(ctx: StageContext, generator: torch.Generator) -> StageOutput:
    space_kind = ctx.space_kind
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


def _prefixed(measures: Mapping[str, float], keys: Sequence[str]) -> dict[str, float]:
    """The `keys` of `measures`, in that order (the first is watched for a plateau), named `fit_<key>`."""
    return {f"fit_{k}": measures[k] for k in keys}
