"""Guidance end to end on `synthetic`: adapted latents, HVAE, HyperCLIP, HyperLDM, every guidance row, determinism;
and the losses of the guidance models on toy data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from hyperguide.config import (
    CollectConfig,
    HVAEConfig,
    HyperCLIPConfig,
    HyperLDMConfig,
    InnerLoop,
    RegressorConfig,
    RunConfig,
)
from hyperguide.data.batch import collate
from hyperguide.data.splits import make_splits
from hyperguide.data.synthetic import synthetic_universe
from hyperguide.errors import HyperguideError
from hyperguide.eval.scoring import evaluate_method, zero_shot_phis
from hyperguide.meta.collect import random_subset
from hyperguide.meta.inner_loop import support_loss_fn
from hyperguide.meta.losses import symmetric_info_nce, vae_loss
from hyperguide.models.vae import WeightVAE
from hyperguide.rows import parse_row, table_rows
from hyperguide.run.evaluate import evaluate_run
from hyperguide.run.train import expand_config, train_run
from hyperguide.trained.folder import RunFolder
from hyperguide.trained.stage_table import stage_table
from tests.helpers import TINY, load_trained

GUIDANCE_METHODS = (
    "hnet+hyperclip", "hvae+hyperclip", "hnet+hyperldm", "hvae+hyperldm", "hnet+hyperldm+hyperclip", "hnet+regressor",
    "hnet+hyperclip-attention", "hnet+hyperldm-attention", "hnet+regressor-attention",
)  # fmt: skip
GUIDED = replace(  # HyperLDM and cond-multitask condition on the question's tokens, HyperCLIP on the pooled vector
    TINY,
    methods=("cond-multitask", *GUIDANCE_METHODS),
    method=replace(TINY.method, question="attention"),
    collect=CollectConfig(n_aug=4),
    hvae=HVAEConfig(hidden_dims=(32,), latent_dim=8, lr=1e-3, epochs=40),
    hyperclip=HyperCLIPConfig(
        hidden_dims=(32,), epochs=40, batch_size=8, guidance=InnerLoop(steps=5, lr=1e-2, optimizer="adam")
    ),
    hyperldm=HyperLDMConfig(
        num_steps=50,
        epochs=30,
        min_steps=0,
        hidden_dims=(32,),
        time_dim=16,
        question="attention",
        gammas=(0.0, 1.0, 2.0),
    ),
    regressor=RegressorConfig(hidden_dims=(32,), epochs=30, min_steps=0),
)


def _all_tasks() -> list:
    universe = synthetic_universe()
    return universe.materialize(range(len(universe.tasks)))


@pytest.fixture(scope="module")
def guided_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    out = tmp_path_factory.mktemp("guided")
    universe = synthetic_universe()
    seconds = train_run(universe, GUIDED, RunFolder(out))
    return out, seconds, evaluate_run(universe, RunFolder(out))


@pytest.mark.integration  # the guided run (module fixture)
def test_every_guidance_row_trains_and_evaluates(guided_run: tuple[Path, dict, dict]) -> None:
    out, seconds, results = guided_run
    # no retrieval row, and no -pointer row (they need a universe whose questions and images share a space)
    trained = {s for s in stage_table() if s != "question-bank" and not s.endswith("-pointer")}
    assert trained | {"uncond-hnet-maml", "cond-multitask"} == set(seconds)
    assert all(v > 0 for v in seconds.values())
    for stage in trained:  # every part trained and stored once per seed, shared by the rows that use it
        assert sorted(p.name for p in (out / stage).glob("*.safetensors")) == [
            "seed0-fold0.safetensors",
            "seed1-fold0.safetensors",
        ]
    rows = results["methods"]
    assert list(rows) == [
        "cond-multitask", "hnet+hyperclip", "hvae+hyperclip", "hnet+hyperldm@0", "hnet+hyperldm@1", "hnet+hyperldm@2",
        "hvae+hyperldm@0", "hvae+hyperldm@1", "hvae+hyperldm@2", "hnet+hyperldm+hyperclip@0",
        "hnet+hyperldm+hyperclip@1", "hnet+hyperldm+hyperclip@2", "hnet+regressor", "hnet+hyperclip-attention",
        "hnet+hyperldm-attention@0", "hnet+hyperldm-attention@1", "hnet+hyperldm-attention@2",
        "hnet+regressor-attention",
    ]  # fmt: skip
    # fit: every row's zero-shot procedure on its meta-train questions, and each guidance stage's own measures
    assert set(results["fit"]["rows"]) == set(rows)
    n_train = len(make_splits(synthetic_universe(), "random")[0].train)
    assert all(f["tasks"] == n_train and len(f["acc"]["per_seed"]) == 2 for f in results["fit"]["rows"].values())
    stages = results["fit"]["stages"]
    assert {"gate_ratio", "decoded_acc", "hnet_acc"} == set(stages["hvae"])
    assert {"retrieval_top1_agree", "hard_negative_test"} <= set(stages["hyperclip-hnet"])
    assert {"own_cluster", "own_cluster_agree", "distance_in_spreads", "train_acc"} == set(stages["hyperldm-hnet"])
    assert all(0 <= stages["hyperldm-hvae"][k]["mean"] <= 100 for k in ("own_cluster", "train_acc"))
    curve = [
        json.loads(line) for line in (out / "hyperldm-hnet" / "seed0-fold0.metrics.jsonl").read_text().splitlines()
    ]
    assert sum("fit_train_acc" in r for r in curve) == 6  # the stage's fit probes (RunConfig.probes)
    trained = {s for s in stage_table() if s not in ("latents", "question-bank") and not s.endswith("-pointer")}
    for stage in trained:  # every training stage probes its fit while it trains
        lines = (out / stage / "seed0-fold0.metrics.jsonl").read_text().splitlines()
        assert sum(any(k.startswith("fit_") for k in json.loads(line)) for line in lines) == 6, stage
    assert trained <= set(results["fit"]["curves"])  # latents and question-bank train nothing
    for row in rows.values():
        assert 0 <= row["zero_shot"]["acc"]["mean"] <= 100 and set(row["k_shot"]) == {"1", "full"}
        assert row["train_seconds"] > 0 and not row["uses_support_labels"]
    # gamma changes the samples, so (almost surely) the scores
    assert rows["hnet+hyperldm@0"]["zero_shot"]["per_task_acc"] != rows["hnet+hyperldm@2"]["zero_shot"]["per_task_acc"]
    ident = results["diagnostics"]["hyperclip-hnet_task_id"]
    assert ident["candidates"] == 10 and 0 <= ident["test"]["mean"] <= 100 and len(ident["train"]["per_seed"]) == 2
    for stage, learned in (
        ("cond-multitask", True), ("hyperldm-hnet", True), ("hyperclip-hnet", False),
        ("hyperclip-hnet-attention", True), ("regressor-hnet", False), ("regressor-hnet-attention", True),
    ):  # fmt: skip
        with safe_open(out / stage / "seed0-fold0.safetensors", "pt") as f:
            keys = list(f.keys())
        assert any(k.startswith("question.") or ".question." in k for k in keys) == learned, stage
    latents = json.loads((out / "latents" / "seed0-fold0.json").read_text())
    assert latents["n_aug"] == 4 and latents["stage"] == "latents"


@pytest.mark.integration  # the guided run (module fixture)
def test_a_fixed_seed_gives_identical_generated_weights(guided_run: tuple[Path, dict, dict]) -> None:
    out, _, _ = guided_run
    tasks = _all_tasks()
    batch = collate(tasks[:5])
    for row in ("hnet+hyperldm@1.5", "hvae+hyperclip"):
        weights = []
        for _ in range(2):
            method = load_trained(row, tasks, GUIDED, out, 0, 0)
            weights.append(method.generate(method.zero_shot_phi(batch)))
        assert torch.equal(weights[0], weights[1])
        other = load_trained(row, tasks, GUIDED, out, 1, 0)
        assert not torch.equal(weights[0], other.generate(other.zero_shot_phi(batch)))


@pytest.mark.integration  # the guided run (module fixture)
def test_k_shot_starts_from_the_value_the_zero_shot_column_scored(guided_run: tuple[Path, dict, dict]) -> None:
    out, _, _ = guided_run
    tasks = _all_tasks()[:6]
    method = load_trained("hnet+hyperldm@1", tasks, GUIDED, out, 0, 0)
    phis = zero_shot_phis(method, tasks, batch_size=4)
    assert torch.equal(phis[:4], method.zero_shot_phi(collate(tasks[:4])))
    zero = evaluate_method(method, tasks, start=phis)
    assert zero == evaluate_method(method, tasks, batch_size=4)
    # every task draws its own noise: its sample does not depend on its batch or its place in it
    torch.testing.assert_close(zero_shot_phis(method, tasks[2:])[0], phis[2])
    torch.testing.assert_close(zero_shot_phis(method, tasks[::-1], batch_size=3)[-1], phis[0])
    unchanged = evaluate_method(method, tasks[2:], start=phis[2:], finetune=InnerLoop(steps=0))
    assert unchanged["acc"] == zero["acc"][2:]
    with pytest.raises(ValueError, match="6 tasks"):
        evaluate_method(method, tasks, start=phis[:5])
    oracle = load_trained("oracle", tasks, GUIDED, out, 0, 0)
    with pytest.raises(ValueError, match="support set"):
        zero_shot_phis(oracle, tasks)


@pytest.mark.integration  # the guided run (module fixture)
def test_hyperclip_guidance_raises_the_cosine_to_the_question(guided_run: tuple[Path, dict, dict]) -> None:
    out, _, _ = guided_run
    tasks = _all_tasks()
    batch = collate(tasks[:8])
    method = load_trained("hnet+hyperclip", tasks, GUIDED, out, 0, 0)
    q = torch.nn.functional.normalize(batch.question_emb, dim=-1)
    with torch.no_grad():
        before = (method.guide.embed_codes(method.space.code(method.init_phi(batch))) * q).sum(-1)
        after = (method.guide.embed_codes(method.space.code(method.zero_shot_phi(batch))) * q).sum(-1)
    assert float(after.mean()) > float(before.mean())


def test_random_subset_pools_two_thirds_to_all_examples() -> None:
    task = synthetic_universe().task(0)
    n = len(task.support_y) + len(task.query_y)
    g = torch.Generator().manual_seed(0)
    sizes = [len(random_subset(task, g).support_y) for _ in range(50)]
    assert min(sizes) >= 2 * n // 3 and max(sizes) <= n and len(set(sizes)) > 3


def test_bad_guidance_row_names_are_rejected() -> None:
    for bad, why in (
        ("hnet+hyperldm@high", "is not a number"),
        ("hvae+hyperldm", "sweeps a value"),
        ("hnet+hyperclip@2", "does not sweep"),
        ("hnet+hyperdiffusion@1", "unknown method"),
        ("hnet+hyperldm@-1", ">= 0"),
        ("hnet+hyperldm@nan", "finite"),
        ("hnet+hyperldm@inf", "finite"),
    ):
        with pytest.raises(HyperguideError, match=why):
            parse_row(bad)
    # a config lists methods; a row stands for its method, whose rows follow the sweep
    assert expand_config(RunConfig(methods=("hnet+hyperldm@1", "hnet+hyperldm"))).methods == ("hnet+hyperldm",)
    with pytest.raises(HyperguideError, match="rows of the same name"):
        table_rows(replace(RunConfig(), hyperldm=HyperLDMConfig(gammas=(1.0, 1.0000001))))


def test_default_rows_hold_every_guidance_row_and_gamma() -> None:
    rows = [row.name for row in table_rows(RunConfig())]
    assert {"hnet+hyperclip", "hvae+hyperclip", "hnet+hyperldm@1.5", "hvae+hyperldm@4", "oracle"} <= set(rows)
    assert {
        "hnet+hyperldm+hyperclip@1",
        "hnet+regressor",
        "cond-multitask-attention",
        "hnet+hyperldm-attention@2",
    } <= set(rows)
    # 10 baselines and bounds, 2 HyperCLIP rows, 3 HyperLDM families x 5 gammas, the regressor, 2 retrieval rows, and
    # the attention variants of 2 baselines, HyperCLIP, the regressor and 2 HyperLDM families
    assert rows[:2] == ["chance", "majority"] and len(rows) == 10 + 2 + 15 + 1 + 2 + 4 + 10
    two = [row.name for row in table_rows(replace(RunConfig(), hyperldm=HyperLDMConfig(gammas=(0.5, 3))))]
    first = two.index("hnet+hyperldm@0.5")
    assert two[first : first + 4] == ["hnet+hyperldm@0.5", "hnet+hyperldm@3", "hvae+hyperldm@0.5", "hvae+hyperldm@3"]


def test_hyperclip_loss_is_symmetric_and_lower_for_matched_pairs() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 6, generator=g)
    # symmetric: exchanging the roles of weights and questions (transposing) gives the same loss
    assert torch.allclose(symmetric_info_nce(logits), symmetric_info_nce(logits.T))
    emb = torch.nn.functional.normalize(torch.randn(6, 16, generator=g), dim=-1)
    matched = symmetric_info_nce(10 * emb @ emb.T)
    shuffled = symmetric_info_nce(10 * emb @ emb[torch.randperm(6, generator=g)].T)
    assert float(matched) < float(shuffled)


def test_vae_loss_falls_on_toy_data() -> None:
    torch.manual_seed(0)
    basis = torch.randn(3, 200)
    data = torch.randn(256, 3) @ basis  # weight vectors on a 3-d subspace
    vae = WeightVAE(200, (64,), 4)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    losses = []
    for _ in range(300):
        recon, mu, logvar = vae(data)
        loss = vae_loss(recon, data, mu, logvar)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0]
    _, rec, kl = vae_loss(data, data, torch.zeros(256, 4), torch.zeros(256, 4))
    assert float(rec) == 0 and float(kl) == 0  # a perfect reconstruction and the prior itself


@pytest.mark.integration  # the guided run (module fixture)
def test_hyperldm_sampling_options_start_latent_and_few_shot_guidance(guided_run: tuple[Path, dict, dict]) -> None:
    out, _, _ = guided_run
    tasks = _all_tasks()
    batch = collate(tasks[:6])
    plain = load_trained("hnet+hyperldm@1", tasks, GUIDED, out, 0, 0)
    assert not plain.uses_support_for_zero_shot
    z_plain = plain.zero_shot_phi(batch)
    # start the reverse chain at 10% of the process from the noised meta-learned z0: the samples stay near z0
    near = replace(GUIDED, hyperldm=replace(GUIDED.hyperldm, start_frac=0.1))
    z_near = load_trained("hnet+hyperldm@1", tasks, near, out, 0, 0).zero_shot_phi(batch)
    z0 = plain.space.base.z0.detach()
    assert float((z_near - z0).norm(dim=-1).mean()) < float((z_plain - z0).norm(dim=-1).mean())
    # few-shot guidance pulls the samples down the support loss, and marks the row as using labels
    guided = replace(GUIDED, hyperldm=replace(GUIDED.hyperldm, few_shot_scale=3.0))
    method = load_trained("hnet+hyperldm@1", tasks, guided, out, 0, 0)
    assert method.uses_support_for_zero_shot
    z_fs = method.zero_shot_phi(batch)
    support_loss = support_loss_fn(method.shape, method.generate, batch)
    with torch.no_grad():
        assert float(support_loss(z_fs).mean()) < float(support_loss(z_plain).mean())
