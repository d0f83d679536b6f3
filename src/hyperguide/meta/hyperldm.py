"""HyperLDM (docs/design.md §P6-§P7): a conditional latent diffusion model over a space of adapters (HNet z or HVAE
u), sampled with classifier-free guidance scale gamma to give a new task's latent from its question alone.

Training: latents normalised per dimension (mean and std over all collected latents), one uniformly drawn
augmentation per task and epoch (for the HVAE, a fresh draw from its posterior), condition dropout with probability
p_uncond, Adam, and an EMA of the denoiser's weights, which is what samples (the reference code computes an EMA and
never uses it).

Sampling bounds each step's predicted x0 to the box of the normalised training latents (for the HVAE, their means
+- 3 posterior standard deviations), improved-DDPM's `clip_denoised`. Without it (`clip_x0=False`, the paper's
sampler) the cosine schedule's last step divides by sqrt(alpha) = 0.03, and the MLP denoiser, whose LayerNorm cannot
return its input's scale, misses the identity it must output there: on easyvqa every unclipped sample diverged
and scored chance even on meta-train tasks (docs/decisions.md D3).

Sampling options (§P7): a respaced sampler (`sample_steps`); starting the reverse chain from the space's starting
latent noised to a fraction of the process (`start_frac`, the reference starts from it without noising it); few-shot
guidance (`few_shot_scale`: at every step the support loss gradient, rescaled to that fraction of the noise
estimate's norm, is added to the noise estimate; this uses support labels, so it is not zero-shot).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from hyperguide.config import HyperLDMConfig
from hyperguide.data.batch import Questions, TaskBatch
from hyperguide.diffusion.ddpm import DDPM, EpsModel
from hyperguide.diffusion.schedule import NoiseSchedule
from hyperguide.events import Callback
from hyperguide.meta.inner_loop import support_loss_fn
from hyperguide.meta.latent_data import fit_on_latents
from hyperguide.meta.optim import adam
from hyperguide.meta.spaces import LatentSpace, SpaceLatents
from hyperguide.models.hyperldm import HyperLDM
from hyperguide.train.loop import EMA

GradFn = Callable[[torch.Tensor], torch.Tensor]  # latent (B, L) -> d(loss)/d(latent) (B, L)


def build_hyperldm(latent_dim: int, cond_dim: int, config: HyperLDMConfig) -> HyperLDM:
    return HyperLDM(
        latent_dim,
        cond_dim,
        hidden_dims=config.hidden_dims,
        time_dim=config.time_dim,
        null=config.null,
        question=config.question,
        question_heads=config.question_heads,
    )


def noise_schedule(config: HyperLDMConfig) -> NoiseSchedule:
    """The trained process's schedule."""
    if config.schedule == "cosine":
        return NoiseSchedule.cosine(config.num_steps)
    return NoiseSchedule.linear(config.num_steps)


def sampling_schedule(config: HyperLDMConfig) -> NoiseSchedule:
    """The schedule the sampler walks: the trained one, or its respacing to `sample_steps` steps."""
    schedule = noise_schedule(config)
    return schedule.strided(config.sample_steps) if config.sample_steps else schedule


@torch.no_grad()
def sample_latents(
    model: HyperLDM,
    questions: Questions,
    config: HyperLDMConfig,
    *,
    gamma: float,
    generator: torch.Generator,
    start: torch.Tensor | None = None,
    grad_fn: GradFn | None = None,
) -> torch.Tensor:
    """(B, L) latents in the space for B questions, sampled at guidance scale `gamma`. `start` (the space's starting
    latents) is used when config.start_frac is set; `grad_fn` (the support-loss gradient in the space) when
    config.few_shot_scale > 0."""
    cond = model.question.encode(questions)
    schedule = sampling_schedule(config)
    eps_model: EpsModel = model.denoiser
    if grad_fn is not None and config.few_shot_scale > 0:
        eps_model = _with_few_shot_guidance(model.denoiser, model, grad_fn, config.few_shot_scale)
    start_index = x_start = None
    if config.start_frac is not None and start is not None:
        start_index = min(schedule.num_steps - 1, int(config.start_frac * schedule.num_steps))
        x_start = model.normalize(start)
    x = DDPM(schedule).sample(
        eps_model,
        (cond.shape[0], model.latent_dim),
        cond,
        gamma=gamma,
        generator=generator,
        device=cond.device,
        x_start=x_start,
        start_index=start_index,
        clip=(model.x0_low, model.x0_high) if config.clip_x0 else None,
    )
    return model.denormalize(x)


