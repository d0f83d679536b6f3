"""Per-task adaptation, batched over tasks: SGD or Adam on per-task inner parameters phi (B, M).

Inner parameters are a latent z (HNet), a question embedding (conditional HNet) or raw adapter weights (MNet). Tasks
are independent: task b's loss depends on phi[b] only, so the gradient of the summed loss with respect to phi (B, M)
holds every task's own gradient, and one backward pass adapts all B tasks at once. Adam's state is elementwise, so
batched Adam is per-task Adam. `adapt_reference` is the plain one-task-at-a-time loop with torch.optim that the
batched path is tested against.

Meta-gradients: with `track_meta_grad`, the returned phi stays connected to phi0. First order (`first_order=True`,
the paper's default) treats inner gradients as constants; second order differentiates through them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hyperguide.config import InnerLoop
from hyperguide.data.batch import TaskBatch
from hyperguide.meta.losses import task_cross_entropy
from hyperguide.models.adapter import AdapterShape, adapter_logits

LossFn = Callable[[torch.Tensor], torch.Tensor]  # phi (B, M) -> per-task losses (B,)
WeightDecoder = Callable[[torch.Tensor], torch.Tensor]  # phi (B, M) -> adapter weights (B, P)


def support_loss_fn(shape: AdapterShape, generate: WeightDecoder, batch: TaskBatch, members: int = 1) -> LossFn:
    """phi -> (B,) cross-entropy of each task's support set under the adapter weights generate(phi) (the mean logits
    of an ensemble of `members` adapters per task, see `adapter_logits`)."""

    lengths = batch.lengths("support")

    def loss(phi: torch.Tensor) -> torch.Tensor:
        weights = generate(phi)
        x, answers, mask = batch.support_x, batch.answer_emb, batch.answer_mask
        logits = adapter_logits(shape, weights, x, answers, mask, lengths, members)
        return task_cross_entropy(logits, batch.support_y, batch.support_mask)

    return loss


def adapt(loss_fn: LossFn, phi0: torch.Tensor, loop: InnerLoop, *, track_meta_grad: bool = False) -> torch.Tensor:
    """phi after `loop.steps` steps on each task's loss, for all tasks at once. phi0: (B, M)."""
    phi = phi0 if track_meta_grad else phi0.detach()
    if loop.steps == 0:
        return phi
    second_order = track_meta_grad and not loop.first_order
    m = v = torch.zeros_like(phi0)
    b1, b2 = loop.betas
    with torch.enable_grad():
        for t in range(1, loop.steps + 1):
            if not phi.requires_grad:
                phi = phi.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(loss_fn(phi).sum(), phi, create_graph=second_order)
            if not second_order:
                grad = grad.detach()
            if loop.optimizer == "sgd":
                direction = grad
            else:
                m = b1 * m + (1 - b1) * grad
                v = b2 * v + (1 - b2) * grad * grad
                m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
                direction = m_hat / (v_hat.sqrt() + loop.eps)
            phi = phi - loop.lr * direction
    return phi if track_meta_grad else phi.detach()


def adapt_reference(task_loss_fns: list[LossFn], phi0: torch.Tensor, loop: InnerLoop) -> torch.Tensor:
    """The per-task reference: one task at a time, a leaf parameter and a torch.optim optimiser.

    `task_loss_fns[b]` is task b's loss alone (built from a one-task batch, no padding); phi0: (B, M).
    """
    out = []
    for loss_fn, start in zip(task_loss_fns, phi0, strict=True):
        param = start.detach().clone().requires_grad_(True)
        if loop.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD([param], lr=loop.lr)
        else:
            opt = torch.optim.Adam([param], lr=loop.lr, betas=loop.betas, eps=loop.eps)
        for _ in range(loop.steps):
            with torch.enable_grad():
                (param.grad,) = torch.autograd.grad(loss_fn(param.unsqueeze(0)).sum(), param)
            opt.step()
        out.append(param.detach())
    return torch.stack(out)
