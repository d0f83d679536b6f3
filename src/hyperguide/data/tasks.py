"""The task model: a question with its answers, answer prompts, support and query sets (docs/design.md §2.2).

`TaskSpec` is the structure alone (ids and labels, no features): enough for statistics and splits.
`Task` is a task with its features attached, ready for a learner.
`Universe` is a named list of task structures plus the protocol's own meta-train / meta-test split.

Questions come as one pooled embedding (`Task.question_emb`, always) and, when the universe has them, as the token
states it was pooled from (`Task.question_tokens`, (L, Dq), real tokens only); see `hyperguide.data.tokens`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from hyperguide.data.features import FeatureTable
from hyperguide.data.tokens import TokenTable
from hyperguide.errors import HyperguideError


@dataclass(frozen=True)
class TaskSpec:
    """One task's structure. Labels index `answers`; `prompts[i]` is the text answer i is scored against."""

    question: str
    answers: tuple[str, ...]
    prompts: tuple[str, ...]
    support_images: tuple[str, ...]
    support_labels: tuple[int, ...]
    query_images: tuple[str, ...]
    query_labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.answers) != len(self.prompts):
            raise HyperguideError(
                f"task {self.question!r}: {len(self.answers)} answers but {len(self.prompts)} answer prompts"
            )
        if len(self.support_images) != len(self.support_labels) or len(self.query_images) != len(self.query_labels):
            raise HyperguideError(f"task {self.question!r}: image ids and labels differ in length")
        k = len(self.answers)
        for y in (*self.support_labels, *self.query_labels):
            if not 0 <= y < k:
                raise HyperguideError(f"task {self.question!r}: label {y} out of range for {k} answers")

    @property
    def n_answers(self) -> int:
        return len(self.answers)

    @property
    def n_pairs(self) -> int:
        return len(self.support_images) + len(self.query_images)


@dataclass
class Task:
    """A task with frozen features attached. Shapes: D image/answer feature dim, Dq question embedding dim.

    `question_tokens` is optional: the (L, Dq) token states of the question (real tokens only, no padding), or None
    when the universe has none; a batch then stands `question_emb` in as the question's single token.
    """

    question: str
    answers: tuple[str, ...]
    question_emb: torch.Tensor  # (Dq,)
    answer_emb: torch.Tensor  # (K, D)
    support_x: torch.Tensor  # (Ns, D)
    support_y: torch.Tensor  # (Ns,) int64
    query_x: torch.Tensor  # (Nq, D)
    query_y: torch.Tensor  # (Nq,) int64
    question_tokens: torch.Tensor | None = None  # (L, Dq)

    def __post_init__(self) -> None:
        tokens, dq = self.question_tokens, int(self.question_emb.shape[-1])
        if tokens is not None and (tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] != dq):
            raise HyperguideError(
                f"task {self.question!r}: question tokens must be (L >= 1, {dq}), got {tuple(tokens.shape)}"
            )

    @property
    def n_answers(self) -> int:
        return len(self.answers)

    def select(self, support: torch.Tensor, query: torch.Tensor) -> Task:
        """The same task with only the chosen support and query examples (index or boolean tensors)."""
        return replace(
            self,
            support_x=self.support_x[support],
            support_y=self.support_y[support],
            query_x=self.query_x[query],
            query_y=self.query_y[query],
        )


