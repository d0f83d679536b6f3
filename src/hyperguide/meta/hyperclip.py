"""HyperCLIP (docs/design.md §P4-§P5): contrastive training of a weight encoder against question embeddings, its
task identification diagnostic, and guidance: gradient ascent on a new task's latent towards its question.

Training data per task: the weights of one augmentation's adapted latent, decoded in the chosen space (HNet(z), or
Dec(u) with u drawn from the HVAE's posterior). Guidance maximises cos(f(G(x)), e_q) over x with Adam from the
space's starting latent; tasks are independent, so it runs batched through `inner_loop.adapt`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from hyperguide.config import HyperCLIPConfig
from hyperguide.data.batch import Questions, TaskBatch
from hyperguide.diffusion.noise import Noise
from hyperguide.events import Callback
from hyperguide.meta.inner_loop import LossFn, adapt
from hyperguide.meta.latent_data import fit_on_latents
from hyperguide.meta.losses import symmetric_info_nce
from hyperguide.meta.optim import adam
from hyperguide.meta.spaces import HNetSpace, HVAESpace, LatentSpace, SpaceLatents
from hyperguide.models.hyperclip import HyperCLIP
from hyperguide.models.hypernet import HyperNet


def build_hyperclip(weight_dim: int, question_dim: int, config: HyperCLIPConfig) -> HyperCLIP:
    return HyperCLIP(weight_dim, config.hidden_dims, question_dim, config.question, config.question_heads)


def train_hyperclip(
    space: LatentSpace,
    latents: torch.Tensor,
    questions: Questions,
    config: HyperCLIPConfig,
    *,
    generator: torch.Generator,
    name: str = "hyperclip",
    device: str = "cpu",
    callbacks: Sequence[Callback] = (),
) -> tuple[HyperCLIP, list[dict[str, float]]]:
    """Train HyperCLIP on the (A, N, Lz) adapted HNet latents and the N tasks' questions."""
    n_aug, n_tasks, _ = latents.shape
    data = SpaceLatents.of(space, latents, device)
    questions = questions.to(device)
    encoder = build_hyperclip(space.base.shape.n_params, int(questions.emb.shape[1]), config).to(device)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        aug, idx = batch[0].to(device), batch[1].to(device)
        with torch.no_grad():
            weights = space.decode(data.draw(aug, idx, generator))
        logits = encoder.logits(weights, questions[idx])
        correct = (logits.argmax(1) == torch.arange(len(idx), device=device)).float().mean()
        return {"loss": symmetric_info_nce(logits), "batch_acc": 100.0 * correct}

    history = fit_on_latents(
        step,
        adam(encoder.parameters(), config.lr, device),  # fused: one pass over the 50M parameters and Adam's state
        latents,
        config,
        generator=generator,
        name=name,
        min_batch=2,
        callbacks=callbacks,
    )
    return encoder.eval(), history


@torch.no_grad()
def task_identification(
    encoder: HyperCLIP,
    weights: torch.Tensor,
    questions: Questions,
    *,
    candidates: int,
    generator: torch.Generator,
) -> float:
    """docs/design.md §P4, step 3: % of tasks whose own question gets the highest logit for its weights among its
    question and `candidates - 1` other tasks' questions drawn at random (all of them when there are fewer)."""
    n = len(weights)
    if n < 2:
        return float("nan")
    logits = encoder.logits(weights, questions)  # (N, N)
    hits = 0
    for i in range(n):
        others = torch.tensor([j for j in range(n) if j != i])
        chosen = others[torch.randperm(len(others), generator=generator)[: candidates - 1]]
        row = logits[i, torch.cat([torch.tensor([i]), chosen])]
        hits += int(row.argmax() == 0)
    return 100.0 * hits / n


def _decoder_net(space: LatentSpace) -> HyperNet | None:
    """The MLP that decodes the space's latents to adapter weights, when it is one."""
    if isinstance(space, HNetSpace):
        return space.base.hypernet
    if isinstance(space, HVAESpace):
        return space.vae.decoder
    return None


def regrouped_weight_embedding(space: LatentSpace, encoder: HyperCLIP) -> Callable[[torch.Tensor], torch.Tensor]:
    """x (B, L) -> f(G(x)) (B, C), computed without the (B, P) adapter weights when G is an MLP.

    G's output layer (P <- h) and f's first layer (c <- P) are both linear, so their composition is one (c, h) matrix:
    f1(G(x)) = W_f (W_G h + b_G) + b_f = (W_f W_G) h + (W_f b_G + b_f), h the decoder's last hidden units. With both
    frozen, the (c, P) @ (P, h) product is made once and every step runs on 128-wide layers; the result equals the
    product-by-product path up to float rounding (the P-long sums are regrouped). Other decoders go product by product.
    """
    net = _decoder_net(space)
    if net is None:
        return lambda x: encoder.embed_weights(space.decode(x))
    layers = [cast(nn.Linear, layer) for layer in encoder.weights.layers]
    with torch.no_grad():
        weight = layers[0].weight @ net.output_layer.weight  # (C1, P) @ (P, h) -> (C1, h)
        bias = layers[0].weight @ net.output_layer.bias + layers[0].bias

    def embed(x: torch.Tensor) -> torch.Tensor:
        out = F.linear(net.hidden(x), weight, bias)  # f's first layer's pre-activation (B, C1)
        for layer in layers[1:]:
            out = layer(F.softplus(out))
        return F.normalize(out, dim=-1)

    return embed


def guidance_loss_fn(
    space: LatentSpace, encoder: HyperCLIP, questions: Questions, x0: torch.Tensor, init_l2: float
) -> LossFn:
    """x (B, L) -> (B,) per-task losses -cos(f(G(x)), e_q) + init_l2 / 2 ||x - x0||^2.

    The guidance never needs G(x) itself: f's first layer is folded into G's last (`regrouped_weight_embedding`).
    """
    with torch.no_grad():
        target = encoder.embed_questions(questions)
    anchor = x0.detach()
    embed = regrouped_weight_embedding(space, encoder)

    def loss(x: torch.Tensor) -> torch.Tensor:
        cos = (embed(x) * target).sum(-1)
        return -cos + 0.5 * init_l2 * ((x - anchor) ** 2).sum(-1)

    return loss


def hyperclip_guidance(config: HyperCLIPConfig) -> Callable[..., torch.Tensor]:
    """The zero-shot latent of a guidance row (`meta.guided.ZeroShot`): Adam ascent from x0 towards the question."""

    def zero_shot(
        space: LatentSpace, guide: torch.nn.Module, batch: TaskBatch, x0: torch.Tensor, noise: Noise
    ) -> torch.Tensor:
        assert isinstance(guide, HyperCLIP)
        return adapt(guidance_loss_fn(space, guide, batch.questions, x0, config.init_l2), x0, config.guidance)

    return zero_shot
