"""The diffusion process math and the denoiser (docs/design.md §3.5-§3.6): closed forms, respacing, guidance,
dropout."""

from __future__ import annotations

import math

import pytest
import torch

from hyperguide.config import Prediction
from hyperguide.diffusion.ddpm import DDPM, guided
from hyperguide.diffusion.schedule import NoiseSchedule
from hyperguide.models.denoiser import LatentDenoiser, timestep_embedding


def test_cosine_schedule_matches_its_closed_form() -> None:
    s = NoiseSchedule.cosine(1000)
    f = [math.cos(((t / 1000) + 0.008) / 1.008 * math.pi / 2) ** 2 for t in (0, 1, 500, 999)]
    assert float(s.alpha_bar[0]) == pytest.approx(f[1] / f[0], rel=1e-12)
    assert float(s.alpha_bar[499]) == pytest.approx(math.cos((0.5 + 0.008) / 1.008 * math.pi / 2) ** 2 / f[0], rel=1e-9)
    assert float(s.betas.max()) <= 0.999 and bool((s.alpha_bar[1:] < s.alpha_bar[:-1]).all())
    assert float(s.posterior_variance[0]) == 0.0  # sigma_0 = 0
    t = 300
    expected = float(s.betas[t] * (1 - s.alpha_bar[t - 1]) / (1 - s.alpha_bar[t]))
    assert float(s.posterior_variance[t]) == pytest.approx(expected)


def test_linear_schedule_is_sqrt_spaced() -> None:
    s = NoiseSchedule.linear(10, 1e-4, 2e-2)
    root = s.betas.sqrt()
    assert float(root[0]) == pytest.approx(1e-2) and float(root[-1]) == pytest.approx(2e-2**0.5)
    torch.testing.assert_close(root[1:] - root[:-1], torch.full((9,), float(root[1] - root[0]), dtype=torch.float64))


def test_add_noise_statistics() -> None:
    ddpm = DDPM(NoiseSchedule.cosine(1000))
    x0 = torch.full((20000, 2), 3.0)
    t = torch.full((20000,), 400)
    x_t = ddpm.add_noise(x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)), t)
    ab = float(ddpm.schedule.alpha_bar[400])
    assert float(x_t.mean()) == pytest.approx(3 * ab**0.5, abs=0.03)
    assert float(x_t.var()) == pytest.approx(1 - ab, abs=0.03)


