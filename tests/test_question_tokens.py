"""Token-level question features: storage, batching with padding and masks, the load-time fallback, and the
attention-pooling `QuestionEncoder`."""

from __future__ import annotations

import shutil
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch

from hyperguide.data.batch import TaskBatch, collate
from hyperguide.data.synthetic import synthetic_universe
from hyperguide.data.tasks import Task
from hyperguide.data.tokens import QUESTION_TOKENS_FILE, TokenTable, cached_question_tokens
from hyperguide.errors import HyperguideError
from hyperguide.models.question import QuestionEncoder
from tests.helpers import write_fixture

DQ = 16


def make_task(tokens: torch.Tensor | None, question_emb: torch.Tensor | None = None, n: int = 3) -> Task:
    g = torch.Generator().manual_seed(n)
    emb = tokens.mean(0) if question_emb is None and tokens is not None else question_emb
    return Task(
        question=f"q{n}",
        answers=("a", "b"),
        question_emb=emb if emb is not None else torch.randn(DQ, generator=g),
        answer_emb=torch.randn(2, 8, generator=g),
        support_x=torch.randn(n, 8, generator=g),
        support_y=torch.zeros(n, dtype=torch.long),
        query_x=torch.randn(n, 8, generator=g),
        query_y=torch.ones(n, dtype=torch.long),
        question_tokens=tokens,
    )


def trained_attention(seed: int = 0) -> QuestionEncoder:
    """An attention encoder with a non-zero projection (as after training), so that the tokens matter."""
    torch.manual_seed(seed)
    enc = QuestionEncoder(DQ, "attention", heads=4)
    with torch.no_grad():
        enc.proj.weight.normal_(0, 0.1)
        enc.norm.weight.normal_(1, 0.2)
        enc.norm.bias.normal_(0, 0.2)
    return enc


# ------------------------------------------------------------------------------------------------ data side


def test_collate_pads_tokens_and_masks() -> None:
    short, long = torch.randn(2, DQ), torch.randn(5, DQ)
    tasks = [make_task(short, n=2), make_task(long, n=4), make_task(None, n=3)]
    batch = collate(tasks)
    assert batch.question_tokens.shape == (3, 5, DQ) and batch.question_token_mask.dtype == torch.bool
    assert batch.question_token_mask.tolist() == [[True] * 2 + [False] * 3, [True] * 5, [True] + [False] * 4]
    assert batch.question_tokens[0, :2].equal(short) and batch.question_tokens[0, 2:].eq(0).all()
    assert batch.question_tokens[1].equal(long)
    assert batch.question_tokens[2, 0].equal(tasks[2].question_emb)  # no tokens: the pooled embedding is the token
    # swapped / merged leave the question alone; `to` moves the tokens too.
    for other in (batch.swapped(), batch.merged(), batch.to("cpu")):
        assert other.question_tokens.equal(batch.question_tokens)
        assert other.question_token_mask.equal(batch.question_token_mask)


def test_batch_without_tokens_falls_back_to_one_token() -> None:
    batch = collate([make_task(None, n=2), make_task(None, n=3)])
    assert batch.question_tokens.shape == (2, 1, DQ) and batch.question_token_mask.all()
    given = {f.name: getattr(batch, f.name) for f in fields(batch) if not f.name.startswith("question_token")}
    direct = TaskBatch(**given)  # constructed without tokens, as code written before them does
    assert direct.question_tokens.equal(batch.question_emb[:, None]) and direct.question_token_mask.all()
    with pytest.raises(ValueError, match="both"):
        replace(direct, question_token_mask=None)


def test_task_rejects_tokens_of_another_dimension() -> None:
    with pytest.raises(HyperguideError, match="question tokens"):
        make_task(torch.randn(3, DQ + 1), question_emb=torch.randn(DQ))
    assert make_task(torch.randn(3, DQ)).select(torch.tensor([0]), torch.tensor([1])).question_tokens.shape == (3, DQ)


