"""The task network and the batched inner loop against their references (docs/design.md §3.1, §P1)."""

from __future__ import annotations

import pytest
import torch

from hyperguide.data.batch import collate
from hyperguide.data.synthetic import synthetic_universe
from hyperguide.meta.inner_loop import InnerLoop, adapt, adapt_reference, support_loss_fn
from hyperguide.models.adapter import AdapterShape, ResidualAdapter, adapter_logits
from hyperguide.models.hypernet import HyperNet


def test_flatten_round_trip_and_paper_layout() -> None:
    shape = AdapterShape(768, 256)
    assert shape.n_params == 394_240  # docs/design.md §3.1
    flat = torch.randn(3, shape.n_params)
    params = shape.unflatten(flat)
    assert params["w1"].shape == (3, 256, 768) and params["b2"].shape == (3, 768)
    assert torch.equal(shape.flatten(params), flat)
    assert torch.equal(params["w1"][1].flatten(), flat[1, : 256 * 768])  # [W1, W2, b1, b2]
    assert torch.equal(params["b2"][2], flat[2, -768:])


def test_functional_adapter_equals_the_module() -> None:
    torch.manual_seed(0)
    module = ResidualAdapter(12, 5)
    x, answers = torch.randn(7, 12), torch.randn(3, 12)
    expected = module(x, answers)
    got = adapter_logits(module.shape, module.flat_weights().unsqueeze(0), x.unsqueeze(0), answers.unsqueeze(0))[0]
    torch.testing.assert_close(got, expected)


def test_zero_weights_are_the_identity_adapter() -> None:
    shape = AdapterShape(6, 4)
    x, answers = torch.randn(1, 5, 6), torch.randn(1, 2, 6)
    logits = adapter_logits(shape, shape.identity(1), x, answers)
    cos = torch.nn.functional.cosine_similarity(x[0].unsqueeze(1), answers[0].unsqueeze(0), dim=-1)
    torch.testing.assert_close(logits[0], 100 * cos)


def test_padding_does_not_change_a_task() -> None:
    u = synthetic_universe()
    tasks = u.materialize(range(6))
    shape = AdapterShape(16, 8)
    w = torch.randn(6, shape.n_params)
    batch = collate(tasks)
    batched = support_loss_fn(shape, lambda p: p, batch)(w)
    alone = torch.cat([support_loss_fn(shape, lambda p: p, collate([t]))(w[i : i + 1]) for i, t in enumerate(tasks)])
    torch.testing.assert_close(batched, alone)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("space", ["weights", "latent"])
def test_batched_inner_loop_equals_the_per_task_loop(optimizer: str, space: str) -> None:
    torch.manual_seed(1)
    u = synthetic_universe()
    tasks = u.materialize(range(8))
    shape = AdapterShape(16, 8)
    if space == "weights":
        generate, phi0 = (lambda p: p), 0.1 * torch.randn(8, shape.n_params)
    else:
        hnet = HyperNet(4, (16,), shape.n_params)
        generate, phi0 = hnet, torch.randn(8, 4)
    loop = InnerLoop(steps=5, lr=0.05 if optimizer == "sgd" else 0.01, optimizer=optimizer)
    batched = adapt(support_loss_fn(shape, generate, collate(tasks)), phi0, loop)
    reference = adapt_reference([support_loss_fn(shape, generate, collate([t])) for t in tasks], phi0, loop)
    assert not torch.allclose(batched, phi0)  # it moved
    torch.testing.assert_close(batched, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("first_order", [True, False])
def test_maml_meta_gradient_matches_the_closed_form(first_order: bool) -> None:
    """Quadratic tasks L(theta) = 0.5 |A theta - b|^2: one inner SGD step has a closed-form meta-gradient.

    theta' = theta - a A_s^T (A_s theta - b_s);  d L_q(theta') / d theta = (I - a A_s^T A_s)^T A_q^T (A_q theta' - b_q),
    and the first-order approximation drops the (I - a A_s^T A_s) factor.
    """
    torch.manual_seed(2)
    dim, alpha = 4, 0.1
    a_s, b_s, a_q, b_q = torch.randn(6, dim), torch.randn(6), torch.randn(5, dim), torch.randn(5)
    theta = torch.randn(1, dim, requires_grad=True)

    def support(phi: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((phi @ a_s.T - b_s) ** 2).sum(-1)

    adapted = adapt(support, theta, InnerLoop(steps=1, lr=alpha, first_order=first_order), track_meta_grad=True)
    outer = 0.5 * ((adapted @ a_q.T - b_q) ** 2).sum()
    (got,) = torch.autograd.grad(outer, theta)

    t = theta.detach()[0]
    t_prime = t - alpha * a_s.T @ (a_s @ t - b_s)
    query_grad = a_q.T @ (a_q @ t_prime - b_q)
    expected = query_grad if first_order else (torch.eye(dim) - alpha * a_s.T @ a_s).T @ query_grad
    torch.testing.assert_close(got[0], expected, rtol=1e-5, atol=1e-6)


def test_inner_loop_lowers_support_loss() -> None:
    u = synthetic_universe()
    batch = collate(u.materialize(range(10)))
    shape = AdapterShape(16, 8)
    loss_fn = support_loss_fn(shape, lambda p: p, batch)
    phi0 = shape.identity(10)
    phi = adapt(loss_fn, phi0, InnerLoop(steps=20, lr=0.01, optimizer="adam"))
    assert (loss_fn(phi) < loss_fn(phi0)).all()
