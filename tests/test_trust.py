"""Numbers you can trust (issue 13): nothing non-finite, out of range or stale ends in a clean exit. One test per
case of the reliability probe (`shared/reviews/reliability_probe.md`), each asserting the exit code and the message,
and that no later run trusts what the failed one left; the generate cases are in `test_generate.py`."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from hyperguide.checkpoint import load_tensors
from hyperguide.cli import main
from hyperguide.config import resolve_config
from hyperguide.data.features import FeatureTable
from hyperguide.data.images import decode_image
from hyperguide.data.metavqa import answer_prompt, coco_image_path, load_split_files
from hyperguide.data.tokens import cached_question_tokens
from hyperguide.encoders.image_tower import ImageTower, load_tower, save_tower
from hyperguide.errors import HyperguideError
from hyperguide.io import atomic_path, read_tensors, sweep_temporaries, write_json, write_tensors
from hyperguide.rows import table_rows
from hyperguide.run.train import training_plan
from hyperguide.train.loop import FitOptions, NonFiniteLoss, fit
from tests.helpers import small_bench
from tests.results_match import without_wall_clock

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """In-process runs compare bit for bit, as the subprocess ones of test_bench.py do with OMP_NUM_THREADS=1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted `bench synthetic --quick` (every row), one thread: the twin that resumed runs must equal."""
    out = tmp_path_factory.mktemp("full") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert small_bench(out, small=False) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def bench(out: Path, *extra: str, small: bool = True) -> int:
    return small_bench(out, *extra, small=small)


def error_of(capsys: pytest.CaptureFixture[str]) -> str:
    """The command's error line (the last line of stderr)."""
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


def checkpoints(run: Path) -> list[Path]:
    return sorted(run.glob("*/*.json"))


def results(run: Path) -> dict[str, Any]:
    return without_wall_clock(json.loads((run / "results.json").read_text()))


def copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


# ------------------------------------------------------------------ 2. non-finite numbers never end in a clean exit


def test_infinite_lr_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    assert bench(tmp_path / "r", "--set", "train.lr=Infinity") == 2
    assert error_of(capsys) == (
        "hyperguide bench: error: config.train.lr: Infinity is not a finite number; give a finite number "
        "(in --set train.lr=Infinity)"
    )
    assert not (tmp_path / "r").exists()


def test_a_diverging_stage_stops_with_its_stage_seed_fold_and_step_and_saves_nothing(tmp_path: Path, capsys) -> None:
    run = tmp_path / "r"
    assert bench(run, "--set", "train.lr=1e30") == 2
    error = error_of(capsys)
    assert error.startswith("hyperguide bench: error: stage cond-multitask, seed 0, fold 0: cond-multitask: ")
    assert "the loss is nan at epoch 1, step 2" in error and "nothing of it was saved" in error
    assert checkpoints(run) == [] and not list(run.rglob("*.safetensors"))  # nothing a later run could trust
    assert main(["eval", str(run)]) == 2
    assert "no checkpoint" in error_of(capsys)


def test_fit_refuses_a_non_finite_loss_or_gradient() -> None:
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    with pytest.raises(NonFiniteLoss, match="toy: the loss is inf at epoch 1, step 1"):
        fit(lambda b: {"loss": (weight + float("inf")).sum()}, lambda e: [None], optimizer, epochs=1, name="toy")
    # sqrt at 0: the loss is 0, its gradient infinite; clipping it would write NaN weights
    clip = FitOptions(grad_clip=1.0)
    with pytest.raises(NonFiniteLoss, match="toy: the gradient norm is inf at epoch 1, step 1"):
        fit(lambda b: {"loss": weight.sqrt().sum()}, lambda e: [None], optimizer, epochs=1, name="toy", options=clip)
    assert torch.equal(weight.detach(), torch.zeros(2))  # no step was taken


