"""Export a trained generator as a self-contained folder, and load one: the library behind `hyperguide export`,
`hyperguide generate FOLDER` and `load_generator`.

    from hyperguide.bundle import export_generator, load_generator
    export_generator("runs/easyvqa-random", "exported/gen", method="hnet+hyperldm@1")
    out = load_generator("exported/gen").generate(["is there a purple shape?"], [["yes", "no"]])

A bundle is one row of one run (one seed, one fold), laid out so that it can be uploaded to a model hub as is:

    config.json               format and version, the row, seed and fold, the universe, the run's resolved config
                              (`to_dict`), the adapter's shape and the question's size, the encoders' reference (the
                              text encoder's package or the CLIP model's hub id or folder) and the sha256 of the
                              encoder files, the answer prompts (the rule, `config.prompts`, and the universe's own
                              prompts for its own questions), and per trained part its file, sha256 and tensors
    <stage>.safetensors       one per trained part of the row (`rows.RowSpec.stages`), the run's checkpoint as is
    image_tower.safetensors   the universe's own trained encoder files, where it has some (easyvqa's image tower,
    image_tower.json          its weights and its architecture)
    README.md                 the model card: the row, its results in the run, how to use it, its training config

Loading works with neither the run folder nor a prepared universe, and never runs code from the folder: it reads
JSON and safetensors only (`io.read_tensors`; nothing is unpickled), and before any weight is loaded it checks that
every file config.json names is there with its recorded sha256, and that every tensor's name, shape and dtype (from
the file's header) are those of the model config.json builds (built on the meta device, so nothing is allocated).
A file that fails is refused with a `HyperguideError` naming it and saying what is wrong. The README is not hashed:
a hub may edit a model card.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyperguide.checkpoint import git_commit, read_metadata
from hyperguide.config import RunConfig, from_dict, to_dict
from hyperguide.errors import HyperguideError
from hyperguide.eval.results import read_results
from hyperguide.generate import (
    Generator,
    best_conditional_row,
    check_trained,
    generator_row,
    known_tasks,
    prepared_data,
    run_generator,
)
from hyperguide.io import (
    WriteError,
    cannot_write,
    file_sha256,
    read_json,
    read_tensor_specs,
    read_tensors,
    write_json,
)
from hyperguide.meta.methods import Method
from hyperguide.models.adapter import AdapterShape
from hyperguide.report.model_card import render_model_card
from hyperguide.rows import Row
from hyperguide.trained.folder import GENERATOR_FORMAT, RESULTS, RunFolder
from hyperguide.trained.loading import adapter_shape_for, build_row, check_row, row_parts
from hyperguide.universes import EncoderParts, UniverseOptions, encoders_from_parts, universe_encoder_parts

FORMAT = GENERATOR_FORMAT  # a run folder's reader knows it too, to say what a bundle given as a run is
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
PROBE = "?"  # a text embedded at export to learn the encoders' dimension
EXPORT_MARK = "export-"  # the bundle is written in `.<out's name>.export-<random>` beside --out
CHUNK = 1 << 20  # bytes copied at a time
DTYPES = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
    torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip
_SHA256 = re.compile(r"[0-9a-f]{64}")

TensorSpecs = dict[str, tuple[tuple[int, ...], str]]  # tensor name -> (shape, safetensors dtype)


@dataclass(frozen=True)
class Part:
    """A trained part of the row: its stage, its file in the bundle, the file's sha256 and its tensors."""

    stage: str
    file: str
    sha256: str
    tensors: TensorSpecs


@dataclass(frozen=True)
class Bundle:
    """A bundle's config.json, checked: everything `load_generator` needs, nothing loaded yet."""

    folder: Path
    row: Row
    seed: int
    fold: int
    universe: str
    config: RunConfig
    shape: AdapterShape
    question_dim: int
    parts: tuple[Part, ...]
    encoders: EncoderParts  # the reference, and the encoder files at their paths in the folder
    encoder_hashes: dict[str, str]  # encoder file name -> sha256
    known: dict[str, dict[str, str]]  # the universe's own questions: {question: {answer: prompt}}


