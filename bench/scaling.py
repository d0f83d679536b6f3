"""Data-parallel scaling at the paper's scale: the training stages of `paper_scale.py` (on `metavqa-standin`, 870
meta-train tasks, the 50.9M-parameter HNet) timed in one process and under `torchrun` with N processes, side by side in
one run, each process given an equal share of the machine's cores.

Every measurement is a fresh `torchrun --standalone --nproc-per-node N` of this script (N = 1 included, so the
launcher is the same): every process builds the stage's data, warms torch up, waits for the others, and then the
library's batched path of the stage runs once (`workloads.py`: one meta-epoch of `uncond-hnet-maml`, one augmentation
of the latent collection, one epoch of the HVAE, HyperCLIP and HyperLDM), timed between two barriers. Under N
processes the library shards it as a bench would (`hyperguide.distributed`): each process meta-trains on its block of
every meta-batch and the gradients are summed (gloo on CPU, NCCL on GPUs, one GPU a process); the collection's batches
are dealt out.

    python bench/scaling.py                                    # hnet_maml_epoch at 1 and 2 processes, full scale
    python bench/scaling.py --stages hnet_maml_epoch,collect_epoch,hvae_epoch --json scaling.json
    python bench/scaling.py --scale 0.05 --procs 1,2           # a smoke run
    python bench/scaling.py --device cuda --procs 1,2,4,8      # on a machine with 8 GPUs

Each count runs `--repeats` times (default 2), the counts interleaved, and the fastest run of each is kept (this
machine is shared and noisy; every run's time is in the JSON). Speed-up = (time at 1 process) / (time at N);
efficiency = speed-up / N. On CPU the N processes share the same cores
as the one process (`--cores`, default all of them: cores / N threads each), so the speed-up measures what sharding
costs or gains on one machine, not what N machines would give.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TRAINING = ("hnet_maml_epoch", "collect_epoch", "hvae_epoch", "hyperclip_epoch", "hyperldm_epoch")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from paper_scale import default_splits_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default="hnet_maml_epoch", help=f"comma-separated, of {', '.join(TRAINING)}")
    parser.add_argument("--procs", default="1,2", help="process counts to time, comma-separated (default 1,2)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 870 meta-train tasks (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU a process)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="CPU cores shared by the processes")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each count, interleaved; the best is kept")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--splits-dir", type=Path, default=default_splits_dir())
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: time one stage, write JSON
    parser.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.stages.split(",")) - set(TRAINING)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; choose from {', '.join(TRAINING)}")
    return args


def run_worker(args: argparse.Namespace) -> None:
    """One process of a torchrun: build the stage, time its batched path between barriers; rank 0 writes."""
    import torch
    import workloads
    from paper_scale import sync, warm_up

    from hyperguide import distributed
    from hyperguide.data.metavqa import standin_universe

    device = distributed.init_from_env(args.device)
    processes = distributed.world()
    torch.set_num_threads(max(1, args.cores // processes.size) if not device.startswith("cuda") else 1)
    torch.set_flush_denormal(True)
    universe = standin_universe(args.splits_dir)
    n_train = max(2, round(args.scale * len(universe.meta_train)))
    ctx = workloads.Context(
        device=device,
        train=universe.materialize(list(universe.meta_train)[:n_train]),
        test=universe.materialize(list(universe.meta_test)[:2]),
        loop_tasks=1,
        gamma=1.5,
        respaced_steps=50,
    )
    work = workloads.WORKLOADS[args.worker](ctx)
    warm_up(device)
    distributed.barrier()
    start = time.perf_counter()
    work.batched()
    sync(device)
    distributed.barrier()
    seconds = time.perf_counter() - start
    if processes.main:
        out = {"seconds": seconds, "processes": processes.size, "threads": torch.get_num_threads(), "tasks": n_train}
        args.worker_out.write_text(json.dumps(out) + "\n")
    distributed.close()


def measure(args: argparse.Namespace, stage: str, procs: int, out: Path) -> dict[str, float]:
    threads = max(1, args.cores // procs)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs)]
    command += [str(Path(__file__).resolve()), "--worker", stage, "--worker-out", str(out), "--device", args.device]
    command += ["--scale", str(args.scale), "--cores", str(args.cores), "--splits-dir", str(args.splits_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": f"{REPO / 'src'}:{HERE}"}
    subprocess.run(command, check=True, env=env)
    return json.loads(out.read_text())


def table(results: dict) -> str:
    procs = results["procs"]
    head = " | ".join(f"{n} proc s" for n in procs) + " | " + " | ".join(f"speed-up x{n}" for n in procs[1:])
    lines = [f"| stage | {head} |", "|---" * (1 + 2 * len(procs) - 1) + "|"]
    for name, by_n in results["stages"].items():
        base = by_n[str(procs[0])]["seconds"]
        times = " | ".join(f"{by_n[str(n)]['seconds']:.2f}" for n in procs)
        ups = " | ".join(
            f"{base / by_n[str(n)]['seconds']:.2f}x ({100 * base / by_n[str(n)]['seconds'] / n:.0f}% eff.)"
            for n in procs[1:]
        )
        lines.append(f"| {name} | {times} | {ups} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(HERE))
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    from paper_scale import git_commit

    procs = [int(n) for n in args.procs.split(",")]
    results: dict = {
        "device": args.device,
        "cores": args.cores,
        "scale": args.scale,
        "procs": procs,
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "stages": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages.split(","):
            runs: dict[str, list[dict[str, float]]] = {str(n): [] for n in procs}
            for repeat in range(args.repeats):  # interleaved, so that a busy spell of the machine hits both counts
                for n in procs:
                    print(f"[scaling] {stage}: {n} process(es), run {repeat + 1}", file=sys.stderr, flush=True)
                    runs[str(n)].append(measure(args, stage, n, Path(tmp) / f"{stage}-{n}.json"))
            results["stages"][stage] = {
                n: {**min(rs, key=lambda r: r["seconds"]), "all_seconds": [r["seconds"] for r in rs]}
                for n, rs in runs.items()
            }
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