def test_token_table_round_trip(tmp_path: Path) -> None:
    rows = [torch.randn(3, DQ), torch.randn(1, DQ), torch.randn(6, DQ)]
    table = TokenTable.from_rows(["a?", "b?", "c?"], rows)
    table.save(tmp_path / QUESTION_TOKENS_FILE, encoder="x")
    loaded = TokenTable.load(tmp_path / QUESTION_TOKENS_FILE, dim=DQ)
    assert loaded.keys == ["a?", "b?", "c?"] and loaded.offsets.tolist() == [0, 3, 4, 10]
    for key, row in zip(["a?", "b?", "c?"], rows, strict=True):
        assert loaded.get(key).equal(row)
    with pytest.raises(HyperguideError, match="dimension"):
        TokenTable.load(tmp_path / QUESTION_TOKENS_FILE, dim=DQ + 1)
    with pytest.raises(HyperguideError, match="no tokens"):
        loaded.get("d?")


def test_cached_question_tokens_computes_once_and_recomputes_stale(tmp_path: Path) -> None:
    path, calls = tmp_path / QUESTION_TOKENS_FILE, []

    def compute(questions: list[str]) -> list[torch.Tensor]:
        calls.append(list(questions))
        return [torch.full((len(q), 4), float(i)) for i, q in enumerate(questions)]

    first = cached_question_tokens(path, ["ab?", "c?"], compute, encoder="e1", dim=4)
    again = cached_question_tokens(path, ["c?"], compute, encoder="e1", dim=4)
    assert len(calls) == 1 and again.get("c?").equal(first.get("c?")) and first.get("ab?").shape == (3, 4)
    cached_question_tokens(path, ["c?", "new?"], compute, encoder="e1", dim=4)  # a question it lacks
    cached_question_tokens(path, ["c?"], compute, encoder="e2", dim=4)  # another encoder
    path.write_bytes(b"not safetensors")
    cached_question_tokens(path, ["c?"], compute, encoder="e2", dim=4)  # unreadable
    assert len(calls) == 4


def test_synthetic_tasks_have_tokens_with_the_pooled_embedding_as_mean() -> None:
    universe = synthetic_universe(seed=0)
    assert universe.question_tokens is not None and len(universe.question_tokens) == len(universe.tasks)
    lengths = set()
    for i in range(len(universe)):
        task = universe.task(i)
        assert task.question_tokens is not None and task.question_tokens.shape[1] == task.question_emb.shape[0]
        torch.testing.assert_close(task.question_tokens.mean(0), task.question_emb, atol=1e-6, rtol=0)
        assert universe.text_features is not None and task.question_emb.equal(
            universe.text_features.get([task.question])[0]
        )
        lengths.add(task.question_tokens.shape[0])
    assert lengths == {4, 5, 6, 7}
    again = synthetic_universe(seed=0).task(3).question_tokens
    assert again is not None and again.equal(universe.task(3).question_tokens)  # deterministic
    # The pooled embedding of task 0 is the one the generator always gave (pinned before tokens existed).
    assert round(float(universe.task(0).question_emb.sum()), 4) == round(float(_pinned_question_emb_sum()), 4)


def _pinned_question_emb_sum() -> float:
    """Replays the synthetic generator up to task 0's question embedding, independently of `synthetic_universe`."""
    g = torch.Generator().manual_seed(0)
    n_attr, n_val, dim, n_images = 4, 4, 16, 400
    torch.randn(n_attr, n_val, dim, generator=g)
    torch.randn(dim, dim, generator=g)
    codes = torch.randn(n_attr, dim, generator=g)
    torch.randint(0, n_val, (n_images, n_attr), generator=g)
    torch.randn(n_images, dim, generator=g)
    torch.randperm(n_val, generator=g)
    torch.randperm(n_images, generator=g)
    return float((codes[0] + 0.1 * torch.randn(dim, generator=g)).sum())


# ------------------------------------------------------------------------------------------------ the module


def test_pooled_mode_is_the_identity_without_parameters() -> None:
    enc = QuestionEncoder(DQ, "pooled")
    batch = collate([make_task(torch.randn(3, DQ), n=2), make_task(None, n=3)])
    assert not list(enc.parameters())
    assert enc.encode_batch(batch) is batch.question_emb