def _with_few_shot_guidance(denoiser: EpsModel, ldm: HyperLDM, grad_fn: GradFn, scale: float) -> EpsModel:
    """eps + scale * ||eps|| * g / ||g||, g the support-loss gradient at the denormalised x_t (docs/design.md §P7)."""

    def eps_model(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        eps = denoiser(x, t, cond)
        with torch.enable_grad():
            g = grad_fn(ldm.denormalize(x)) * ldm.latent_std  # chain rule into the normalised coordinates
        norm = eps.norm(dim=-1, keepdim=True) / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return eps + scale * norm * g

    return eps_model


def hyperldm_sampler(config: HyperLDMConfig, gamma: float) -> Callable[..., torch.Tensor]:
    """The zero-shot latent of a guidance row (`meta.guided.ZeroShot`): a sample at guidance scale `gamma`, with
    few-shot guidance by the batch's support loss when config.few_shot_scale > 0 (then it uses labels)."""

    def zero_shot(
        space: LatentSpace, guide: torch.nn.Module, batch: TaskBatch, x0: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        assert isinstance(guide, HyperLDM)
        grad_fn = None
        if config.few_shot_scale > 0:
            support_loss = support_loss_fn(space.base.shape, space.decode, batch)

            def grad_fn(x: torch.Tensor) -> torch.Tensor:
                x = x.detach().requires_grad_(True)
                return torch.autograd.grad(support_loss(x).sum(), x)[0]

        return sample_latents(
            guide, batch.questions, config, gamma=gamma, generator=generator, start=x0, grad_fn=grad_fn
        )

    return zero_shot


def train_hyperldm(
    space: LatentSpace,
    latents: torch.Tensor,
    questions: Questions,
    config: HyperLDMConfig,
    *,
    generator: torch.Generator,
    name: str = "hyperldm",
    device: str = "cpu",
    callbacks: Sequence[Callback] = (),
) -> tuple[HyperLDM, list[dict[str, float]]]:
    """Train on the (A, N, Lz) adapted HNet latents mapped into `space`; returns the model with EMA weights."""
    n_aug, n_tasks, _ = latents.shape
    data = SpaceLatents.of(space, latents, device)
    mean, logvar = data.mean, data.logvar
    questions = questions.to(device)
    model = build_hyperldm(mean.shape[-1], int(questions.emb.shape[1]), config).to(device)
    flat = mean.reshape(-1, mean.shape[-1])
    model.latent_mean.copy_(flat.mean(0))
    model.latent_std.copy_(flat.std(0).clamp_min(1e-6))
    if logvar is None:
        spread = model.normalize(flat)
    else:
        std = (0.5 * logvar).exp().reshape(flat.shape)
        spread = model.normalize(torch.cat([flat - 3 * std, flat + 3 * std]))
    model.x0_low.copy_(spread.min(0).values)
    model.x0_high.copy_(spread.max(0).values)
    ema = EMA(model, config.ema_decay)
    ddpm = DDPM(noise_schedule(config))

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        aug, idx = batch[0].to(device), batch[1].to(device)
        x0 = model.normalize(data.draw(aug, idx, generator))
        c = model.denoiser.drop_condition(model.question.encode(questions[idx]), config.p_uncond, generator)
        return {"loss": ddpm.loss(model.denoiser, x0, c, generator)}

    history = fit_on_latents(
        step,
        adam(model.parameters(), config.lr, device),
        latents,
        config,
        generator=generator,
        name=name,
        ema=ema,
        callbacks=callbacks,
    )
    return ema.module.eval(), history
