"""One meta-epoch of `uncond-hnet-maml` at the paper's sizes, batched over tasks vs one task at a time.

Workload: `metavqa-standin` (the authors' 870 meta-train tasks with random 768-d features), adapter hidden 256
(394,240 weights), HNet 128 -> 128 -> 128 -> 128 -> 394,240, 10 first-order inner SGD steps at lr 0.1 on the full
support set, query loss, Adam every 32 tasks (SPEC P1). Both paths run here, one after the other, on the same tasks
and the same initial weights; the per-task path is the reference procedure (one task's inner loop and outer
gradient at a time, gradients averaged over 32 tasks).

    python bench/hnet_maml_epoch.py                      # all 870 tasks (several minutes on 2 cores)
    python bench/hnet_maml_epoch.py --tasks 128 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from hyperguide.data.batch import collate
from hyperguide.data.metavqa import standin_universe
from hyperguide.data.tasks import Task
from hyperguide.meta.inner_loop import InnerLoop, adapt, support_loss_fn
from hyperguide.meta.methods import MethodConfig, UncondHNetMAML
from hyperguide.meta.train import TrainConfig, train_method
from hyperguide.models.adapter import AdapterShape

REPO = Path(__file__).resolve().parents[1]


def per_task_epoch(method: UncondHNetMAML, tasks: list[Task], config: TrainConfig, device: str) -> None:
    """The reference procedure: every task adapts and back-propagates alone; Adam steps every meta-batch."""
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    for start in range(0, len(tasks), config.meta_batch_size):
        chunk = tasks[start : start + config.meta_batch_size]
        optimizer.zero_grad(set_to_none=True)
        for task in chunk:
            batch = collate([task]).to(device)
            phi = adapt(
                support_loss_fn(method.shape, method.generate, batch),
                method.init_phi(batch),
                method.config.inner,
                track_meta_grad=True,
            )
            (method.query_loss(batch, method.generate(phi)) / len(chunk)).backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits-dir", type=Path, default=REPO.parent / "shared" / "data" / "metavqa")
    parser.add_argument("--tasks", type=int, default=None, help="first N meta-train tasks (default: all 870)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    universe = standin_universe(args.splits_dir)
    indices = list(universe.meta_train)[: args.tasks]
    tasks = universe.materialize(indices)
    config = MethodConfig(adapter_hidden=256, latent_dim=128, hnet_hidden=(128, 128, 128), inner=InnerLoop(10, 0.1))
    train = TrainConfig(epochs=1, meta_batch_size=32, max_examples=None)
    shape = AdapterShape(768, 256)
    torch.manual_seed(0)
    initial = UncondHNetMAML(shape, 768, config).state_dict()
    print(
        f"{len(tasks)} tasks, {sum(len(t.support_y) + len(t.query_y) for t in tasks)} examples, "
        f"HNet {sum(p.numel() for p in UncondHNetMAML(shape, 768, config).parameters()):,} parameters, "
        f"{torch.get_num_threads()} threads, device {args.device}"
    )

    timings = {}
    for name in ("batched", "per_task"):
        method = UncondHNetMAML(shape, 768, config).to(args.device)
        method.load_state_dict(initial)
        start = time.perf_counter()
        if name == "batched":
            train_method(method, tasks, train, generator=torch.Generator().manual_seed(0), device=args.device)
        else:
            per_task_epoch(method, tasks, train, args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        timings[name] = time.perf_counter() - start
        print(f"  {name:<9} {timings[name]:8.1f} s  ({len(tasks) / timings[name]:.2f} tasks/s)", flush=True)

    ratio = timings["per_task"] / timings["batched"]
    print()
    print("| path | seconds per meta-epoch | tasks/s |")
    print("|---|---|---|")
    for name, s in timings.items():
        print(f"| {name} | {s:.1f} | {len(tasks) / s:.2f} |")
    print(f"\nbatched is {ratio:.1f}x faster than the per-task loop ({len(tasks)} tasks)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"tasks": len(tasks), "batched_s": timings["batched"], "loop_s": timings["per_task"], "ratio": ratio},
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
