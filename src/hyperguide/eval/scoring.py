"""Zero-shot and k-shot evaluation of a method on meta-test tasks: per-task values of every registered metric
(`eval.metrics.METRICS`).

Zero-shot (docs/design.md §7): adapter weights from the question alone, scored on each task's query set.
k-shot (§P8): keep the answers with at least k support examples (in support and query), keep tasks with at least
two such answers, take k support examples per kept answer, fine-tune the method's inner parameters from its zero-shot
value, and score on the kept query examples, still choosing among all of the task's answers. "full" fine-tunes on the
whole support set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from hyperguide.config import InnerLoop
from hyperguide.data.batch import TaskBatch, collate
from hyperguide.data.tasks import Task
from hyperguide.eval.metrics import METRICS, Predictions, from_logits, task_metrics
from hyperguide.meta.inner_loop import adapt, support_loss_fn
from hyperguide.meta.methods import Method
from hyperguide.models.adapter import AdapterShape, adapter_logits

Scores = dict[str, list[float]]  # {metric: [value per task]}, every registered metric


def no_scores() -> Scores:
    """The scores of no task: an empty list per registered metric."""
    return {name: [] for name in METRICS}


def add_scores(scores: Scores, more: Mapping[str, Sequence[float] | torch.Tensor]) -> None:
    """Append `more`'s per-task values (lists, or (B,) tensors) of each metric of `scores` to it."""
    for name, values in scores.items():
        extra = more[name]
        values.extend(extra.tolist() if isinstance(extra, torch.Tensor) else extra)


def task_count(scores: Scores) -> int:
    """How many tasks the scores hold (each metric has one value per task)."""
    return len(next(iter(scores.values()), []))


@torch.no_grad()
def score_weights(
    shape: AdapterShape, weights: torch.Tensor, batch: TaskBatch, members: int = 1
) -> dict[str, torch.Tensor]:
    """(B,) values of every registered metric of adapter weights (B, P), or of ensembles of `members` adapters per
    task (B * members, P; their mean logits), on the batch's query sets."""
    lengths = batch.lengths("query")
    logits = adapter_logits(shape, weights, batch.query_x, batch.answer_emb, batch.answer_mask, lengths, members)
    return task_metrics(from_logits(logits, batch.query_y, batch.query_mask))


