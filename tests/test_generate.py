"""`generate` end to end on a tiny metavqa universe (a randomly initialised CLIP saved to a folder): a trained run,
new questions typed by a user, weights and predictions, the CLI, and clear errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hyperguide.cli import main
from hyperguide.errors import HyperguideError
from hyperguide.generate import generate
from hyperguide.io import read_json, read_tensors
from hyperguide.run.train import train_run
from hyperguide.trained.folder import RunFolder
from hyperguide.universes import MetaVQAOptions, load_universe
from tests.helpers import tiny_metavqa


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, images) -> tuple[Path, MetaVQAOptions, Path]:
    root = tmp_path_factory.mktemp("generate")
    options, config, image = tiny_metavqa(root, model_dir, images)
    run = root / "run"
    train_run(load_universe("metavqa", options), config, RunFolder(run))
    return run, options, image


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


# ------------------------------------------------------------------------- issue 13: what generate refuses, and why


def _features_file(path: Path, features: torch.Tensor) -> Path:
    from safetensors.torch import save_file

    save_file({"features": features}, str(path))
    return path


def _cli(trained, *args: str) -> list[str]:
    run, options, _ = trained
    argv = ["generate", str(run), "What color is the dog?", "--method", "cond-multitask", "--home", str(options.home)]
    return [*argv, "--splits-dir", str(options.splits_dir), "--clip-model", options.clip_model, *args]


def test_images_and_features_together_are_refused(trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, options, image = trained
    features = _features_file(tmp_path / "f.safetensors", torch.randn(3, 16))
    with pytest.raises(SystemExit) as exit_:
        main(_cli(trained, "--answers", "red", "blue", "--images", str(image), "--features", str(features)))
    assert exit_.value.code == 2
    assert "error: argument --features: not allowed with argument --images" in capsys.readouterr().err
    with pytest.raises(HyperguideError, match=r"give images or features, not both"):
        generate(run, ["What?"], [["a", "b"]], method="cond-multitask", images=[image], features=features)
    # each prediction is filed under what it is of: generated.json names the inputs
    assert (
        main(_cli(trained, "--answers", "red", "blue", "--features", str(features), "--out", str(tmp_path / "g"))) == 0
    )
    assert f"  {features}[2]: " in capsys.readouterr().out
    assert read_json(tmp_path / "g" / "generated.json")["inputs"] == [f"{features}[{i}]" for i in range(3)]


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (torch.tensor([[float("nan")] * 16, [0.0] * 16]), "holds NaN or infinity in tensor 'features'"),
        (torch.tensor([[float("inf")] * 16]), "holds NaN or infinity in tensor 'features'"),
        (torch.zeros(0, 16), "features of shape (0, 16), expected (N, 16) with N >= 1"),
        (torch.ones(2, 16, dtype=torch.int32), "features of dtype torch.int32, expected a float tensor"),
    ],
    ids=["nan", "inf", "no-rows", "int"],
)
def test_bad_feature_files_are_refused(trained, features, message, tmp_path: Path, capsys) -> None:
    path = _features_file(tmp_path / "f.safetensors", features)
    assert main(_cli(trained, "--answers", "red", "blue", "--features", str(path), "--out", str(tmp_path / "g"))) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hyperguide generate: error: ") and message in err and str(path) in err
    assert not (tmp_path / "g").exists()


def test_repeated_answers_long_questions_and_a_file_as_out_are_refused(trained, tmp_path: Path, capsys) -> None:
    assert main(_cli(trained, "--answers", "yes", "yes", "no")) == 2
    assert capsys.readouterr().err.strip() == (
        "hyperguide generate: error: question 'What color is the dog?': candidate answers must be distinct, "
        "['yes'] repeat"
    )
    run, options, _ = trained
    long = "is " + "very " * 20 + "red?"  # the tiny CLIP reads 40 tokens, one a character here
    with pytest.raises(
        HyperguideError, match=r"text 'is very .*\.\.\.' is 88 tokens long; .* reads at most 40: shorten it"
    ):
        generate(run, [long], [["yes", "no"]], method="cond-multitask", options=options)
    out = tmp_path / "file"
    out.write_text("")
    assert main(_cli(trained, "--answers", "red", "blue", "--out", str(out))) == 2
    assert capsys.readouterr().err.strip() == (
        f"hyperguide generate: error: --out {out} is a file, not a folder: give a folder for the generated files"
    )


def test_generate_refuses_a_tampered_checkpoint(trained, tmp_path: Path) -> None:
    import shutil

    run, options, _ = trained
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    weights = copy / "cond-multitask" / "seed0-fold0.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(HyperguideError, match=r"row 'cond-multitask' \(seed 0, fold 0\): checkpoint .* sha256 differs"):
        generate(copy, ["What?"], [["a", "b"]], method="cond-multitask", options=options)


def test_a_model_folder_of_pickles_is_never_unpickled(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from transformers import CLIPModel

    from hyperguide.encoders.clip import ClipEncoder

    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((model_dir / name).read_bytes())
    model = CLIPModel.from_pretrained(model_dir)
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")  # what an old or foreign model folder holds
    assert (folder / "pytorch_model.bin").is_file() and not list(folder.glob("*.safetensors"))

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(HyperguideError, match=r"cannot load CLIP model .*pickled\b.*safetensors weights"):
        ClipEncoder(folder)


def test_eval_refuses_non_finite_or_other_universe_features(trained, tmp_path: Path, capsys) -> None:
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    run, options, _ = trained
    home = Path(shutil.copytree(options.home, tmp_path / "home"))
    table = home / "metavqa" / "features" / "image_features.safetensors"
    with safe_open(str(table), framework="pt") as f:
        metadata, features = f.metadata(), f.get_tensor("features")
    argv = ["eval", str(run), "--home", str(home), "--splits-dir", str(options.splits_dir)]
    argv += ["--clip-model", options.clip_model, "--quiet"]

    nan = features.clone()
    nan[1] = float("nan")  # one image's row
    save_file({"features": nan}, str(table), metadata=metadata)
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"hyperguide eval: error: feature table {table} holds NaN or infinity in tensor 'features': it is corrupt"
    )
    save_file({"features": features + 0.5}, str(table), metadata=metadata)  # finite, but not what was trained on
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("hyperguide eval: error: row 'cond-multitask' (seed 0, fold 0): checkpoint ")
    assert "was made from something else: its fingerprint differs in data; retrain it" in err
    assert not (run / "results.json").exists()  # nothing was scored


def test_a_decompression_bomb_is_refused_before_it_is_decoded(trained, tmp_path: Path, capsys) -> None:
    from tests.test_trust import _png_declaring

    bomb = _png_declaring(tmp_path / "bomb.png", 12000, 12000)
    assert main(_cli(trained, "--answers", "red", "blue", "--images", str(bomb), "--out", str(tmp_path / "g"))) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"hyperguide generate: error: image {bomb} declares 12000x12000 pixels, more than the 40,000,000 an image may "
        "have here (a decompression bomb?); it was not decoded"
    )
    assert not (tmp_path / "g").exists()


def test_a_seed_or_fold_the_run_never_had_is_named_with_those_it_has(
    trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe's N51: `--run-seed 5` or `--fold -1` said `no checkpoint ...; retrain it`; the run's seeds and folds
    are named instead, before anything is loaded or written."""
    import json
    import shutil

    run, options, _ = trained
    assert main(_cli(trained, "--answers", "red", "blue", "--run-seed", "5", "--out", str(tmp_path / "g"))) == 2
    assert capsys.readouterr().err.strip() == (
        f"hyperguide generate: error: run {run} has no seed 5: it trains seeds [0]; give one of them (--run-seed)"
    )
    assert main(_cli(trained, "--answers", "red", "blue", "--fold", "-1", "--out", str(tmp_path / "g"))) == 2
    assert capsys.readouterr().err.strip() == (
        f"hyperguide generate: error: run {run} has no fold -1: it trains folds [0] (random split); give one of them "
        "(--fold)"
    )
    assert not (tmp_path / "g").exists()
    # a config.json that lists fewer seeds than the folder trained (an edit the fingerprint allows) keeps the others
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    config = read_json(copy / "config.json")
    (copy / "config.json").write_text(json.dumps({**config, "seeds": [3]}))
    expected = generate(run, ["What?"], [["a", "b"]], method="cond-multitask", options=options)
    kept = generate(copy, ["What?"], [["a", "b"]], method="cond-multitask", seed=0, options=options)
    assert torch.equal(kept.weights, expected.weights)
    with pytest.raises(HyperguideError, match=r"has no seed 1: it trains seeds \[3\]"):
        generate(copy, ["What?"], [["a", "b"]], method="cond-multitask", seed=1, options=options)


