"""HyperLDM end to end on `synthetic`: adapted latents, denoiser training, guided sampling rows, determinism."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hyperguide.data.batch import collate
from hyperguide.data.synthetic import synthetic_universe
from hyperguide.errors import HyperguideError
from hyperguide.harness import RunConfig, build_method, evaluate_run, train_run
from hyperguide.meta.collect import random_subset
from hyperguide.meta.hyperldm import HyperLDMConfig
from tests.test_harness import TINY

GUIDED = replace(
    TINY,
    methods=("hnet+hyperldm@0", "hnet+hyperldm@1", "hnet+hyperldm@2"),
    hyperldm=HyperLDMConfig(n_aug=4, num_steps=50, epochs=30, hidden_dims=(32,), time_dim=16),
)


def test_guidance_rows_train_and_evaluate(tmp_path: Path) -> None:
    universe = synthetic_universe()
    seconds = train_run(universe, GUIDED, tmp_path, say=lambda s: None)
    assert set(seconds) == {"hnet+hyperldm"} and seconds["hnet+hyperldm"] > 0
    assert (tmp_path / "uncond-hnet-maml" / "seed0-fold0.json").is_file()  # the HNet it diffuses in
    results = evaluate_run(universe, tmp_path, say=lambda s: None)
    rows = results["methods"]
    assert set(rows) == set(GUIDED.methods)
    for row in rows.values():
        assert 0 <= row["zero_shot"]["acc"]["mean"] <= 100 and set(row["k_shot"]) == {"1", "full"}
    # gamma changes the samples, so (almost surely) the scores
    assert rows["hnet+hyperldm@0"]["zero_shot"]["per_task_acc"] != rows["hnet+hyperldm@2"]["zero_shot"]["per_task_acc"]
    again = evaluate_run(universe, tmp_path, say=lambda s: None)
    assert again["methods"] == results["methods"]  # a fixed seed gives identical generated weights


def test_generated_weights_are_deterministic(tmp_path: Path) -> None:
    universe = synthetic_universe()
    train_run(universe, replace(GUIDED, seeds=(0,)), tmp_path, say=lambda s: None)
    tasks = universe.materialize(range(len(universe.tasks)))
    from hyperguide.checkpoint import load_checkpoint

    weights = []
    for _ in range(2):
        method = build_method("hnet+hyperldm@1.5", tasks, GUIDED)
        load_checkpoint(tmp_path / "hnet+hyperldm" / "seed0-fold0", method)
        batch = collate(tasks[:5])
        weights.append(method.generate(method.init_phi(batch)))
    assert torch.equal(weights[0], weights[1])


def test_random_subset_pools_two_thirds_to_all_examples() -> None:
    task = synthetic_universe().task(0)
    n = len(task.support_y) + len(task.query_y)
    g = torch.Generator().manual_seed(0)
    sizes = [len(random_subset(task, g).support_y) for _ in range(50)]
    assert min(sizes) >= 2 * n // 3 and max(sizes) <= n and len(set(sizes)) > 3


def test_bad_guidance_row_names_are_rejected() -> None:
    with pytest.raises(HyperguideError, match="unknown method"):
        RunConfig(methods=("hnet+hyperldm@high",))
    with pytest.raises(HyperguideError, match="unknown method"):
        RunConfig(methods=("hvae+hyperldm@1",))
