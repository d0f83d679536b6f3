from __future__ import annotations

import random

import pytest

from hyperguide.data.splits import make_splits, mentions
from hyperguide.data.stats import majority_accuracy, universe_stats
from hyperguide.data.synthetic import synthetic_universe
from hyperguide.data.tasks import TaskSpec, Universe
from hyperguide.errors import HyperguideError


def _task(question: str, support: list[int], query: list[int], k: int = 2) -> TaskSpec:
    answers = tuple(f"a{i}" for i in range(k))
    return TaskSpec(
        question=question,
        answers=answers,
        prompts=answers,
        support_images=tuple(f"s{question}{i}" for i in range(len(support))),
        support_labels=tuple(support),
        query_images=tuple(f"q{question}{i}" for i in range(len(query))),
        query_labels=tuple(query),
    )


def _universe(n: int) -> Universe:
    tasks = [
        _task(f"is there a red shape number {i}?" if i % 3 == 0 else f"what is shape {i}?", [0, 1], [1])
        for i in range(n)
    ]
    return Universe(name="toy", tasks=tasks, meta_train=(), meta_test=(), held_out_concepts=("red",))


def test_random_split_is_the_paper_protocol() -> None:
    u = _universe(1243)
    (split,) = make_splits(u, "random")
    order = list(range(1243))
    random.Random(2021).shuffle(order)
    assert split.train == tuple(order[:870]) and split.test == tuple(order[870:])


def test_random_split_uses_a_shipped_split() -> None:
    u = _universe(10)
    u.meta_train, u.meta_test = (0, 1, 2), (3,)
    (split,) = make_splits(u, "random")
    assert split.train == (0, 1, 2) and split.test == (3,)


def test_compositional_split_holds_out_every_mention() -> None:
    u = _universe(30)
    (split,) = make_splits(u, "compositional")
    assert set(split.test) == {i for i in range(30) if i % 3 == 0}
    assert set(split.train) | set(split.test) == set(range(30)) and not set(split.train) & set(split.test)
    assert mentions("Is there a RED shape?", "red") and not mentions("is it reddish?", "red")
    assert mentions("what is the teal circle?", "teal circle")
    with pytest.raises(HyperguideError, match="both sides"):
        make_splits(u, "compositional", held_out=["purple"])


def test_kfold_tests_every_task_exactly_once() -> None:
    u = _universe(23)
    splits = make_splits(u, "kfold", folds=5)
    assert len(splits) == 5
    tested = [i for s in splits for i in s.test]
    assert sorted(tested) == list(range(23))
    for s in splits:
        assert set(s.train) | set(s.test) == set(range(23)) and not set(s.train) & set(s.test)
        assert len(s.test) in (4, 5)


def test_unknown_split_kind_names_the_choices() -> None:
    with pytest.raises(HyperguideError, match="unknown split kind 'iid'.*random, compositional, kfold"):
        make_splits(_universe(5), "iid")


def test_majority_and_chance_statistics() -> None:
    t = _task("q", support=[1, 1, 0], query=[1, 0, 1, 1], k=3)
    assert majority_accuracy(t) == 75.0
    u = Universe(name="toy", tasks=[t, _task("r", [0], [1, 1])], meta_train=(0,), meta_test=(1,))
    stats = universe_stats(u, make_splits(u, "random"))
    assert stats["meta_train_tasks"] == 1 and stats["meta_test_tasks"] == 1
    assert stats["pairs"] == 7 + 3
    assert stats["mean_answers"] == 2.5
    assert stats["chance_acc_meta_test"] == 50.0
    assert stats["majority_acc_meta_test"] == 0.0


def test_synthetic_universe_is_deterministic_and_consistent() -> None:
    a, b = synthetic_universe(seed=3), synthetic_universe(seed=3)
    assert [t.question for t in a.tasks] == [t.question for t in b.tasks]
    ta, tb = a.task(5), b.task(5)
    assert ta.support_x.equal(tb.support_x) and ta.question_emb.equal(tb.question_emb)
    assert ta.answer_emb.shape == (ta.n_answers, ta.support_x.shape[1])
    assert not synthetic_universe(seed=4).task(5).support_x.equal(ta.support_x)


def test_tuning_folds_hold_out_meta_train_tasks_only() -> None:
    from hyperguide.data.splits import tuning_splits

    universe = synthetic_universe()
    (split,) = make_splits(universe, "random")
    folds = tuning_splits(split, 3)
    tested = [i for f in folds for i in f.test]
    assert sorted(tested) == sorted(split.train)  # every meta-train task is tested once
    for f in folds:
        assert not set(f.train) & set(f.test) and set(f.train) | set(f.test) == set(split.train)
        assert not (set(f.train) | set(f.test)) & set(split.test)  # the meta-test tasks are in no fold
    with pytest.raises(HyperguideError, match="tuning folds"):
        tuning_splits(split, 1)


def test_a_compositional_splits_tuning_folds_hold_out_concepts_as_the_split_does() -> None:
    from hyperguide.data.splits import concept_tuning_splits, mentions
    from hyperguide.data.synthetic import concepts_universe

    universe = concepts_universe()
    held_out = universe.held_out_concepts
    (split,) = make_splits(universe, "compositional")
    folds = concept_tuning_splits(universe, split, 3, held_out)
    left = [c for c in universe.concepts if c not in held_out]
    assert len(left) == 6
    tested = [i for fold in folds for i in fold.test]
    assert len(tested) == len(set(tested))  # every task is tested once at most
    for f, fold in enumerate(folds):
        group = left[f::3]
        assert not set(fold.train) & set(fold.test) and set(fold.train) | set(fold.test) <= set(split.train)
        questions = [universe.tasks[i].question for i in fold.train]
        assert not any(mentions(q, c) for q in questions for c in group)  # no tuning-train question names them
        assert all(any(mentions(universe.tasks[i].question, c) for c in group) for i in fold.test)
        # a task that names none of the group trains
        assert all(
            i in fold.train for i in split.train if not any(mentions(universe.tasks[i].question, c) for c in group)
        )
    assert sorted(tested) == sorted(
        i for i in split.train if any(mentions(universe.tasks[i].question, c) for c in left)
    )
    # two concepts in one question (as easyvqa's "is there a green circle?"): tested in the first fold that names one
    from dataclasses import replace

    both = replace(universe.tasks[split.train[0]], question="is concept 0 present with concept 1 (variant 9)?")
    twice = replace(universe, tasks=[*universe.tasks, both])
    (split2,) = make_splits(twice, "compositional")
    folds2 = concept_tuning_splits(twice, split2, 3, held_out)
    new = len(twice.tasks) - 1
    assert new in folds2[0].test and new not in folds2[1].test and new not in folds2[1].train  # it sits fold 1 out
    with pytest.raises(HyperguideError, match="2 <= folds <= 6"):
        concept_tuning_splits(universe, split, 7, held_out)
