"""`generate` end to end on a tiny metavqa universe (a randomly initialised CLIP saved to a folder): a trained run,
new questions typed by a user, weights and predictions, the CLI, and clear errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hyperguide.cli import main
from hyperguide.config import CollectConfig, HyperLDMConfig, MethodConfig, RunConfig, TrainConfig
from hyperguide.errors import HyperguideError
from hyperguide.generate import generate
from hyperguide.io import read_json, read_tensors
from hyperguide.run.folder import RunFolder
from hyperguide.run.train import train_run
from hyperguide.universes import UniverseOptions, load_universe, prepare_universe
from tests.helpers import write_fixture


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, images) -> tuple[Path, UniverseOptions, Path]:
    root = tmp_path_factory.mktemp("generate")
    splits, coco = write_fixture(root, images)
    options = UniverseOptions(
        home=root / "home", splits_dir=splits, coco_root=coco, clip_model=str(model_dir), batch_size=2
    )
    prepare_universe("metavqa", options)
    config = RunConfig(
        universe="metavqa",
        seeds=(0,),
        methods=("cond-multitask", "hnet+hyperldm", "oracle"),
        method=MethodConfig(adapter_hidden=4, latent_dim=4, hnet_hidden=(8,)),
        train=TrainConfig(epochs=2, meta_batch_size=2),
        collect=CollectConfig(n_aug=2),
        hyperldm=HyperLDMConfig(num_steps=20, epochs=3, min_steps=0, hidden_dims=(8,), time_dim=8, gammas=(1.0,)),
    )
    run = root / "run"
    train_run(load_universe("metavqa", options), config, RunFolder(run))
    return run, options, next(coco.rglob("*.jpg"))


def test_generate_gives_weights_and_predictions_for_a_new_question(trained) -> None:
    run, options, image = trained
    question = "What color is the dog?"  # not a task of the universe
    out = generate(
        run, [question], [["red", "blue", "green"]], method="hnet+hyperldm@1", images=[image, image], options=options
    )
    assert out.weights.shape == (1, out.shape.n_params) and torch.isfinite(out.weights).all()
    assert out.predictions is not None and out.probabilities is not None
    assert len(out.predictions[0]) == 2 and set(out.predictions[0]) <= {"red", "blue", "green"}
    torch.testing.assert_close(out.probabilities[0].sum(-1), torch.ones(2))
    again = generate(run, [question], [["red", "blue", "green"]], method="hnet+hyperldm@1", options=options)
    assert torch.equal(again.weights, out.weights)  # a fixed seed gives identical weights
    # the question decides the weights (cond-multitask is a deterministic function of it)
    a, b = (
        generate(run, [q], [["1", "2"]], method="cond-multitask", options=options) for q in ("How many dogs?", "Why?")
    )
    assert not torch.equal(a.weights, b.weights)


def test_known_questions_get_their_answers_and_the_universe_prompts(trained) -> None:
    run, options, _ = trained
    out = generate(run, ["What color is it?", "How many cats?"], method="cond-multitask", options=options)
    assert out.answers == [["red", "blue"], ["1", "2"]] and out.weights.shape[0] == 2


def test_cli_generate_writes_weights_and_json(trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, options, image = trained
    argv = ["generate", str(run), "What color is the dog?", "--answers", "red", "blue", "--images", str(image)]
    argv += ["--method", "cond-multitask", "--out", str(tmp_path / "g"), "--home", str(options.home)]
    argv += ["--splits-dir", str(options.splits_dir), "--clip-model", options.clip_model]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "What color is the dog?" in printed and "weights.safetensors" in printed
    record = read_json(tmp_path / "g" / "generated.json")
    assert record["method"] == "cond-multitask" and record["questions"][0]["predictions"][0] in ("red", "blue")
    weights = read_tensors(tmp_path / "g" / "weights.safetensors")["q0"]
    assert weights.shape == (
        record["adapter"]["feature_dim"] * record["adapter"]["hidden_dim"] * 2
        + record["adapter"]["feature_dim"]
        + record["adapter"]["hidden_dim"],
    )


def test_generate_rejects_bad_requests(trained) -> None:
    run, options, _ = trained
    with pytest.raises(HyperguideError, match="uses support labels"):
        generate(run, ["What color is it?"], method="oracle", options=options)
    with pytest.raises(HyperguideError, match="pass --answers"):
        generate(run, ["Is the sky green?"], method="cond-multitask", options=options)
    with pytest.raises(HyperguideError, match="at least two candidate answers"):
        generate(run, ["Is the sky green?"], [["yes"]], method="cond-multitask", options=options)
    with pytest.raises(HyperguideError, match="no results.json"):
        generate(run, ["What color is it?"], options=options)
    with pytest.raises(HyperguideError, match="no checkpoint"):
        generate(run, ["What color is it?"], method="hvae+hyperldm@1", options=replace(options))
