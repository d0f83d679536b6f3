"""Checkpoints: a module's state as safetensors plus a JSON file of metadata (config, seed, stage, commit, time).

Never pickle: loading a checkpoint reads tensors and JSON only, so a file from elsewhere cannot run code.

The JSON, written last, marks a checkpoint complete and records `sha256`, the hash of its tensors file, and
`fingerprint`, what the checkpoint was made from ({name: hash}: the config sections that shape it, its data, the
checkpoints it was trained from; the run decides which, `trained.stage_table`). A checkpoint is trusted only when its
fingerprint equals the one its use expects and its tensors file still has that hash (`checkpoint_problem`); its
tensors never hold NaN or infinity (`io.write_tensors`, `io.read_tensors`).
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyperguide.errors import HyperguideError
from hyperguide.io import file_sha256, read_json, read_tensors, write_json, write_tensors

Fingerprint = Mapping[str, str]


def git_commit() -> str | None:
    """The commit of the code that is running, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def save_checkpoint(
    stem: str | Path, module: nn.Module, metadata: dict[str, Any], fingerprint: Fingerprint | None = None
) -> None:
    """Write `<stem>.safetensors` then `<stem>.json`; the JSON, written last, marks the checkpoint complete."""
    save_tensors(stem, dict(module.state_dict()), metadata, fingerprint)


def save_tensors(
    stem: str | Path,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, Any],
    fingerprint: Fingerprint | None = None,
) -> None:
    """A checkpoint of plain named tensors (data a stage produced, such as collected latents). NaN or infinity in
    a tensor is refused (`HyperguideError`) and nothing is written."""
    stem = Path(stem)
    sha256 = write_tensors(stem.with_suffix(".safetensors"), {k: v.contiguous() for k, v in tensors.items()})
    record = {**metadata, "fingerprint": dict(fingerprint or {}), "sha256": sha256}
    write_json(stem.with_suffix(".json"), {**record, "commit": git_commit(), "saved_at": time.time()})


class InvalidMetadata(HyperguideError):
    """A checkpoint's JSON lacks a field or has one of the wrong type. Its message gives the advice; `problem` is the
    same without it, for callers that give their own (`checkpoint_problem`'s)."""

    def __init__(self, path: Path, what: str) -> None:
        self.problem = f"checkpoint metadata {path} is not valid: {what}"
        super().__init__(f"{self.problem}; delete the checkpoint to retrain it")


def _need(ok: bool, path: Path, what: str) -> None:
    if not ok:
        raise InvalidMetadata(path, what)


def read_metadata(stem: str | Path) -> dict[str, Any]:
    """A checkpoint's JSON, checked for the fields every reader relies on (types and finite numbers)."""
    path = Path(stem).with_suffix(".json")
    data = read_json(path, what="checkpoint metadata")
    _need(isinstance(data, dict), path, f"a JSON object is expected, got {type(data).__name__}")
    for key, kind in (("stage", str), ("seed", int), ("fold", int), ("sha256", str), ("fingerprint", dict)):
        if key in data:
            _need(
                isinstance(data[key], kind) and not isinstance(data[key], bool),
                path,
                f"{key!r} must be {kind.__name__}",
            )
    seconds = data.get("train_seconds", 0.0)
    _need(_is_number(seconds) and seconds >= 0, path, "'train_seconds' must be a number >= 0")
    fingerprint = data.get("fingerprint", {})
    _need(all(isinstance(v, str) for v in fingerprint.values()), path, "'fingerprint' must map names to hashes")
    return dict(data)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def metadata_number(metadata: Mapping[str, Any], key: str, stem: str | Path) -> float:
    """A number a stage recorded in its checkpoint's JSON (a diagnostic), or a `HyperguideError` naming it."""
    value = metadata.get(key)
    _need(_is_number(value), Path(stem).with_suffix(".json"), f"{key!r} must be a finite number, got {value!r}")
    assert isinstance(value, int | float)
    return float(value)


def checkpoint_problem(
    stem: str | Path,
    fingerprint: Fingerprint,
    *,
    ignore: Collection[str] = (),
    expect: Mapping[str, str | int] | None = None,
) -> str | None:
    """Why the checkpoint at `stem` cannot be trusted where `fingerprint` is expected, or None when it can: it is
    missing or incomplete, its JSON is broken, it is not the one that belongs there (a field of `expect`, such as
    its stage, seed and fold, is missing or differs in its JSON: copied or edited), it was made from something else
    (other config sections, other data, other checkpoints before it: the keys whose hashes differ, `ignore` aside),
    or its tensors file is not the one it was saved with (its sha256 differs). The reason carries no advice: the
    caller says what to do. Hashes are remembered per file version, so asking again is cheap."""
    stem = Path(stem)
    json_path, tensors_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not json_path.is_file():
        return f"no checkpoint {json_path}" + (
            " (its .safetensors is there: the save did not finish)" if tensors_path.is_file() else ""
        )
    if not tensors_path.is_file():
        return f"checkpoint {json_path} has no tensors file {tensors_path.name}"
    try:
        metadata = read_metadata(stem)
    except InvalidMetadata as e:
        return e.problem
    except HyperguideError as e:
        return str(e)
    for key, value in (expect or {}).items():
        if metadata.get(key) != value:
            found = f"{key} {metadata[key]!r}" if key in metadata else f"no {key!r}"
            return f"checkpoint metadata {json_path} records {found} where {key} {value!r} belongs (copied or edited?)"
    if "sha256" not in metadata or not metadata.get("fingerprint"):
        return f"checkpoint {stem} has no fingerprint (written by an older version)"
    recorded: dict[str, str] = metadata["fingerprint"]
    differ = sorted(k for k in {*recorded, *fingerprint} if k not in ignore and recorded.get(k) != fingerprint.get(k))
    if differ:
        return f"checkpoint {stem} was made from something else: its fingerprint differs in {', '.join(differ)}"
    if file_sha256(tensors_path) != metadata["sha256"]:
        return (
            f"checkpoint {tensors_path} is not the file its metadata records (its sha256 differs): corrupt or replaced"
        )
    return None


def load_tensors(stem: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    stem = Path(stem)
    metadata = read_metadata(stem)
    return read_tensors(stem.with_suffix(".safetensors"), what="checkpoint", sha256=metadata.get("sha256")), metadata


def load_checkpoint(stem: str | Path, module: nn.Module) -> dict[str, Any]:
    """Load the state into `module` (strictly: every tensor must match) and return the metadata. A tensors file
    whose sha256 is not the recorded one, or holding NaN or infinity, is refused."""
    stem = Path(stem)
    state, metadata = load_tensors(stem)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise HyperguideError(f"checkpoint {stem}.safetensors does not fit the model: {e}") from None
    return metadata
