"""HyperCLIP (docs/design.md §P4-§P5): contrastive training of a weight encoder against question embeddings, its fit
and identification diagnostics, and guidance: gradient ascent on a new task's latent towards its question.

Training data per task: the code of one augmentation's adapted latent in the chosen space (the HNet's hidden layer
for z, the HVAE decoder's output for u drawn from the posterior), whose weights are the HNet readout of it
(`meta/spaces.py`). After training, the meta-train tasks' latents (the mean over augmentations) and question vectors
go into the model's bank (`models/bank.py`).

Guidance maximises cos(f(code(x)), e_q) over x with Adam, batched over tasks through `inner_loop.adapt`, from
`start`: the space's starting latent (the paper: the meta-learned z0, which lies off the training latents), the
centroid of the training latents, or the training latent HyperCLIP scores highest for the question (`retrieval`).
With `guidance_step`, Adam's learning rate is that fraction of the training latents' mean per-dimension spread, so
that one step moves each coordinate by about that share of the distance between tasks, whatever the space's scale.
With `span`, the latent is confined to the training centroid plus its top principal axes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from hyperguide.config import HyperCLIPConfig
from hyperguide.data.batch import Questions, TaskBatch
from hyperguide.diffusion.noise import Noise
from hyperguide.distributed import gather_rows, part, replicated_weight
from hyperguide.events import Callback
from hyperguide.meta.inner_loop import adapt
from hyperguide.meta.latent_data import fit_on_latents
from hyperguide.meta.losses import symmetric_info_nce
from hyperguide.meta.optim import adam
from hyperguide.meta.spaces import LatentSpace, SpaceLatents
from hyperguide.models.hyperclip import HyperCLIP, clip_logits
from hyperguide.train.loop import Probing, probed


def build_hyperclip(space: LatentSpace, question_dim: int, config: HyperCLIPConfig) -> HyperCLIP:
    return HyperCLIP(
        space.code_dim, config.hidden_dims, question_dim, config.question, config.question_heads, space.latent_dim
    )


def train_hyperclip(
    space: LatentSpace,
    latents: torch.Tensor,
    questions: Questions,
    config: HyperCLIPConfig,
    *,
    generator: torch.Generator,
    name: str = "hyperclip",
    device: str = "cpu",
    probing: Probing[HyperCLIP] | None = None,
    callbacks: Sequence[Callback] = (),
) -> tuple[HyperCLIP, list[dict[str, float]]]:
    """Train HyperCLIP on the (A, N, Lz) adapted HNet latents and the N tasks' questions; fill its bank."""
    data = SpaceLatents.of(space, latents, device)
    questions = questions.to(device)
    encoder = build_hyperclip(space, int(questions.emb.shape[1]), config).to(device)
    if config.normalize:
        with torch.no_grad():
            encoder.weights.codes.fit(space.code(data.mean.reshape(-1, space.latent_dim)), min_scale=0.01)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        aug, idx = batch[0].to(device), batch[1].to(device)
        mine = part(len(idx))  # this process's rows (all of them in one process)
        with torch.no_grad():
            drawn = data.draw(aug, idx, generator)  # every process draws the whole batch's
            codes = space.code(mine(drawn))
        # the contrastive loss pairs every row with every other: each process embeds its rows, gathers the batch's
        # embeddings and computes the whole loss (weighted 1/N; `distributed.gather_rows`)
        weights = gather_rows(encoder.embed_codes(codes), len(idx))
        asked = gather_rows(encoder.embed_questions(questions[mine(idx)]), len(idx))
        logits = clip_logits(weights, asked)
        correct = (logits.argmax(1) == torch.arange(len(idx), device=device)).float().mean()
        metrics = {"loss": symmetric_info_nce(logits), "batch_acc": 100.0 * correct}
        return metrics if mine.whole else {k: v * replicated_weight() for k, v in metrics.items()}

    history = fit_on_latents(
        step,
        adam(encoder.parameters(), config.lr, device),
        latents,
        config,
        generator=generator,
        name=name,
        min_batch=2,
        probing=probed(probing, encoder),
        callbacks=callbacks,
        sharded=True,
    )
    encoder.eval()
    with torch.no_grad():
        encoder.bank.fill(data.mean.mean(0), encoder.embed_questions(questions))
    return encoder, history