@dataclass
class Universe:
    """A named list of tasks with the protocol's default meta-train / meta-test split.

    `image_features` and `text_features` are None when only the structure was loaded (enough for `stats`).
    `text_features` holds the question embeddings and the answer prompt embeddings, keyed by their text.
    `question_tokens`, when present, holds each question's token states; `task(i)` then attaches them.
    """

    name: str
    tasks: list[TaskSpec]
    meta_train: tuple[int, ...]
    meta_test: tuple[int, ...]
    held_out_concepts: tuple[str, ...] = ()
    concepts: tuple[str, ...] = ()  # every concept its questions name: the folds of the `concepts` split
    image_features: FeatureTable | None = None
    text_features: FeatureTable | None = None
    info: dict[str, object] = field(default_factory=dict)
    question_tokens: TokenTable | None = None
    # Question embeddings and image features live in one space (easyvqa's tower was trained into MiniLM's; CLIP
    # aligns both), so a question's embedding points at its concept among the images: what the -pointer rows need.
    shared_space: bool = False
    _fingerprint: tuple[tuple[object, ...], str] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def has_features(self) -> bool:
        return self.image_features is not None and self.text_features is not None

    def task(self, index: int) -> Task:
        """The task at `index` with its features attached."""
        if self.image_features is None or self.text_features is None:
            raise HyperguideError(
                f"universe {self.name!r} was loaded without features; run `hyperguide prepare {self.name}` first"
            )
        spec = self.tasks[index]
        texts = self.text_features
        images = self.image_features
        return Task(
            question=spec.question,
            answers=spec.answers,
            question_emb=texts.get([spec.question])[0],
            answer_emb=texts.get(list(spec.prompts)),
            support_x=images.get(list(spec.support_images)),
            support_y=torch.tensor(spec.support_labels, dtype=torch.long),
            query_x=images.get(list(spec.query_images)),
            query_y=torch.tensor(spec.query_labels, dtype=torch.long),
            question_tokens=None if self.question_tokens is None else self.question_tokens.get(spec.question),
        )

    def materialize(self, indices: Sequence[int]) -> list[Task]:
        return [self.task(i) for i in indices]

    def fingerprint(self) -> str:
        """A sha256 of everything a run trains on: the tasks' structure, the protocol split and every feature (text,
        image, question tokens). Checkpoints record it, so that weights trained on other data (a universe prepared
        again with other settings, another `--seed`) are never taken for this data's. Remembered while the tables
        are the same objects."""
        key = (self.text_features, self.image_features, self.question_tokens, self.tasks, *self.tasks)
        if self._fingerprint is None or not _same(self._fingerprint[0], key):
            digest = hashlib.sha256()
            structure = [self.name, [dataclasses.astuple(t) for t in self.tasks], self.meta_train, self.meta_test]
            digest.update(json.dumps(structure).encode())
            for table in (self.text_features, self.image_features):
                if table is not None:
                    digest.update(json.dumps(table.keys).encode())
                    digest.update(_tensor_bytes(table.values))
            if self.question_tokens is not None:
                digest.update(json.dumps(self.question_tokens.keys).encode())
                digest.update(_tensor_bytes(self.question_tokens.tokens))
                digest.update(_tensor_bytes(self.question_tokens.offsets))
            self._fingerprint = (key, digest.hexdigest())
        return self._fingerprint[1]


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    return tensor.detach().cpu().contiguous().numpy().data.cast("B")


def agreement(specs: Sequence[TaskSpec]) -> torch.Tensor:
    """(N, N) bool: whether tasks i and j answer alike: they share at least one image and give the same answer (as
    text) on every image they share; a task agrees with itself. Paraphrases of a question agree ("is there a red
    shape?", "is a red shape present?"), and so does a question with a narrower one ("what color is the shape?",
    "what color is the circle?"); a question and its negation do not. Fit diagnostics count an agreeing task's
    question or latent as the task's own, since no model can tell such tasks apart from their data."""
    n = len(specs)
    answers: dict[str, list[tuple[int, str]]] = {}
    for i, spec in enumerate(specs):
        pairs = zip((*spec.support_images, *spec.query_images), (*spec.support_labels, *spec.query_labels), strict=True)
        for image, label in dict(pairs).items():
            answers.setdefault(image, []).append((i, spec.answers[label]))
    shared = torch.zeros(n, n, dtype=torch.bool)
    differ = torch.zeros(n, n, dtype=torch.bool)
    for seen in answers.values():
        idx = torch.tensor([i for i, _ in seen])
        text = [a for _, a in seen]
        same = torch.tensor([[a == b for b in text] for a in text])
        shared[idx[:, None], idx[None, :]] = True
        differ[idx[:, None], idx[None, :]] |= ~same
    return (shared & ~differ) | torch.eye(n, dtype=torch.bool)
