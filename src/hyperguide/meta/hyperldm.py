"""HyperLDM (SPEC P6-P7): a conditional latent diffusion model over a space of adapters (HNet z or HVAE u), sampled
with classifier-free guidance scale gamma to give a new task's latent from its question alone.

Training: latents normalised per dimension (mean and std over all collected latents), one uniformly drawn
augmentation per task and epoch (for the HVAE, a fresh draw from its posterior), condition dropout with probability
p_uncond, Adam, and an EMA of the denoiser's weights, which is what samples (the reference code computes an EMA and
never uses it).

Sampling bounds each step's predicted x0 to the box of the normalised training latents (for the HVAE, their means
+- 3 posterior standard deviations), improved-DDPM's `clip_denoised`. Without it (`clip_x0=False`, the paper's
sampler) the cosine schedule's last step divides by sqrt(alpha) = 0.03, and the MLP denoiser, whose LayerNorm cannot
return its input's scale, misses the identity it must output there: on easyvqa every unclipped sample diverged
(normalised std ~9,000) and scored chance even on meta-train tasks.

Sampling options (SPEC P7): a respaced sampler (`sample_steps`); starting the reverse chain from the space's starting
latent noised to a fraction of the process (`start_frac`, the reference starts from it without noising it); few-shot
guidance (`few_shot_scale`: at every step the support loss gradient, rescaled to that fraction of the noise
estimate's norm, is added to the noise estimate; this uses support labels, so it is not zero-shot).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from hyperguide.data.batch import Questions
from hyperguide.diffusion.ddpm import DDPM, EpsModel
from hyperguide.diffusion.schedule import NoiseSchedule
from hyperguide.meta.latent_data import epoch_batches, epochs_needed
from hyperguide.meta.optim import adam
from hyperguide.meta.spaces import LatentSpace, SpaceLatents
from hyperguide.models.denoiser import LatentDenoiser
from hyperguide.models.question import QuestionEncoder, QuestionMode

GradFn = Callable[[torch.Tensor], torch.Tensor]  # latent (B, L) -> d(loss)/d(latent) (B, L)


@dataclass(frozen=True)
class HyperLDMConfig:
    """Paper defaults (SPEC 4.1); `min_steps` 5400 is the paper's 200 epochs x 27 batches, kept on small universes."""

    num_steps: int = 1000
    schedule: Literal["cosine", "linear"] = "cosine"
    hidden_dims: tuple[int, ...] = (128, 128)
    time_dim: int = 100
    null: Literal["zeros", "learned"] = "zeros"
    p_uncond: float = 0.2
    epochs: int = 200
    min_steps: int = 5400
    batch_size: int = 32
    lr: float = 1e-3
    ema_decay: float = 0.999
    sample_steps: int | None = None  # respaced sampling with this many steps; None: all num_steps
    start_frac: float | None = None  # start the chain from the noised starting latent at this fraction of T
    few_shot_scale: float = 0.0
    gammas: tuple[float, ...] = (0.0, 1.0, 1.5, 2.0, 4.0)
    question: QuestionMode = "pooled"
    question_heads: int = 4
    clip_x0: bool = True  # bound each sampling step's predicted x0 to the training latents' range (False: the paper)

    def schedule_obj(self) -> NoiseSchedule:
        if self.schedule == "cosine":
            return NoiseSchedule.cosine(self.num_steps)
        return NoiseSchedule.linear(self.num_steps)

    def sampling_schedule(self) -> NoiseSchedule:
        schedule = self.schedule_obj()
        return schedule.strided(self.sample_steps) if self.sample_steps else schedule