def _toy_eps(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    shift = 0.0 if cond is None else cond
    return 0.1 * x + 0.001 * t.unsqueeze(-1).float() + shift


def test_respaced_sampler_with_stride_one_equals_the_full_sampler() -> None:
    schedule = NoiseSchedule.cosine(50)
    cond = torch.randn(4, 3)
    full = DDPM(schedule).sample(_toy_eps, (4, 3), cond, gamma=2.0, generator=torch.Generator().manual_seed(1))
    respaced_schedule = schedule.strided(50)
    torch.testing.assert_close(respaced_schedule.betas, schedule.betas)
    respaced = DDPM(respaced_schedule).sample(
        _toy_eps, (4, 3), cond, gamma=2.0, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(respaced, full)


def test_respacing_keeps_alpha_bar_at_the_kept_steps() -> None:
    schedule = NoiseSchedule.cosine(1000)
    short = schedule.strided(25)
    assert short.num_steps == 25 and short.timesteps[-1] == 999 and short.timesteps[0] == 0
    torch.testing.assert_close(short.alpha_bar, schedule.alpha_bar[list(short.timesteps)])


def test_guidance_scale_zero_is_unconditional_and_one_is_conditional() -> None:
    e_null, e_cond = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(guided(e_null, e_cond, 0.0), e_null)
    torch.testing.assert_close(guided(e_null, e_cond, 1.0), e_cond)
    torch.testing.assert_close(guided(e_null, e_cond, 3.0), e_null + 3 * (e_cond - e_null))


def test_condition_dropout_rate_matches_p_uncond() -> None:
    model = LatentDenoiser(8, 6, hidden_dims=(16,))
    cond = torch.ones(20000, 6)
    dropped = model.drop_condition(cond, 0.2, torch.Generator().manual_seed(0))
    rate = float((dropped == 0).all(-1).float().mean())
    assert rate == pytest.approx(0.2, abs=0.01)
    assert bool(((dropped == 0).all(-1) | (dropped == 1).all(-1)).all())  # whole rows, never parts


def test_denoiser_shapes_and_null_condition() -> None:
    torch.manual_seed(0)
    model = LatentDenoiser(128, 768)
    assert sum(p.numel() for p in model.parameters()) == 161_152  # docs/design.md §3.5
    x, t = torch.randn(3, 128), torch.tensor([0, 10, 999])
    assert model(x, t, torch.randn(3, 768)).shape == (3, 128)
    torch.testing.assert_close(model(x, t, None), model(x, t, torch.zeros(3, 768)))
    learned = LatentDenoiser(8, 4, hidden_dims=(16,), null="learned")
    assert any(p is learned.null_cond for p in learned.parameters())
    emb = timestep_embedding(torch.tensor([0, 5]), 100)
    assert emb.shape == (2, 100) and torch.equal(emb[0, :50], torch.ones(50))


def test_ddpm_loss_falls_on_toy_data() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    ddpm = DDPM(NoiseSchedule.cosine(100))
    model = LatentDenoiser(2, 1, hidden_dims=(64, 64), time_dim=16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = torch.randn(512, 2, generator=g) * 0.1 + torch.tensor([2.0, -1.0])
    losses = []
    for _ in range(200):
        loss = ddpm.loss(model, data, torch.ones(512, 1), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("steps", [1000, 100])
def test_sampling_with_the_exact_denoiser_recovers_the_data(steps: int, prediction: Prediction) -> None:
    """For data N(mu, s^2 I) the optimal eps(x_t) = sqrt(1 - ab) (x_t - sqrt(ab) mu) / (ab s^2 + 1 - ab); ancestral
    sampling with it, or with the x0 or v it implies, full or respaced, must give back N(mu, s^2). (With very few
    steps the posterior variance of ancestral DDPM is itself off: at 20 steps the std comes out near 0.36 for 0.3, a
    discretisation error.)"""
    schedule = NoiseSchedule.cosine(1000)
    mu, std = torch.tensor([2.0, -1.0, 0.5]), 0.3
    alpha_bar = schedule.alpha_bar

    def exact(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        ab = alpha_bar[t].double().unsqueeze(-1)
        x = x.double()
        eps = (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * std**2 + 1 - ab)
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        out = {"eps": eps, "x0": x0, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0}[prediction]
        return out.float()

    ddpm = DDPM(schedule if steps == 1000 else schedule.strided(steps), prediction)
    x = ddpm.sample(exact, (4000, 3), None, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.mean(0), mu, atol=0.03, rtol=0)
    torch.testing.assert_close(x.std(0), torch.full((3,), std), atol=0.03, rtol=0)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_each_prediction_is_trained_on_its_own_target_and_read_back_as_x0_and_eps(prediction: Prediction) -> None:
    ddpm = DDPM(NoiseSchedule.cosine(100), prediction)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    for index in (0, 40, 99):
        t = torch.full((6,), index)
        x_t = ddpm.add_noise(x0, noise, t)
        est_x0, est_eps = ddpm.estimate(ddpm.target(x0, noise, t), index, x_t)  # a perfect denoiser's output
        torch.testing.assert_close(est_eps, noise, atol=1e-3, rtol=1e-3)
        if index < 99:  # at the last step x0 is a 1e-4 fraction of x_t: it is read back only up to rounding
            torch.testing.assert_close(est_x0, x0, atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="prediction"):
        DDPM(NoiseSchedule.cosine(10), "score")  # type: ignore[arg-type]


def test_a_guide_corrects_the_x0_estimate_of_every_step() -> None:
    """A guide that pins x0 to a point makes the chain end there, whatever the denoiser says."""
    ddpm = DDPM(NoiseSchedule.cosine(50), "x0")
    target = torch.tensor([3.0, -2.0])
    x = ddpm.sample(
        lambda x, t, c: torch.zeros_like(x), (5, 2), None, generator=torch.Generator().manual_seed(0),
        guides=[lambda est: target.expand_as(est.x0)],
    )  # fmt: skip
    torch.testing.assert_close(x, target.expand(5, 2))


def test_clipped_step_with_infinite_bounds_is_the_plain_step_and_bounds_x0() -> None:
    ddpm = DDPM(NoiseSchedule.cosine(100))
    g = torch.Generator().manual_seed(0)
    x_t, eps, noise = (torch.randn(5, 3, generator=g) for _ in range(3))
    inf = torch.full((3,), float("inf"))
    for index in (0, 1, 50, 99):
        plain = ddpm.step(eps, index, x_t, noise)
        torch.testing.assert_close(ddpm.step(eps, index, x_t, noise, clip=(-inf, inf)), plain, rtol=1e-4, atol=1e-4)
    # at the last step the posterior mean is the clipped x0 itself, so the sample stays within the bounds
    bound = torch.ones(3)
    x0 = ddpm.step(100 * eps, 0, x_t, None, clip=(-bound, bound))
    assert bool((x0.abs() <= 1 + 1e-6).all())
