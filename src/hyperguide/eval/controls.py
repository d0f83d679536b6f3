"""Does the question drive the weights, and are the generated weights new? The conditioning controls and the novelty
measures of a question-reading row (process math only; `run/evaluate.py` applies them per seed and fold).

Controls: the same meta-test tasks (their images, answers and labels) with another task's question, or with none.
  - shuffled: a fixed derangement among the tasks that have the same answer set (each group of n >= 2 such tasks in
    task order, task i takes the question of the next one, the last the first's); a task whose answer set no other
    task has gets the null question.
  - null: the null question, a zero embedding with one zero token: no question at all.
  A row that uses its question scores lower on both; the "question effect" is the real score minus the shuffled one.

Novelty: a generated adapter against the training tasks' adapters (the run's HNet at each meta-train task's adapted
latent, the mean over its augmentations): its distance to the nearest training task's latent in within-task spreads
(rows that generate in a latent space), how often it predicts like that nearest task's adapter on the task's query
images, how often like the training adapter it agrees with most, and whether it predicts exactly like one of them
(a copy, as far as its predictions can tell).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from hyperguide.data.batch import collate
from hyperguide.data.tasks import Task
from hyperguide.models.adapter import AdapterShape, adapter_logits


def derangement(tasks: Sequence[Task]) -> list[int | None]:
    """For each task, the index of the task whose question it takes (never its own), or None for the null question:
    a cyclic shift within each group of tasks with the same answers, in task order."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, task in enumerate(tasks):
        groups.setdefault(tuple(sorted(task.answers)), []).append(i)
    donor: list[int | None] = [None] * len(tasks)
    for members in groups.values():
        if len(members) >= 2:
            for j, i in enumerate(members):
                donor[i] = members[(j + 1) % len(members)]
    return donor


def null_question(task: Task) -> Task:
    """The task with no question: a zero embedding and a single zero token."""
    zero = torch.zeros_like(task.question_emb)
    tokens = None if task.question_tokens is None else zero[None]
    return replace(task, question="", question_emb=zero, question_tokens=tokens)


def with_question(task: Task, donor: Task) -> Task:
    """The task (its data, answers and labels) asked with the donor's question."""
    return replace(
        task, question=donor.question, question_emb=donor.question_emb, question_tokens=donor.question_tokens
    )


def shuffled_questions(tasks: Sequence[Task]) -> list[Task]:
    """The tasks with their `derangement` questions (the null question where a task has no partner)."""
    donors = derangement(tasks)
    return [null_question(t) if d is None else with_question(t, tasks[d]) for t, d in zip(tasks, donors, strict=True)]


def null_questions(tasks: Sequence[Task]) -> list[Task]:
    return [null_question(t) for t in tasks]


@torch.no_grad()
def predictions(shape: AdapterShape, weights: torch.Tensor, task: Task, members: int = 1) -> torch.Tensor:
    """(M, Nq) the answer each of M adapters (M * members, P) picks for each of the task's query images."""
    batch = collate([task])
    m = weights.shape[0] // members
    logits = adapter_logits(
        shape,
        weights,
        batch.query_x.expand(m, -1, -1),
        batch.answer_emb.expand(m, -1, -1),
        batch.answer_mask.expand(m, -1),
        None,
        members,
    )
    return logits.argmax(-1)


@torch.no_grad()
def novelty(
    shape: AdapterShape,
    generated: torch.Tensor,
    training: torch.Tensor,
    tasks: Sequence[Task],
    *,
    members: int = 1,
    latents: torch.Tensor | None = None,
    training_latents: torch.Tensor | None = None,
    within: torch.Tensor | None = None,
) -> dict[str, list[float]]:
    """Per task: `agreement_best` (% of its query images on which the generated adapter (generated[i], `members`
    rows each) answers like the training adapter that agrees with it most), `copy` (100 if that agreement is 100%,
    else 0), and, given the generated `latents` (T, L), the training tasks' mean latents (N, L) and the within-task
    spread `within` (`eval.fit.within_task_spread`): `distance_in_spreads` (to the nearest training latent) and
    `agreement_nearest` (% of images answered like the adapter of that nearest latent). `training` holds the N
    training adapters (N, P)."""
    out: dict[str, list[float]] = {"agreement_best": [], "copy": []}
    nearest = None
    if latents is not None and training_latents is not None and within is not None:
        # exact differences, not the matrix-product shortcut, which leaves ~1e-3 of rounding on a zero distance
        distance = torch.cdist(latents, training_latents, compute_mode="donot_use_mm_for_euclid_dist")
        out["distance_in_spreads"] = (distance.min(1).values / within.clamp_min(1e-12)).tolist()
        nearest = distance.argmin(1)
        out["agreement_nearest"] = []
    for i, task in enumerate(tasks):
        own = predictions(shape, generated[i * members : (i + 1) * members], task, members)  # (1, Nq)
        theirs = predictions(shape, training, task)  # (N, Nq)
        agree = 100.0 * (theirs == own).float().mean(1)
        best = float(agree.max())
        out["agreement_best"].append(best)
        out["copy"].append(100.0 if best == 100.0 else 0.0)
        if nearest is not None:
            out["agreement_nearest"].append(float(agree[nearest[i]]))
    return out
