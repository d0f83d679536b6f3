"""Retrieval references: a new task's latent taken whole from a meta-train task, chosen by its question. A generator
that does no better than retrieval is not generating.

  - nearest-question: the adapted latent (the mean over augmentations) of the meta-train task whose question
    embedding is nearest by cosine similarity; its bank is the `question-bank` stage (`QuestionBank`).
  - hyperclip-retrieval: the meta-train latent HyperCLIP scores highest for the question (its own bank), without the
    ascent that guidance adds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hyperguide.data.batch import TaskBatch
from hyperguide.data.tasks import Task
from hyperguide.diffusion.noise import Noise
from hyperguide.meta.hyperclip import best_bank_latents
from hyperguide.meta.spaces import LatentSpace
from hyperguide.models.bank import LatentBank
from hyperguide.models.hyperclip import HyperCLIP


class QuestionBank(nn.Module):
    """The meta-train tasks' mean adapted latents and their questions' embeddings, as the text encoder gives them."""

    def __init__(self, latent_dim: int, question_dim: int) -> None:
        super().__init__()
        self.bank = LatentBank(latent_dim, question_dim)


def question_bank(latents: torch.Tensor, tasks: list[Task]) -> QuestionBank:
    """The bank of the adapted latents (A, N, L) of the N meta-train `tasks`."""
    questions = torch.stack([t.question_emb for t in tasks])
    bank = QuestionBank(int(latents.shape[-1]), int(questions.shape[1]))
    bank.bank.fill(latents.mean(0), questions)
    return bank


def nearest_question(
    space: LatentSpace, guide: nn.Module, batch: TaskBatch, x0: torch.Tensor, noise: Noise
) -> torch.Tensor:
    """(B, L): the latent of the meta-train task whose question is nearest to each of the batch's (`meta.guided`)."""
    assert isinstance(guide, QuestionBank)
    bank = guide.bank
    similarity = F.normalize(batch.question_emb, dim=-1) @ F.normalize(bank.questions, dim=-1).T
    return bank.latents[similarity.argmax(1)]


def hyperclip_retrieval(
    space: LatentSpace, guide: nn.Module, batch: TaskBatch, x0: torch.Tensor, noise: Noise
) -> torch.Tensor:
    """(B, L): the meta-train latent HyperCLIP scores highest for each of the batch's questions (`meta.guided`)."""
    assert isinstance(guide, HyperCLIP)
    return best_bank_latents(space, guide, batch.questions)
