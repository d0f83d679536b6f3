"""The performance rewrites equal the plain computations they replace, to float tolerance: networks that read the
HNet's weights read their codes instead (their first layer folded into the HNet's readout, the HVAE's decoder tied
to it), and the ragged adapter against the padded one."""

from __future__ import annotations

import pytest
import torch

from hyperguide.config import HyperCLIPConfig
from hyperguide.data.batch import TaskBatch
from hyperguide.diffusion.noise import Noise
from hyperguide.meta.hyperclip import hyperclip_guidance
from hyperguide.meta.inner_loop import InnerLoop
from hyperguide.meta.losses import vae_loss
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
    return HVAESpace(base, WeightVAE(8, (8,), 5))


@pytest.mark.parametrize("kind", ["hnet", "hvae"])
def test_a_p_wide_first_layer_on_the_weights_is_a_code_layer_on_their_codes(kind: str) -> None:
    """The paper's HyperCLIP tower starts with Linear(P, h) on W = A code + b; folded, Linear(H, h) on the code."""
    space = _space(kind)
    encoder = HyperCLIP(space.code_dim, (16, 8), 12)
    wide = torch.nn.Linear(SHAPE.n_params, 16)  # a first layer of the paper's shape
    readout = space.readout
    with torch.no_grad():
        encoder.weights.layers[0].weight.copy_(wide.weight @ readout.weight)
        encoder.weights.layers[0].bias.copy_(wide.weight @ readout.bias + wide.bias)
    x = space.start(5, torch.Generator().manual_seed(1)) + 0.3 * torch.randn(5, space.latent_dim)
    h = wide(space.decode(x))
    for layer in encoder.weights.layers[1:]:
        h = layer(torch.nn.functional.softplus(h))
    torch.testing.assert_close(encoder.embed_codes(space.code(x)), torch.nn.functional.normalize(h, dim=-1))


def test_the_code_metric_gives_the_squared_error_of_the_weights() -> None:
    space = _space("hnet")
    readout = space.readout
    codes, recon = torch.randn(4, 8), torch.randn(4, 8)
    mu, logvar = torch.randn(4, 5), torch.randn(4, 5)
    metric = readout.weight.T @ readout.weight
    fast = vae_loss(recon, codes, mu, logvar, metric=metric, dim=SHAPE.n_params)
    slow = vae_loss(readout(recon), readout(codes), mu, logvar)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def collate_questions(emb: torch.Tensor) -> TaskBatch:
    """A batch that carries questions only (one example and two answers per task, unused)."""
    n = len(emb)
    x = torch.zeros(n, 1, 12)
    y = torch.zeros(n, 1, dtype=torch.long)
    ones = torch.ones(n, 1, dtype=torch.bool)
    return TaskBatch(emb, torch.zeros(n, 2, 12), torch.ones(n, 2, dtype=torch.bool), x, y, ones, x, y, ones)


def test_guidance_in_a_span_stays_in_it() -> None:
    space = _space("hnet")
    encoder = HyperCLIP(space.code_dim, (16,), 12, latent_dim=space.latent_dim)
    bank = torch.randn(3, 1) * torch.randn(1, space.latent_dim) + torch.randn(space.latent_dim)  # a line
    encoder.bank.fill(bank, torch.randn(3, 12))
    config = HyperCLIPConfig(start="centroid", span=1, guidance=InnerLoop(steps=10, lr=0.1, optimizer="adam"))
    emb = torch.randn(4, 12)
    batch = collate_questions(emb)
    x = hyperclip_guidance(config)(space, encoder, batch, space.start(4, None), Noise([0, 1, 2, 3]))
    direction = torch.nn.functional.normalize(bank[1] - bank[0], dim=0)
    offsets = x - encoder.bank.centroid
    torch.testing.assert_close(offsets, (offsets @ direction)[:, None] * direction, atol=1e-5, rtol=1e-4)
    assert float(offsets.norm(dim=-1).max()) > 0  # it moved, along the line


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