def _score(method: Method, batch: TaskBatch, phi: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return score_weights(method.shape, method.decoder(batch)(phi), batch, method.members)


def zero_shot_phis(method: Method, tasks: Sequence[Task], *, batch_size: int = 32, device: str = "cpu") -> torch.Tensor:
    """(N, ...) zero-shot inner parameters of the tasks, in batches of `batch_size`, for `evaluate_method(start=)`.
    Only for methods whose zero-shot value reads the question alone (not `uses_support_for_zero_shot`): a k-shot task
    then starts from the very value its zero-shot score was measured at."""
    if method.uses_support_for_zero_shot:
        raise ValueError(f"{type(method).__name__}'s zero-shot value depends on the support set; it cannot be reused")
    method.eval()
    out = []
    for start in range(0, len(tasks), batch_size):
        batch = collate(tasks[start : start + batch_size]).to(device)
        with torch.no_grad():
            out.append(method.zero_shot_phi(batch).detach())
    return torch.cat(out)


@torch.no_grad()
def zero_shot_weights(
    method: Method, tasks: Sequence[Task], phi: torch.Tensor, *, batch_size: int = 32, device: str = "cpu"
) -> torch.Tensor:
    """(N * members, P): the weights of the tasks' inner parameters phi (N, ...), decoded batch by batch with each
    task's question (`Method.decoder`)."""
    out = []
    for start in range(0, len(tasks), batch_size):
        batch = collate(tasks[start : start + batch_size]).to(device)
        out.append(method.decoder(batch)(phi[start : start + batch_size].to(device)))
    return torch.cat(out)


def evaluate_method(
    method: Method,
    tasks: Sequence[Task],
    *,
    finetune: InnerLoop | None = None,
    start: torch.Tensor | None = None,
    batch_size: int = 32,
    device: str = "cpu",
) -> Scores:
    """Per-task scores of the method's zero-shot weights, or, with `finetune`, after fine-tuning on each support set.
    `start` (aligned with `tasks`, from `zero_shot_phis`) replaces the zero-shot value the method would compute."""
    if start is not None and len(start) != len(tasks):
        raise ValueError(f"start has {len(start)} rows for {len(tasks)} tasks")
    method.eval()
    scores = no_scores()
    for begin in range(0, len(tasks), batch_size):
        batch = collate(tasks[begin : begin + batch_size]).to(device)
        if start is not None:
            phi = start[begin : begin + batch_size].to(device)
        else:
            with torch.no_grad():  # the inner loop (oracle, fine-tuning) turns gradients on for itself
                phi = method.zero_shot_phi(batch)
        if finetune is not None:
            loss = support_loss_fn(method.shape, method.decoder(batch), batch, method.members)
            phi = adapt(loss, phi.detach(), finetune)
        add_scores(scores, _score(method, batch, phi.detach()))
    return scores


def constant_scores(tasks: Sequence[Task], answer: Callable[[Task], torch.Tensor]) -> Scores:
    """The scores of answering every query example of a task with one distribution over its K answers,
    `answer(task)` (K,), both stated and given (`eval.metrics.Predictions`), in double precision."""
    scores = no_scores()
    for t in tasks:
        n = len(t.query_y)
        q = answer(t).to(torch.float64).expand(1, n, t.n_answers)
        add_scores(scores, task_metrics(Predictions(q, q, t.query_y[None], torch.ones(1, n, dtype=torch.bool))))
    return scores


def chance_scores(tasks: Sequence[Task]) -> Scores:
    """Uniform guessing among each task's K answers: each stated and given with probability 1/K (accuracy and
    balanced accuracy 100/K)."""
    return constant_scores(tasks, lambda t: torch.full((t.n_answers,), 1.0 / t.n_answers, dtype=torch.float64))


def majority_scores(tasks: Sequence[Task]) -> Scores:
    """Every query answered with the support set's most frequent answer (ties to the lowest label), stated with
    certainty. It uses support labels, so it is a reference, never zero-shot."""

    def majority(t: Task) -> torch.Tensor:
        counts = torch.bincount(t.support_y, minlength=t.n_answers)
        # argmax returns the first maximum: the lowest label among ties
        return torch.nn.functional.one_hot(counts.argmax(), t.n_answers)

    return constant_scores(tasks, majority)


def k_shot_task(task: Task, k: int | None, generator: torch.Generator) -> Task | None:
    """The task with k support examples per answer that has at least k (None: the full support set), or None when
    fewer than two answers have k examples."""
    if k is None:
        return task
    keep = [a for a in range(task.n_answers) if int((task.support_y == a).sum()) >= k]
    if len(keep) < 2:
        return None
    chosen = []
    for a in keep:
        idx = torch.nonzero(task.support_y == a).flatten()
        chosen.append(idx[torch.randperm(len(idx), generator=generator)[:k]])
    support_idx = torch.cat(chosen).sort().values
    query_keep = torch.isin(task.query_y, torch.tensor(keep))
    if not bool(query_keep.any()):
        return None
    return task.select(support_idx, query_keep)


def k_shot_tasks(tasks: Sequence[Task], k: int | None, seed: int) -> tuple[list[int], list[Task]]:
    """Indices of the tasks kept for k-shot evaluation and the filtered tasks, sampled with a generator from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    kept: list[int] = []
    out: list[Task] = []
    for i, t in enumerate(tasks):
        filtered = k_shot_task(t, k, generator)
        if filtered is not None:
            kept.append(i)
            out.append(filtered)
    return kept, out