def test_attention_equals_pooled_at_init() -> None:
    torch.manual_seed(0)
    enc = QuestionEncoder(DQ, "attention", heads=4)
    batch = collate([make_task(torch.randn(3, DQ), n=2), make_task(torch.randn(7, DQ), n=3), make_task(None, n=4)])
    assert enc.encode_batch(batch).equal(batch.question_emb)
    out = enc.encode_batch(batch)
    out.sum().backward()  # the zero projection gets a gradient, so training moves it
    assert enc.proj.weight.grad is not None and enc.proj.weight.grad.abs().sum() > 0


def test_padding_does_not_change_a_tasks_output() -> None:
    enc = trained_attention()
    task, longer = make_task(torch.randn(3, DQ), n=2), make_task(torch.randn(9, DQ), n=5)
    alone = enc.encode_batch(collate([task]))
    together = enc.encode_batch(collate([task, longer]))
    assert collate([task, longer]).question_tokens.shape[1] == 9
    torch.testing.assert_close(together[:1], alone, atol=1e-6, rtol=1e-6)
    weights = enc.attention(*[getattr(collate([task, longer]), k) for k in ("question_tokens", "question_token_mask")])
    assert weights[0, :, 3:].eq(0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4))


def test_attention_sees_what_the_mean_hides() -> None:
    """Two token sets with the same mean (hence the same pooled embedding): the attention output tells them apart."""
    enc = trained_attention()
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, DQ, generator=g)
    permuted = a[[2, 0, 3, 1]]  # same tokens, another order: same mean
    b = torch.randn(4, DQ, generator=g)
    other = b - b.mean(0) + a.mean(0)  # other tokens, same mean
    emb = a.mean(0)
    tasks = [make_task(t, question_emb=emb, n=2) for t in (a, permuted, other)]
    out = enc.encode_batch(collate(tasks))
    assert not torch.allclose(out[0], out[2], atol=1e-4)  # content matters
    # Attention pooling without positions is order-invariant; the order of a question reaches it through the
    # encoder's contextual token states, which differ between "is there a red shape?" and "is there not ...".
    torch.testing.assert_close(out[0], out[1], atol=1e-5, rtol=1e-5)
    pooled = QuestionEncoder(DQ, "pooled").encode_batch(collate(tasks))
    assert pooled[0].equal(pooled[2])


def test_attention_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown question mode"):
        QuestionEncoder(DQ, "mean")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ real encoder


@pytest.fixture(scope="module")
def text_encoder():
    from hyperguide.encoders.text import TextEncoder

    return TextEncoder()


def test_real_encoder_tokens_pool_to_the_embedding_and_tell_negation_apart(text_encoder) -> None:
    questions = ["is there a red shape?", "is there not a red shape?"]
    rows = text_encoder.question_tokens(questions)
    emb = text_encoder.encode(questions)
    assert rows[0].shape[0] + 1 == rows[1].shape[0] and rows[0].shape[1] == 384  # "not" is one more token
    for r, e in zip(rows, emb, strict=True):
        torch.testing.assert_close(torch.nn.functional.normalize(r.mean(0), dim=0), e, atol=1e-5, rtol=0)
    assert float(emb[0] @ emb[1]) > 0.9  # the pooled vectors barely differ ...
    # The words the questions share ([CLS] is there | a red shape ? [SEP]) get different contextual states.
    same_words_a = torch.cat([rows[0][:3], rows[0][3:]])
    same_words_b = torch.cat([rows[1][:3], rows[1][4:]])  # skip "not"
    assert (same_words_a - same_words_b).norm() > 0.1 * same_words_a.norm()


