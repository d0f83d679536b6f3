"""A batch of tasks padded to common sizes, with masks, so that many tasks run as one computation.

Tasks differ in their numbers of support examples, query examples and answers: each is padded to the batch's largest,
and masks mark what is real. Padded answers get -inf logits; padded examples carry no loss and no accuracy.

Questions travel twice: pooled (`question_emb`, (B, Dq)) and as token states (`question_tokens`, (B, L, Dq), with
`question_token_mask`). Every batch has tokens: a task without token states contributes one token, its
`question_emb`, so that token-level code never has to branch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch

from hyperguide.data.tasks import Task


@dataclass
class TaskBatch:
    """B tasks. Shapes: support (B, Ns, D), query (B, Nq, D), answers (B, K, D), questions (B, Dq).

    `question_tokens` (B, L, Dq) is zero where `question_token_mask` (B, L) is False; each mask row is a non-empty
    prefix. Both may be left out when constructing a batch directly: they then default to one token per task, the
    pooled `question_emb` (the same fallback `collate` uses for tasks without token states).
    """

    question_emb: torch.Tensor  # (B, Dq)
    answer_emb: torch.Tensor  # (B, K, D)
    answer_mask: torch.Tensor  # (B, K) bool
    support_x: torch.Tensor  # (B, Ns, D)
    support_y: torch.Tensor  # (B, Ns) int64, 0 where padded
    support_mask: torch.Tensor  # (B, Ns) bool
    query_x: torch.Tensor  # (B, Nq, D)
    query_y: torch.Tensor  # (B, Nq)
    query_mask: torch.Tensor  # (B, Nq) bool
    question_tokens: torch.Tensor = None  # type: ignore[assignment]  # (B, L, Dq); None -> question_emb[:, None]
    question_token_mask: torch.Tensor = None  # type: ignore[assignment]  # (B, L) bool

    def __post_init__(self) -> None:
        if (self.question_tokens is None) != (self.question_token_mask is None):
            raise ValueError("give both question_tokens and question_token_mask, or neither")
        if self.question_tokens is None:
            self.question_tokens = self.question_emb.unsqueeze(1)
            self.question_token_mask = torch.ones(
                self.question_emb.shape[0], 1, dtype=torch.bool, device=self.question_emb.device
            )

    def __len__(self) -> int:
        return int(self.question_emb.shape[0])

    def lengths(self, which: str, max_waste: float = 0.25) -> list[int] | None:
        """Real examples per task of the `support` or `query` set when padding would waste more than `max_waste` of
        a batched computation (each mask is a prefix), else None: the hint for the adapter's ragged path."""
        mask = self.support_mask if which == "support" else self.query_mask
        counts = mask.sum(1)
        padded = mask.shape[0] * mask.shape[1]
        if padded == 0 or float(counts.sum()) >= (1 - max_waste) * padded:
            return None
        return [int(c) for c in counts]

    @property
    def questions(self) -> Questions:
        return Questions(self.question_emb, self.question_tokens, self.question_token_mask)

    def to(self, device: torch.device | str) -> TaskBatch:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def swapped(self) -> TaskBatch:
        """Support and query exchanged (the reference code's meta-training default, docs/design.md §8.5)."""
        return replace(
            self,
            support_x=self.query_x,
            support_y=self.query_y,
            support_mask=self.query_mask,
            query_x=self.support_x,
            query_y=self.support_y,
            query_mask=self.support_mask,
        )

    def merged(self) -> TaskBatch:
        """Support := support + query (all of a task's data, packed to a prefix), query unchanged: for multitask."""
        xs, ys = [], []
        for b in range(len(self)):
            s, q = self.support_mask[b], self.query_mask[b]
            xs.append(torch.cat([self.support_x[b, s], self.query_x[b, q]]))
            ys.append(torch.cat([self.support_y[b, s], self.query_y[b, q]]))
        x, mask = _pad(xs)
        y, _ = _pad(ys)
        return replace(self, support_x=x, support_y=y, support_mask=mask)


@dataclass
class Questions:
    """N questions as a model sees them: pooled embeddings (N, Dq), token states (N, L, Dq) and their mask (N, L)."""

    emb: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.emb.shape[0])

    def __getitem__(self, index: torch.Tensor | slice) -> Questions:
        return Questions(self.emb[index], self.tokens[index], self.mask[index])

    def to(self, device: torch.device | str) -> Questions:
        return Questions(self.emb.to(device), self.tokens.to(device), self.mask.to(device))

    @classmethod
    def of(cls, tasks: Sequence[Task]) -> Questions:
        tokens, mask = _pad([_tokens(t) for t in tasks])
        return cls(torch.stack([t.question_emb for t in tasks]), tokens, mask)


def _pad(rows: Sequence[torch.Tensor], fill: float | int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack tensors of shape (n_i, *rest) into (B, max n, *rest) and a (B, max n) mask."""
    n = max((r.shape[0] for r in rows), default=0)
    out = rows[0].new_full((len(rows), n, *rows[0].shape[1:]), fill)
    mask = torch.zeros(len(rows), n, dtype=torch.bool)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
        mask[i, : r.shape[0]] = True
    return out, mask


def collate(tasks: Sequence[Task]) -> TaskBatch:
    """Pad and stack tasks into one batch."""
    if not tasks:
        raise ValueError("cannot collate an empty list of tasks")
    answer_emb, answer_mask = _pad([t.answer_emb for t in tasks])
    support_x, support_mask = _pad([t.support_x for t in tasks])
    support_y, _ = _pad([t.support_y for t in tasks])
    query_x, query_mask = _pad([t.query_x for t in tasks])
    query_y, _ = _pad([t.query_y for t in tasks])
    question_tokens, question_token_mask = _pad([_tokens(t) for t in tasks])
    return TaskBatch(
        question_emb=torch.stack([t.question_emb for t in tasks]),
        answer_emb=answer_emb,
        answer_mask=answer_mask,
        support_x=support_x,
        support_y=support_y,
        support_mask=support_mask,
        query_x=query_x,
        query_y=query_y,
        query_mask=query_mask,
        question_tokens=question_tokens,
        question_token_mask=question_token_mask,
    )


def _tokens(task: Task) -> torch.Tensor:
    """A task's (L, Dq) question token states; without any, its pooled embedding as the one token."""
    return task.question_emb.unsqueeze(0) if task.question_tokens is None else task.question_tokens
