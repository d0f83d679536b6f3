"""The per-task reference loops the paper's code runs (docs/design.md §P1-§P7), written as it does them: one task at a
time, a leaf parameter and a torch.optim optimiser, the HNet applied to one latent (a matrix-vector product per task
and step). `paper_scale.py` times each beside the library's batched path.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from hyperguide.config import HyperLDMConfig, InnerLoop
from hyperguide.data.batch import Questions
from hyperguide.data.tasks import Task
from hyperguide.diffusion.ddpm import DDPM
from hyperguide.meta.collect import random_subset
from hyperguide.meta.hyperldm import noise_schedule, sampling_schedule
from hyperguide.meta.losses import symmetric_info_nce, vae_loss
from hyperguide.meta.methods import UncondHNetMAML
from hyperguide.models.adapter import LOGIT_SCALE, AdapterShape
from hyperguide.models.hyperclip import HyperCLIP
from hyperguide.models.hyperldm import HyperLDM
from hyperguide.models.vae import WeightVAE


def adapter_loss(
    shape: AdapterShape, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of one task: flat weights w (P,), features x (N, D), labels y (N,), answers t (K, D)."""
    d, h = shape.feature_dim, shape.hidden_dim
    w1, w2 = w[: h * d].view(h, d), w[h * d : 2 * h * d].view(d, h)
    b1, b2 = w[2 * h * d : 2 * h * d + h], w[2 * h * d + h :]
    hidden = torch.relu(F.linear(x, w1 / d**0.5, b1))
    adapted = F.linear(hidden, w2 / h**0.5, b2) + x
    logits = LOGIT_SCALE * F.normalize(adapted, dim=-1) @ F.normalize(t, dim=-1).T
    return F.cross_entropy(logits, y)


def _on(task: Task, device: str) -> tuple[torch.Tensor, ...]:
    return tuple(v.to(device) for v in (task.support_x, task.support_y, task.query_x, task.query_y, task.answer_emb))


def maml_epoch(method: UncondHNetMAML, tasks: list[Task], device: str, *, meta_batch: int = 32) -> None:
    """docs/design.md §P1: per task, 10 first-order SGD steps on z from z0, the query loss backpropagated into the
    HNet and z0; Adam (1e-3, clip 10) every `meta_batch` tasks."""
    inner: InnerLoop = method.config.inner
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    for start in range(0, len(tasks), meta_batch):
        chunk = tasks[start : start + meta_batch]
        optimizer.zero_grad(set_to_none=True)
        for task in chunk:
            sx, sy, qx, qy, t = _on(task, device)
            z = method.z0.unsqueeze(0)
            for _ in range(inner.steps):
                zi = z.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(adapter_loss(method.shape, method.hypernet(zi)[0], sx, sy, t), zi)
                z = z - inner.lr * grad
            (adapter_loss(method.shape, method.hypernet(z)[0], qx, qy, t) / len(chunk)).backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()


def collect_epoch(method: UncondHNetMAML, tasks: list[Task], device: str, generator: torch.Generator) -> torch.Tensor:
    """docs/design.md §P2, one augmentation: per task, a random subset and 10 SGD steps (lr 0.1) on z from z0."""
    method.requires_grad_(False)
    out = []
    for task in tasks:
        sx, sy, _, _, t = _on(random_subset(task, generator), device)
        z = method.z0.detach().clone().unsqueeze(0).requires_grad_(True)
        optimizer = torch.optim.SGD([z], lr=0.1)
        for _ in range(10):
            optimizer.zero_grad()
            adapter_loss(method.shape, method.hypernet(z)[0], sx, sy, t).backward()
            optimizer.step()
        out.append(z.detach())
    return torch.cat(out)


def _decode_one_by_one(base: UncondHNetMAML, z: torch.Tensor) -> torch.Tensor:
    """HNet(z_i) for each row alone, as the reference builds a batch of weights (B, P)."""
    with torch.no_grad():
        return torch.cat([base.hypernet(row.unsqueeze(0)) for row in z])


