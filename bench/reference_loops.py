"""The per-task reference loops the paper's code runs (docs/design.md §P1-§P7), written as it does them: one task at a
time, a leaf parameter and a torch.optim optimiser, the HNet applied to one latent (a matrix-vector product per task
and step). `paper_scale.py` times each beside the library's batched path.

The HVAE and HyperCLIP here are the paper's own, on the full weight vector W = HNet(z) (P entries): `PaperHVAE`
(a Linear(P, 128) encoder input and a free Linear(128, P) decoder output) and `PaperHyperCLIP` (a Linear(P, 128)
first layer). The library's models read the HNet's codes instead (`models/vae.py`, `models/hyperclip.py`): the same
functions of the weights, with 128-wide layers, so their ratio to these loops holds that saving as well as batching.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hyperguide.config import HyperLDMConfig, InnerLoop
from hyperguide.data.batch import Questions
from hyperguide.data.tasks import Task
from hyperguide.diffusion.ddpm import DDPM
from hyperguide.meta.collect import random_subset
from hyperguide.meta.hyperldm import noise_schedule, sampling_schedule
from hyperguide.meta.losses import symmetric_info_nce, vae_loss
from hyperguide.meta.methods import UncondHNetMAML
from hyperguide.models.adapter import LOGIT_SCALE, AdapterShape
from hyperguide.models.hyperclip import HyperCLIP, clip_logits
from hyperguide.models.hyperldm import HyperLDM
from hyperguide.models.hypernet import HyperNet
from hyperguide.models.vae import LOGVAR_OFFSET, WeightVAE


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


class PaperHVAE(nn.Module):
    """The paper's HVAE over flat weights (P,): encoder P -> hidden (ReLU) -> 2L (mean, log-variance), decoder
    L -> reversed hidden (ReLU) -> P, a free last layer. Initialised like the HNet, as the library's VAE."""

    def __init__(self, n_params: int, hidden_dims: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.encoder = HyperNet(n_params, hidden_dims, 2 * latent_dim)
        self.decoder = HyperNet(latent_dim, tuple(reversed(hidden_dims)), n_params)

    def forward(
        self, w: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(w).chunk(2, dim=-1)
        logvar = logvar + LOGVAR_OFFSET
        return self.decoder(WeightVAE.reparameterize(mu, logvar, generator)), mu, logvar


class PaperHyperCLIP(nn.Module):
    """The paper's HyperCLIP weight tower: flat weights (B, P) -> Linear(P, h) -> Softplus MLP -> (B, C), normalised.
    Initialised as the library's tower (Kaiming-normal weights, zero biases)."""

    def __init__(self, n_params: int, hidden_dims: Sequence[int], out_dim: int) -> None:
        super().__init__()
        dims = [n_params, *hidden_dims, out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        for layer in self.layers:
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            w = F.softplus(layer(w))
        return F.normalize(self.layers[-1](w), dim=-1)

    @torch.no_grad()
    def folded(self, readout: nn.Linear) -> HyperCLIP:
        """The library's HyperCLIP (pooled questions) that computes this tower on the codes h of W = readout(h): its
        first layer is this one's composed with the readout (E (A h + b) + c = (E A) h + (E b + c))."""
        first, last = self.layers[0], self.layers[-1]
        hidden = [layer.out_features for layer in self.layers[:-1]]
        model = HyperCLIP(readout.in_features, hidden, last.out_features).to(first.weight.device)
        layers = model.weights.layers
        layers[0].weight.copy_(first.weight @ readout.weight)
        layers[0].bias.copy_(first.weight @ readout.bias + first.bias)
        for mine, theirs in zip(self.layers[1:], layers[1:], strict=True):
            theirs.load_state_dict(mine.state_dict())
        return model


def _decode_one_by_one(base: UncondHNetMAML, z: torch.Tensor) -> torch.Tensor:
    """HNet(z_i) for each row alone, as the reference builds a batch of weights (B, P)."""
    with torch.no_grad():
        return torch.cat([base.hypernet(row.unsqueeze(0)) for row in z])


def hvae_steps(base: UncondHNetMAML, vae: PaperHVAE, z: torch.Tensor, steps: int, generator: torch.Generator) -> None:
    """docs/design.md §P3: per batch of 32 latents, weights made task by task, the P-wide VAE's loss on them (the
    squared error summed over the P weights), one step of two Adam optimisers (1e-4)."""
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
    base: UncondHNetMAML, tower: PaperHyperCLIP, z: torch.Tensor, questions: Questions, steps: int
) -> None:
    """docs/design.md §P4: per batch of 32, weights made task by task, the P-wide tower on them, one Adam step (1e-3)
    on the symmetric InfoNCE against the pooled question embeddings."""
    optimizer = torch.optim.Adam(tower.parameters(), lr=1e-3)
    for step in range(steps):
        rows = slice(step * 32, (step + 1) * 32)
        loss = symmetric_info_nce(clip_logits(tower(_decode_one_by_one(base, z[rows])), questions[rows].emb))
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
    """docs/design.md §P6: per batch of 32, condition dropout, the MSE of the denoiser's prediction (config.target)
    at random timesteps, Adam (1e-3), EMA per parameter."""
    ddpm = DDPM(noise_schedule(config), config.target)
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
    step), x0 bounded as the library's sampler does (config.clip_x0)."""
    ddpm = DDPM(sampling_schedule(config), config.target)
    timesteps = ddpm.schedule.original_timesteps.tolist()
    device = questions.emb.device
    clip = (model.x0_low, model.x0_high) if config.clip_x0 else None
    out = []
    for i in range(len(questions)):
        cond = questions.emb[i : i + 1]
        x = torch.randn(1, model.latent_dim, generator=generator).to(device)
        for index in reversed(range(ddpm.schedule.num_steps)):
            t = torch.full((1,), timesteps[index], dtype=torch.long, device=device)
            pred_null = model.denoiser(x, t, None)
            pred = pred_null + gamma * (model.denoiser(x, t, cond) - pred_null)
            noise = torch.randn(x.shape, generator=generator).to(device) if index > 0 else None
            x = ddpm.step(pred, index, x, noise, clip)
        out.append(model.denormalize(x))
    return torch.cat(out)


def guidance_one_by_one(
    base: UncondHNetMAML, tower: PaperHyperCLIP, questions: Questions, steps: int = 50
) -> torch.Tensor:
    """docs/design.md §P5: per task, Adam (1e-3) on z from z0 for `steps` steps, maximising cos(f(HNet(z)), e_q)
    with the P-wide tower f on the full weights HNet(z)."""
    base.requires_grad_(False)
    tower.requires_grad_(False)
    target = F.normalize(questions.emb, dim=-1)
    out = []
    for i in range(len(questions)):
        z = base.z0.detach().clone().unsqueeze(0).requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=1e-3)
        for _ in range(steps):
            optimizer.zero_grad()
            (-(tower(base.hypernet(z)) * target[i]).sum()).backward()
            optimizer.step()
        out.append(z.detach())
    return torch.cat(out)
