"""Meta-train / meta-test splits of a universe's tasks.

- `random`: the paper's protocol (docs/design.md §2.1, step 7): shuffle with `random.Random(2021)`, the first
  round(0.7 n) tasks train. A universe that ships its own split (the authors' Meta-VQA files) uses that one.
- `compositional`: every task whose question mentions a held-out concept (a whole word) is a test task.
- `kfold`: K folds over the shuffled tasks; fold i tests on the i-th chunk, so every task is a test task once.
- `concepts`: leave one concept out: fold i tests on every task whose question mentions concept i (the held-out
  concepts, or the universe's `concepts`) and trains on the others, so no meta-train question names it. A fold may
  hold out several concepts at once, joined by `+` (`red+teal`): it tests on the tasks that name any of them.

`tuning_splits` turns a split into folds of its meta-train tasks alone, its meta-test tasks set aside: where settings
are chosen (never on meta-test). A compositional split's folds hold out concepts as the split does
(`concept_tuning_splits`): what is chosen there was chosen for words its meta-train never saw.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

from hyperguide.config import SplitKind
from hyperguide.data.tasks import Universe
from hyperguide.errors import HyperguideError

SPLIT_KINDS: tuple[str, ...] = get_args(SplitKind)
PAPER_SEED = 2021
PAPER_TRAIN_FRACTION = 0.7


@dataclass(frozen=True)
class TaskSplit:
    """Indices into `Universe.tasks`. `fold` is 0 for split kinds with a single fold."""

    kind: str
    fold: int
    train: tuple[int, ...]
    test: tuple[int, ...]


def check_split_kind(kind: str) -> SplitKind:
    if kind not in SPLIT_KINDS:
        raise HyperguideError(f"unknown split kind {kind!r}; choose one of {', '.join(SPLIT_KINDS)}")
    return kind  # type: ignore[return-value]


def mentions(question: str, concept: str) -> bool:
    """Whether `concept` (one or more words) occurs in `question` as whole words, case-insensitively."""
    words = re.findall(r"[a-z0-9']+", question.lower())
    target = re.findall(r"[a-z0-9']+", concept.lower())
    if not target:
        return False
    n = len(target)
    return any(words[i : i + n] == target for i in range(len(words) - n + 1))


def joined(concept: str) -> list[str]:
    """The concepts of `red+teal` (one fold, or one held-out entry, naming several), stripped; '' for an empty one."""
    return [part.strip() for part in concept.split("+")]


def make_splits(
    universe: Universe,
    kind: str = "random",
    *,
    folds: int = 5,
    held_out: Sequence[str] | None = None,
    seed: int = PAPER_SEED,
) -> list[TaskSplit]:
    """All folds of a split kind (one fold for `random` and `compositional`)."""
    kind = check_split_kind(kind)
    n = len(universe.tasks)
    if kind == "random":
        if (universe.meta_train or universe.meta_test) and seed == PAPER_SEED:
            # The universe's own protocol split (the authors' files, or the same shuffle computed at build time).
            return [TaskSplit(kind, 0, tuple(universe.meta_train), tuple(universe.meta_test))]
        order = list(range(n))
        random.Random(seed).shuffle(order)
        cut = round(PAPER_TRAIN_FRACTION * n)
        return [TaskSplit(kind, 0, tuple(order[:cut]), tuple(order[cut:]))]
    if kind == "compositional":
        named = tuple(held_out) if held_out else universe.held_out_concepts
        concepts = tuple(part for c in named for part in joined(c) if part)  # red+teal: both
        if not concepts:
            raise HyperguideError(
                f"split 'compositional' needs held-out concepts; universe {universe.name!r} has no default, "
                "pass them with --held-out"
            )
        test = tuple(i for i, t in enumerate(universe.tasks) if any(mentions(t.question, c) for c in concepts))
        train = tuple(i for i in range(n) if i not in set(test))
        if not test or not train:
            raise HyperguideError(
                f"held-out concepts {list(concepts)} leave {len(train)} train and {len(test)} test tasks "
                f"in universe {universe.name!r}; both sides need at least one task"
            )
        return [TaskSplit(kind, 0, train, test)]
    if kind == "concepts":
        return _concept_folds(universe, tuple(held_out) if held_out else universe.concepts)
    if folds < 2 or folds > n:
        raise HyperguideError(f"kfold needs 2 <= folds <= {n} tasks, got folds={folds}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    bounds = [round(i * n / folds) for i in range(folds + 1)]
    out = []
    for f in range(folds):
        fold_test = order[bounds[f] : bounds[f + 1]]
        test_set = set(fold_test)
        out.append(TaskSplit(kind, f, tuple(i for i in order if i not in test_set), tuple(fold_test)))
    return out


def _concept_folds(universe: Universe, concepts: Sequence[str]) -> list[TaskSplit]:
    if not concepts:
        raise HyperguideError(
            f"split 'concepts' needs concepts; universe {universe.name!r} lists none: pass them with --held-out"
        )
    out = []
    for f, concept in enumerate(concepts):
        parts = joined(concept)
        if not all(parts):
            raise HyperguideError(f"held-out fold {concept!r}: concepts joined by '+' must be non-empty")
        test = tuple(i for i, t in enumerate(universe.tasks) if any(mentions(t.question, p) for p in parts))
        train = tuple(i for i in range(len(universe.tasks)) if i not in set(test))
        if not test or not train:
            raise HyperguideError(
                f"held-out concept {concept!r} leaves {len(train)} train and {len(test)} test tasks in universe "
                f"{universe.name!r}; both sides need at least one task"
            )
        out.append(TaskSplit("concepts", f, train, test))
    return out


def concept_tuning_splits(universe: Universe, split: TaskSplit, folds: int, held_out: Sequence[str]) -> list[TaskSplit]:
    """K folds over a compositional split's meta-train tasks that hold out concepts as the split does: the universe's
    concepts other than `held_out`, dealt round-robin into K groups. A task is tested once, in the first fold whose
    group it names (a task that names none always trains); fold f trains on the tasks that name no concept of its
    group, so no question it trains on names one (a task of a later fold that also names one sits that fold out)."""
    left = [c for c in universe.concepts if not any(mentions(c, h) for h in held_out)]
    if folds < 2 or folds > len(left):
        raise HyperguideError(
            f"tuning folds of split 'compositional' hold out concepts: 2 <= folds <= {len(left)} (the concepts of "
            f"universe {universe.name!r} that are not held out: {', '.join(left) or 'none'}), got {folds}"
        )
    groups = [left[f::folds] for f in range(folds)]

    def names(i: int, group: Sequence[str]) -> bool:
        return any(mentions(universe.tasks[i].question, c) for c in group)

    first = {i: next((f for f, g in enumerate(groups) if names(i, g)), None) for i in split.train}
    out = []
    for f, group in enumerate(groups):
        test = tuple(i for i in split.train if first[i] == f)
        train = tuple(i for i in split.train if not names(i, group))
        if not test or not train:
            raise HyperguideError(
                f"tuning fold {f} (holding out {', '.join(group)}) leaves {len(train)} train and {len(test)} test "
                "tasks; both sides need at least one: use fewer tune_folds"
            )
        out.append(TaskSplit(f"{split.kind}-tuning", f, train, test))
    return out


def tuning_splits(split: TaskSplit, folds: int, seed: int = PAPER_SEED) -> list[TaskSplit]:
    """K folds over `split`'s meta-train tasks, each held out once as the "test" tasks of its fold; the split's
    meta-test tasks are in no fold. Settings chosen on these folds never saw a meta-test task."""
    n = len(split.train)
    if folds < 2 or folds > n:
        raise HyperguideError(f"tuning folds need 2 <= folds <= {n} meta-train tasks, got {folds}")
    order = list(split.train)
    random.Random(seed).shuffle(order)
    bounds = [round(i * n / folds) for i in range(folds + 1)]
    out = []
    for f in range(folds):
        held = set(order[bounds[f] : bounds[f + 1]])
        out.append(TaskSplit(f"{split.kind}-tuning", f, tuple(i for i in split.train if i not in held),
                             tuple(i for i in order[bounds[f] : bounds[f + 1]])))  # fmt: skip
    return out
