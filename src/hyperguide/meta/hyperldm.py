"""HyperLDM (SPEC P6-P7): a conditional latent diffusion model over adapted HNet latents, sampled with
classifier-free guidance scale gamma to give a new task's latent from its question alone.

Training: latents normalised per dimension (mean and std over all collected latents), one uniformly drawn
augmentation per task and epoch, condition dropout with probability p_uncond, Adam, and an EMA of the denoiser's
weights, which is what samples (the reference code computes an EMA and never uses it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import torch
from tqdm.auto import tqdm

from hyperguide.data.batch import TaskBatch
from hyperguide.diffusion.ddpm import DDPM
from hyperguide.diffusion.schedule import NoiseSchedule
from hyperguide.meta.methods import Method, MethodConfig, UncondHNetMAML
from hyperguide.models.adapter import AdapterShape
from hyperguide.models.denoiser import LatentDenoiser


@dataclass(frozen=True)
class HyperLDMConfig:
    n_aug: int = 100  # adapted latents per meta-train task (SPEC P2)
    num_steps: int = 1000
    schedule: Literal["cosine", "linear"] = "cosine"
    hidden_dims: tuple[int, ...] = (128, 128)
    time_dim: int = 100
    null: Literal["zeros", "learned"] = "zeros"
    p_uncond: float = 0.2
    epochs: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    ema_decay: float = 0.999
    sample_steps: int | None = None  # respaced sampling with this many steps; None: all num_steps
    gammas: tuple[float, ...] = (0.0, 1.0, 1.5, 2.0, 4.0)

    def schedule_obj(self) -> NoiseSchedule:
        if self.schedule == "cosine":
            return NoiseSchedule.cosine(self.num_steps)
        return NoiseSchedule.linear(self.num_steps)


@dataclass
class LatentData:
    latents: torch.Tensor  # (A, N, L)
    cond: torch.Tensor  # (N, C)
    mean: torch.Tensor = field(init=False)  # (L,)
    std: torch.Tensor = field(init=False)  # (L,)

    def __post_init__(self) -> None:
        flat = self.latents.reshape(-1, self.latents.shape[-1])
        self.mean = flat.mean(0)
        self.std = flat.std(0).clamp_min(1e-6)


def train_hyperldm(
    data: LatentData,
    config: HyperLDMConfig,
    *,
    generator: torch.Generator,
    progress: bool = False,
) -> tuple[LatentDenoiser, list[dict[str, float]]]:
    """Train the denoiser on normalised latents; returns its EMA copy and the per-epoch log."""
    n_aug, n_tasks, latent_dim = data.latents.shape
    model = LatentDenoiser(latent_dim, data.cond.shape[1], config.hidden_dims, config.time_dim, config.null)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    ddpm = DDPM(config.schedule_obj())
    x_all = (data.latents - data.mean) / data.std
    history = []
    step = 0
    for epoch in tqdm(range(config.epochs), desc="train hyperldm", disable=not progress, unit="epoch"):
        aug = torch.randint(0, n_aug, (n_tasks,), generator=generator)
        order = torch.randperm(n_tasks, generator=generator)
        losses = []
        for start in range(0, n_tasks, config.batch_size):
            idx = order[start : start + config.batch_size]
            x0 = x_all[aug[idx], idx]
            cond = model.drop_condition(data.cond[idx], config.p_uncond, generator)
            loss = ddpm.loss(model, x0, cond, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                    e.lerp_(p, 1 - decay)
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch + 1, "loss": sum(losses) / len(losses)})
    return ema.eval(), history


class HNetHyperLDM(Method):
    """`hnet+hyperldm@G`: z ~ HyperLDM(question) with guidance scale G, weights = HNet(z)."""

    name = "hnet+hyperldm"
    trained_by = "guidance"
    conditional = True

    def __init__(self, shape: AdapterShape, question_dim: int, config: MethodConfig, ldm: HyperLDMConfig) -> None:
        super().__init__(shape, question_dim, config)
        self.base = UncondHNetMAML(shape, question_dim, config)
        self.ldm_config = ldm
        self.denoiser = LatentDenoiser(config.latent_dim, question_dim, ldm.hidden_dims, ldm.time_dim, ldm.null)
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(config.latent_dim))
        self.gamma = 1.0
        self.sample_seed = 0

    def generate(self, phi: torch.Tensor) -> torch.Tensor:
        return self.base.generate(phi)

    @torch.no_grad()
    def init_phi(self, batch: TaskBatch) -> torch.Tensor:
        schedule = self.ldm_config.schedule_obj()
        if self.ldm_config.sample_steps:
            schedule = schedule.strided(self.ldm_config.sample_steps)
        generator = torch.Generator().manual_seed(self.sample_seed)
        x = DDPM(schedule).sample(
            self.denoiser,
            (len(batch), self.config.latent_dim),
            batch.question_emb,
            gamma=self.gamma,
            generator=generator,
            device=batch.question_emb.device,
        )
        return x * self.latent_std + self.latent_mean
