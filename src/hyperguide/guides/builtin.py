"""The built-in guidance models: HyperCLIP, HyperLDM and the question -> latent regressor (an ablation). Each is one
`GuideSpec`. HyperCLIP's and HyperLDM's stage bodies, with their own fit measures, are in
`hyperguide.run.stages.guidance`; the regressor is trained by the generic body through its trainer."""

from __future__ import annotations

from torch import nn

from hyperguide.config import RunConfig
from hyperguide.guides.spec import BuildContext, Diagnostic, GuideSpec, Measure, add_guide
from hyperguide.meta.guided import ZeroShot
from hyperguide.meta.hyperclip import build_hyperclip, hyperclip_guidance
from hyperguide.meta.hyperldm import build_hyperldm, hyperldm_sampler
from hyperguide.meta.regressor import build_regressor, regressor_zero_shot, train_regressor
from hyperguide.meta.spaces import LatentSpace

BODIES = "hyperguide.run.stages.guidance"


def _hyperclip(ctx: BuildContext, space: LatentSpace) -> nn.Module:
    return build_hyperclip(space, ctx.question_dim, ctx.config.hyperclip)


def _ascent(ctx: BuildContext) -> ZeroShot:
    return hyperclip_guidance(ctx.config.hyperclip)


HYPERCLIP = GuideSpec(
    "hyperclip",
    build=_hyperclip,
    zero_shot=_ascent,
    body=f"{BODIES}:train_hyperclip_stage",
    summary="HyperCLIP guidance in {space} latent space",
    stage_summary="HyperCLIP over the weights of {space} latents",
    fit=(
        Measure("retrieval_top1_agree", "own question first (agreeing tasks count)"),
        Measure("retrieval_top1", "own question first (strict)"),
        Measure("retrieval_mean_rank", "mean rank of own question"),
        Measure("hard_negative_train", "hard negative, meta-train"),
        Measure("hard_negative_test", "hard negative, meta-test"),
        Measure("task_id_train"),
        Measure("task_id_test"),
    ),
    diagnostic=Diagnostic(
        "task_id", "task_id_train", "task_id_test", lambda config: {"candidates": config.hyperclip.candidates}
    ),
)


def _hyperldm(ctx: BuildContext, space: LatentSpace) -> nn.Module:
    return build_hyperldm(space.latent_dim, ctx.question_dim, ctx.config.hyperldm)


def _sampler(ctx: BuildContext) -> ZeroShot:
    return hyperldm_sampler(ctx.config.hyperldm, 1.0 if ctx.value is None else ctx.value)


def _gammas(config: RunConfig) -> tuple[float, ...]:
    return tuple(config.hyperldm.gammas)


def _ensemble(config: RunConfig) -> int:
    return config.hyperldm.ensemble


def _few_shot(config: RunConfig) -> bool:
    return config.hyperldm.few_shot_scale > 0


HYPERLDM = GuideSpec(
    "hyperldm",
    build=_hyperldm,
    zero_shot=_sampler,
    body=f"{BODIES}:train_hyperldm_stage",
    summary="HyperLDM samples in {space} latent space at guidance scale @G",
    stage_summary="HyperLDM over {space} latents",
    fit=(
        Measure("train_acc", "samples' acc on meta-train"),
        Measure("own_cluster_agree", "own cluster (agreeing tasks count)"),
        Measure("own_cluster", "own cluster (strict)"),
        Measure("distance_in_spreads", "distance to nearest latent (within-task spreads)"),
    ),
    sweep=_gammas,
    members=_ensemble,
    few_shot=_few_shot,
)


def _regressor(ctx: BuildContext, space: LatentSpace) -> nn.Module:
    return build_regressor(space.latent_dim, ctx.question_dim, ctx.config.regressor)


def _regression(ctx: BuildContext) -> ZeroShot:
    return regressor_zero_shot


REGRESSOR = GuideSpec(
    "regressor",
    build=_regressor,
    zero_shot=_regression,
    trainer=train_regressor,
    summary="an MLP from the question to {space} latent, trained by regression",
    stage_summary="a question -> latent regressor over {space} latents (ablation)",
    spaces=("hnet",),
    kind="ablation",
    paper=False,
)

BUILTIN_GUIDES = (HYPERCLIP, HYPERLDM, REGRESSOR)
for _guide in BUILTIN_GUIDES:  # their rows: `hyperguide.rows`
    add_guide(_guide)
