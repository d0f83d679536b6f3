"""Guidance methods (docs/design.md §P5, §P7): a task's adapter from its question alone, generated in a latent space
of adapters (HNet z or HVAE u) by a guidance model (HyperCLIP ascent, a HyperLDM sample, or any other).

A `GuidedMethod` is a latent space, a guide network and the guide's zero-shot procedure. Its trained parts come
from separate stages (the HNet, the HVAE, the guide), so the parts that several rows share are trained and stored
once; `trained_parts()` lists them in the order of the row's stages (`hyperguide.rows`). Few-shot fine-tuning adapts
the latent.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from hyperguide.config import HVAEConfig, MethodConfig
from hyperguide.data.batch import TaskBatch
from hyperguide.diffusion.noise import Noise
from hyperguide.meta.hvae import build_hvae
from hyperguide.meta.inner_loop import WeightDecoder
from hyperguide.meta.methods import Method, UncondHNetMAML
from hyperguide.meta.spaces import HNetSpace, HVAESpace, LatentSpace, SpaceKind
from hyperguide.models.adapter import AdapterShape


class ZeroShot(Protocol):
    """A guide's procedure: the zero-shot latents (B, L) of a batch, from the space's starting latents x0; random
    draws come from `noise` (one stream per task)."""

    def __call__(
        self, space: LatentSpace, guide: nn.Module, batch: TaskBatch, x0: torch.Tensor, noise: Noise
    ) -> torch.Tensor: ...


def latent_space(kind: SpaceKind, base: UncondHNetMAML, hvae: HVAEConfig) -> LatentSpace:
    """The space of the kind over `base` (the HNet of `uncond-hnet-maml`): its z, or for `hvae` the latent of a new
    (untrained) VAE over its weights."""
    if kind == "hnet":
        return HNetSpace(base)
    return HVAESpace(base, build_hvae(base, hvae))


class GuidedMethod(Method):
    """Zero-shot: `zero_shot(space, guide, batch, x0, noise)` from the space's start x0. Every task draws its noise
    from its own stream, seeded by `sample_seed` and its question (`diffusion.noise.Noise.for_rows`), so a task's
    zero-shot weights depend on the row's seed and its question alone: not on the batch it is evaluated in, nor on
    its place there. With `members` > 1 it answers with an ensemble: that many zero-shot latents per task (each from
    its own streams), scored by their mean logits (`Method.members`)."""

    trained_by = "guidance"

    def __init__(
        self,
        shape: AdapterShape,
        question_dim: int,
        config: MethodConfig,
        *,
        space: LatentSpace,
        guide: nn.Module,
        zero_shot: ZeroShot,
        uses_support: bool = False,
        sample_seed: int = 0,
        members: int = 1,
    ) -> None:
        super().__init__(shape, question_dim, config)
        self.space = space
        self.guide = guide
        self.zero_shot = zero_shot
        self.uses_support_for_zero_shot = uses_support
        self.sample_seed = sample_seed
        self.members = members

    def trained_parts(self) -> list[nn.Module]:
        """The base, the HVAE (in its space), and the guide: or each of the guides of a `nn.ModuleList` guide."""
        parts: list[nn.Module] = [self.space.base]
        if isinstance(self.space, HVAESpace):
            parts.append(self.space.vae)
        return [*parts, *(self.guide if isinstance(self.guide, nn.ModuleList) else [self.guide])]

    def generate(self, phi: torch.Tensor) -> torch.Tensor:
        """(B, members * L) -> (B * members, P): every member's weights, a task's members consecutive."""
        return self.space.decode(phi.reshape(-1, self.space.latent_dim))

    def decoder(self, batch: TaskBatch) -> WeightDecoder:
        """`generate` for the batch's tasks; over an HNet with the pointer, every member reads its task's question."""
        if not self.space.reads_question:
            return self.generate
        question = batch.questions.emb.repeat_interleave(self.members, dim=0)
        return lambda phi: self.space.decode(phi.reshape(-1, self.space.latent_dim), question)

    def _noise(self, batch: TaskBatch, member: int) -> Noise:
        return Noise.for_rows(self.sample_seed + 1_000_003 * member, batch.question_emb)

    def init_phi(self, batch: TaskBatch) -> torch.Tensor:
        starts = [self.space.start(len(batch), self._noise(batch, m)) for m in range(self.members)]
        return torch.cat(starts, dim=1).to(batch.question_emb.device)

    def zero_shot_phi(self, batch: TaskBatch) -> torch.Tensor:
        """(B, members * L): each member sampled with its own noise streams."""
        out = []
        for m in range(self.members):
            noise = self._noise(batch, m)
            x0 = self.space.start(len(batch), noise).to(batch.question_emb.device)
            out.append(self.zero_shot(self.space, self.guide, batch, x0, noise))
        return torch.cat(out, dim=1)
