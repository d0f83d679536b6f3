"""Does the question drive the weights? The conditioning controls (another task's question, no question), the
retrieval reference rows and the novelty of generated adapters (`eval/controls.py`, `meta/retrieval.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hyperguide.cli import main
from hyperguide.data.synthetic import synthetic_universe
from hyperguide.data.tasks import Task
from hyperguide.eval.controls import derangement, novelty, null_questions, shuffled_questions
from hyperguide.eval.scoring import evaluate_method
from hyperguide.models.adapter import AdapterShape
from hyperguide.rows import parse_row
from hyperguide.run.evaluate import question_controls
from hyperguide.run.train import splits_of
from hyperguide.trained.folder import RunFolder
from hyperguide.trained.loading import load_row


def _task(question: str, answers: tuple[str, ...], seed: int, dim: int = 6, n: int = 8) -> Task:
    g = torch.Generator().manual_seed(seed)
    return Task(
        question=question,
        answers=answers,
        question_emb=torch.randn(4, generator=g),
        answer_emb=torch.randn(len(answers), dim, generator=g),
        support_x=torch.randn(n, dim, generator=g),
        support_y=torch.randint(0, len(answers), (n,), generator=g),
        query_x=torch.randn(n, dim, generator=g),
        query_y=torch.randint(0, len(answers), (n,), generator=g),
        question_tokens=torch.randn(3, 4, generator=g),
    )


def test_the_derangement_swaps_questions_only_among_tasks_with_the_same_answers() -> None:
    yes_no, colours = ("yes", "no"), ("red", "blue", "green")
    tasks = [
        _task("a", yes_no, 0),
        _task("b", colours, 1),
        _task("c", ("no", "yes"), 2),  # the same answer set, in another order
        _task("d", ("circle", "square"), 3),  # no partner
        _task("e", colours, 4),
        _task("f", yes_no, 5),
    ]
    donors = derangement(tasks)
    assert donors[3] is None
    for i, d in enumerate(donors):
        if d is not None:
            assert d != i and set(tasks[d].answers) == set(tasks[i].answers)
    partnered = [d for d in donors if d is not None]
    assert sorted(partnered) == [0, 1, 2, 4, 5]  # a permutation: every question is given once

    shuffled = shuffled_questions(tasks)
    for i, (before, after) in enumerate(zip(tasks, shuffled, strict=True)):
        assert torch.equal(after.query_x, before.query_x) and torch.equal(after.query_y, before.query_y)
        assert after.answers == before.answers
        d = donors[i]
        if d is None:
            assert after.question == "" and not after.question_emb.any()
        else:
            assert after.question == tasks[d].question and torch.equal(after.question_emb, tasks[d].question_emb)
            assert after.question_tokens is tasks[d].question_tokens
    for task in null_questions(tasks):
        assert not task.question_emb.any() and task.question_tokens is not None
        assert task.question_tokens.shape == (1, 4) and not task.question_tokens.any()


def test_novelty_tells_a_copy_from_a_new_adapter() -> None:
    shape = AdapterShape(6, 2)
    tasks = [_task("a", ("yes", "no", "maybe"), 0, n=40), _task("b", ("yes", "no", "maybe"), 1, n=40)]
    g = torch.Generator().manual_seed(7)
    training = torch.randn(5, shape.n_params, generator=g)
    copy = training[3:4]
    new = torch.randn(1, shape.n_params, generator=g) * 3
    latents_train = torch.randn(5, 3, generator=g)
    out = novelty(
        shape,
        torch.cat([copy, new]),
        training,
        tasks,
        latents=torch.stack([latents_train[3], latents_train[3] + 10.0]),
        training_latents=latents_train,
        within=torch.tensor(2.0),
    )
    assert out["agreement_best"][0] == 100.0 and out["copy"][0] == 100.0
    assert out["agreement_nearest"][0] == 100.0 and out["distance_in_spreads"][0] == 0.0
    assert out["agreement_best"][1] < 100.0 and out["copy"][1] == 0.0
    assert out["distance_in_spreads"][1] > 0.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.fixture(scope="module")
def retrieval_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("retrieval") / "run"
    methods = '["clip-zeroshot","cond-multitask","nearest-question","hyperclip-retrieval"]'
    code = main(["bench", "synthetic", "--quick", "--out", str(out), "--quiet", "--set", f"methods={methods}"])
    assert code == 0
    return out


@pytest.mark.integration  # benches the retrieval rows (module fixture)
def test_retrieval_rows_copy_training_adapters_and_their_question_decides_which(retrieval_run: Path) -> None:
    """The reference rows retrieve a training latent: distance 0, every meta-test adapter a copy. On the meta-train
    tasks (whose own latents are in the bank) `nearest-question` fits: its own question retrieves its own adapter,
    another task's question a worse one, and no question worse still."""
    results = json.loads((retrieval_run / "results.json").read_text())
    for row in ("nearest-question", "hyperclip-retrieval"):
        n = results["methods"][row]["novelty"]
        assert n["distance_in_spreads"]["mean"] == 0.0
        assert n["copies"]["mean"] == 100.0 and n["agreement_best"]["mean"] == 100.0
    assert "controls" not in results["methods"]["clip-zeroshot"]  # it does not read the question
    for row in ("cond-multitask", "nearest-question", "hyperclip-retrieval"):
        c = results["methods"][row]["controls"]
        real = results["methods"][row]["zero_shot"]["acc"]["per_seed"]
        shuffled = c["shuffled"]["acc"]["per_seed"]
        assert c["question_effect"]["acc"]["per_seed"] == pytest.approx(
            [a - b for a, b in zip(real, shuffled, strict=True)]
        )
        assert "distance_in_spreads" not in results["methods"]["cond-multitask"]["novelty"]
    md = (retrieval_run / "results.md").read_text()
    assert "## Does the question drive the weights?" in md and "## Are the generated weights new?" in md

    folder = RunFolder(retrieval_run)
    config = folder.read_config()
    universe = synthetic_universe()
    tasks = universe.materialize(range(len(universe.tasks)))
    split = splits_of(universe, config)[0]
    loaded = load_row(parse_row("nearest-question"), tasks, config, folder, config.seeds[0], split.fold)
    train = [tasks[i] for i in split.train]
    own = question_controls(loaded.method, train, config, "cpu")
    fit = evaluate_method(loaded.method, train)
    assert _mean(fit["acc"]) > _mean(own["shuffled"]["acc"]) + 5.0
    assert _mean(fit["acc"]) > _mean(own["null"]["acc"]) + 5.0
