"""HyperLDM (docs/design.md §P6-§P7): a conditional latent diffusion model over a space of adapters (HNet z or HVAE
u), sampled with classifier-free guidance scale gamma to give a new task's latent from its question alone.

Training: latents normalised per dimension (mean and std of the training data: for the HVAE, whose data are
posterior draws, the std of the draws, sqrt(Var(mu) + E[sigma^2])), one uniformly drawn augmentation per task and
epoch (for the HVAE, a fresh draw from its posterior), condition dropout with probability p_uncond, Adam, and an EMA
of the denoiser's weights, which is what samples (the reference code computes an EMA and never uses it).

What the denoiser predicts is `target` (docs/decisions.md D7). The paper's noise target cannot learn the condition
on adapted latents: they are tight per-task clusters, so x_t identifies its cluster for most timesteps and the
condition lowers the noise loss only near t = T, where converting the noise estimate to x0 multiplies its error by
up to 2e4. Predicting x0 (the default) or v learns it; `tests/test_hyperldm_fit.py` checks it on K tight clusters.
The condition enters the denoiser through `condition` (models/denoiser.py: FiLM at every block by default).

Sampling bounds each step's predicted x0 to the box of the normalised training latents (their range; for the HVAE,
the means +- 3 posterior standard deviations), improved-DDPM's `clip_x0` (docs/decisions.md D3).

Sampling options (§P7): a respaced sampler (`sample_steps`); starting the reverse chain from the space's starting
latent noised to a fraction of the process (`start_frac`, the reference starts from it without noising it); few-shot
guidance (`few_shot_scale`, `few_shot_guide`: each step's x0 estimate moves against the support-loss gradient; this
uses support labels, so it is not zero-shot). Every task draws its noise from its own stream (`diffusion.noise`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from hyperguide.config import HyperLDMConfig
from hyperguide.data.batch import Questions, TaskBatch
from hyperguide.diffusion.ddpm import DDPM, Estimate, Guide
from hyperguide.diffusion.noise import Noise
from hyperguide.diffusion.schedule import NoiseSchedule
from hyperguide.distributed import Part, on_block
from hyperguide.events import Callback
from hyperguide.meta.inner_loop import support_loss_fn
from hyperguide.meta.latent_data import fit_on_latents
from hyperguide.meta.optim import adam
from hyperguide.meta.spaces import LatentSpace, SpaceLatents
from hyperguide.models.hyperclip import HyperCLIP
from hyperguide.models.hyperldm import HyperLDM
from hyperguide.train.loop import EMA, Probing, probed

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
        condition=config.condition,
        cond_hidden=config.cond_hidden,
    )


def noise_schedule(config: HyperLDMConfig) -> NoiseSchedule:
    """The trained process's schedule."""
    if config.schedule == "cosine":
        return NoiseSchedule.cosine(config.num_steps)
    return NoiseSchedule.linear(config.num_steps)


def sampling_schedule(config: HyperLDMConfig) -> NoiseSchedule:
    """The schedule the sampler walks: the trained one, or its respacing to `sample_steps` steps (at most all)."""
    schedule = noise_schedule(config)
    if config.sample_steps is None or config.sample_steps >= schedule.num_steps:
        return schedule
    return schedule.strided(config.sample_steps)


@torch.no_grad()
def sample_latents(
    model: HyperLDM,
    questions: Questions,
    config: HyperLDMConfig,
    *,
    gamma: float,
    generator: torch.Generator | Noise,
    start: torch.Tensor | None = None,
    guides: Sequence[Guide] = (),
) -> torch.Tensor:
    """(B, L) latents in the space for B questions, sampled at guidance scale `gamma`. `start` (the space's starting
    latents) is used when config.start_frac is set; `guides` correct each step's x0 estimate (in the normalised
    coordinates: see `few_shot_guide`)."""
    cond = model.question.encode(questions)
    ddpm = DDPM(sampling_schedule(config), config.target)
    start_index = x_start = None
    if config.start_frac is not None and start is not None:
        start_index = min(ddpm.schedule.num_steps - 1, int(config.start_frac * ddpm.schedule.num_steps))
        x_start = model.normalize(start)
    x = ddpm.sample(
        model.denoiser,
        (cond.shape[0], model.latent_dim),
        cond,
        gamma=gamma,
        generator=generator,
        device=cond.device,
        x_start=x_start,
        start_index=start_index,
        clip=(model.x0_low, model.x0_high) if config.clip_x0 else None,
        guides=guides,
    )
    return model.denormalize(x)


def few_shot_guide(ldm: HyperLDM, ddpm: DDPM, grad_fn: GradFn, scale: float) -> Guide:
    """docs/design.md §P7's few-shot guidance, in the clean latent: x0 moves against g, the support-loss gradient at
    the denormalised x0 estimate, by `scale` times sqrt(1 - alpha_bar) times ||x0|| (the step shrinks with the noise
    level, as the paper's correction of eps by `scale` ||eps|| g / ||g|| does in x0 at low noise)."""

    def guide(est: Estimate) -> torch.Tensor:
        with torch.enable_grad():
            g = grad_fn(ldm.denormalize(est.x0)) * ldm.latents.scale  # chain rule into the normalised coordinates
        _, s = ddpm.coefficients(est.index)
        step = scale * s * est.x0.norm(dim=-1, keepdim=True) / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return est.x0 - step * g

    return guide


