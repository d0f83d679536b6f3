"""Fit diagnostics of the guidance parts: how well a learned part reproduces its own training tasks (before anyone
asks how it generalises). Accuracy of latents of a space on tasks, and where samples land among the training latents.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hyperguide.data.batch import collate
from hyperguide.data.tasks import Task
from hyperguide.eval.scoring import Scores, add_scores, no_scores, score_weights
from hyperguide.meta.spaces import LatentSpace, SpaceLatents


@torch.no_grad()
def latent_scores(
    space: LatentSpace, tasks: Sequence[Task], latents: torch.Tensor, *, batch_size: int = 32, device: str = "cpu"
) -> Scores:
    """Per-task values of every registered metric of the weights decode(latents[i], question i) on task i's query
    set."""
    scores = no_scores()
    for start in range(0, len(tasks), batch_size):
        batch = collate(tasks[start : start + batch_size]).to(device)
        weights = space.decode(latents[start : start + batch_size].to(device), batch.questions.emb)
        add_scores(scores, score_weights(space.base.shape, weights, batch))
    return scores


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


@torch.no_grad()
def cluster_fit(samples: torch.Tensor, data: SpaceLatents, agree: torch.Tensor) -> dict[str, float]:
    """Where samples (N, L), one for each of the N training tasks' questions, land among the training latents
    (A, N, L) of `data`: % nearest to their own task's mean latent (`own_cluster`), % nearest to an agreeing task's
    (`own_cluster_agree`: paraphrases share latents), and the median distance to the nearest training latent in units
    of the within-task spread (the RMS distance of a task's training latents from their mean; for a space with
    posterior noise, its variance is included), `distance_in_spreads`."""
    means = data.mean.mean(0)  # (N, L)
    within = within_task_spread(data.mean, data.logvar)
    nearest = torch.cdist(samples, means).argmin(1)
    own = torch.arange(len(samples), device=samples.device)
    flat = data.mean.reshape(-1, data.mean.shape[-1])
    distance = torch.cdist(samples, flat).min(1).values
    return {
        "own_cluster": 100.0 * float((nearest == own).float().mean()),
        "own_cluster_agree": 100.0 * float(agree.to(samples.device)[own, nearest].float().mean()),
        "distance_in_spreads": float(distance.median() / within.clamp_min(1e-12)),
    }


def within_task_spread(latents: torch.Tensor, logvar: torch.Tensor | None = None) -> torch.Tensor:
    """The RMS distance of the training latents (A, N, L) of a task from the task's mean latent (plus the posterior
    variance, for a space with one), over tasks: the unit of `distance_in_spreads`."""
    within = ((latents - latents.mean(0)) ** 2).sum(-1).mean()
    if logvar is not None:
        within = within + logvar.exp().sum(-1).mean()
    return within.sqrt()