@pytest.mark.integration
def test_a_bit_flipped_checkpoint_is_refused_by_eval_and_retrained_by_bench(small_run: Path, tmp_path: Path, capsys):
    run = copy_run(small_run, tmp_path)
    tensors = run / "cond-multitask" / "seed1-fold0.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-3] ^= 0x20  # one bit of one weight
    tensors.write_bytes(bytes(data))
    assert main(["eval", str(run)]) == 2
    assert error_of(capsys) == (
        f"hyperguide eval: error: row 'cond-multitask' (seed 1, fold 0): checkpoint {tensors} is not the file its "
        "metadata records (its sha256 differs): corrupt or replaced; retrain it with `hyperguide train` or "
        "`hyperguide bench` on this run folder"
    )
    assert bench(run) == 0
    err = capsys.readouterr().err
    assert f"retraining stage cond-multitask, seed 1, fold 0: checkpoint {tensors} is not the file" in err
    assert "(1 trainings run)" in err and results(run) == results(small_run)  # the same weights, trained again


def test_a_nan_tensor_with_a_forged_hash_is_refused(small_run: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(small_run, tmp_path)
    stem = run / "cond-multitask" / "seed0-fold0"
    tensors = read_tensors(stem.with_suffix(".safetensors"))
    name = next(iter(tensors))
    tensors[name][..., 0] = float("nan")
    save_file(tensors, str(stem.with_suffix(".safetensors")))
    meta = json.loads(stem.with_suffix(".json").read_text())
    meta["sha256"] = hashlib.sha256(stem.with_suffix(".safetensors").read_bytes()).hexdigest()
    stem.with_suffix(".json").write_text(json.dumps(meta))
    assert main(["eval", str(run)]) == 2
    assert error_of(capsys).endswith(
        f"checkpoint {stem}.safetensors holds NaN or infinity in tensor {name!r}: it is corrupt"
    )


def test_non_finite_tensors_are_never_written_nor_read(tmp_path: Path) -> None:
    with pytest.raises(HyperguideError, match=r"refusing to write .*t.safetensors: tensor 'x' holds NaN or infinity"):
        write_tensors(tmp_path / "t.safetensors", {"x": torch.tensor([1.0, float("inf")])})
    assert not list(tmp_path.iterdir())
    save_file({"features": torch.tensor([[1.0, float("nan")], [0.0, 1.0]])}, str(tmp_path / "f.safetensors"),
              metadata={"keys": json.dumps(["a", "b"])})  # fmt: skip
    with pytest.raises(
        HyperguideError, match=r"feature table .*f.safetensors holds NaN or infinity in tensor 'features'"
    ):
        FeatureTable.load(tmp_path / "f.safetensors")
    with pytest.raises(HyperguideError, match="NaN or infinity"):
        write_json(tmp_path / "r.json", {"acc": float("nan")})
    assert not (tmp_path / "r.json").exists()


# -------------------------------------------------------------------------- 3. every field is checked for its range

RANGES = [
    ("train.epochs=-3", "config.train.epochs: must be >= 1, got -3"),
    ("train.grad_clip=-1", "config.train.grad_clip: must be a finite number > 0 (the largest gradient norm), got -1.0"),
    ("method.adapter_hidden=0", "config.method.adapter_hidden: must be null or >= 1, got 0"),
    ("hyperldm.sample_steps=0", "config.hyperldm.sample_steps: must be null or >= 1, got 0"),
    ("train.meta_batch_size=0", "config.train.meta_batch_size: must be >= 1, got 0"),
    ("hvae.batch_size=0", "config.hvae.batch_size: must be >= 1, got 0"),
    ("collect.n_aug=0", "config.collect.n_aug: must be >= 1, got 0"),
    ("hyperldm.num_steps=0", "config.hyperldm.num_steps: must be >= 1, got 0"),
    ("train.lr=NaN", "config.train.lr: NaN is not a finite number; give a finite number (in --set train.lr=NaN)"),
    ("train.lr=-0.01", "config.train.lr: must be a finite number > 0, got -0.01"),
    ("train.lr=1e999", "config.train.lr: inf is not a finite number"),
    ("method.inner.steps=-5", "config.method.inner.steps: must be >= 0, got -5"),
    ("hyperldm.p_uncond=1.5", "config.hyperldm.p_uncond: must be a probability in [0, 1], got 1.5"),
    ("hyperclip.batch_size=1", "config.hyperclip.batch_size: must be >= 2 (a contrastive batch compares tasks), got 1"),
    ('eval.k_shots=["1","1"]', "config.eval.k_shots: must be distinct, got ['1', '1']"),
]


@pytest.mark.parametrize(("override", "message"), RANGES, ids=[r[0] for r in RANGES])
def test_out_of_range_settings_are_refused_before_anything_is_written(override: str, message: str, tmp_path, capsys):
    assert bench(tmp_path / "r", "--set", override) == 2
    assert error_of(capsys) == f"hyperguide bench: error: {message}"
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------- 4. seeds are distinct; n/a below 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "0", "0"], "config.seeds: must be distinct (a repeated seed repeats a run and fakes the "
                                "statistics), got [0, 0]"),
        (["--set", "seeds=[]"], "config.seeds: must be at least one seed, got []"),
        (["--seeds", "-1"], "config.seeds: must be integers >= 0, got [-1]"),
    ],
)  # fmt: skip
def test_repeated_or_no_seeds_are_refused(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert bench(tmp_path / "r", *args) == 2
    assert error_of(capsys) == f"hyperguide bench: error: {message}"
    assert not (tmp_path / "r").exists()


@pytest.mark.integration
def test_one_seed_has_no_interval(tmp_path: Path, capsys) -> None:
    run = tmp_path / "r"
    assert bench(run, "--seeds", "0") == 0
    data = json.loads((run / "results.json").read_text())
    assert data["methods"]["cond-multitask"]["zero_shot"]["acc"]["ci95"] is None  # null: not 0
    assert "± n/a" in (run / "results.md").read_text() and "± 0.00" not in (run / "results.md").read_text()
    capsys.readouterr()
    assert main(["compare", str(run), "cond-multitask", "chance"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("cond-multitask - chance, paired over seeds (n=1): ")
    assert line.endswith(" ± n/a points (95% CI), p = n/a")


# ------------------------------------------------------------------------ 5. a refused command leaves nothing behind


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "kfold", "--folds", "0"], "config.folds: must be >= 2 (kfold tests on one fold and trains on "
                                               "the others), got 0"),
        (["--split", "kfold", "--folds", "100"], "kfold needs 2 <= folds <= 24 tasks, got folds=100"),
        (["--split", "compositional", "--held-out", "nosuch"], "held-out concepts ['nosuch'] leave 24 train and 0 "
                                                               "test tasks"),
        (["--device", "bogus"], "--device 'bogus' is not a torch device"),
        (["--device", "cuda:7"], "--device 'cuda:7': this machine has"),
    ],
    ids=["folds-0", "folds-100", "held-out", "device-bogus", "device-missing"],
)  # fmt: skip
def test_a_refused_command_writes_nothing_and_the_corrected_one_runs(args, message, tmp_path: Path, capsys) -> None:
    run = tmp_path / "r"
    assert (
        main(["bench", "synthetic", "--quick", "--quiet", "--out", str(run), "--set", 'methods=["chance"]', *args]) == 2
    )
    assert message in error_of(capsys)
    assert not run.exists()
    assert main(["bench", "synthetic", "--quick", "--quiet", "--out", str(run), "--set", 'methods=["chance"]']) == 0


