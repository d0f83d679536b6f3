"""The per-task metrics of the evaluation: one registry, `METRICS`, of named measures of how a row answered a task's
query examples. Every registered metric is computed for every row, setting, control and fit of results.json, checked
by its reader and shown in results.md, under its name.

A metric's function reads `Predictions`, a batch of tasks' answers: the probabilities a row states for each answer
(`probs`) and the answer it gives (`given`, as the probability with which each answer is the one given), and returns
one value per task. A model (logits) states the softmax of its logits and gives its top answer. The rows without
logits give a constant prediction per task (`eval.scoring`): `chance` guesses uniformly, stating 1/K for each of
the task's K answers and giving each with probability 1/K (a metric of it is its expected value over the guess:
accuracy 100/K); `majority` gives the support set's most frequent answer and states it with certainty (one-hot
probabilities: a calibration error of 100 - its accuracy, but an infinite negative log-likelihood on any query it
answers wrong, and results.json holds finite numbers only: a metric of probabilities must bound its values).

Adding a metric: its function of `Predictions` and one line, `register_metric(Metric(name, description, fn))`.
`acc` and `bal_acc` are required: every results.json has them, and the report takes its headline (`bal_acc`), its
paired differences and its plots (`acc`) on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from hyperguide.eval.results import PER_TASK, REQUIRED_METRICS, RESERVED_KEYS


@dataclass(frozen=True)
class Predictions:
    """How B tasks answered their query examples (N per task, padded: `mask` (B, N) marks the real ones) among
    their K answers (a task with fewer has probability 0 on the padded ones): `probs` (B, N, K), the probabilities
    stated for each answer; `given` (B, N, K), the probability with which each answer is the one given (one-hot for a
    row that answers, uniform for a guess); `labels` (B, N), the right answers."""

    probs: torch.Tensor
    given: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor

    @property
    def n_answers(self) -> int:
        return int(self.probs.shape[-1])


def from_logits(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> Predictions:
    """The predictions of logits (B, N, K; padded answers -inf): their softmax, and their top answer given (the
    first among ties)."""
    probs = logits.float().softmax(-1)
    given = torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(probs.dtype)
    return Predictions(probs, given, labels, mask)


def hits(p: Predictions) -> torch.Tensor:
    """(B, N) the probability that each query example is answered right; 0 on padding."""
    return p.given.gather(-1, p.labels.unsqueeze(-1)).squeeze(-1) * p.mask


def task_accuracy(p: Predictions) -> torch.Tensor:
    """(B,) % of each task's query examples answered right."""
    return 100.0 * hits(p).sum(1) / p.mask.sum(1).clamp_min(1)


def task_balanced_accuracy(p: Predictions) -> torch.Tensor:
    """(B,) the mean over the answers present in each task's query examples of the % of that answer's examples
    answered right."""
    right = hits(p)
    onehot = torch.nn.functional.one_hot(p.labels, p.n_answers).to(right.dtype) * p.mask.unsqueeze(-1)  # (B, N, K)
    support = onehot.sum(1)  # (B, K) examples per answer
    correct = (onehot * right.unsqueeze(-1)).sum(1)  # (B, K)
    present = support > 0
    recall = torch.where(present, correct / support.clamp_min(1), torch.zeros_like(correct))
    return 100.0 * recall.sum(1) / present.sum(1).clamp_min(1)


@dataclass(frozen=True)
class Metric:
    """A per-task measure: its name (its key in results.json and its column in results.md), what it is (the
    report's legend: say its unit and which way is better) and its function, (B,) values of B tasks' predictions."""

    name: str
    description: str
    fn: Callable[[Predictions], torch.Tensor]


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add a metric (after the others); a name can be registered once."""
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is registered already")
    if not metric.name.isidentifier() or metric.name in RESERVED_KEYS or metric.name.startswith(PER_TASK):
        raise ValueError(f"metric name {metric.name!r} must be an identifier, not 'tasks' nor {PER_TASK}*")
    METRICS[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    """Remove a metric; the required ones (`eval.results.REQUIRED_METRICS`) stay."""
    if name in REQUIRED_METRICS:
        raise ValueError(f"metric {name!r} is required: every results.json has it")
    METRICS.pop(name, None)


def task_metrics(p: Predictions) -> dict[str, torch.Tensor]:
    """(B,) values of every registered metric, by name, in registration order."""
    return {name: metric.fn(p) for name, metric in METRICS.items()}


register_metric(Metric("acc", "accuracy, the % of a task's query examples answered right", task_accuracy))
register_metric(
    Metric(
        "bal_acc",
        "balanced accuracy, the mean over a task's answers of the % of their query examples answered right",
        task_balanced_accuracy,
    )
)
