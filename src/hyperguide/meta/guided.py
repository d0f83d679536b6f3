"""The guidance rows of the table (SPEC P5, P7): a task's adapter from its question alone, generated in a latent
space of adapters (HNet z or HVAE u) by HyperCLIP guidance or by sampling HyperLDM.

| row | latent space | zero-shot latent |
|---|---|---|
| hnet+hyperclip | HNet z | Adam ascent of cos(HyperCLIP(HNet(z)), e_q) from z0 |
| hvae+hyperclip | HVAE u | the same through the decoder, from u0 ~ q(u \\| HNet(z0)) |
| hnet+hyperldm@G | HNet z | a HyperLDM sample with guidance scale G |
| hvae+hyperldm@G | HVAE u | a HyperLDM sample in u, decoded |

Each part is trained by its own stage and stored in its own checkpoint (`parts()`: stage name -> module), so parts
that several rows share (the HNet, the HVAE) are trained and stored once. Few-shot fine-tuning adapts the latent.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn

from hyperguide.data.batch import TaskBatch
from hyperguide.meta.hvae import HVAEConfig
from hyperguide.meta.hyperclip import HyperCLIPConfig, guidance_loss_fn
from hyperguide.meta.hyperldm import HyperLDM, HyperLDMConfig
from hyperguide.meta.inner_loop import adapt, support_loss_fn
from hyperguide.meta.methods import Method, MethodConfig, UncondHNetMAML
from hyperguide.meta.spaces import HNetSpace, HVAESpace, LatentSpace, SpaceKind
from hyperguide.models.adapter import AdapterShape
from hyperguide.models.hyperclip import HyperCLIP
from hyperguide.models.vae import WeightVAE

GuideKind = Literal["hyperclip", "hyperldm"]


class GuidedMethod(Method):
    trained_by = "guidance"
    conditional = True
    space_kind: ClassVar[SpaceKind]
    guide_kind: ClassVar[GuideKind]

    def __init__(
        self,
        shape: AdapterShape,
        question_dim: int,
        config: MethodConfig,
        *,
        hvae: HVAEConfig,
        hyperclip: HyperCLIPConfig,
        hyperldm: HyperLDMConfig,
    ) -> None:
        super().__init__(shape, question_dim, config)
        base = UncondHNetMAML(shape, question_dim, config)
        self.space: LatentSpace
        if self.space_kind == "hnet":
            self.space = HNetSpace(base)
        else:
            self.space = HVAESpace(base, WeightVAE(shape.n_params, hvae.hidden_dims, hvae.latent_dim))
        self.hyperclip_config = hyperclip
        self.guide: nn.Module
        if self.guide_kind == "hyperclip":
            self.guide = HyperCLIP(
                shape.n_params, hyperclip.hidden_dims, question_dim, hyperclip.question, hyperclip.question_heads
            )
        else:
            self.guide = HyperLDM(self.space.latent_dim, question_dim, hyperldm)
        self.uses_support_for_zero_shot = self.guide_kind == "hyperldm" and hyperldm.few_shot_scale > 0  # type: ignore[misc]
        self.gamma = 1.0
        self.sample_seed = 0

    @classmethod
    def guide_stage(cls) -> str:
        return f"{cls.guide_kind}-{cls.space_kind}"

    def parts(self) -> dict[str, nn.Module]:
        """Stage name -> the submodule that stage trains and stores."""
        parts: dict[str, nn.Module] = {"uncond-hnet-maml": self.space.base}
        if isinstance(self.space, HVAESpace):
            parts["hvae"] = self.space.vae
        parts[self.guide_stage()] = self.guide
        return parts

    def generate(self, phi: torch.Tensor) -> torch.Tensor:
        return self.space.decode(phi)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.sample_seed)

    def init_phi(self, batch: TaskBatch) -> torch.Tensor:
        return self.space.start(len(batch), self._generator()).to(batch.question_emb.device)

    def zero_shot_phi(self, batch: TaskBatch) -> torch.Tensor:
        generator = self._generator()
        x0 = self.space.start(len(batch), generator).to(batch.question_emb.device)
        if isinstance(self.guide, HyperCLIP):
            cfg = self.hyperclip_config
            loss = guidance_loss_fn(self.space, self.guide, batch.questions, x0, cfg.init_l2)
            return adapt(loss, x0, cfg.guidance)
        assert isinstance(self.guide, HyperLDM)
        grad_fn = None
        if self.uses_support_for_zero_shot:
            support_loss = support_loss_fn(self.shape, self.generate, batch)

            def grad_fn(x: torch.Tensor) -> torch.Tensor:
                x = x.detach().requires_grad_(True)
                return torch.autograd.grad(support_loss(x).sum(), x)[0]

        return self.guide.sample(batch.questions, gamma=self.gamma, generator=generator, start=x0, grad_fn=grad_fn)


class HNetHyperCLIP(GuidedMethod):
    name = "hnet+hyperclip"
    space_kind = "hnet"
    guide_kind = "hyperclip"


class HVAEHyperCLIP(GuidedMethod):
    name = "hvae+hyperclip"
    space_kind = "hvae"
    guide_kind = "hyperclip"


class HNetHyperLDM(GuidedMethod):
    """Rows `hnet+hyperldm@G`: one trained model, sampled at each guidance scale G."""

    name = "hnet+hyperldm"
    space_kind = "hnet"
    guide_kind = "hyperldm"


class HVAEHyperLDM(GuidedMethod):
    name = "hvae+hyperldm"
    space_kind = "hvae"
    guide_kind = "hyperldm"


GUIDED: dict[str, type[GuidedMethod]] = {m.name: m for m in (HNetHyperCLIP, HVAEHyperCLIP, HNetHyperLDM, HVAEHyperLDM)}
GAMMA_ROWS = (HNetHyperLDM.name, HVAEHyperLDM.name)  # their rows carry @gamma