class HyperLDM(torch.nn.Module):
    """The denoiser with the latent normalisation it was trained under and the question encoder it conditions
    through; `sample` returns latents in the space."""

    def __init__(self, latent_dim: int, cond_dim: int, config: HyperLDMConfig) -> None:
        super().__init__()
        self.config = config
        self.question = QuestionEncoder(cond_dim, config.question, config.question_heads)
        self.denoiser = LatentDenoiser(latent_dim, cond_dim, config.hidden_dims, config.time_dim, config.null)
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))
        self.register_buffer("x0_low", torch.full((latent_dim,), -float("inf")))  # normalised training range
        self.register_buffer("x0_high", torch.full((latent_dim,), float("inf")))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.latent_mean) / self.latent_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.latent_std + self.latent_mean

    @torch.no_grad()
    def sample(
        self,
        questions: Questions,
        *,
        gamma: float,
        generator: torch.Generator,
        start: torch.Tensor | None = None,
        grad_fn: GradFn | None = None,
    ) -> torch.Tensor:
        """(B, L) latents for B questions. `start` is used when config.start_frac is set; `grad_fn` (the support
        loss gradient in the space) when config.few_shot_scale > 0."""
        cond = self.question.encode(questions)
        schedule = self.config.sampling_schedule()
        eps_model: EpsModel = self.denoiser
        if grad_fn is not None and self.config.few_shot_scale > 0:
            eps_model = _with_few_shot_guidance(self.denoiser, self, grad_fn, self.config.few_shot_scale)
        start_index = x_start = None
        if self.config.start_frac is not None and start is not None:
            start_index = min(schedule.num_steps - 1, int(self.config.start_frac * schedule.num_steps))
            x_start = self.normalize(start)
        x = DDPM(schedule).sample(
            eps_model,
            (cond.shape[0], self.latent_mean.shape[0]),
            cond,
            gamma=gamma,
            generator=generator,
            device=cond.device,
            x_start=x_start,
            start_index=start_index,
            clip=(self.x0_low, self.x0_high) if self.config.clip_x0 else None,
        )
        return self.denormalize(x)


def _with_few_shot_guidance(denoiser: EpsModel, ldm: HyperLDM, grad_fn: GradFn, scale: float) -> EpsModel:
    """eps + scale * ||eps|| * g / ||g||, g the support-loss gradient at the denormalised x_t (SPEC P7)."""

    def eps_model(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        eps = denoiser(x, t, cond)
        with torch.enable_grad():
            g = grad_fn(ldm.denormalize(x)) * ldm.latent_std  # chain rule into the normalised coordinates
        norm = eps.norm(dim=-1, keepdim=True) / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return eps + scale * norm * g

    return eps_model


def train_hyperldm(
    space: LatentSpace,
    latents: torch.Tensor,
    questions: Questions,
    config: HyperLDMConfig,
    *,
    generator: torch.Generator,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[HyperLDM, list[dict[str, float]]]:
    """Train on the (A, N, Lz) adapted HNet latents mapped into `space`; returns the model with EMA weights."""
    n_aug, n_tasks, _ = latents.shape
    data = SpaceLatents.of(space, latents, device)
    mean, logvar = data.mean, data.logvar
    questions = questions.to(device)
    model = HyperLDM(mean.shape[-1], questions.emb.shape[1], config).to(device)
    flat = mean.reshape(-1, mean.shape[-1])
    model.latent_mean.copy_(flat.mean(0))
    model.latent_std.copy_(flat.std(0).clamp_min(1e-6))
    spread = (
        model.normalize(flat)
        if logvar is None
        else model.normalize(
            torch.cat(
                [
                    flat - 3 * (0.5 * logvar).exp().reshape(flat.shape),
                    flat + 3 * (0.5 * logvar).exp().reshape(flat.shape),
                ]
            )
        )
    )
    model.x0_low.copy_(spread.min(0).values)
    model.x0_high.copy_(spread.max(0).values)
    denoiser = model.denoiser
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = adam(model.parameters(), config.lr, device)
    ddpm = DDPM(config.schedule_obj())
    history = []
    step = 0
    epochs = epochs_needed(n_tasks, config.batch_size, config.epochs, config.min_steps)
    for epoch in tqdm(range(epochs), desc=f"train hyperldm ({space.kind})", disable=not progress, unit="epoch"):
        losses = []
        for aug, idx in epoch_batches(n_aug, n_tasks, config.batch_size, generator):
            aug, idx = aug.to(device), idx.to(device)
            x0 = model.normalize(data.draw(aug, idx, generator))
            c = denoiser.drop_condition(model.question.encode(questions[idx]), config.p_uncond, generator)
            loss = ddpm.loss(denoiser, x0, c, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                    e.lerp_(p, 1 - decay)
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch + 1, "step": step, "loss": sum(losses) / len(losses)})
    return ema.eval(), history
