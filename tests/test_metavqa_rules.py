"""Property tests of the Meta-VQA construction rules (docs/design.md §2.1) on random question/answer records."""

from __future__ import annotations

from collections import Counter

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hyperguide.data.metavqa_rules import build_meta_vqa, split_meta_train_test

records = st.lists(
    st.tuples(
        st.sampled_from(["what color is it?", "how many dogs?", "is it red or blue?", "what sport is this?"]),
        st.integers(0, 45).map(lambda i: f"img{i}"),
        st.sampled_from(["red", "blue", "green", "2", "3", "tennis"]),
    ),
    min_size=120,
    max_size=400,
)


@settings(max_examples=40, deadline=None)
@given(records)
def test_every_built_task_obeys_the_rules(recs: list[tuple[str, str, str]]) -> None:
    first: dict[tuple[str, str], str] = {}
    for q, image, a in recs:
        first.setdefault((q, image), a)
    tasks = build_meta_vqa(recs)
    assume(tasks)  # the rules reject everything in some draws; those prove nothing
    for question, task in tasks.items():
        assert "or" not in question.split()
        examples = task["train"] + task["test"]
        counts = Counter(a for _, a in examples)
        assert len(counts) >= 2 and all(c >= 2 for c in counts.values())
        assert len(examples) > 20
        assert list(counts) == task["answers"]  # label order: first appearance
        for image, answer in examples:
            assert first[(question, image)] == answer  # the first record of an image wins
        for answer, n in counts.items():
            assert sum(a == answer for _, a in task["train"]) == round(0.7 * n)
        assert len({i for i, _ in examples}) == len(examples)  # an image once per task
    train, test = split_meta_train_test(list(tasks))
    assert sorted(train + test) == sorted(tasks) and len(train) == round(0.7 * len(tasks))