def test_load_time_fallback_computes_and_caches_easyvqa_tokens(
    isolated_home: Path, text_encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder prepared before token features existed: loading computes the tokens once and caches them."""
    from hyperguide import universes
    from hyperguide.data.easyvqa import easyvqa_structure
    from hyperguide.data.features import FeatureTable
    from hyperguide.encoders import text as text_module
    from hyperguide.io import write_json

    folder = isolated_home / "easyvqa"
    structure = easyvqa_structure()
    texts = list(dict.fromkeys(t for s in structure.tasks for t in (s.question, *s.prompts)))
    FeatureTable(texts, text_encoder.encode(texts)).save(folder / "text_features.safetensors")
    image_keys = sorted({i for s in structure.tasks for i in (*s.support_images, *s.query_images)})
    FeatureTable(image_keys, torch.zeros(len(image_keys), 384)).save(folder / "image_features.safetensors")
    request = {"universe": "easyvqa", "text_encoder": text_module.DEFAULT_TEXT_ENCODER}
    write_json(folder / "manifest.json", {"request": request, "text_dim": 384, "image_dim": 384})

    made: list[int] = []

    class CountingEncoder(text_module.TextEncoder):
        def __new__(cls, *args: object, **kwargs: object) -> text_module.TextEncoder:  # reuse the loaded model
            made.append(1)
            return text_encoder

        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

    monkeypatch.setattr(universes.easyvqa, "TextEncoder", CountingEncoder)
    universe = universes.load_universe("easyvqa")
    assert made == [1] and (folder / QUESTION_TOKENS_FILE).is_file()
    task = universe.task(0)
    assert task.question_tokens is not None and task.question_tokens.shape[1] == 384
    pooled = torch.nn.functional.normalize(task.question_tokens.mean(0), dim=0)
    torch.testing.assert_close(pooled, task.question_emb, atol=1e-5, rtol=0)

    again = universes.load_universe("easyvqa")  # cached: no encoder this time
    assert made == [1] and again.task(0).question_tokens.equal(task.question_tokens)
    batch = collate(again.materialize(again.meta_test[:4]))
    assert batch.question_token_mask.sum(1).min() >= 3


# ------------------------------------------------------------------------------------------------ metavqa (tiny CLIP)


def test_metavqa_tokens_at_prepare_time_and_fallback(model_dir: Path, images, tmp_path: Path) -> None:
    from hyperguide.universes.metavqa import load_metavqa, prepare_metavqa

    splits, coco = write_fixture(tmp_path, images)
    out = tmp_path / "features"
    prepare_metavqa(splits, coco, out, clip_model=str(model_dir), batch_size=2)
    assert (out / QUESTION_TOKENS_FILE).is_file()
    task = load_metavqa(splits, out).task(0)
    assert task.question_tokens is not None and task.question_tokens.shape == (16, 16)  # 14 characters + 2
    torch.testing.assert_close(task.question_tokens[-1], task.question_emb, atol=1e-5, rtol=1e-5)  # CLIP pools EOS

    (out / QUESTION_TOKENS_FILE).unlink()  # as if prepared before token features existed
    recomputed = load_metavqa(splits, out).task(0).question_tokens
    assert (out / QUESTION_TOKENS_FILE).is_file() and recomputed is not None
    torch.testing.assert_close(recomputed, task.question_tokens, atol=1e-5, rtol=1e-5)

    (out / QUESTION_TOKENS_FILE).unlink()
    shutil.move(model_dir, tmp_path / "moved-model")  # the CLIP model is gone: warn, fall back to pooled features
    try:
        with pytest.warns(UserWarning, match="fall back to their pooled"):
            universe = load_metavqa(splits, out)
    finally:
        shutil.move(tmp_path / "moved-model", model_dir)
    assert universe.question_tokens is None and collate([universe.task(0)]).question_tokens.shape == (1, 1, 16)


def test_metavqa_standin_has_tokens_centred_on_its_stand_in_rows(images, tmp_path: Path) -> None:
    from hyperguide.data.metavqa import standin_universe

    splits, _ = write_fixture(tmp_path, images)
    universe = standin_universe(splits, dim=8)
    task = universe.task(0)
    assert task.question_tokens is not None and task.question_tokens.shape == (len(task.question.split()) + 2, 8)
    torch.testing.assert_close(task.question_tokens.mean(0), task.question_emb, atol=1e-5, rtol=0)
    assert standin_universe(splits, dim=8).task(0).question_tokens.equal(task.question_tokens)
