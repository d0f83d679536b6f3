"""A bank of the meta-train tasks as a guide sees them: one latent per task in the guide's space (the mean over the
task's augmentations) and one question vector per task. Stored in the guide's checkpoint, so that zero-shot
procedures that start from the data (HyperCLIP guidance from the centroid or the best-scoring training latent, a
span constraint, retrieval rows) need no other file. Its size is the checkpoint's: an empty bank takes the shape of
the state it loads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class LatentBank(nn.Module):
    def __init__(self, latent_dim: int, question_dim: int) -> None:
        super().__init__()
        self.latents: torch.Tensor
        self.questions: torch.Tensor
        self.register_buffer("latents", torch.zeros(0, latent_dim))
        self.register_buffer("questions", torch.zeros(0, question_dim))

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    @torch.no_grad()
    def fill(self, latents: torch.Tensor, questions: torch.Tensor) -> None:
        """latents (N, L) and questions (N, D) of the N meta-train tasks."""
        if latents.shape[0] != questions.shape[0]:
            raise ValueError(f"{latents.shape[0]} latents but {questions.shape[0]} questions")
        self.latents = latents.detach().clone().to(self.latents)
        self.questions = questions.detach().clone().to(self.questions)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        for name in ("latents", "questions"):
            value = state_dict.get(prefix + name)
            current = getattr(self, name)
            if isinstance(value, torch.Tensor) and value.ndim == 2 and value.shape[1] == current.shape[1]:
                setattr(self, name, torch.empty_like(value, dtype=current.dtype, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def centroid(self) -> torch.Tensor:
        """(L,) the mean training latent."""
        return self.latents.mean(0)

    @property
    def spread(self) -> torch.Tensor:
        """(L,) the per-dimension std of the training latents (the between-task spread)."""
        return self.latents.std(0) if len(self) > 1 else torch.ones_like(self.latents[0])

    def principal_axes(self, k: int) -> torch.Tensor:
        """(L, k') orthonormal axes of the k largest principal components (k' = min(k, N - 1, L))."""
        centred = self.latents - self.centroid
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        return vh[: min(k, max(1, len(self) - 1))].T
