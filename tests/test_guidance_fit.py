"""Every learned guidance part must solve a small problem of its own kind before anyone asks how it generalises: K
tight clusters of HNet latents, one question each (the shape of the adapted-latent data). The HVAE must reproduce
its training weights, HyperCLIP must rank each cluster's own question first, the regressor must map each question
into its cluster. (HyperLDM's test is `test_hyperldm_fit.py`.)"""

from __future__ import annotations

import torch

from hyperguide.config import HVAEConfig, HyperCLIPConfig, MethodConfig, RegressorConfig
from hyperguide.data.batch import Questions
from hyperguide.meta.hvae import train_hvae
from hyperguide.meta.hyperclip import retrieval, train_hyperclip
from hyperguide.meta.methods import UncondHNetMAML
from hyperguide.meta.regressor import train_regressor
from hyperguide.meta.spaces import HNetSpace, HVAESpace
from hyperguide.models.adapter import AdapterShape

K, LATENT, QUESTION = 12, 8, 16


def problem(seed: int = 0) -> tuple[HNetSpace, torch.Tensor, Questions]:
    """A small random HNet, latents (A=6, K, L) in K clusters (within-cluster std 0.1 of a between-cluster 1), and K
    questions of mutual cosine ~0.8."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    base = UncondHNetMAML(AdapterShape(6, 3), QUESTION, MethodConfig(latent_dim=LATENT, hnet_hidden=(16, 16)))
    latents = torch.randn(K, LATENT, generator=g) + 0.1 * torch.randn(6, K, LATENT, generator=g)
    shared = torch.randn(QUESTION, generator=g)
    emb = torch.nn.functional.normalize(shared + 0.5 * torch.randn(K, QUESTION, generator=g), dim=-1)
    return HNetSpace(base.requires_grad_(False)), latents, Questions(emb, emb.unsqueeze(1), torch.ones(K, 1).bool())


def test_the_hvae_reproduces_its_training_weights() -> None:
    space, latents, _ = problem()
    config = HVAEConfig(hidden_dims=(32,), latent_dim=8, lr=3e-3, epochs=300, batch_size=6)
    vae, _ = train_hvae(space.base, latents, config, generator=torch.Generator().manual_seed(0))
    hvae = HVAESpace(space.base, vae)
    with torch.no_grad():
        weights = space.decode(latents[0])
        decoded = hvae.decode(hvae.from_hnet_latents(latents[0])[0])
    error = ((decoded - weights) ** 2).sum() / ((weights - weights.mean(0)) ** 2).sum()
    assert float(error) < 0.05  # the decoded encoder means keep over 95% of the weights' variance across tasks


def test_hyperclip_ranks_each_clusters_own_question_first() -> None:
    space, latents, questions = problem()
    config = HyperCLIPConfig(hidden_dims=(32, 32), epochs=400, batch_size=6)
    encoder, _ = train_hyperclip(space, latents, questions, config, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rank = retrieval(encoder, space.code(latents[0]), questions, torch.eye(K, dtype=torch.bool))
    assert rank["top1"] >= 90.0
    torch.testing.assert_close(encoder.bank.latents, latents.mean(0))  # the bank holds the task means


def test_the_regressor_maps_each_question_into_its_cluster() -> None:
    space, latents, questions = problem()
    config = RegressorConfig(hidden_dims=(32,), epochs=0, min_steps=600, batch_size=6)
    model, _ = train_regressor(space, latents, questions, config, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(questions)
    nearest = torch.cdist(out, latents.mean(0)).argmin(1)
    assert float((nearest == torch.arange(K)).float().mean()) >= 0.9
