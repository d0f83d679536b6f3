from __future__ import annotations

import json

import pytest

from hyperguide.cli import main
from tests.conftest import SHARED_METAVQA


def test_stats_easyvqa_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "easyvqa", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["meta_train_tasks"], stats["meta_test_tasks"], stats["pairs"]) == (75, 32, 48248)
    assert stats["mean_answers"] == pytest.approx(2.5514, abs=1e-4)


def test_stats_kfold_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "easyvqa", "--split", "kfold", "--folds", "4"]) == 0
    out = capsys.readouterr().out
    assert "fold 0 of 4" in out and "majority acc" in out


def test_unknown_universe_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["stats", "imagenet"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'imagenet'" in err and "easyvqa" in err


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


UNIVERSE_FLAGS = {
    "metavqa": ("--splits-dir", "--vqa-root", "--prompts-file", "--coco-root", "--clip-model", "--batch-size"),
    "easyvqa": ("--tower-epochs",),
    "taskfile": (
        "--tasks",
        "--images-root",
        "--encoder",
        "--model",
        "--features-file",
        "--min-examples",
        "--batch-size",
        "--tower-epochs",
    ),  # its embedded route trains easyvqa's image tower
}


@pytest.mark.parametrize("command", [["train", "all"], ["collect"], ["bench"], ["prepare"], ["stats"], ["config"]])
def test_a_command_shows_the_flags_of_the_universe_it_is_given_only(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    synthetic = _help([*command, "synthetic"], capsys)
    assert "--home" in synthetic and "--seed" in synthetic and "--device" in synthetic  # every universe's
    assert not [flag for flags in UNIVERSE_FLAGS.values() for flag in flags if flag in synthetic]
    for universe, flags in UNIVERSE_FLAGS.items():
        shown = _help([*command, universe], capsys)
        assert all(flag in shown for flag in flags), (universe, shown)
        others = [flag for name, more in UNIVERSE_FLAGS.items() if name != universe for flag in more]
        assert not [flag for flag in others if flag in shown and flag not in flags], universe


def test_a_command_of_a_run_takes_every_universes_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["eval", "RUN"], ["export", "RUN"], ["generate", "RUN", "Q?"], ["tasks", "prepare", "F"]):
        shown = _help(command, capsys)
        assert all(flag in shown for flags in UNIVERSE_FLAGS.values() for flag in flags), command


def test_command_flags_go_before_or_after_the_universe() -> None:
    from hyperguide.cli import build_parser

    before = build_parser().parse_args(["train", "all", "--quick", "--set", "a=1", "--seed", "2", "synthetic"])
    after = build_parser().parse_args(["train", "all", "synthetic", "--quick", "--set", "a=1", "--seed", "2"])
    both = build_parser().parse_args(["train", "all", "--quick", "--set", "a=1", "synthetic", "--seed", "2"])
    assert vars(before) == vars(after) == vars(both)
    assert (after.quick, after.overrides, after.seed, after.universe) == (True, ["a=1"], 2, "synthetic")
    split = build_parser().parse_args(["train", "all", "--set", "a=1", "synthetic", "--set", "b=2"])
    assert split.overrides == ["a=1", "b=2"]  # a repeated flag keeps both sides, as one parser would


def test_config_lists_every_universes_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "[universe] the options every universe reads" in out and "--home = " in out and "--seed = 0" in out
    for universe, flags in UNIVERSE_FLAGS.items():
        section = out.split(f"[universe {universe}]", 1)[1].split("\n\n", 1)[0]
        assert all(f"{flag} = " in section for flag in flags), universe
    assert "# images per CLIP forward pass (default 32)" in out  # an option's help line
    assert main(["config", "taskfile", "--tasks", "mine.jsonl", "--min-examples", "21"]) == 0
    out = capsys.readouterr().out
    assert '--tasks = "mine.jsonl"' in out and "--min-examples = 21" in out and "(default 0)" in out
    assert "[universe easyvqa]" not in out


def test_bad_split_name_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["stats", "easyvqa", "--split", "iid"])
    assert "invalid choice: 'iid'" in capsys.readouterr().err


def test_easyvqa_must_be_prepared_before_loading() -> None:
    from hyperguide.errors import HyperguideError
    from hyperguide.universes import load_universe

    with pytest.raises(HyperguideError, match="hyperguide prepare easyvqa"):
        load_universe("easyvqa")


@pytest.mark.skipif(not SHARED_METAVQA.is_dir(), reason="the authors' Meta-VQA split files are not beside the repo")
def test_stats_metavqa_from_the_authors_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "metavqa", "--splits-dir", str(SHARED_METAVQA), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["meta_train_tasks"], stats["meta_test_tasks"], stats["pairs"]) == (870, 373, 104112)
    assert stats["mean_answers"] == pytest.approx(9.14, abs=0.005)
    assert stats["chance_acc_meta_test"] == pytest.approx(16.09, abs=0.01)
    assert stats["majority_acc_meta_test"] == pytest.approx(33.83, abs=0.01)


def test_metavqa_without_split_files_says_what_to_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "metavqa"]) == 2
    assert "--splits-dir" in capsys.readouterr().err


def test_a_config_file_may_start_from_a_preset(tmp_path) -> None:
    """`"$base"`: the file's values on top of another preset's (the `concepts` preset is the default's plus its own)."""
    import json

    from hyperguide.config import resolve_config
    from hyperguide.errors import HyperguideError

    default, concepts = resolve_config("default"), resolve_config("concepts")
    assert concepts.train.epochs == default.train.epochs == 150 and concepts.collect == default.collect
    assert concepts.split == "concepts" and concepts.held_out[0] == "red+teal" and concepts.seeds == (0,)
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"$base": "concepts", "seeds": [3]}))
    config = resolve_config(mine)
    assert config.seeds == (3,) and config.held_out == concepts.held_out and config.train.epochs == 150
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.json").write_text(json.dumps({"seeds": [5], "split": "kfold"}))
    (tmp_path / "sub" / "child.json").write_text(json.dumps({"$base": "base.json", "seeds": [6]}))
    child = resolve_config(tmp_path / "sub" / "child.json")  # a base beside the file, wherever the command runs
    assert child.seeds == (6,) and child.split == "kfold"
    loop = tmp_path / "loop.json"
    loop.write_text(json.dumps({"$base": str(loop)}))
    with pytest.raises(HyperguideError, match=r"\$base in a cycle"):
        resolve_config(loop)
