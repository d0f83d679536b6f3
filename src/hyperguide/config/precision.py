"""The arithmetic a run computes in (`RunConfig.precision`, `--precision`): float32 (the default: nothing changes),
TF32 matrix products, or bfloat16 mixed precision.

- `fp32` (the default, every device): nothing changes; every number is what the code gives without the flag.
- `tf32` (NVIDIA Ampere and later): CUDA matrix products and convolutions round their inputs to TF32 (a 10-bit
  mantissa); tensors stay float32.
- `bf16` (CUDA GPUs with bfloat16): `torch.autocast` to bfloat16. Matrix products and most layers run in bfloat16;
  weights, optimiser state, losses and reductions stay float32 (no loss scaling: bfloat16 has float32's range).
  Refused on the CPU: there the project's training collapsed to chance (`bench synthetic --quick`: `cond-multitask`
  73.21% -> 44.64%, its fit on its own training tasks stuck at 51%), and a GPU is where bfloat16 pays.

The precision changes what a run computes, not only how fast: it is part of the run's config (config.json), each
checkpoint's JSON records it, a checkpoint not computed in float32 has it in its fingerprint, and a run folder holds
one precision (a command asking for another is refused, as any other training knob is). results.json records it in
its `machine` record.
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
    if name == "bf16" and kind != "cuda":
        raise HyperguideError(
            f"--precision bf16 is for CUDA GPUs; on --device {device} it ruins training (measured on the CPU: "
            "cond-multitask at chance): use fp32"
        )
    if name == "bf16" and not torch.cuda.is_bf16_supported():
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