def test_features_of_absurd_norm_are_refused(trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The probe's N53: finite features of 1e30 answered 50/50 without a word (the adapter's normalisation overflows
    float32 and gives 0); a row far beyond any encoder's scale is refused, naming the file and the row."""
    path = _features_file(tmp_path / "huge.safetensors", torch.cat([torch.randn(1, 16), torch.full((1, 16), 1e30)]))
    assert main(_cli(trained, "--answers", "red", "blue", "--features", str(path), "--out", str(tmp_path / "g"))) == 2
    assert capsys.readouterr().err.strip() == (
        f"hyperguide generate: error: {path}: features row 1 has L2 norm 4e+30, more than 1e+06: far from what an "
        "image encoder gives (norms of about 1 to 100), and beyond what the adapter computes in float32 (its "
        "normalised output would be 0 and every answer equally likely); are they the right features, at their "
        "encoder's scale?"
    )
    assert not (tmp_path / "g").exists()
    run, options, _ = trained
    large = torch.randn(2, 16) * 1e4  # large, but within what the adapter computes: answered
    out = generate(run, ["What?"], [["a", "b"]], method="cond-multitask", features=large, options=options)
    assert out.probabilities is not None and torch.isfinite(out.probabilities[0]).all()


def test_generate_refuses_a_checkpoint_json_of_another_stage(trained, tmp_path: Path) -> None:
    """Case 37: a checkpoint whose JSON records another stage (or seed, or fold) than where it lies was used."""
    import json
    import shutil

    run, options, _ = trained
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    path = copy / "cond-multitask" / "seed0-fold0.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "stage": "hvae"}))
    with pytest.raises(HyperguideError) as refused:
        generate(copy, ["What?"], [["a", "b"]], method="cond-multitask", options=options)
    assert str(refused.value) == (
        f"row 'cond-multitask' (seed 0, fold 0): checkpoint metadata {path} records stage 'hvae' where stage "
        "'cond-multitask' belongs (copied or edited?); retrain it with `hyperguide train` or `hyperguide bench` on "
        "this run folder"
    )
