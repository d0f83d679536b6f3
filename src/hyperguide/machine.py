"""Where numbers come from: the machine a run computed on, as results.json records it (`"machine"`).

Floating-point results depend on more than the code and the seed: another CPU (its vector units and the library's
kernels for them), another thread count (how a sum is split) or another torch version rounds differently, and a
trained network amplifies the last digits into visibly different numbers. A table is only reproducible together with
this record; docs/decisions.md (D17) gives the spread measured between machines and thread counts.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TypedDict

import torch


class Machine(TypedDict):
    cpu: str  # the CPU's model name
    cores: int  # the cores this process may run on
    threads: int  # torch's intra-op threads (OMP_NUM_THREADS)
    processes: int  # torchrun's world size (1 without torchrun)
    device: str  # the torch device, with the GPU's name for CUDA
    precision: str  # fp32, tf32 or bf16
    torch: str
    python: str
    platform: str


UNKNOWN: Machine = {
    "cpu": "?", "cores": 0, "threads": 0, "processes": 1, "device": "?", "precision": "?", "torch": "?",
    "python": "?", "platform": "?",
}  # fmt: skip


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo's `model name`; else what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def device_name(device: str) -> str:
    """`device`, with the GPU's model for a CUDA device (`cuda:0 (NVIDIA H100 80GB HBM3)`)."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(dev)})"
    return device


def machine_record(device: str, precision: str, processes: int = 1) -> Machine:
    """The record of this machine for a result computed on `device` in `precision` by `processes` processes."""
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "threads": torch.get_num_threads(),
        "processes": processes,
        "device": device_name(device),
        "precision": precision,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
    }


def describe(machine: Machine) -> str:
    """One line for a report: `AMD EPYC, 2 cores, 2 threads, cpu, fp32, torch 2.13.0+cpu, Python 3.11.7`; a
    field a record lacks (written by hand, or by another version) reads `?`."""
    machine = {**UNKNOWN, **machine}
    processes = f", {machine['processes']} processes" if machine["processes"] > 1 else ""
    threads = f"{machine['threads']} thread{'' if machine['threads'] == 1 else 's'}"
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {threads}{processes}, {machine['device']}, "
        f"{machine['precision']}, torch {machine['torch']}, Python {machine['python']}"
    )