def classifier_guide(
    ldm: HyperLDM, clip: HyperCLIP, space: LatentSpace, questions: Questions, ddpm: DDPM, scale: float
) -> Guide:
    """HyperCLIP as the classifier of classifier guidance, on the clean-latent estimate: each step's x0 moves up the
    gradient of cos(f(code(x0)), e_q), by `scale` sqrt(1 - alpha_bar) per dimension (RMS) in the normalised
    coordinates (whose per-dimension spread is 1): a push towards the question's weights that is strongest while the
    sampler chooses among tasks and fades as the sample settles."""
    with torch.no_grad():
        target = clip.embed_questions(questions)

    def guide(est: Estimate) -> torch.Tensor:
        with torch.enable_grad():
            x = est.x0.detach().requires_grad_(True)
            cos = (clip.embed_codes(space.code(ldm.denormalize(x))) * target).sum(-1)
            (g,) = torch.autograd.grad(cos.sum(), x)
        _, s = ddpm.coefficients(est.index)
        rms = g.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
        return est.x0 + scale * s * g / rms

    return guide


def hyperldm_sampler(config: HyperLDMConfig, gamma: float) -> Callable[..., torch.Tensor]:
    """The zero-shot latent of a guidance row (`meta.guided.ZeroShot`): a sample at guidance scale `gamma`, with
    few-shot guidance by the batch's support loss when config.few_shot_scale > 0 (then it uses labels). A guide that
    is a `ModuleList` [HyperLDM, HyperCLIP] adds HyperCLIP's classifier guidance (`classifier_guide`, scale
    config.classifier_scale) to the classifier-free guidance."""

    def zero_shot(
        space: LatentSpace, guide: torch.nn.Module, batch: TaskBatch, x0: torch.Tensor, noise: Noise
    ) -> torch.Tensor:
        clip = None
        if isinstance(guide, torch.nn.ModuleList):
            guide, clip = guide
        assert isinstance(guide, HyperLDM)
        ddpm = DDPM(sampling_schedule(config), config.target)
        guides: list[Guide] = []
        if clip is not None and config.classifier_scale > 0:
            assert isinstance(clip, HyperCLIP)
            guides.append(classifier_guide(guide, clip, space, batch.questions, ddpm, config.classifier_scale))
        if config.few_shot_scale > 0:
            support_loss = support_loss_fn(space.base.shape, space.decoder(batch.questions.emb), batch)

            def grad_fn(x: torch.Tensor) -> torch.Tensor:
                x = x.detach().requires_grad_(True)
                return torch.autograd.grad(support_loss(x).sum(), x)[0]

            guides.append(few_shot_guide(guide, ddpm, grad_fn, config.few_shot_scale))
        return sample_latents(guide, batch.questions, config, gamma=gamma, generator=noise, start=x0, guides=guides)

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
    probing: Probing[HyperLDM] | None = None,
    callbacks: Sequence[Callback] = (),
) -> tuple[HyperLDM, list[dict[str, float]]]:
    """Train on the (A, N, Lz) adapted HNet latents mapped into `space`; returns the model with EMA weights."""
    n_aug, n_tasks, _ = latents.shape
    data = SpaceLatents.of(space, latents, device)
    mean, logvar = data.mean, data.logvar
    questions = questions.to(device)
    model = build_hyperldm(mean.shape[-1], int(questions.emb.shape[1]), config).to(device)
    flat = mean.reshape(-1, mean.shape[-1])
    if logvar is None:
        model.latents.fit(flat)
        spread = model.normalize(flat)
    else:  # the data are posterior draws: their variance is the means' spread plus the posterior variance
        var = logvar.exp().reshape(flat.shape)
        model.latents.fit(flat, scale=(flat.var(0) + var.mean(0)).sqrt())
        std = var.sqrt()
        spread = model.normalize(torch.cat([flat - 3 * std, flat + 3 * std]))
    model.x0_low.copy_(spread.min(0).values)
    model.x0_high.copy_(spread.max(0).values)
    ema = EMA(model, config.ema_decay)
    ddpm = DDPM(noise_schedule(config), config.target)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        aug, idx = batch[0].to(device), batch[1].to(device)
        # every process draws the whole batch's randomness, in one process's order
        x0 = model.normalize(data.draw(aug, idx, generator))
        drop = model.denoiser.drop_mask(len(idx), config.p_uncond, generator)
        t, noise = ddpm.training_draws(x0.shape, generator)

        def block(mine: Part) -> dict[str, torch.Tensor]:
            asked = model.question.encode(questions[mine(idx)])
            c = model.denoiser.drop_condition(asked, config.p_uncond, drop=mine(drop))
            return {"loss": ddpm.loss(model.denoiser, mine(x0), c, draws=(mine(t), mine(noise)))}

        return on_block(len(idx), block)

    history = fit_on_latents(
        step,
        adam(model.parameters(), config.lr, device),
        latents,
        config,
        generator=generator,
        name=name,
        ema=ema,
        probing=probed(probing, ema.module),
        callbacks=callbacks,
        sharded=True,
    )
    return ema.module.eval(), history