# ------------------------------------------------------------------------------------------------------- export


def export_generator(
    run_dir: str | Path,
    out: str | Path,
    *,
    method: str | None = None,
    seed: int | None = None,
    fold: int = 0,
    options: UniverseOptions | None = None,
) -> Path:
    """Write row `method` (default: the run's best question-conditioned row) of the run, trained with `seed`
    (default: the run's first) on `fold`, as a bundle in `out`, a new or empty folder; returns `out`.

    The run's checkpoints are checked first (`trained.loading.check_row`); `options` says where the run's universe is
    prepared (its encoders' files and its own questions come from there). The folder appears whole or not at all:
    it is written beside `out` and renamed into place once it loads (`_temporary_folder`); a failure to write names
    the file's path in `out`."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HyperguideError(f"--out {out} is not a new or empty folder: a bundle is written into a folder of its own")
    folder, options = RunFolder(run_dir), options or UniverseOptions()
    config = folder.read_config()
    row = generator_row(method or best_conditional_row(run_dir), config)
    seed = config.seeds[0] if seed is None else seed
    check_trained(row, config, folder, seed, fold)
    check_row(row, config, folder, seed, fold, prepared_data(config, folder, options))
    parts = universe_encoder_parts(config.universe, options)
    encoders = encoders_from_parts(config.universe, parts, device=options.device, prompts=config.prompts)
    dim = int(encoders.texts([PROBE]).shape[1])
    shape = adapter_shape_for(dim, config)
    known = known_tasks(config, options)
    with _temporary_folder(out) as tmp:
        records = [_copy_part(folder.stem(stage, seed, fold), tmp, out, stage) for stage in row.spec.stages]
        hashes = {}
        for name, path in parts.files.items():
            _copy(path, tmp / name, out / name)
            hashes[name] = file_sha256(tmp / name)
        commits = {s: read_metadata(folder.stem(s, seed, fold)).get("commit") for s in row.spec.stages}
        record: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "hyperguide_version": _version(),
            "row": row.name,
            "seed": seed,
            "fold": fold,
            "universe": config.universe,
            "adapter": {"feature_dim": shape.feature_dim, "hidden_dim": shape.hidden_dim, "n_params": shape.n_params},
            "question_dim": dim,
            "encoders": {"reference": parts.reference, "files": {n: {"sha256": h} for n, h in hashes.items()}},
            "answer_prompts": {"style": config.prompts, "known": known},
            "parts": records,
            "source": {"run": run_dir.resolve().name, "exported_by": git_commit(), "checkpoint_commits": commits},
            "config": to_dict(config),
        }
        with _writing(out / CONFIG_FILE, tmp / CONFIG_FILE):
            write_json(tmp / CONFIG_FILE, record)
        _load_model(read_bundle(tmp))  # the parts fit the model config.json builds, before the folder is published
        results = read_results(run_dir / RESULTS) if (run_dir / RESULTS).is_file() else None
        card = render_model_card(record, results, _file_notes(record))
        with _writing(out / CARD_FILE, tmp / CARD_FILE):
            (tmp / CARD_FILE).write_text(card, encoding="utf-8")
    return out


@contextlib.contextmanager
def _temporary_folder(out: Path) -> Iterator[Path]:
    """A new folder beside `out` to write the bundle in: renamed to `out` when the body succeeds, removed when it
    fails. What killed exports to `out` left is swept first (`_sweep_exports`); this one stays locked while it lives,
    so that a concurrent export keeps it. Its permissions are those of any new folder (0o777 less the umask)."""
    _sweep_exports(out)
    tmp, lock = _locked_folder(out)
    try:
        yield tmp
        try:
            if out.exists():
                out.rmdir()  # empty (checked before anything was written)
            os.replace(tmp, out)
        except OSError as e:
            raise cannot_write(out, e) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(lock)


def _locked_folder(out: Path) -> tuple[Path, int]:
    """A new `.<out's name>.export-<random>` folder beside `out`, and a descriptor of it holding its `flock`."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            tmp = out.parent / f".{out.name}.{EXPORT_MARK}{secrets.token_hex(4)}"
            with contextlib.suppress(FileExistsError, FileNotFoundError):  # taken, or swept before it was locked
                tmp.mkdir(0o777)  # less the umask, as any new folder: shared as far as the umask shares
                lock = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                if _lock_if_there(tmp, lock):
                    return tmp, lock
    except OSError as e:
        raise cannot_write(out, e) from None
    raise HyperguideError(f"cannot write {out}: no temporary folder could be made beside it")


