"""Atomic file writes and strict readers: no half-written file is ever trusted, and every bad file is named.

A writer writes to a temporary file in the same folder (`.<name>.hyperguide-<random>.tmp`, locked while written),
flushes it to disk and renames it over the target (`os.replace` is atomic on POSIX), so a crash leaves either the old
file or the new one, never a torn one, and a symlink planted at the target is replaced, never followed. A write that
fails (no space, no permission, a folder in the way) raises `WriteError`, `cannot write PATH: <reason>`, and leaves
nothing behind; the temporaries of a killed process are swept by `sweep_temporaries`. Tensor files never hold NaN
or infinity: `write_tensors` refuses them and `read_tensors` refuses a file that does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_bytes

from hyperguide.errors import HyperguideError

TMP_MARK, TMP_SUFFIX = "hyperguide-", ".tmp"  # temporaries are `.<name>.hyperguide-<random>.tmp`: only ours are swept


class WriteError(HyperguideError):
    """A file could not be written (no space left, no permission, a folder or a file in the way)."""


def cannot_write(path: str | Path, error: OSError) -> WriteError:
    return WriteError(f"cannot write {path}: {error.strerror or error}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on failure removed. The temporary
    stays locked (`flock`) until then, so that `sweep_temporaries` never removes one that is being written. An
    `OSError` of the write becomes a `WriteError` that names `path`."""
    path = Path(path)
    fd = -1
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{TMP_MARK}", suffix=TMP_SUFFIX, dir=path.parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp_path, path)
    except OSError as e:
        raise cannot_write(path, e) from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()
        if fd >= 0:
            os.close(fd)


def sweep_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries that killed writers of this package left under `folder` (any depth; no other file,
    and none that a live writer holds locked). Returns the removed paths."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for tmp in folder.rglob(f".*.{TMP_MARK}*{TMP_SUFFIX}"):
        if tmp.is_symlink() or not tmp.is_file():
            continue
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass  # locked: a writer is at work
        finally:
            os.close(fd)
    return removed


def _read_umask() -> int:
    # Read once, at import: setting the umask to read it is a process-wide change that a thread creating a file at
    # that moment would see.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_json(path: str | Path, obj: Any, *, indent: int | None = 1) -> None:
    """Write JSON atomically; NaN and infinity are refused (they are not JSON, and no number of ours may be one)."""
    try:
        text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError as e:
        raise HyperguideError(f"refusing to write {path}: {e} (NaN or infinity)") from None
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: str | Path, *, what: str = "JSON file") -> Any:
    """Read a JSON file, raising `HyperguideError` that names the file if it is missing, malformed or nested too
    deeply for the decoder."""
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
    except RecursionError:  # the decoder recurses once per bracket
        raise HyperguideError(
            f"{what} {path} is nested too deeply to read (brackets deeper than the decoder's limit of about "
            f"{sys.getrecursionlimit()} levels): is it the right file?"
        ) from None
    except OSError as e:
        raise HyperguideError(f"cannot read {what} {path}: {e.strerror or e}") from None


def non_finite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or infinity, else None."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def write_tensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> str:
    """Save tensors as safetensors, atomically; returns the file's sha256. Metadata values must be strings. A tensor
    holding NaN or infinity is refused: such a file would pass for a result."""
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    bad = non_finite(contiguous)
    if bad is not None:
        raise HyperguideError(f"refusing to write {path}: tensor {bad!r} holds NaN or infinity")
    data = save_bytes(contiguous, metadata=dict(metadata) if metadata else None)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


_HASHES: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (remembered per file version: path, inode, size and modification time)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def read_tensors(path: str | Path, *, what: str = "tensor file", sha256: str | None = None) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a missing, unreadable or non-finite file (or, with `sha256`, one whose bytes
    have another hash) raises a `HyperguideError` that names it."""
    path = Path(path)
    if not path.is_file():
        raise HyperguideError(f"{what} not found: {path}")
    try:
        if sha256 is not None and file_sha256(path) != sha256:
            raise HyperguideError(
                f"{what} {path} is not the file its metadata records (its sha256 differs): corrupt or replaced"
            )
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise _unreadable(what, path, e) from None
    bad = non_finite(tensors)
    if bad is not None:
        raise HyperguideError(f"{what} {path} holds NaN or infinity in tensor {bad!r}: it is corrupt")
    return tensors


def _unreadable(what: str, path: str | Path, error: Exception) -> HyperguideError:
    return HyperguideError(f"{what} {path} is not a readable safetensors file (truncated or corrupt?): {error}")


def read_tensor_shapes(path: str | Path, *, what: str = "tensor file") -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor of a safetensors file, from its header alone (nothing is allocated)."""
    return {name: shape for name, (shape, _) in read_tensor_specs(path, what=what).items()}


def read_tensor_specs(path: str | Path, *, what: str = "tensor file") -> dict[str, tuple[tuple[int, ...], str]]:
    """The name, shape and safetensors dtype ("F32", "I64", ...) of every tensor of a safetensors file, from its
    header alone (nothing is allocated); a file that is not safetensors raises a `HyperguideError` naming it."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            slices = {k: f.get_slice(k) for k in f.keys()}  # noqa: SIM118 (a safe_open has no iter)
            return {k: (tuple(s.get_shape()), str(s.get_dtype())) for k, s in slices.items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise _unreadable(what, path, e) from None


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