def hvae_steps(base: UncondHNetMAML, vae: WeightVAE, z: torch.Tensor, steps: int, generator: torch.Generator) -> None:
    """docs/design.md §P3: per batch of 32 latents, weights made task by task, one step of two Adam optimisers
    (1e-4)."""
    enc_opt = torch.optim.Adam(vae.encoder.parameters(), lr=1e-4)
    dec_opt = torch.optim.Adam(vae.decoder.parameters(), lr=1e-4)
    for step in range(steps):
        weights = _decode_one_by_one(base, z[step * 32 : (step + 1) * 32])
        recon, mu, logvar = vae(weights, generator)
        loss = vae_loss(recon, weights, mu, logvar)[0]
        enc_opt.zero_grad()
        dec_opt.zero_grad()
        loss.backward()
        enc_opt.step()
        dec_opt.step()


def hyperclip_steps(
    base: UncondHNetMAML, encoder: HyperCLIP, z: torch.Tensor, questions: Questions, steps: int
) -> None:
    """docs/design.md §P4: per batch of 32, weights made task by task, one Adam step (1e-3) on the symmetric InfoNCE."""
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    for step in range(steps):
        rows = slice(step * 32, (step + 1) * 32)
        loss = symmetric_info_nce(encoder.logits(_decode_one_by_one(base, z[rows]), questions[rows]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def hyperldm_steps(
    model: HyperLDM,
    config: HyperLDMConfig,
    z: torch.Tensor,
    questions: Questions,
    steps: int,
    generator: torch.Generator,
) -> None:
    """docs/design.md §P6: per batch of 32, condition dropout, the eps-MSE at random timesteps, Adam (1e-3), EMA per
    parameter."""
    ddpm = DDPM(noise_schedule(config))
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps):
        rows = slice(step * 32, (step + 1) * 32)
        cond = model.denoiser.drop_condition(questions[rows].emb, 0.2, generator)
        loss = ddpm.loss(model.denoiser, model.normalize(z[rows]), cond, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                e.mul_(0.999).add_(p, alpha=0.001)


@torch.no_grad()
def sample_one_by_one(
    model: HyperLDM, config: HyperLDMConfig, questions: Questions, gamma: float, generator: torch.Generator
) -> torch.Tensor:
    """docs/design.md §P7: per task, the whole reverse chain with guidance scale gamma (two denoiser passes per
    step)."""
    ddpm = DDPM(sampling_schedule(config))
    timesteps = ddpm.schedule.original_timesteps.tolist()
    device = questions.emb.device
    out = []
    for i in range(len(questions)):
        cond = questions.emb[i : i + 1]
        x = torch.randn(1, model.latent_mean.shape[0], generator=generator).to(device)
        for index in reversed(range(ddpm.schedule.num_steps)):
            t = torch.full((1,), timesteps[index], dtype=torch.long, device=device)
            eps_null = model.denoiser(x, t, None)
            eps = eps_null + gamma * (model.denoiser(x, t, cond) - eps_null)
            noise = torch.randn(x.shape, generator=generator).to(device) if index > 0 else None
            x = ddpm.step(eps, index, x, noise)
        out.append(model.denormalize(x))
    return torch.cat(out)


def guidance_one_by_one(
    base: UncondHNetMAML, encoder: HyperCLIP, questions: Questions, steps: int = 50
) -> torch.Tensor:
    """docs/design.md §P5: per task, Adam (1e-3) on z from z0 for `steps` steps, maximising cos(f(HNet(z)), e_q)."""
    base.requires_grad_(False)
    encoder.requires_grad_(False)
    with torch.no_grad():
        target = encoder.embed_questions(questions)
    out = []
    for i in range(len(questions)):
        z = base.z0.detach().clone().unsqueeze(0).requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=1e-3)
        for _ in range(steps):
            optimizer.zero_grad()
            (-(encoder.embed_weights(base.hypernet(z)) * target[i]).sum()).backward()
            optimizer.step()
        out.append(z.detach())
    return torch.cat(out)