def _lock_if_there(tmp: Path, lock: int) -> bool:
    """Lock the folder `lock` opens; False (and `lock` closed) when a concurrent sweep removed it before that."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits for a sweep that holds it; it then is gone
        if os.stat(tmp, follow_symlinks=False).st_ino == os.fstat(lock).st_ino:
            return True
    except FileNotFoundError:
        pass
    except BaseException:
        os.close(lock)
        raise
    os.close(lock)
    return False


def _sweep_exports(out: Path) -> list[Path]:
    """Remove the temporary folders that killed exports to `out` left beside it (`.<out's name>.export-*`; none
    that a live export holds locked, and nothing else). Returns the removed folders."""
    removed: list[Path] = []
    prefix = f".{out.name}.{EXPORT_MARK}"
    try:
        found = [p for p in out.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:  # no parent folder yet: nothing to sweep
        return removed
    for tmp in found:
        try:
            lock = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)  # a folder, not a link
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(tmp)
            removed.append(tmp)
        except OSError:
            pass  # locked: an export is writing it (or it is not ours to remove)
        finally:
            os.close(lock)
    return removed


@contextlib.contextmanager
def _writing(shown: Path, actual: Path) -> Iterator[None]:
    """A failure to write `actual`, a file of the temporary folder, named as `shown`, the file's path in --out."""
    try:
        yield
    except OSError as e:
        raise cannot_write(shown, e) from None
    except WriteError as e:  # an `io` writer's, which names the temporary file
        raise WriteError(str(e).replace(str(actual), str(shown), 1)) from None


