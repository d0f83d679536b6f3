"""Checkpoints: a module's state as safetensors plus a JSON file of metadata (config, seed, stage, commit, time).

Never pickle: loading a checkpoint reads tensors and JSON only, so a file from elsewhere cannot run code.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyperguide.errors import HyperguideError
from hyperguide.io import read_json, read_tensors, write_json, write_tensors


def git_commit() -> str | None:
    """The commit of the code that is running, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def save_checkpoint(stem: str | Path, module: nn.Module, metadata: dict[str, Any]) -> None:
    """Write `<stem>.safetensors` then `<stem>.json`; the JSON, written last, marks the checkpoint complete."""
    save_tensors(stem, dict(module.state_dict()), metadata)


def save_tensors(stem: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """A checkpoint of plain named tensors (data a stage produced, such as collected latents)."""
    stem = Path(stem)
    write_tensors(stem.with_suffix(".safetensors"), {k: v.contiguous() for k, v in tensors.items()})
    write_json(stem.with_suffix(".json"), {**metadata, "commit": git_commit(), "saved_at": time.time()})


def load_tensors(stem: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    stem = Path(stem)
    metadata = read_json(stem.with_suffix(".json"), what="checkpoint metadata")
    return read_tensors(stem.with_suffix(".safetensors"), what="checkpoint"), metadata


def checkpoint_exists(stem: str | Path) -> bool:
    stem = Path(stem)
    return stem.with_suffix(".json").is_file() and stem.with_suffix(".safetensors").is_file()


def load_checkpoint(stem: str | Path, module: nn.Module) -> dict[str, Any]:
    """Load the state into `module` (strictly: every tensor must match) and return the metadata."""
    stem = Path(stem)
    metadata: dict[str, Any] = read_json(stem.with_suffix(".json"), what="checkpoint metadata")
    state = read_tensors(stem.with_suffix(".safetensors"), what="checkpoint")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise HyperguideError(f"checkpoint {stem}.safetensors does not fit the model: {e}") from None
    return metadata