def test_train_refuses_an_unknown_stage_before_writing(tmp_path: Path, capsys) -> None:
    assert main(["train", "cond-multitask,nosuch", "synthetic", "--quick", "--out", str(tmp_path / "r")]) == 2
    assert "unknown method 'nosuch'" in error_of(capsys) and not (tmp_path / "r").exists()


# ---------------------------------------------------------------------- 6. checkpoints carry the config's fingerprint


@pytest.mark.integration
def test_a_lost_config_does_not_file_old_weights_under_new_settings(small_run: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(small_run, tmp_path)
    (run / "config.json").unlink()
    assert bench(run, "--set", "train.epochs=4") == 0
    err = capsys.readouterr().err
    stem = run / "cond-multitask" / "seed0-fold0"
    assert (
        f"retraining stage cond-multitask, seed 0, fold 0: checkpoint {stem} was made from something else: its "
        "fingerprint differs in config.train"
    ) in err
    assert "(8 trainings run)" in err  # every stage: the meta-trained ones and everything trained from them
    assert json.loads(stem.with_suffix(".json").read_text())["config"]["train"]["epochs"] == 4
    assert len((run / "cond-multitask" / "seed0-fold0.metrics.jsonl").read_text().splitlines()) == 4


@pytest.mark.integration
def test_settings_of_evaluation_retrain_nothing_but_are_evaluated_again(small_run: Path, tmp_path: Path, capsys):
    run = copy_run(small_run, tmp_path)
    (run / "config.json").unlink()
    before = {p: p.read_bytes() for p in checkpoints(run)}
    assert bench(run, "--set", "hyperldm.gammas=[0.5,2]", "--set", "hyperldm.sample_steps=3",
                 "--set", 'eval.k_shots=["2"]', "--set", "method.oracle.steps=3") == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "(0 trainings run)" in err and "evaluation reused" not in err
    assert {p: p.read_bytes() for p in checkpoints(run)} == before
    data = json.loads((run / "results.json").read_text())
    assert "hnet+hyperldm@0.5" in data["methods"] and list(data["methods"]["cond-multitask"]["k_shot"]) == ["2"]


@pytest.mark.integration
def test_eval_refuses_checkpoints_of_another_config_or_other_data(small_run: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(small_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["collect"]["n_aug"] = 3  # as if config.json were edited, or belonged to another run
    (run / "config.json").write_text(json.dumps(config))
    assert main(["eval", str(run)]) == 2
    stem = run / "hyperldm-hnet" / "seed0-fold0"
    assert error_of(capsys) == (
        f"hyperguide eval: error: row 'hnet+hyperldm@1' (seed 0, fold 0): checkpoint {stem} was made from something "
        "else: its fingerprint differs in config.collect; retrain it with `hyperguide train` or `hyperguide bench` "
        "on this run folder"
    )
    run2 = copy_run(small_run, tmp_path / "other")
    assert main(["eval", str(run2), "--seed", "1"]) == 2  # the synthetic universe of another seed: other tasks
    assert "its fingerprint differs in data" in error_of(capsys)
    assert bench(run2, "--seed", "1") == 0  # bench retrains on the data it is given
    assert "(8 trainings run)" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- 7. gammas checked, rows follow


def test_gammas_are_checked_and_the_rows_follow_them(tmp_path: Path, capsys) -> None:
    assert bench(tmp_path / "r", "--set", "hyperldm.gammas=[-1]") == 2
    assert error_of(capsys) == (
        "hyperguide bench: error: config.hyperldm.gammas: must be finite numbers >= 0 (0 is unconditional), got [-1.0]"
    )
    assert not (tmp_path / "r").exists()
    config = resolve_config("quick", {"universe": "synthetic"}, ["hyperldm.gammas=[0.5,3]"])
    assert [r.name for r in table_rows(config) if "hyperldm" in r.name][:2] == ["hnet+hyperldm@0.5", "hnet+hyperldm@3"]


# -------------------------------------------------------------------------- 8. no write follows a planted symlink


@pytest.mark.integration
def test_planted_symlinks_are_replaced_never_followed(tmp_path: Path, capsys) -> None:
    run = tmp_path / "r"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (run / "cond-multitask").mkdir(parents=True)
    for name in ("cond-multitask/seed0-fold0.metrics.jsonl", "cond-multitask/seed0-fold0.json", "results.json"):
        (run / name).symlink_to(victim)
    assert bench(run) == 0
    assert victim.read_text() == "precious\n"
    for name in ("cond-multitask/seed0-fold0.metrics.jsonl", "cond-multitask/seed0-fold0.json", "results.json"):
        assert not (run / name).is_symlink() and (run / name).stat().st_size > 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(run / "latents")
    (run / "latents").symlink_to(elsewhere, target_is_directory=True)
    capsys.readouterr()
    assert bench(run) == 2
    assert error_of(capsys) == (
        f"hyperguide bench: error: {run / 'latents'} is a symlink: a run's stage folders must be its own (remove the "
        "link)"
    )
    assert list(elsewhere.iterdir()) == []


# ------------------------------------------------------------------------------- 9. answer-prompt templates


def _split_files(root: Path, template: Any = "it is {}", **task: Any) -> Path:
    images = [f"COCO_train2014_{i:012d}" for i in range(4)]
    base = {"train": [[images[0], "red"], [images[1], "blue"]], "test": [[images[2], "red"], [images[3], "blue"]],
            "answers": ["red", "blue"]}  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    (root / "meta_train.json").write_text(json.dumps({"What color is it?": {**base, **task}}))
    (root / "meta_test.json").write_text(json.dumps({"How red is it?": base}))
    (root / "prompt_meta.json").write_text(json.dumps({"What color is it?": template}))
    return root


@pytest.mark.parametrize("template", ["{x}", "{} {1}", "{{}}", "{0.__class__} {}", "{}{}", "{!r}", "{:>9}", "}{", 7])
def test_a_template_needs_exactly_one_empty_slot(template: Any, tmp_path: Path, capsys) -> None:
    splits = _split_files(tmp_path / "s", template)
    assert main(["stats", "metavqa", "--splits-dir", str(splits)]) == 2
    assert error_of(capsys) == (
        f"hyperguide stats: error: Meta-VQA prompt file {splits / 'prompt_meta.json'}: the template of 'What color is "
        f"it?' must be a string with exactly one {{}} slot and no other {{...}} field ({{{{ and }}}} for literal "
        f"braces), got {template!r}"
    )


def test_a_template_fills_its_slot_and_nothing_else(tmp_path: Path) -> None:
    assert answer_prompt("{{a}} {} is_it", "light_blue") == "{a} light blue is_it"
    universe = load_split_files(_split_files(tmp_path / "s", "it is {} {{not a field}}"))
    assert universe.tasks[0].prompts == ("it is red {not a field}", "it is blue {not a field}")


# ----------------------------------------------------------------------- 10. errors, not tracebacks


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"answers": [1, 2]}, "has answers [1, 2]; each must be a non-empty string"),
        ({"train": [["COCO_train2014_000000000000", ["red"]]]}, "has an example with answer ['red'], which is not in"),
        ({"train": [[["x"], "red"]]}, "has an example with image ['x']; an image is named by a plain file name"),
        ({"test": []}, "has no 'test' examples; it needs at least one"),
        ({"train": [["../../etc/passwd", "red"]]}, "has an example with image '../../etc/passwd'; an image is named"),
    ],
    ids=["int-answers", "list-answer", "list-image", "empty-side", "dotdot-image"],
)
def test_bad_split_entries_are_named(task: dict[str, Any], message: str, tmp_path: Path, capsys) -> None:
    splits = _split_files(tmp_path / "s", **task)
    assert main(["stats", "metavqa", "--splits-dir", str(splits)]) == 2
    err = error_of(capsys)
    assert (
        err.startswith(f"hyperguide stats: error: Meta-VQA split file {splits / 'meta_train.json'}: ")
        and message in err
    )


