"""The arithmetic a GPU run computes in (`--precision`): float32 (the default: nothing changes), TF32 matrix products,
or bfloat16 mixed precision.

- `fp32` (the default, every device): nothing changes; every number is what the code gives without the flag.
- `tf32` (NVIDIA Ampere and later): CUDA matrix products and convolutions round their inputs to TF32 (a 10-bit
  mantissa); tensors stay float32.
- `bf16` (GPUs with bfloat16; CPUs too, slowly): `torch.autocast` to bfloat16. Matrix products and most layers run in
  bfloat16; weights, optimiser state, losses and reductions stay float32 (no loss scaling: bfloat16 has float32's
  range).

Like `--device`, the precision is how a run is computed, not what it computes: it is not part of a stage's
fingerprint, so a run folder trained in one precision is resumed or evaluated in another as it is. Numbers move
within the rounding of the chosen arithmetic (bf16: about 3 significant digits per product).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from hyperguide.config.device import check_device
from hyperguide.errors import HyperguideError

PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(name: str, device: str) -> str:
    """`name` if it is a precision this device computes in; else a `HyperguideError` saying what would be right."""
    if name not in PRECISIONS:
        raise HyperguideError(f"--precision {name!r} is not one of {', '.join(PRECISIONS)}")
    kind = torch.device(check_device(device)).type
    if name == "tf32" and kind != "cuda":
        raise HyperguideError(f"--precision tf32 switches CUDA matrix products; --device {device} has none: use fp32")
    if name == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise HyperguideError(f"--precision bf16: {device} does not compute in bfloat16; use fp32 or tf32")
    return name


@contextmanager
def precision(name: str, device: str) -> Iterator[None]:
    """Compute the enclosed work in precision `name` on `device` (checked by `check_precision`); the global switches
    are restored afterwards."""
    check_precision(name, device)
    if name == "fp32":
        yield
        return
    if name == "tf32":
        matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
        return
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        yield