def _copy(source: Path, target: Path, shown: Path) -> None:
    """Copy `source` to `target` in the temporary folder: a full disk is the destination's failure, `shown` (the
    file's path in --out), never the source's."""
    try:
        src = open(source, "rb")  # noqa: SIM115 (closed by the with below; its own failure names the source)
    except OSError as e:
        raise HyperguideError(f"cannot read {source}: {e.strerror or e}") from None
    with src, _writing(shown, target), open(target, "xb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)


def _copy_part(stem: Path, folder: Path, out: Path, stage: str) -> dict[str, Any]:
    """Copy a stage checkpoint's tensors file into the bundle as `<stage>.safetensors`; its record for config.json."""
    target = folder / f"{stage}.safetensors"
    _copy(stem.with_suffix(".safetensors"), target, out / target.name)
    sha256 = file_sha256(target)
    if sha256 != read_metadata(stem).get("sha256"):
        raise HyperguideError(f"checkpoint {stem}.safetensors changed while it was exported (its sha256 differs)")
    tensors = {k: {"shape": list(shape), "dtype": dtype} for k, (shape, dtype) in read_tensor_specs(target).items()}
    return {"stage": stage, "file": target.name, "sha256": sha256, "tensors": tensors}


def _file_notes(record: Mapping[str, Any]) -> dict[str, str]:
    notes = {CONFIG_FILE: "what this is and how to rebuild it: the row, the config, every file's sha256 and tensors"}
    for part in record["parts"]:
        notes[part["file"]] = f"the trained weights of stage `{part['stage']}`"
    for name in record["encoders"]["files"]:
        notes[name] = f"a trained encoder file of {record['universe']} (`{name.split('.')[0]}`)"
    notes[CARD_FILE] = "this model card"
    return notes


def _version() -> str:
    from hyperguide import __version__

    return __version__


# --------------------------------------------------------------------------------------------------------- load


def is_bundle(folder: str | Path) -> bool:
    """Whether `folder` holds an exported generator (its config.json says so), rather than a run."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return False
    data = read_json(path, what="config")
    return isinstance(data, dict) and data.get("format") == FORMAT


def load_generator(folder: str | Path, *, device: str = "cpu", encoders: Mapping[str, str] | None = None) -> Generator:
    """The `Generator` of an exported folder: no run folder and no prepared universe are read.

    `encoders` replaces entries of the encoders' reference (e.g. {"clip_model": "/models/clip-vit-l"} where the CLIP
    model lives elsewhere on this machine); `device` is the encoders'. Everything is checked first (see the module's
    docstring); a file that fails is named in a `HyperguideError`."""
    return _open(read_bundle(folder), device=device, encoders=encoders)


def open_generator(
    path: str | Path,
    *,
    method: str | None = None,
    seed: int | None = None,
    fold: int | None = None,
    options: UniverseOptions | None = None,
    encoders: Mapping[str, str] | None = None,
) -> Generator:
    """The `Generator` of `path`, an exported folder (`load_generator`; a `method`, `seed` or `fold` given must be
    its own) or a run folder (`generate.run_generator`, fold 0 unless given)."""
    options = options or UniverseOptions()
    if not (Path(path) / CONFIG_FILE).is_file():
        raise HyperguideError(_neither(Path(path)))
    if not is_bundle(path):
        return run_generator(path, method=method, seed=seed, fold=fold or 0, options=options)
    bundle = read_bundle(path)
    for flag, asked, own in (("--method", method, bundle.row.name), ("--run-seed", seed, bundle.seed),
                             ("--fold", fold, bundle.fold)):  # fmt: skip
        if asked is not None and asked != own:
            raise HyperguideError(
                f"{path} is an exported generator of row {bundle.row.name!r} (seed {bundle.seed}, fold {bundle.fold}); "
                f"{flag} {asked} asks for another: export that one"
            )
    return _open(bundle, device=options.device, encoders=encoders)


def _neither(path: Path) -> str:
    what = "an exported generator (hyperguide export) or a run folder (hyperguide bench or train)"
    if not path.exists():
        return f"{path} does not exist: give {what}"
    if not path.is_dir():
        return f"{path} is a file, not a folder: give {what}"
    return f"{path} is neither an exported generator nor a run folder: it has no {CONFIG_FILE}; give {what}"


def _open(bundle: Bundle, *, device: str, encoders: Mapping[str, str] | None) -> Generator:
    model = _load_model(bundle)
    parts = replace(bundle.encoders, reference={**bundle.encoders.reference, **(encoders or {})})
    built = encoders_from_parts(bundle.universe, parts, device=device, prompts=bundle.config.prompts)

    def load(feature_dim: int, question_dim: int) -> Method:
        if (feature_dim, question_dim) != (bundle.shape.feature_dim, bundle.question_dim):
            raise HyperguideError(
                f"the encoders {parts.reference} embed in {feature_dim} dimensions, but the generator in "
                f"{bundle.folder} was trained on {bundle.shape.feature_dim}-d features and {bundle.question_dim}-d "
                "questions: give the encoders it was trained with"
            )
        return model

    return Generator(bundle.row.name, bundle.universe, built, bundle.known, load)


def _load_model(bundle: Bundle) -> Method:
    """The row's model with every part loaded from the bundle, after every file's hash and every tensor's name,
    shape and dtype were checked against the model config.json builds."""
    expected = _expected_tensors(bundle)
    for part in bundle.parts:
        path = bundle.folder / part.file
        _check_hash(path, part.sha256)
        found = read_tensor_specs(path, what="bundle part")  # a file that is not safetensors is refused here
        _check_tensors(path, found, part.tensors, expected[part.stage])
    for name, sha256 in bundle.encoder_hashes.items():
        _check_hash(bundle.folder / name, sha256)
    method = build_row(bundle.row, bundle.shape, bundle.question_dim, bundle.config, bundle.seed, bundle.fold)
    for part, (_, module) in zip(bundle.parts, row_parts(bundle.row, method), strict=True):
        path = bundle.folder / part.file
        state = read_tensors(path, what="bundle part", sha256=part.sha256)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise HyperguideError(f"bundle part {path} does not fit the model config.json describes: {e}") from None
    return method.eval()


def _expected_tensors(bundle: Bundle) -> dict[str, TensorSpecs]:
    """Per stage, the tensors of the model config.json builds, built on the meta device (nothing allocated)."""
    try:
        with torch.device("meta"):
            method = bundle.row.build(bundle.shape, bundle.question_dim, bundle.config)
    except (HyperguideError, RuntimeError, TypeError, ValueError) as e:
        raise HyperguideError(f"{bundle.folder / CONFIG_FILE} describes a model that cannot be built: {e}") from None
    return {stage: _specs(module) for stage, module in row_parts(bundle.row, method)}


def _specs(module: nn.Module) -> TensorSpecs:
    return {k: (tuple(v.shape), DTYPES.get(v.dtype, str(v.dtype))) for k, v in module.state_dict().items()}


def _check_hash(path: Path, sha256: str) -> None:
    if not path.is_file():
        raise HyperguideError(f"bundle file {path.name} is missing: {path} (config.json lists it)")
    if file_sha256(path) != sha256:
        raise HyperguideError(
            f"bundle file {path} is not the file config.json records (its sha256 differs): corrupt or replaced"
        )


def _fits(expected: tuple[int, ...], found: tuple[int, ...]) -> bool:
    """Equal shapes; an empty tensor of the model (a bank of training latents, sized by what it loads,
    `models.bank.LatentBank`) fits any number of rows."""
    return expected == found or (len(expected) == len(found) >= 1 and expected[0] == 0 and expected[1:] == found[1:])


def _check_tensors(path: Path, found: TensorSpecs, recorded: TensorSpecs, expected: TensorSpecs) -> None:
    if set(found) != set(expected):
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        raise HyperguideError(
            f"bundle part {path} does not hold the tensors of its model: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for name, (shape, dtype) in found.items():
        if recorded.get(name) != (shape, dtype):
            raise HyperguideError(
                f"bundle part {path}: tensor {name!r} is {list(shape)} {dtype}, but config.json records "
                f"{recorded.get(name)}"
            )
        want_shape, want_dtype = expected[name]
        if not _fits(want_shape, shape) or dtype != want_dtype:
            raise HyperguideError(
                f"bundle part {path}: tensor {name!r} has shape {list(shape)} ({dtype}), but the model config.json "
                f"describes needs {list(want_shape)} ({want_dtype}); nothing was loaded"
            )


# ------------------------------------------------------------------------------------------------- config.json


def read_bundle(folder: str | Path) -> Bundle:
    """A bundle's config.json, every field checked (nothing else is read): a `HyperguideError` names what is wrong."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise HyperguideError(f"{folder} is not a folder: give an exported generator's folder")
    data = read_json(path, what="bundle config")

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise HyperguideError(f"{path} is not a valid bundle config: {what}")

    need(isinstance(data, dict), "a JSON object is expected")
    if "format" not in data and {"universe", "seeds"} <= data.keys():  # a run's config.json
        raise HyperguideError(
            f"{folder} is a run folder, not an exported generator: export one of its rows (hyperguide export "
            f"{folder} --out FOLDER), or open the run itself (hyperguide generate {folder} ...)"
        )
    need(data.get("format") == FORMAT, f"'format' must be {FORMAT!r} (is this an exported generator?)")
    need(
        data.get("format_version") == FORMAT_VERSION,
        f"format_version {data.get('format_version')!r}; this hyperguide reads version {FORMAT_VERSION}",
    )
    for key, kind in (("row", str), ("universe", str), ("seed", int), ("fold", int), ("question_dim", int)):
        need(
            isinstance(data.get(key), kind) and not isinstance(data.get(key), bool), f"{key!r} must be {kind.__name__}"
        )
    for key in ("config", "adapter", "encoders", "answer_prompts"):
        need(isinstance(data.get(key), dict), f"{key!r} must be an object")
    config = from_dict(RunConfig, data["config"], where=f"{path}: config")
    need(config.universe == data["universe"], f"'universe' {data['universe']!r} is not the config's")
    row = generator_row(data["row"], config)
    adapter, dim = data["adapter"], data["question_dim"]
    need(isinstance(adapter.get("feature_dim"), int) and dim >= 1, "the adapter's feature_dim and question_dim")
    shape = adapter_shape_for(int(adapter["feature_dim"]), config)
    recorded = (adapter.get("feature_dim"), adapter.get("hidden_dim"))
    need(shape.feature_dim >= 1 and recorded == (shape.feature_dim, shape.hidden_dim), f"'adapter' {adapter}")
    parts = data.get("parts")
    need(isinstance(parts, list) and len(parts) == len(row.spec.stages), f"'parts' must list {row.spec.stages}")
    checked = tuple(_part(p, stage, need) for p, stage in zip(parts, row.spec.stages, strict=True))
    encoders = data["encoders"]
    reference, files = encoders.get("reference"), encoders.get("files")
    need(_strings(reference), "'encoders.reference' must map names to texts")
    need(isinstance(files, dict), "'encoders.files' must be an object")
    hashes = {}
    for name, entry in files.items():
        need(_plain(name) and name not in (CONFIG_FILE, CARD_FILE), f"encoder file name {name!r}")
        need(isinstance(entry, dict) and _sha256(entry.get("sha256")), f"encoder file {name!r} needs a sha256")
        hashes[name] = entry["sha256"]
    prompts = data["answer_prompts"]
    need(prompts.get("style") == config.prompts, "'answer_prompts.style' must be the config's prompts")
    known = prompts.get("known")
    need(isinstance(known, dict) and all(_strings(v) for v in known.values()), "'answer_prompts.known'")
    return Bundle(
        folder=folder,
        row=row,
        seed=data["seed"],
        fold=data["fold"],
        universe=data["universe"],
        config=config,
        shape=shape,
        question_dim=dim,
        parts=checked,
        encoders=EncoderParts(dict(reference), {name: folder / name for name in hashes}),
        encoder_hashes=hashes,
        known={q: dict(a) for q, a in known.items()},
    )


def _part(entry: Any, stage: str, need: Callable[[bool, str], None]) -> Part:
    need(isinstance(entry, dict), f"part {stage!r} must be an object")
    need(entry.get("stage") == stage, f"part {entry.get('stage')!r} where the row has stage {stage!r}")
    need(entry.get("file") == f"{stage}.safetensors", f"part {stage!r} must be the file {stage}.safetensors")
    need(_sha256(entry.get("sha256")), f"part {stage!r} needs a sha256")
    tensors = entry.get("tensors")
    need(isinstance(tensors, dict), f"part {stage!r} needs its tensors")
    specs: TensorSpecs = {}
    for name, spec in tensors.items():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        ok = isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        need(ok and isinstance(spec.get("dtype"), str), f"part {stage!r}: tensor {name!r} needs a shape and a dtype")
        assert isinstance(shape, list)
        specs[name] = (tuple(shape), spec["dtype"])
    return Part(stage, entry["file"], entry["sha256"], specs)


def _strings(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _sha256(value: Any) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def _plain(name: Any) -> bool:
    """A file name of the folder itself: no folder part, no hidden file, nothing that climbs out."""
    return isinstance(name, str) and name == Path(name).name and not name.startswith(".") and "\\" not in name
