"""The smaller points of the reliability probe (`shared/reviews/reliability_probe_e6acf04.md`): one test per case,
each asserting the message a person reads (and, for a refused command, that nothing was written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hyperguide.checkpoint import read_metadata
from hyperguide.cli import main
from hyperguide.config import RunConfig, TrainConfig
from hyperguide.errors import HyperguideError, HyperguideWarning
from hyperguide.run.stages.ensure import divergence_hint
from hyperguide.universes import UniverseOptions, load_universe
from tests.helpers import small_bench
from tests.test_trust import copy_run, error_of, results

REPO = Path(__file__).resolve().parents[1]
ADVICE = "retrain it with `hyperguide train` or `hyperguide bench` on this run folder"


# ------------------------------------------------------------------- case 37: checkpoint metadata, advice and place


def test_invalid_checkpoint_metadata_gives_its_advice_once(small_run: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(small_run, tmp_path)
    path = run / "cond-multitask" / "seed0-fold0.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "seed": "0"}))
    assert main(["eval", str(run)]) == 2
    assert error_of(capsys) == (
        f"hyperguide eval: error: row 'cond-multitask' (seed 0, fold 0): checkpoint metadata {path} is not valid: "
        f"'seed' must be int; {ADVICE}"
    )
    with pytest.raises(HyperguideError) as read:  # read directly, outside a row's check: the advice of its own
        read_metadata(path.with_suffix(""))
    assert str(read.value) == (
        f"checkpoint metadata {path} is not valid: 'seed' must be int; delete the checkpoint to retrain it"
    )


@pytest.mark.parametrize(
    ("field", "value", "recorded"),
    [("stage", "hvae", "stage 'hvae'"), ("seed", 5, "seed 5"), ("fold", 3, "fold 3"), ("stage", None, "no 'stage'")],
)
def test_a_checkpoint_json_of_another_stage_seed_or_fold_is_refused(
    field: str, value: object, recorded: str, small_run: Path, tmp_path: Path, capsys
) -> None:
    """Case 37: `stage: "hvae"` in the cond-multitask folder, or `seed: 5` in seed0-fold0.json, was accepted."""
    run = copy_run(small_run, tmp_path)
    path = run / "cond-multitask" / "seed0-fold0.json"
    good = json.loads(path.read_text())
    edited = {k: v for k, v in good.items() if k != field} if value is None else {**good, field: value}
    path.write_text(json.dumps(edited))
    assert main(["eval", str(run)]) == 2
    belongs = {"stage": "'cond-multitask'", "seed": "0", "fold": "0"}[field]
    assert error_of(capsys) == (
        f"hyperguide eval: error: row 'cond-multitask' (seed 0, fold 0): checkpoint metadata {path} records "
        f"{recorded} where {field} {belongs} belongs (copied or edited?); {ADVICE}"
    )
    assert results(run) == results(small_run)  # the copied results.json, not rewritten


@pytest.mark.integration
def test_bench_retrains_a_checkpoint_of_another_stage_saying_why(small_run: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(small_run, tmp_path)
    path = run / "cond-multitask" / "seed0-fold0.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "stage": "hvae"}))
    capsys.readouterr()
    assert small_bench(run) == 0
    assert (
        f"retraining stage cond-multitask, seed 0, fold 0: checkpoint metadata {path} records stage 'hvae' where "
        "stage 'cond-multitask' belongs (copied or edited?)"
    ) in capsys.readouterr().err
    assert read_metadata(path.with_suffix(""))["stage"] == "cond-multitask"
    assert results(run) == results(small_run)


# ---------------------------------------------------------------- N45: a divergence names the stage's learning rate


def test_a_divergence_hint_names_the_stage_s_learning_rate_and_its_upstream() -> None:
    config = RunConfig(universe="synthetic", train=TrainConfig(lr=10.0))
    assert divergence_hint("cond-multitask", config) == "is method.inner.lr = 0.1 or train.lr = 10.0 too high for it?"
    assert divergence_hint("hvae", config) == (
        "is hvae.lr = 0.0001 too high for it? Or the cause may lie upstream, in what it trains on: the output of "
        "stage latents, at collect.inner.lr = 0.1, computed from stage uncond-hnet-maml, at method.inner.lr = 0.1 "
        "and train.lr = 10.0"
    )


def test_a_divergence_downstream_of_a_too_fast_hnet_points_upstream(tmp_path: Path, capsys) -> None:
    """N45: `bench --set train.lr=10` stopped at the HVAE with "(a learning rate too high for it?)", whose own
    learning rate is 1e-4; the HNet meta-trained at lr 10 upstream is the likelier cause."""
    out = tmp_path / "run"
    argv = ["bench", "synthetic", "--quick", "--quiet", "--out", str(out), "--set", "train.lr=10"]
    assert main([*argv, "--set", 'methods=["hvae+hyperldm"]', "--set", "hyperldm.gammas=[1]"]) == 2
    err = error_of(capsys)
    assert err.startswith("hyperguide bench: error: stage hvae, seed 0, fold 0: hvae: the loss is nan at epoch 1")
    assert "the training diverged (is hvae.lr = 0.0001 too high for it? Or the cause may lie upstream" in err
    assert "computed from stage uncond-hnet-maml, at method.inner.lr = 0.1 and train.lr = 10.0); nothing" in err
    assert "a learning rate too high for it?" not in err
    assert not list((out / "hvae").glob("*.json"))  # nothing of it was saved


# ------------------------------------------------------------------------------- N31: a home that is a file


def test_a_home_that_is_a_file_is_named_not_prepare_advice(tmp_path: Path, monkeypatch, capsys) -> None:
    home = tmp_path / "homefile"
    home.write_text("not a folder")
    with pytest.raises(HyperguideError) as refused:
        load_universe("easyvqa", UniverseOptions(home=home))
    assert str(refused.value) == (
        f"the home {home} is a file, not a folder: give a folder for prepared universes (--home or $HYPERGUIDE_HOME)"
    )
    under = home / "deeper"
    with pytest.raises(HyperguideError, match=rf"the home {under} lies under {home}, which is a file, not a folder"):
        UniverseOptions(home=under).folder("easyvqa")
    monkeypatch.setenv("HYPERGUIDE_HOME", str(home))
    assert main(["prepare", "easyvqa"]) == 2  # refused at once, not after computing features it cannot write
    assert error_of(capsys) == f"hyperguide prepare: error: the home {home} is a file, not a folder: " + (
        "give a folder for prepared universes (--home or $HYPERGUIDE_HOME)"
    )
    assert main(["prepare", "synthetic"]) == 0  # kept in memory: no home needed
    assert home.read_text() == "not a folder"


# ------------------------------------------------------------------- case 24 and 43: no stray lines before a message


def test_a_too_long_text_is_refused_without_a_transformers_warning(capfd) -> None:
    from transformers import AutoTokenizer

    from hyperguide.encoders.text import MAX_TOKENS, check_lengths, default_text_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(str(default_text_encoder_path()), local_files_only=True)
    long = "red " * 600  # longer than the model's own 512, which makes the tokenizer warn unless told not to
    with pytest.raises(HyperguideError, match=rf"is 602 tokens long; minilm reads at most {MAX_TOKENS}: shorten it"):
        check_lengths(tokenizer, [long, "short"], MAX_TOKENS, "minilm")
    err = capfd.readouterr().err
    assert "Token indices sequence length" not in err and "[transformers]" not in err


def test_uncached_question_tokens_are_one_clean_warning_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """Case 43: a read-only home printed Python's `FILE:LINE: UserWarning: ...` and a source line; under the command
    line, the library's warnings are one line, other packages' are left as Python shows them."""
    import errno
    import os
    import warnings

    from hyperguide.cli import warnings_as_lines
    from hyperguide.data.tokens import cached_question_tokens

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(src))

    monkeypatch.setattr(os, "replace", refuse)
    with warnings.catch_warnings(record=True) as passed_on, warnings_as_lines("eval"):
        warnings.simplefilter("always")
        table = cached_question_tokens(tmp_path / "t.safetensors", ["q?"], lambda qs: [torch.ones(2, 3)], encoder="e")
        warnings.warn("another package's", UserWarning, stacklevel=1)
    assert table.get("q?").shape[0] == 2
    line = f"cannot write {tmp_path / 't.safetensors'}: Permission denied"
    assert capsys.readouterr().err == f"hyperguide eval: warning: question tokens computed but not cached: {line}\n"
    assert [str(w.message) for w in passed_on] == ["another package's"]  # shown as Python shows it
    assert not (tmp_path / "t.safetensors").exists()


def test_uncached_question_tokens_are_still_a_user_warning(tmp_path: Path, monkeypatch) -> None:
    import errno
    import os

    from hyperguide.data.tokens import cached_question_tokens

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(src))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.warns(HyperguideWarning, match="question tokens computed but not cached"):
        cached_question_tokens(tmp_path / "t.safetensors", ["q?"], lambda qs: [torch.ones(2, 3)], encoder="e")