@torch.no_grad()
def retrieval(encoder: HyperCLIP, codes: torch.Tensor, questions: Questions, agree: torch.Tensor) -> dict[str, float]:
    """How HyperCLIP ranks the N tasks' own questions among all N for their weights' codes (N, H): % ranked first
    (`top1`), % whose first is the own question or an agreeing task's (`top1_agree`, `data.tasks.agreement`), and the
    mean rank of the own question (1 is best)."""
    logits = encoder.logits(codes, questions)  # (N, N)
    own = logits.diagonal().unsqueeze(1)
    rank = 1 + (logits > own).sum(1).float()
    best = logits.argmax(1)
    return {
        "top1": 100.0 * float((best == torch.arange(len(codes), device=codes.device)).float().mean()),
        "top1_agree": 100.0 * float(agree.to(codes.device)[torch.arange(len(codes)), best].float().mean()),
        "mean_rank": float(rank.mean()),
    }


@torch.no_grad()
def hard_negative_identification(
    encoder: HyperCLIP, codes: torch.Tensor, questions: Questions, pool: Questions, negatives: torch.Tensor
) -> float:
    """% of tasks whose weights' codes (N, H) score their own question above its hard negative: the question of
    `pool` at `negatives[i]` (the nearest question of a task that does not agree with task i, e.g. its negation)."""
    weights = encoder.embed_codes(codes)
    own = (weights * encoder.embed_questions(questions)).sum(-1)
    other = (weights * encoder.embed_questions(pool[negatives.to(pool.emb.device)])).sum(-1)
    return 100.0 * float((own > other).float().mean())


@torch.no_grad()
def task_identification(
    encoder: HyperCLIP,
    codes: torch.Tensor,
    questions: Questions,
    *,
    candidates: int,
    generator: torch.Generator,
) -> float:
    """docs/design.md §P4, step 3: % of tasks whose own question gets the highest logit for its weights' code among its
    question and `candidates - 1` other tasks' questions drawn at random (all of them when there are fewer)."""
    n = len(codes)
    if n < 2:
        return float("nan")
    logits = encoder.logits(codes, questions)  # (N, N)
    hits = 0
    for i in range(n):
        others = torch.tensor([j for j in range(n) if j != i])
        chosen = others[torch.randperm(len(others), generator=generator)[: candidates - 1]]
        row = logits[i, torch.cat([torch.tensor([i]), chosen])]
        hits += int(row.argmax() == 0)
    return 100.0 * hits / n


def guidance_loss_fn(
    space: LatentSpace, encoder: HyperCLIP, questions: Questions, x0: torch.Tensor, init_l2: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """x (B, L) -> (B,) per-task losses -cos(f(code(x)), e_q) + init_l2 / 2 ||x - x0||^2."""
    with torch.no_grad():
        target = encoder.embed_questions(questions)
    anchor = x0.detach()

    def loss(x: torch.Tensor) -> torch.Tensor:
        cos = (encoder.embed_codes(space.code(x)) * target).sum(-1)
        return -cos + 0.5 * init_l2 * ((x - anchor) ** 2).sum(-1)

    return loss


@torch.no_grad()
def best_bank_latents(space: LatentSpace, encoder: HyperCLIP, questions: Questions) -> torch.Tensor:
    """(B, L): for each question, the training latent of the bank whose weights HyperCLIP scores highest for it."""
    scores = encoder.embed_questions(questions) @ encoder.embed_codes(space.code(encoder.bank.latents)).T
    return encoder.bank.latents[scores.argmax(1)]


def guidance_start(
    config: HyperCLIPConfig, space: LatentSpace, encoder: HyperCLIP, questions: Questions, x0: torch.Tensor
) -> torch.Tensor:
    """The latents (B, L) guidance starts from (`config.start`)."""
    if config.start == "z0" or len(encoder.bank) == 0:
        return x0
    if config.start == "centroid":
        return encoder.bank.centroid.expand_as(x0).clone()
    return best_bank_latents(space, encoder, questions)


def hyperclip_guidance(config: HyperCLIPConfig) -> Callable[..., torch.Tensor]:
    """The zero-shot latent of a guidance row (`meta.guided.ZeroShot`): Adam ascent towards the question."""

    def zero_shot(
        space: LatentSpace, guide: torch.nn.Module, batch: TaskBatch, x0: torch.Tensor, noise: Noise
    ) -> torch.Tensor:
        assert isinstance(guide, HyperCLIP)
        start = guidance_start(config, space, guide, batch.questions, x0)
        loop = config.guidance
        if config.guidance_step is not None and len(guide.bank) > 1:
            loop = replace(loop, lr=config.guidance_step * float(guide.bank.spread.mean()))
        loss = guidance_loss_fn(space, guide, batch.questions, start, config.init_l2)
        if config.span is None or len(guide.bank) < 2:
            return adapt(loss, start, loop)
        axes, centre = guide.bank.principal_axes(config.span), guide.bank.centroid
        coords = adapt(lambda a: loss(centre + a @ axes.T), (start - centre) @ axes, loop)
        return centre + coords @ axes.T

    return zero_shot
