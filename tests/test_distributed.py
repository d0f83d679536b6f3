"""Data parallelism under torchrun (gloo on CPU): the blocks of a batch, the gradient of two processes against one
process's, `bench synthetic --quick` in two processes against the one-process numbers (tests/golden/), and a
two-process bench that loses a process and resumes.

What two processes may change, and why. Each step's gradient is the sum of the two processes' blocks of the batch,
so the weights agree with one process's to float rounding (about 1e-7 relative a step), not bit for bit: a matrix
product summed over the batch in two halves rounds differently. That rounding reaches the numbers of a run as it does
on another machine (tests/results_match.py states the tolerance: continuous numbers to 1e-3 relative, latent
distances to 0.01 spreads, at most 4 counts flipped by one item); on this machine the zero-shot table of the resumed
two-process bench must not move at all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from hyperguide.distributed import Part, StepSums, gather_rows, part, world
from tests.helpers import SMALL
from tests.results_match import differences
from tests.test_bench import _env
from tests.test_trust import results

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "bench_synthetic_quick.json"

pytestmark = pytest.mark.skipif(not dist.is_available() or sys.platform != "linux", reason="needs torch.distributed")


def torchrun(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "hyperguide.cli", "bench", "synthetic", "--quick", "--quiet", "--out", str(out), *extra,
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------ the blocks


def test_the_blocks_of_a_batch_cover_it_once_and_weigh_their_share() -> None:
    for total in (1, 2, 7, 64):
        for size in (1, 2, 3):
            blocks = [Part(total * r // size, total * (r + 1) // size, total) for r in range(size)]
            rows = [i for b in blocks for i in range(b.start, b.stop)]
            assert rows == list(range(total))
            assert sum(b.weight for b in blocks) == pytest.approx(1.0)
            assert sum(b.empty for b in blocks) == max(0, size - total)
    one = part(5)  # one process: the whole batch, the same tensor, unweighted
    assert world().size == 1 and one.whole and one.weight == 1.0
    x = torch.randn(5, 3)
    assert one(x) is x and one.scale({"loss": x.sum()})["loss"] is not None
    assert gather_rows(x, 5) is x


def _two_process_gradients(rank: int, store: str, batch: torch.Tensor, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 4)
        sums = StepSums(list(model.parameters()))
        for step in range(2):  # the first step learns the metrics' names, the next sums them in the one all-reduce
            model.zero_grad(set_to_none=True)
            mine = part(len(batch))
            # a mean over rows, weighted by the block's share
            mse = mine.scale({"loss": (model(mine(batch)) ** 2).mean()})["loss"]
            # a loss over every pair of the batch, on gathered rows, weighted 1/N
            emb = gather_rows(torch.nn.functional.normalize(model(mine(batch)), dim=-1), len(batch))
            contrastive = torch.nn.functional.cross_entropy(emb @ emb.T, torch.arange(len(batch))) / world().size
            loss = mse + contrastive
            loss.backward()
            summed = sums({"loss": float(loss)})
            grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
            save_file({**grads, "loss": torch.tensor([summed["loss"]])}, f"{out}.{rank}.{step}")
    finally:
        dist.destroy_process_group()


def test_two_processes_sum_to_the_gradient_of_one(tmp_path: Path) -> None:
    batch = torch.randn(7, 3)  # 3 rows and 4: blocks of unequal size
    mp.spawn(_two_process_gradients, args=(str(tmp_path / "store"), batch, str(tmp_path / "grads")), nprocs=2)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 4)
    emb = torch.nn.functional.normalize(model(batch), dim=-1)
    loss = (model(batch) ** 2).mean() + torch.nn.functional.cross_entropy(emb @ emb.T, torch.arange(len(batch)))
    loss.backward()
    for rank in (0, 1):
        for step in (0, 1):
            got = load_file(f"{tmp_path / 'grads'}.{rank}.{step}")
            torch.testing.assert_close(got["loss"], loss.detach().reshape(1), rtol=1e-5, atol=1e-6)
            for name, p in model.named_parameters():
                torch.testing.assert_close(got[name], p.grad, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------ runs


@pytest.mark.slow  # 50 s: `make test-slow`; the default suite's two-process check is the resumed bench below
def test_two_processes_give_the_one_process_results(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(torchrun(out), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert differences(json.loads(GOLDEN.read_text()), results(out)) == []  # stored on another machine
    # the main process alone wrote the run folder and printed: one summary line
    assert done.stderr.count("bench done in") == 1
    assert not list(out.rglob("*.tmp*"))


def _worker(agent: int, rank: int) -> int:
    """The pid of the worker of `rank` that the torchrun process `agent` started."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == agent and f"RANK={rank}".encode() in environ:
            return int(stat.parent.name)
    raise AssertionError(f"torchrun {agent} has no worker of rank {rank}")


@pytest.mark.integration
def test_a_two_process_bench_that_loses_a_process_resumes(small_run: Path, tmp_path: Path) -> None:
    out, log = tmp_path / "run", tmp_path / "killed.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(torchrun(out, *SMALL), stdout=subprocess.DEVNULL, stderr=err, env=_env())
        deadline = time.monotonic() + 300
        try:
            while not (out / "latents" / "seed0-fold0.json").is_file():  # a stage written, others to come
                assert proc.poll() is None, f"the bench ended before it could be killed:\n{log.read_text()}"
                assert time.monotonic() < deadline, "no checkpoint within 300 s"
                time.sleep(0.05)
            os.kill(_worker(proc.pid, 1), signal.SIGKILL)
            assert proc.wait(timeout=120) != 0  # torchrun stops the other process and fails
        finally:
            if proc.poll() is None:
                proc.kill()
    assert not (out / "results.json").is_file()
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*/*.json")}
    assert out / "latents" / "seed0-fold0.json" in kept
    resumed = subprocess.run(torchrun(out, *SMALL), env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # what was written is reused, not retrained
    # the small bench in one process, on this machine: two processes round sums differently, the zero-shot table holds
    assert differences(results(small_run), results(out), exact_zero_shot=True) == []
