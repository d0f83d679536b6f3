"""The ablation row's procedure: a deterministic question -> latent regressor in a guidance space, trained by mean
squared error on the adapted latents (one augmentation per task and epoch, normalised per dimension), and its
zero-shot latent: the regressor's output for the question. Beside the guidance rows in the same space, it separates
what the latent space gives from what diffusion or guidance add.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hyperguide.config import RegressorConfig
from hyperguide.data.batch import Questions, TaskBatch
from hyperguide.diffusion.noise import Noise
from hyperguide.distributed import on_block
from hyperguide.events import Callback
from hyperguide.meta.latent_data import fit_on_latents
from hyperguide.meta.optim import adam
from hyperguide.meta.spaces import LatentSpace, SpaceLatents
from hyperguide.models.regressor import LatentRegressor
from hyperguide.train.loop import Probing, probed


def build_regressor(latent_dim: int, question_dim: int, config: RegressorConfig) -> LatentRegressor:
    return LatentRegressor(question_dim, latent_dim, config.hidden_dims, config.question, config.question_heads)


def train_regressor(
    space: LatentSpace,
    latents: torch.Tensor,
    questions: Questions,
    config: RegressorConfig,
    *,
    generator: torch.Generator,
    name: str = "regressor",
    device: str = "cpu",
    probing: Probing[LatentRegressor] | None = None,
    callbacks: Sequence[Callback] = (),
) -> tuple[LatentRegressor, list[dict[str, float]]]:
    """Train on the (A, N, Lz) adapted HNet latents mapped into `space` and the N tasks' questions."""
    data = SpaceLatents.of(space, latents, device)
    questions = questions.to(device)
    model = build_regressor(space.latent_dim, int(questions.emb.shape[1]), config).to(device)
    model.latents.fit(data.mean.reshape(-1, space.latent_dim))

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        aug, idx = batch[0].to(device), batch[1].to(device)
        target = model.latents(data.draw(aug, idx, generator))  # every process draws the whole batch's
        return on_block(
            len(idx), lambda mine: {"loss": ((model.normalized(questions[mine(idx)]) - mine(target)) ** 2).mean()}
        )

    history = fit_on_latents(
        step,
        adam(model.parameters(), config.lr, device),
        latents,
        config,
        generator=generator,
        name=name,
        probing=probed(probing, model),
        callbacks=callbacks,
        sharded=True,
    )
    return model.eval(), history


def regressor_zero_shot(
    space: LatentSpace, guide: torch.nn.Module, batch: TaskBatch, x0: torch.Tensor, noise: Noise
) -> torch.Tensor:
    """The zero-shot latent of the ablation row (`meta.guided.ZeroShot`): the regressor's output."""
    assert isinstance(guide, LatentRegressor)
    with torch.no_grad():
        return guide(batch.questions)
