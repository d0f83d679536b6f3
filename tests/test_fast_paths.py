"""The performance rewrites equal the plain computations they replace, to float tolerance: HyperCLIP guidance with
the encoder's first layer folded into the decoder's last, and the ragged adapter against the padded one."""

from __future__ import annotations

import pytest
import torch

from hyperguide.data.batch import Questions
from hyperguide.meta.hyperclip import guidance_loss_fn, regrouped_weight_embedding
from hyperguide.meta.inner_loop import InnerLoop, adapt
from hyperguide.meta.methods import MethodConfig, UncondHNetMAML
from hyperguide.meta.spaces import HNetSpace, HVAESpace, LatentSpace
from hyperguide.models.adapter import AdapterShape, adapter_logits
from hyperguide.models.hyperclip import HyperCLIP
from hyperguide.models.vae import WeightVAE

SHAPE = AdapterShape(12, 4)


def _space(kind: str) -> LatentSpace:
    torch.manual_seed(0)
    base = UncondHNetMAML(SHAPE, 12, MethodConfig(adapter_hidden=4, latent_dim=6, hnet_hidden=(8, 8)))
    if kind == "hnet":
        return HNetSpace(base)
    return HVAESpace(base, WeightVAE(SHAPE.n_params, (8,), 5))


def _questions(n: int) -> Questions:
    emb = torch.randn(n, 12)
    return Questions(emb, emb.unsqueeze(1), torch.ones(n, 1, dtype=torch.bool))


@pytest.mark.parametrize("kind", ["hnet", "hvae"])
@pytest.mark.parametrize("hidden", [(16, 8), ()])
def test_regrouped_guidance_equals_the_direct_path(kind: str, hidden: tuple[int, ...]) -> None:
    space = _space(kind)
    encoder = HyperCLIP(SHAPE.n_params, hidden, 12)
    x = space.start(5, torch.Generator().manual_seed(1)) + 0.3 * torch.randn(5, space.latent_dim)
    x.requires_grad_(True)
    fast = regrouped_weight_embedding(space, encoder)(x)
    slow = encoder.embed_weights(space.decode(x))
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    (g_fast,) = torch.autograd.grad(fast.sum(), x)
    (g_slow,) = torch.autograd.grad(slow.sum(), x)
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-4, atol=1e-6)

    questions = _questions(5)
    x0 = x.detach()
    loop = InnerLoop(steps=20, lr=1e-2, optimizer="adam")
    target = encoder.embed_questions(questions)

    def direct(z: torch.Tensor) -> torch.Tensor:
        return -(encoder.embed_weights(space.decode(z)) * target).sum(-1) + 0.05 * ((z - x0) ** 2).sum(-1)

    got = adapt(guidance_loss_fn(space, encoder, questions, x0, 0.1), x0, loop)
    torch.testing.assert_close(got, adapt(direct, x0, loop), rtol=1e-4, atol=1e-5)


def test_ragged_adapter_equals_the_padded_one_with_gradients() -> None:
    torch.manual_seed(0)
    lengths = [7, 2, 5]
    weights = torch.randn(3, SHAPE.n_params, requires_grad=True)
    x = torch.randn(3, 7, 12)
    answers = torch.randn(3, 4, 12)
    answer_mask = torch.tensor([[True, True, True, False], [True, True, False, False], [True] * 4])
    ragged = adapter_logits(SHAPE, weights, x, answers, answer_mask, lengths)
    padded = adapter_logits(SHAPE, weights, x, answers, answer_mask)
    rows = torch.arange(7)[None, :] < torch.tensor(lengths)[:, None]  # (B, N) real examples
    keep = rows[..., None] & answer_mask[:, None, :]
    torch.testing.assert_close(ragged[keep], padded[keep])
    assert (ragged[~rows[..., None] & answer_mask[:, None, :]] == 0).all()
    assert torch.isinf(ragged[~answer_mask[:, None, :].expand_as(ragged)]).all()
    upstream = torch.randn(keep.shape)
    (g_ragged,) = torch.autograd.grad((ragged[keep] * upstream[keep]).sum(), weights)
    (g_padded,) = torch.autograd.grad((padded[keep] * upstream[keep]).sum(), weights)
    torch.testing.assert_close(g_ragged, g_padded, rtol=1e-4, atol=1e-5)
