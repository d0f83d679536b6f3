"""Speed at the paper's scale (docs/design.md §3.7, §P1-§P7) on `metavqa-standin`: the library's batched paths
against the per-task reference loops, in the same run, with achieved FLOP/s against this machine's measured matmul
peak.

Stages: hnet_maml_epoch (one meta-epoch of uncond-hnet-maml over the 870 meta-train tasks), collect_epoch (one
augmentation of the adapted-latent collection, 10 SGD steps per task), hvae_epoch, hyperclip_epoch, hyperldm_epoch
(one epoch of each: 28 steps of 32 tasks), sample_ddpm and sample_respaced (zero-shot HyperLDM samples for the 373
meta-test tasks, 1000 DDPM steps or a respaced chain, guidance scale --gamma), hyperclip_guidance (50 Adam steps per
meta-test task). FLOP formulas: `workloads.py`. The library's HVAE and HyperCLIP read the HNet's codes; the reference
loops of hvae_epoch, hyperclip_epoch and hyperclip_guidance run the paper's P-wide models on the full weights, so
those ratios hold that saving as well as batching (`workloads.py`, `reference_loops.py`).

The per-task loop runs on the first --loop-tasks tasks (for the three training epochs: whole 32-task steps) and its
time is extrapolated linearly to the full count; the output says so. Each stage runs in a fresh subprocess, so that
its peak memory is its own: on CPU the process's peak resident set (getrusage ru_maxrss, taken right after the
batched path, so it includes the interpreter, torch and the stage's data: `base_mem_mb` is the resident set just
before the batched path starts); on CUDA torch.cuda.max_memory_allocated of the batched path.

    python bench/paper_scale.py --json out.json                        # all stages, the full paper scale
    python bench/paper_scale.py --stages hnet_maml_epoch --scale 0.1   # one stage on 10% of the tasks
    python bench/paper_scale.py --scale 0.005 --loop-tasks 1 --threads 1 --peak-size 256   # a smoke run
    python bench/paper_scale.py --device cuda --json gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = (
    "hnet_maml_epoch",
    "collect_epoch",
    "hvae_epoch",
    "hyperclip_epoch",
    "hyperldm_epoch",
    "sample_ddpm",
    "sample_respaced",
    "hyperclip_guidance",
)


def default_splits_dir() -> Path:
    local = REPO / ".bench_data" / "metavqa"
    return local if local.exists() else REPO.parent / "shared" / "data" / "metavqa"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated stage names (default: all)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 870 / 373 tasks (default 1)")
    parser.add_argument("--loop-tasks", type=int, default=8, help="tasks the per-task loop runs (default 8)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--gamma", type=float, default=1.5, help="guidance scale of the samplers (default 1.5)")
    parser.add_argument("--respaced-steps", type=int, default=50, help="steps of the respaced sampler (default 50)")
    parser.add_argument("--matmul-precision", default="highest", choices=("highest", "high", "medium"))
    parser.add_argument(
        "--peak-size",
        type=int,
        default=None,
        help="matrix size n of the torch.mm peak measurement (default 2048 on CPU, 8192 on CUDA; smaller for a smoke "
        "run, whose peak fraction then means little)",
    )
    parser.add_argument("--no-thp", action="store_true", help="do not ask torch's CPU allocator for huge pages")
    parser.add_argument("--splits-dir", type=Path, default=default_splits_dir())
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: run one stage, write JSON
    parser.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    return args


def configure_torch(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision(args.matmul_precision)
    torch.set_flush_denormal(True)  # Adam's second moments of tiny gradients are denormal: 10x slower arithmetic


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_peak_gflops(device: str, n: int | None = None, repeats: int = 5) -> float:
    """The best of `repeats` torch.mm of two large float32 (n, n) matrices (default n = 2048 on CPU, 8192 on CUDA)."""
    import torch

    n = n or (8192 if device.startswith("cuda") else 2048)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def warm_up(device: str) -> None:
    """Pay torch's one-time costs (lazy imports of the first optimiser step, kernel and thread-pool start-up) before
    any timing, so that neither path is charged with them."""
    import torch

    layer = torch.nn.Linear(64, 64).to(device)
    for fused in (False, True):
        optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3, fused=fused)
        layer(torch.randn(8, 64, device=device)).square().mean().backward()
        optimizer.step()
    sync(device)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_child(args: argparse.Namespace) -> None:
    """Run one stage in this (fresh) process and write its numbers to --child-out."""
    configure_torch(args)
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import workloads

    from hyperguide.data.metavqa import standin_universe

    universe = standin_universe(args.splits_dir)
    n_train = max(2, round(args.scale * len(universe.meta_train)))
    n_test = max(2, round(args.scale * len(universe.meta_test)))
    ctx = workloads.Context(
        device=args.device,
        train=universe.materialize(list(universe.meta_train)[:n_train]),
        test=universe.materialize(list(universe.meta_test)[:n_test]),
        loop_tasks=args.loop_tasks,
        gamma=args.gamma,
        respaced_steps=args.respaced_steps,
    )
    work = workloads.WORKLOADS[args.child](ctx)
    warm_up(args.device)
    cuda = args.device.startswith("cuda")
    base_mem = rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated() / 2**20
    start = time.perf_counter()
    work.batched()
    sync(args.device)
    batched_s = time.perf_counter() - start
    if cuda:
        peak_mem = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    start = time.perf_counter()
    work.loop()
    sync(args.device)
    loop_run_s = time.perf_counter() - start
    loop_s = loop_run_s * work.units / work.loop_units
    out = {
        "batched_s": batched_s,
        "loop_s": loop_s,
        "ratio": loop_s / batched_s,
        "gflop": work.gflop,
        "direct_gflop": work.direct_gflop,
        "peak_mem_mb": peak_mem,
        "base_mem_mb": base_mem,
        "units": work.units,
        "unit": work.unit,
        "loop_units": work.loop_units,
        "loop_measured_s": loop_run_s,
        "tasks": len(ctx.test) if args.child.startswith(("sample", "hyperclip_guidance")) else len(ctx.train),
        "threads": torch.get_num_threads(),
    }
    args.child_out.write_text(json.dumps(out) + "\n")


def child_command(args: argparse.Namespace, stage: str, out: Path) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", stage, "--child-out", str(out)]
    cmd += ["--scale", str(args.scale), "--loop-tasks", str(args.loop_tasks), "--device", args.device]
    cmd += ["--gamma", str(args.gamma), "--respaced-steps", str(args.respaced_steps)]
    cmd += ["--matmul-precision", args.matmul_precision, "--splits-dir", str(args.splits_dir)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return cmd


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "bench"], cwd=REPO, capture_output=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def table(results: dict) -> str:
    lines = [
        "| stage | batched s | per-task loop s (extrapolated) | ratio | GFLOP | GFLOP/s | of peak | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["stages"].items():
        lines.append(
            f"| {name} | {r['batched_s']:.2f} | {r['loop_s']:.2f} (ran {r['loop_units']} of {r['units']} "
            f"{r['unit']}s) | {r['ratio']:.1f}x | {r['gflop']:.1f} | {r['gflop'] / r['batched_s']:.1f} | "
            f"{100 * r['peak_fraction']:.1f}% | {r['peak_mem_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return
    configure_torch(args)
    import torch

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    if not args.no_thp:
        env["THP_MEM_ALLOC_ENABLE"] = "1"  # huge pages for large CPU tensors: 5x cheaper first touch of a new buffer
    peak = measure_peak_gflops(args.device, args.peak_size)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"device {args.device} ({device_name}), {torch.get_num_threads()} threads, matmul peak {peak:.1f} GFLOP/s "
        f"(torch.mm float32, precision {args.matmul_precision}), scale {args.scale}, per-task loop on "
        f"{args.loop_tasks} tasks, extrapolated linearly",
        flush=True,
    )
    results: dict = {
        "peak_gflops": peak,
        "device": args.device,
        "device_name": device_name,
        "threads": torch.get_num_threads(),
        "scale": args.scale,
        "loop_tasks": args.loop_tasks,
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "stages": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages.split(","):
            out = Path(tmp) / f"{stage}.json"
            start = time.perf_counter()
            subprocess.run(child_command(args, stage, out), env=env, check=True)
            r = json.loads(out.read_text())
            r["peak_fraction"] = r["gflop"] / r["batched_s"] / peak
            results["stages"][stage] = r
            print(
                f"  {stage:<20} batched {r['batched_s']:8.2f} s   per-task {r['loop_s']:9.2f} s "
                f"(measured {r['loop_measured_s']:.1f} s on {r['loop_units']}/{r['units']} {r['unit']}s)   "
                f"{r['ratio']:6.1f}x   {100 * r['peak_fraction']:5.1f}% of peak   {r['peak_mem_mb']:8.0f} MB   "
                f"[{time.perf_counter() - start:.0f} s wall]",
                flush=True,
            )
    print()
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
