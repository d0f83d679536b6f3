"""Atomic file writes and strict readers: no half-written file is ever trusted, and every bad file is named.

A writer writes to a temporary file in the same folder, flushes it to disk and renames it over the target
(`os.replace` is atomic on POSIX), so a crash leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hyperguide.errors import HyperguideError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any, *, indent: int | None = 1) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: str | Path, *, what: str = "JSON file") -> Any:
    """Read a JSON file, raising `HyperguideError` that names the file if it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise HyperguideError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise HyperguideError(
            f"{what} {path} is not valid JSON (truncated or corrupt?): {e.msg} at line {e.lineno}, column {e.colno}"
        ) from None
    except UnicodeDecodeError as e:
        raise HyperguideError(f"{what} {path} is not UTF-8 text: {e}") from None


def write_tensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Save tensors as safetensors, atomically. Metadata values must be strings."""
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata=dict(metadata) if metadata else None)


def read_tensors(path: str | Path, *, what: str = "tensor file") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise HyperguideError(f"{what} not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise HyperguideError(
            f"{what} {path} is not a readable safetensors file (truncated or corrupt?): {e}"
        ) from None


def read_tensor_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise HyperguideError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None


def default_home() -> Path:
    """Where prepared universes are cached: `$HYPERGUIDE_HOME`, else `~/.cache/hyperguide`."""
    env = os.environ.get("HYPERGUIDE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hyperguide"
