"""The torch device a command runs on (`--device`), checked before anything is computed or written."""

from __future__ import annotations

import torch

from hyperguide.errors import HyperguideError


def check_device(name: str) -> str:
    """`name` if torch knows it and this machine has it (cpu; cuda or cuda:N with a GPU N; mps on Apple silicon);
    else a `HyperguideError` that says what this machine offers."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise HyperguideError(f"--device {name!r} is not a torch device ({e}); give {_offered()}") from None
    if device.type == "cpu":
        return name
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise HyperguideError(f"--device {name!r}: this machine has no CUDA GPU; give {_offered()}")
        if device.index is not None and device.index >= count:
            raise HyperguideError(f"--device {name!r}: this machine has {count} CUDA GPU(s); give {_offered()}")
        return name
    if device.type == "mps" and torch.backends.mps.is_available():
        return name
    raise HyperguideError(f"--device {name!r} is not available on this machine; give {_offered()}")


def _offered() -> str:
    offered = ["cpu"]
    if torch.cuda.is_available():
        offered += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        offered.append("mps")
    return " or ".join(", ".join(offered).rsplit(", ", 1))