def test_empty_split_files_and_escaping_image_names_are_refused(tmp_path: Path, capsys) -> None:
    splits = _split_files(tmp_path / "s")
    (splits / "meta_test.json").write_text("{}")
    assert main(["stats", "metavqa", "--splits-dir", str(splits)]) == 2
    assert error_of(capsys) == (
        f"hyperguide stats: error: Meta-VQA split file {splits / 'meta_test.json'} holds no task; each side of the "
        "split needs at least one"
    )
    with pytest.raises(HyperguideError, match=r"image name '\.\./x' is not a plain file name; nothing outside"):
        coco_image_path(tmp_path, "../x")


def test_a_file_in_the_way_is_an_error(tmp_path: Path, capsys) -> None:
    out = tmp_path / "file"
    out.write_text("not a folder")
    assert bench(out) == 2
    assert error_of(capsys) == f"hyperguide bench: error: {out} is a file, not a run folder: give another --out"
    assert bench(out / "run") == 2
    assert error_of(capsys) == f"hyperguide bench: error: cannot write {out / 'run' / 'config.json'}: Not a directory"


@pytest.mark.parametrize("where", ["config.json", "checkpoint"])
def test_a_read_only_folder_is_an_error_naming_the_file(where: str, tmp_path: Path, capsys, monkeypatch) -> None:
    """Write permission is simulated (this suite may run as root, which ignores it): the rename is refused."""
    real = os.replace

    def refuse(src: Any, dst: Any) -> None:
        if str(dst).endswith(".json") and (where == "config.json") == str(dst).endswith("config.json"):
            raise PermissionError(errno.EACCES, "Permission denied", str(src))
        real(src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    run = tmp_path / "r"
    assert bench(run) == 2
    target = run / "config.json" if where == "config.json" else run / "cond-multitask" / "seed0-fold0.json"
    assert error_of(capsys) == f"hyperguide bench: error: cannot write {target}: Permission denied"
    assert not list(run.rglob(".*.tmp"))


def test_stray_os_errors_are_errors_too(monkeypatch, capsys) -> None:
    import hyperguide.cli as cli

    def full(args: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "/somewhere/file")

    monkeypatch.setitem(cli.COMMANDS, "config", full)
    assert main(["config"]) == 2
    assert error_of(capsys) == "hyperguide config: error: cannot write /somewhere/file: No space left on device"


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares width x height (a decompression bomb's header; its data is one pixel)."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR's width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR's CRC
    path.write_bytes(bytes(data))
    return path


def test_a_decompression_bomb_is_refused_by_its_header(tmp_path: Path) -> None:
    bomb = _png_declaring(tmp_path / "bomb.png", 12000, 12000)
    with pytest.raises(HyperguideError, match=r"declares 12000x12000 pixels, more than the 40,000,000 .* not decoded"):
        decode_image(bomb)
    from hyperguide.data.easyvqa_images import read_image

    with pytest.raises(HyperguideError, match=r"easy-VQA image .*bomb.png is 12000x12000 pixels, expected 64x64"):
        read_image(bomb)


def test_a_broken_config_json_is_an_error(small_run: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(small_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "seeds": []}))
    assert main(["eval", str(run)]) == 2
    assert error_of(capsys) == f"hyperguide eval: error: {run / 'config.json'}.seeds: must be at least one seed, got []"


@pytest.mark.integration
@pytest.mark.parametrize("metadata", ['{"train_seconds": "abc"}', "null", "[1, 2]", '{"seed": "0"}'])
def test_wrong_typed_checkpoint_json_is_refused_by_eval_and_retrained(metadata: str, small_run, tmp_path, capsys):
    run = copy_run(small_run, tmp_path)
    path = run / "cond-multitask" / "seed0-fold0.json"
    good = json.loads(path.read_text())
    path.write_text(metadata if not metadata.startswith("{") else json.dumps({**good, **json.loads(metadata)}))
    assert main(["eval", str(run)]) == 2
    err = error_of(capsys)
    assert err.startswith(
        f"hyperguide eval: error: row 'cond-multitask' (seed 0, fold 0): checkpoint metadata {path} is not valid: "
    )
    assert bench(run) == 0 and "retraining stage cond-multitask, seed 0, fold 0" in capsys.readouterr().err
    assert results(run) == results(small_run)


@pytest.mark.integration
def test_a_results_json_missing_a_key_is_an_error_and_bench_evaluates_again(small_run: Path, tmp_path: Path, capsys):
    run = copy_run(small_run, tmp_path)
    data = json.loads((run / "results.json").read_text())
    del data["methods"]["cond-multitask"]["zero_shot"]["per_task_acc"]
    (run / "results.json").write_text(json.dumps(data))
    assert main(["compare", str(run), "cond-multitask", "chance"]) == 2
    assert error_of(capsys) == (
        f"hyperguide compare: error: {run / 'results.json'}: methods['cond-multitask'].zero_shot lacks 'per_task_acc'"
    )
    assert bench(run) == 0
    assert "evaluation reused" not in capsys.readouterr().err and results(run) == results(small_run)


def test_a_read_only_home_still_loads_question_tokens(tmp_path: Path, monkeypatch) -> None:
    def refuse(src: Any, dst: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(src))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.warns(
        UserWarning, match=r"question tokens computed but not cached: cannot write .*: Permission denied"
    ):
        table = cached_question_tokens(tmp_path / "t.safetensors", ["q?"], lambda qs: [torch.ones(2, 3)], encoder="e")
    assert torch.equal(table.get("q?"), torch.ones(2, 3)) and not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------------- 11. smaller


def test_temporaries_of_killed_writers_are_swept_and_live_ones_kept(small_run: Path, tmp_path: Path) -> None:
    run = copy_run(small_run, tmp_path)
    stale = [
        run / ".results.json.hyperguide-k1l2e3d4.tmp",
        run / "cond-multitask" / ".seed0-fold0.safetensors.hyperguide-x9y8z7w6.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half")
    foreign = run / ".an-editor-s-file.tmp"  # not ours: never touched
    foreign.write_bytes(b"keep")
    live = run / ".k_shot.png.hyperguide-live1234.tmp"
    live.write_bytes(b"being written")
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # a writer at work holds its temporary locked
        assert sorted(sweep_temporaries(run)) == sorted(stale)
    assert live.exists() and foreign.exists() and not any(p.exists() for p in stale)
    live.unlink()
    with pytest.raises(RuntimeError), atomic_path(run / "x.json") as tmp:
        tmp.write_text("{")
        raise RuntimeError
    assert not list(run.rglob(".*.hyperguide-*.tmp"))


def test_a_missing_checkpoint_json_is_named(small_run: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(small_run, tmp_path)
    (run / "cond-multitask" / "seed0-fold0.json").unlink()
    assert main(["eval", str(run)]) == 2
    assert error_of(capsys) == (
        f"hyperguide eval: error: row 'cond-multitask' (seed 0, fold 0): no checkpoint "
        f"{run / 'cond-multitask' / 'seed0-fold0.json'} (its .safetensors is there: the save did not finish); "
        "retrain it with `hyperguide train` or `hyperguide bench` on this run folder"
    )


def test_a_crafted_tower_json_allocates_nothing(tmp_path: Path) -> None:
    save_tower(tmp_path / "tower", ImageTower(width=2, depth=1, out_dim=4), {})
    meta = json.loads((tmp_path / "tower.json").read_text())
    meta["architecture"]["width"] = 10**7  # 10^7 channels: terabytes, were it built
    (tmp_path / "tower.json").write_text(json.dumps(meta))
    with pytest.raises(
        HyperguideError, match=r"tower.safetensors does not fit the architecture in .*nothing was built"
    ):
        load_tower(tmp_path / "tower")


def test_a_checkpoint_loads_only_when_its_hash_matches(small_run: Path, tmp_path: Path) -> None:
    run = copy_run(small_run, tmp_path)
    stem = run / "cond-multitask" / "seed0-fold0"
    assert load_tensors(stem)[1]["sha256"] == hashlib.sha256(stem.with_suffix(".safetensors").read_bytes()).hexdigest()
    meta = json.loads(stem.with_suffix(".json").read_text())
    stem.with_suffix(".json").write_text(json.dumps({**meta, "sha256": "0" * 64}))
    with pytest.raises(HyperguideError, match="its sha256 differs"):
        load_tensors(stem)


# ------------------------------------------------------------------------ a disk that fills up in the middle of a stage


class FillingLog:
    """The HVAE stage's training log on a disk that is full after its second record: every later write fails."""

    def __init__(self, file: Any, disk: dict[str, bool]) -> None:
        self.file, self.disk, self.records = file, disk, 0

    def write(self, text: str) -> int:
        if self.records == 2:
            self.disk["full"] = True
        if self.disk["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.records += 1
        return int(self.file.write(text))

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


@pytest.mark.integration  # a full run (module fixture), benched again
@pytest.mark.parametrize("where", ["log", "checkpoint"])
def test_a_full_disk_in_the_middle_of_a_stage_resumes_to_the_same_results(
    where: str, full_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The disk fills up while the HVAE of seed 0 trains (its log's third record, or its checkpoint's rename): the
    bench stops with `cannot write PATH: No space left on device` and leaves no half-written file; once space is
    back, the same command ends with the results.json of an uninterrupted run on this machine, bit for bit."""
    import hyperguide.callbacks as callbacks

    disk = {"full": False}
    real_replace, real_create = os.replace, callbacks._create
    stage = tmp_path / "run" / "hvae"

    def replace(src: Any, dst: Any) -> None:
        if where == "checkpoint" and Path(dst) == stage / "seed0-fold0.safetensors":
            disk["full"] = True
        if disk["full"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(src))
        real_replace(src, dst)

    def create(path: Path) -> Any:
        file = real_create(path)
        return FillingLog(file, disk) if where == "log" and path == stage / "seed0-fold0.metrics.jsonl" else file

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(callbacks, "_create", create)
    run = tmp_path / "run"
    assert bench(run, small=False) == 2
    failed = stage / ("seed0-fold0.metrics.jsonl" if where == "log" else "seed0-fold0.safetensors")
    assert error_of(capsys) == f"hyperguide bench: error: cannot write {failed}: No space left on device"
    assert not (stage / "seed0-fold0.json").exists() and not list(run.rglob(".*.tmp"))
    assert (run / "cond-multitask" / "seed1-fold0.json").is_file()  # what finished before is kept

    monkeypatch.undo()  # space is back
    assert bench(run, small=False) == 0
    err = capsys.readouterr().err
    units = [(s, seed) for s in training_plan(resolve_config("quick", {"universe": "synthetic"})) for seed in (0, 1)]
    done = units.index(("hvae", 0))  # the HVAE of seed 0 on: what had not run
    assert f"{done} of {len(units)} trainings already done" in err and f"({len(units) - done} trainings run)" in err
    assert results(run) == results(full_run)


def test_what_shapes_a_stage_is_declared_beside_it_and_safe_by_default(monkeypatch, tmp_path: Path) -> None:
    from dataclasses import replace

    from hyperguide.config import RunConfig, training_keys
    from hyperguide.trained import stage_table
    from hyperguide.trained.folder import RunFolder
    from hyperguide.trained.stage_table import CHAIN_STAGES, StageSpec, shaping_keys, stage_fingerprint

    assert shaping_keys("hyperldm-hvae") == [
        "collect", "folds", "held_out", "hvae", "hyperldm", "method", "probes", "prompts", "split", "train",
        "tune_folds", "universe",
    ]  # fmt: skip
    # a stage added without saying what shapes it is shaped by every section but the evaluation-only ones (and
    # `precision`, which every stage's fingerprint carries apart, below)
    toy = StageSpec("toy", ("latents",), "tests.test_trust:no_body", "a toy")
    monkeypatch.setattr(stage_table, "CHAIN_STAGES", (*CHAIN_STAGES, toy))
    assert shaping_keys("toy") == sorted(set(training_keys(RunConfig)) - {"precision"})

    def fingerprint(config: RunConfig) -> dict[str, str]:
        return stage_fingerprint("hyperldm-hnet", config, RunFolder(tmp_path), 0, 0, "data")

    base = resolve_config("quick", {"universe": "synthetic"})
    same = [
        ["hyperldm.gammas=[3]", "hyperldm.sample_steps=7", "hyperldm.clip_x0=false", "hyperldm.start_frac=0.5"],
        ["seeds=[5]", 'methods=["chance"]', 'eval.k_shots=["2"]', "method.oracle.steps=1", "hvae.lr=0.5"],
    ]
    for overrides in same:  # evaluation-only knobs, and a section the stage does not read
        assert fingerprint(resolve_config("quick", {"universe": "synthetic"}, overrides)) == fingerprint(base)
    for override, key in [("hyperldm.lr=0.5", "config.hyperldm"), ("collect.n_aug=2", "config.collect"),
                          ("train.epochs=1", "config.train"), ("prompts=declarative", "config.prompts")]:  # fmt: skip
        changed = fingerprint(resolve_config("quick", {"universe": "synthetic"}, [override]))
        assert [k for k in changed if changed[k] != fingerprint(base)[k]] == [key]
    assert fingerprint(replace(base, folds=3))["config.folds"] != fingerprint(base)["config.folds"]
    # float32 adds no key (checkpoints keep the fingerprints they had before precision was a knob); another adds it
    assert "config.precision" not in fingerprint(base)
    assert fingerprint(replace(base, precision="bf16")) == {**fingerprint(base), "config.precision": "bf16"}


@pytest.mark.integration
def test_a_checkpoint_of_an_older_version_is_retrained_not_trusted(small_run: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(small_run, tmp_path)
    for path in checkpoints(run):  # as this version's predecessors wrote them: no sha256, no fingerprint
        meta = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("sha256", "fingerprint")}))
    assert main(["eval", str(run)]) == 2
    stem = run / "cond-multitask" / "seed0-fold0"
    assert error_of(capsys) == (
        f"hyperguide eval: error: row 'cond-multitask' (seed 0, fold 0): checkpoint {stem} "
        "has no fingerprint (written by an older version); retrain it with `hyperguide train` or `hyperguide bench` on "
        "this run folder"
    )
    assert bench(run) == 0 and "(8 trainings run)" in capsys.readouterr().err
    assert results(run) == results(small_run)


@pytest.mark.integration
def test_a_finished_bench_writes_nothing_when_its_report_is_current(
    small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bench on a finished run reuses the evaluation and, its report and plots being there, writes nothing (the
    probe's read-only finished run failed re-rendering a plot); a plot deleted is drawn again."""
    run = copy_run(small_run, tmp_path)
    report = [run / "results.json", run / "results.md", *sorted(run.glob("*.png"))]
    assert len(report) > 2
    before = {p: p.stat().st_mtime_ns for p in report}
    assert bench(run) == 0
    assert "evaluation reused" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in report} == before
    report[-1].unlink()
    assert bench(run) == 0
    assert report[-1].is_file()
