"""Your own tasks end to end (`hyperguide tasks prepare` and `tasks eval`): on `synthetic` (its own feature tables) and
on a small easyvqa file (the real MiniLM and an image tower, a universe of stand-in features), the report's numbers
against independent computations, and the bad files that are refused with the task and the field named."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from hyperguide.cli import main
from hyperguide.config import EvalConfig, MethodConfig, RunConfig, TrainConfig
from hyperguide.data.taskfile import read_task_file
from hyperguide.errors import HyperguideError
from hyperguide.eval.scoring import evaluate_method
from hyperguide.io import read_json
from hyperguide.run.task_eval import check_report_dir
from hyperguide.run.task_features import FORMAT, check_features_dir, read_task_features
from hyperguide.run.train import train_run
from hyperguide.trained.folder import RunFolder
from hyperguide.universes import UniverseOptions, load_universe
from tests.helpers import load_trained

ROW_KEYS = {"zero_shot", "k_shot", "uses_support_labels", "train_seconds"}  # a row of the main results.json
ZERO_SHOT_KEYS = {"acc", "bal_acc", "per_task_acc", "per_task_bal_acc"}


def _write(path: Path, tasks: list[Any]) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    return path


# ---------------------------------------------------------------------------------------------------- synthetic


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """A synthetic run of two seeds and two folds; and four of the universe's tasks (for the task files)."""
    root = tmp_path_factory.mktemp("own-synthetic")
    config = RunConfig(
        universe="synthetic",
        split="kfold",
        folds=2,
        seeds=(0, 1),
        methods=("chance", "majority", "uncond-multitask", "cond-multitask"),
        method=MethodConfig(adapter_hidden=16, latent_dim=8, hnet_hidden=(32,)),
        train=TrainConfig(epochs=3, meta_batch_size=8, max_examples=32),
        eval=EvalConfig(k_shots=("1", "full")),
    )
    universe = load_universe("synthetic")
    train_run(universe, config, RunFolder(root / "run"))
    return root / "run", list(universe.meta_test[:4])


def _synthetic_tasks(indices: list[int]) -> list[dict[str, Any]]:
    """The universe's own tasks as a task file writes them: questions, answers, support and query image ids."""
    universe = load_universe("synthetic")
    out = []
    for n, i in enumerate(indices):
        spec = universe.tasks[i]
        pairs = [(im, y, "support") for im, y in zip(spec.support_images, spec.support_labels, strict=True)]
        pairs += [(im, y, "query") for im, y in zip(spec.query_images, spec.query_labels, strict=True)]
        examples = [{"image": im, "answer": spec.answers[y], "split": side} for im, y, side in pairs]
        out.append({"question": spec.question, "answers": list(spec.answers), "kind": f"kind {n % 2}",
                    "examples": examples})  # fmt: skip
    return out


def test_synthetic_task_file_end_to_end(
    synthetic_run: tuple[Path, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, indices = synthetic_run
    task_file = _write(tmp_path / "mine.jsonl", _synthetic_tasks(indices))
    assert main(["tasks", "prepare", str(task_file), "--run", str(run)]) == 0
    features = tmp_path / "mine.features"
    assert f"wrote {features}" in capsys.readouterr().out

    # the prepared tasks are the universe's own tasks, tensor for tensor
    universe = load_universe("synthetic")
    manifest, infos, tasks = read_task_features(features)
    assert manifest["universe"] == "synthetic" and manifest["data"] == universe.fingerprint()
    assert [info["kind"] for info in infos] == ["kind 0", "kind 1", "kind 0", "kind 1"]
    for task, i in zip(tasks, indices, strict=True):
        own = universe.task(i)
        for name in ("question_emb", "answer_emb", "support_x", "support_y", "query_x", "query_y", "question_tokens"):
            assert torch.equal(getattr(task, name), getattr(own, name)), name

    assert main(["tasks", "eval", str(run), str(features)]) == 0
    printed = capsys.readouterr().out
    report = tmp_path / "mine-run-report"
    assert "| `cond-multitask` |" in printed and f"wrote {report / 'results.json'}" in printed
    results = read_json(report / "results.json")
    assert (report / "results.md").read_text().startswith("# Own tasks")
    assert results["machine"]["precision"] == "fp32" and results["machine"]["cores"] >= 1  # where it was computed
    assert "Machine: " in (report / "results.md").read_text()
    assert list(results["methods"]) == ["chance", "majority", "cond-multitask"]
    assert results["skipped"] == {"uncond-multitask": "it does not read the question"}
    assert results["folds"] == 2 and results["seeds"] == [0, 1]
    for entry in results["methods"].values():
        assert set(entry) == ROW_KEYS and set(entry["zero_shot"]) == ZERO_SHOT_KEYS
        assert set(entry["k_shot"]) == {"1", "full"} and entry["k_shot"]["full"]["tasks"] == 4
    chance = results["methods"]["chance"]["zero_shot"]["per_task_acc"][0]
    assert chance == pytest.approx([100 / t.n_answers for t in tasks])

    # each seed's per-task score is the mean over the two folds' models, computed here without the task pipeline
    config = RunFolder(run).read_config()
    own = [universe.task(i) for i in indices]
    everything = universe.materialize(range(len(universe.tasks)))
    for s, seed in enumerate(config.seeds):
        by_fold = [
            evaluate_method(load_trained("cond-multitask", everything, config, run, seed, fold), own)["acc"]
            for fold in (0, 1)
        ]
        expected = [(a + b) / 2 for a, b in zip(*by_fold, strict=True)]
        assert results["methods"]["cond-multitask"]["zero_shot"]["per_task_acc"][s] == pytest.approx(expected)

    # by kind: the mean of each seed's per-task scores over the tasks of the kind
    per_task = results["methods"]["cond-multitask"]["zero_shot"]["per_task_acc"]
    kind0 = results["by_kind"]["kind 0"]
    assert kind0["tasks"] == 2
    assert kind0["methods"]["cond-multitask"]["acc"]["per_seed"] == pytest.approx([(p[0] + p[2]) / 2 for p in per_task])

    # the report is a results.json as `compare` reads it: two rows paired on the own tasks
    assert main(["compare", str(report), "cond-multitask", "chance"]) == 0
    assert "cond-multitask - chance, paired over tasks (n=4)" in capsys.readouterr().out

    # --methods: rows of the run only, a row that does not read the question when asked for
    assert main(["tasks", "eval", str(run), str(features), "--methods", "uncond-multitask,chance", "--out",
                 str(tmp_path / "chosen")]) == 0  # fmt: skip
    assert list(read_json(tmp_path / "chosen" / "results.json")["methods"]) == ["uncond-multitask", "chance"]
    capsys.readouterr()
    assert main(["tasks", "eval", str(run), str(features), "--methods", "hnet+hyperldm@1"]) == 2
    assert "error: 'hnet+hyperldm@1' is not a row of run" in capsys.readouterr().err


def _bad_synthetic(kind: str, good: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    tasks = json.loads(json.dumps(good))
    question = tasks[1]["question"]
    if kind == "missing field":
        del tasks[1]["answers"]
        return tasks, f"task 2 ({question!r}): field 'answers' is missing"
    if kind == "unknown image":
        tasks[1]["examples"][2]["image"] = "img99999"
        return tasks, f"task 2 ({question!r}), example 3: image 'img99999' is not an image of universe 'synthetic'"
    tasks[1]["examples"][1]["answer"] = "purple"
    answers = tasks[1]["answers"]
    return tasks, f"task 2 ({question!r}), example 2: answer 'purple' is not one of the task's answers {answers}"


@pytest.mark.parametrize("kind", ["missing field", "unknown image", "answer outside the answers"])
def test_bad_synthetic_files_are_refused_and_nothing_is_written(
    kind: str, synthetic_run: tuple[Path, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, indices = synthetic_run
    tasks, message = _bad_synthetic(kind, _synthetic_tasks(indices))
    task_file = _write(tmp_path / "bad.jsonl", tasks)
    assert main(["tasks", "prepare", str(task_file), "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"hyperguide tasks prepare: error: {task_file}, {message}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]  # no features folder, nothing else


@pytest.mark.parametrize(
    "task, message",
    [
        ({"question": "q?", "answers": ["yes"], "examples": [{"image": "a", "answer": "yes"}]},
         "task 1 ('q?'): field 'answers' must hold at least two answers to choose from, got ['yes']"),
        ({"question": "q?", "answers": ["yes", "yes"], "examples": [{"image": "a", "answer": "yes"}]},
         "task 1 ('q?'): field 'answers' repeats ['yes']: the run could not tell those answers apart"),
        ({"question": "q?", "answers": ["a", "b"], "examples": [{"image": "x", "answer": "a", "split": "support"}]},
         "task 1 ('q?'): no example has split 'query' (the default): the task has nothing to be scored on"),
        ({"question": "q?", "answers": ["a", "b"], "prompts": ["an a"], "examples": [{"image": "x", "answer": "a"}]},
         "task 1 ('q?'): field 'prompts' must hold one prompt per answer (2), got 1"),
        ({"question": "q?", "answers": ["a", "b"], "examples": [{"image": "x", "answer": "a", "split": "train"}]},
         "task 1 ('q?'), example 1: field 'split' must be 'support' or 'query', got 'train'"),
        ({"question": "q?", "answers": ["a", "b"], "answer": "a", "examples": [{"image": "x", "answer": "a"}]},
         "task 1 ('q?'): field 'answer' is not a field of a task (its fields: question, answers, prompts, kind, "
         "examples)"),
        ({"question": " ", "answers": ["a", "b"], "examples": [{"image": "x", "answer": "a"}]},
         "task 1: field 'question' must be a non-empty string, got ' '"),
        ({"question": "q?", "answers": ["a", "b"], "examples": []},
         "task 1 ('q?'): field 'examples' must be a non-empty list, got []"),
    ],
)  # fmt: skip
def test_tasks_the_run_cannot_score_are_refused(task: dict[str, Any], message: str, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"tasks": [task]}))
    with pytest.raises(HyperguideError) as e:
        read_task_file(path)
    assert str(e.value) == f"{path}, {message}"


def test_task_file_formats(tmp_path: Path) -> None:
    task = {"question": "Is it round?", "answers": ["yes", "no"], "examples": [{"image": "a.png", "answer": "no"}]}
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([task, {**task, "question": "Is it square?", "kind": "shape", "$comment": "a note"}]))
    read = read_task_file(bare)
    assert [t.number for t in read.tasks] == [1, 2] and read.tasks[1].kind == "shape"
    assert read.tasks[0].examples[0].split == "query" and read.tasks[0].prompts is None
    lines = tmp_path / "t.jsonl"
    lines.write_text(json.dumps(task) + "\n\n{not json\n")
    with pytest.raises(HyperguideError, match=r"t.jsonl, line 3: not valid JSON"):
        read_task_file(lines)
    with pytest.raises(HyperguideError, match=r"a task file's name ends in .json or .jsonl, not '.txt'"):
        read_task_file(tmp_path / "t.txt")
    with pytest.raises(HyperguideError, match=r"task file not found"):
        read_task_file(tmp_path / "missing.json")


# ------------------------------------------------------------------------------------------------------ easyvqa


def _fake_easyvqa_home(folder: Path) -> None:
    """A prepared easyvqa folder whose universe features are random stand-ins (the run trains on them in seconds)
    and whose encoders are real: the MiniLM text encoder and an (untrained) image tower."""
    from hyperguide.data.easyvqa import easyvqa_structure
    from hyperguide.data.easyvqa_images import easyvqa_image_paths
    from hyperguide.data.features import FeatureTable
    from hyperguide.data.tokens import QUESTION_TOKENS_FILE, TokenTable
    from hyperguide.encoders.image_tower import ImageTower, save_tower
    from hyperguide.encoders.text import DEFAULT_TEXT_ENCODER
    from hyperguide.io import write_json

    g = torch.Generator().manual_seed(0)
    structure = easyvqa_structure("answer")
    texts = list(dict.fromkeys(x for t in structure.tasks for x in (t.question, *t.prompts)))
    questions = list(dict.fromkeys(t.question for t in structure.tasks))
    images = list(easyvqa_image_paths())
    FeatureTable(texts, torch.randn(len(texts), 384, generator=g)).save(folder / "text_features.safetensors")
    FeatureTable(images, torch.randn(len(images), 384, generator=g)).save(folder / "image_features.safetensors")
    rows = [torch.randn(4, 384, generator=g) for _ in questions]
    TokenTable.from_rows(questions, rows).save(folder / QUESTION_TOKENS_FILE, encoder=DEFAULT_TEXT_ENCODER)
    torch.manual_seed(0)
    save_tower(folder / "image_tower", ImageTower(width=4, depth=2), {"note": "untrained, for tests"})
    write_json(
        folder / "manifest.json",
        {"request": {"universe": "easyvqa", "text_encoder": DEFAULT_TEXT_ENCODER}, "text_dim": 384, "image_dim": 384},
    )


@pytest.fixture(scope="module")
def easyvqa_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, dict[int, str]]:
    """(run, home, easy-VQA's test image folder, {test image id: its shape by easy-VQA's own answer})."""
    easy_vqa = pytest.importorskip("easy_vqa")
    root = tmp_path_factory.mktemp("own-easyvqa")
    home = root / "home"
    _fake_easyvqa_home(home / "easyvqa")
    config = RunConfig(
        universe="easyvqa",
        seeds=(0,),
        methods=("chance", "majority", "cond-multitask", "cond-multitask-attention"),
        method=MethodConfig(adapter_hidden=8, latent_dim=4, hnet_hidden=(16,)),
        train=TrainConfig(epochs=1, meta_batch_size=16, max_examples=16),
        eval=EvalConfig(k_shots=("1",)),
    )
    train_run(load_universe("easyvqa", UniverseOptions(home=home)), config, RunFolder(root / "run"))
    texts, answers, ids = easy_vqa.get_test_questions()
    shapes = {int(i): a for q, a, i in zip(texts, answers, ids, strict=True) if q == "what shape is in the image?"}
    paths = easy_vqa.get_test_image_paths()
    return root / "run", home, Path(next(iter(paths.values()))).parent, dict(sorted(shapes.items())[:8])


def _easyvqa_tasks(shapes: dict[int, str]) -> list[dict[str, Any]]:
    return [
        {"question": "What kind of figure is drawn here?", "answers": ["circle", "rectangle", "triangle"],
         "kind": "shape", "examples": [{"image": f"{i}.png", "answer": s} for i, s in shapes.items()]},
        {"question": "Is the figure round?", "answers": ["yes", "no"], "kind": "yes/no",
         "examples": [{"image": f"{i}.png", "answer": "yes" if s == "circle" else "no"} for i, s in shapes.items()]},
    ]  # fmt: skip


@pytest.mark.integration  # the easyvqa run (module fixture)
def test_easyvqa_task_file_end_to_end(
    easyvqa_run: tuple[Path, Path, Path, dict[int, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hyperguide.data.easyvqa_images import read_image
    from hyperguide.encoders.image_tower import encode, load_tower
    from hyperguide.encoders.text import TextEncoder
    from hyperguide.generate import generate

    run, home, images_root, shapes = easyvqa_run
    tasks = _easyvqa_tasks(shapes)
    task_file = _write(tmp_path / "shapes.jsonl", tasks)
    argv = ["tasks", "prepare", str(task_file), "--run", str(run), "--images-root", str(images_root)]
    assert main([*argv, "--home", str(home)]) == 0
    features = tmp_path / "shapes.features"

    # embedded by the run's encoders: MiniLM for the question, the universe's tower for the images
    _, infos, prepared = read_task_features(features)
    assert [(i["support"], i["query"]) for i in infos] == [(0, 8), (0, 8)]
    text = TextEncoder()
    torch.testing.assert_close(prepared[1].question_emb, text.encode(["Is the figure round?"])[0])
    assert prepared[1].question_tokens is not None and prepared[1].question_tokens.shape[1] == 384
    torch.testing.assert_close(prepared[0].answer_emb, text.encode(["circle", "rectangle", "triangle"]))
    tower = load_tower(home / "easyvqa" / "image_tower")
    pixels = torch.stack([read_image(images_root / f"{i}.png") for i in shapes])
    torch.testing.assert_close(prepared[0].query_x, encode(tower, pixels))
    assert prepared[1].query_y.tolist() == [0 if s == "circle" else 1 for s in shapes.values()]

    report = tmp_path / "report"
    assert main(["tasks", "eval", str(run), str(features), "--out", str(report)]) == 0
    capsys.readouterr()
    results = read_json(report / "results.json")
    assert list(results["methods"]) == ["chance", "cond-multitask", "cond-multitask-attention"]
    assert results["skipped"] == {"majority": "it uses support labels, and some tasks have no support example"}
    assert all(entry["k_shot"] == {} for entry in results["methods"].values())  # no support examples: zero-shot only
    assert set(results["by_kind"]) == {"shape", "yes/no"}
    assert results["methods"]["chance"]["zero_shot"]["per_task_acc"] == [pytest.approx([100 / 3, 50.0])]

    # the same accuracy as `generate`'s predictions for the same question, answers and images
    images = [images_root / f"{i}.png" for i in shapes]
    per_task = results["methods"]["cond-multitask"]["zero_shot"]["per_task_acc"][0]
    for task, acc in zip(tasks, per_task, strict=True):
        out = generate(run, [task["question"]], [task["answers"]], method="cond-multitask", images=images,
                       options=UniverseOptions(home=home))  # fmt: skip
        assert out.predictions is not None
        right = [p == e["answer"] for p, e in zip(out.predictions[0], task["examples"], strict=True)]
        assert acc == pytest.approx(100 * sum(right) / len(right))


@pytest.mark.integration  # the easyvqa run (module fixture)
def test_easyvqa_bad_files_are_refused_and_nothing_is_written(
    easyvqa_run: tuple[Path, Path, Path, dict[int, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, home, images_root, shapes = easyvqa_run
    flags = ["--run", str(run), "--images-root", str(images_root), "--home", str(home)]
    missing = _easyvqa_tasks(shapes)
    missing[1]["examples"][0]["image"] = "nope.png"
    long = _easyvqa_tasks(shapes)
    long[0]["question"] = "what " * 200 + "shape?"
    cases = [
        (missing, "task 2 ('Is the figure round?'), example 1: image 'nope.png' does not exist "
                  f"(looked in {images_root})"),
        (long, f"task 1 ({long[0]['question']!r}): field 'question': text "),
    ]  # fmt: skip
    for tasks, message in cases:
        task_file = _write(tmp_path / "bad.jsonl", tasks)
        assert main(["tasks", "prepare", str(task_file), *flags]) == 2
        err = capsys.readouterr().err
        assert f"hyperguide tasks prepare: error: {task_file}, {message}" in err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]

    # a universe prepared differently from the one the run was trained on: its encoders are not the run's
    other = tmp_path / "other-home"
    (other / "easyvqa").mkdir(parents=True)
    for f in (home / "easyvqa").iterdir():
        (other / "easyvqa" / f.name).write_bytes(f.read_bytes())
    from hyperguide.data.features import FeatureTable

    table = FeatureTable.load(other / "easyvqa" / "image_features.safetensors")
    FeatureTable(table.keys, table.values + 1).save(other / "easyvqa" / "image_features.safetensors")
    task_file = _write(tmp_path / "good.jsonl", _easyvqa_tasks(shapes))
    argv = ["tasks", "prepare", str(task_file), "--run", str(run), "--images-root", str(images_root)]
    assert main([*argv, "--home", str(other)]) == 2
    assert "is not the data run" in capsys.readouterr().err
    assert not (tmp_path / "good.features").exists()


# ----------------------------------------------------------------- the reliability probe's cases (e6acf04)


def _hashes(folder: Path) -> dict[str, str]:
    files = [f for f in folder.rglob("*") if f.is_file()]
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_deeply_nested_task_file_is_refused_with_its_name(
    synthetic_run: tuple[Path, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """N19: 100,000 nested brackets were a RecursionError traceback."""
    deep = tmp_path / "deep.json"
    deep.write_text('{"tasks": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert main(["tasks", "prepare", str(deep), "--run", str(synthetic_run[0])]) == 2
    err = capsys.readouterr().err
    assert f"hyperguide tasks prepare: error: {deep}: JSON nested too deeply to be read" in err
    assert "Traceback" not in err and sorted(p.name for p in tmp_path.iterdir()) == ["deep.json"]
    lines = tmp_path / "deep.jsonl"
    lines.write_text("{}\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(HyperguideError, match=r"deep.jsonl, line 2: JSON nested too deeply"):
        read_task_file(lines)


def test_a_repeated_task_is_refused_naming_both(tmp_path: Path) -> None:
    """N23: an exact duplicate was scored twice (double weight in every mean). Orders and the kind do not make it
    another task; other prompts do."""
    examples = [{"image": "a.png", "answer": "yes"}, {"image": "b.png", "answer": "no", "split": "support"}]
    task = {"question": "Is it round?", "answers": ["yes", "no"], "examples": examples}
    other = {"question": "Is it red?", "answers": ["yes", "no"], "examples": examples}
    again = {**task, "answers": ["no", "yes"], "examples": examples[::-1], "kind": "shape"}
    path = tmp_path / "t.json"
    path.write_text(json.dumps([task, other, again]))
    with pytest.raises(HyperguideError) as e:
        read_task_file(path)
    assert str(e.value) == (
        f"{path}, task 3 ('Is it round?'): repeats task 1: the same question, answers, prompts and examples would be "
        "scored twice and count twice in every mean; remove one of them"
    )
    path.write_text(json.dumps([task, other, {**again, "prompts": ["not round", "round"]}]))
    assert len(read_task_file(path).tasks) == 3  # other prompts: another task


def test_task_eval_refuses_an_out_that_holds_a_run(
    synthetic_run: tuple[Path, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """N25: `tasks eval RUN FEATURES --out RUN` replaced the run's results.json with the task report."""
    run, indices = synthetic_run
    task_file = _write(tmp_path / "mine.jsonl", _synthetic_tasks(indices[:2]))
    assert main(["tasks", "prepare", str(task_file), "--run", str(run)]) == 0
    capsys.readouterr()
    before = _hashes(run)
    assert main(["tasks", "eval", str(run), str(tmp_path / "mine.features"), "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert (
        f"hyperguide tasks eval: error: --out {run} holds a run (its config.json): the task report would replace "
        "the run's results.json and results.md; give a folder of its own, or leave --out out for the default one"
    ) in err
    assert _hashes(run) == before  # no results.json, nothing changed

    evaluated = tmp_path / "evaluated"  # a run's results.json alone (no config.json beside it)
    evaluated.mkdir()
    (evaluated / "results.json").write_text(json.dumps({"methods": {}, "test_tasks": [], "seeds": [0]}))
    with pytest.raises(HyperguideError, match=r"holds a results.json that is not a task report of `hyperguide tasks"):
        check_report_dir(evaluated)
    earlier = tmp_path / "earlier"  # an earlier task report is replaced
    earlier.mkdir()
    report_keys = ("features", "task_file", "folds_combined", "by_kind")
    (earlier / "results.json").write_text(json.dumps(dict.fromkeys(report_keys, 1)))
    assert check_report_dir(earlier) == earlier and check_report_dir(tmp_path / "new") == tmp_path / "new"


def test_tampered_task_records_are_refused_with_the_field(
    synthetic_run: tuple[Path, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """N26: a features folder whose manifest was re-hashed over a tasks.json without `support_images` gave a
    KeyError, and `tasks: [1, 2]` a TypeError; N32's `"text_dim": "384"` in its manifest a confusing message."""
    run, indices = synthetic_run
    task_file = _write(tmp_path / "mine.jsonl", _synthetic_tasks(indices[:2]))
    assert main(["tasks", "prepare", str(task_file), "--run", str(run)]) == 0
    features = tmp_path / "mine.features"
    listed, manifest = features / "tasks.json", features / "manifest.json"
    good_tasks, good_manifest = read_json(listed), read_json(manifest)

    def tamper(tasks: Any, **fields: Any) -> None:
        listed.write_text(json.dumps(tasks))
        files = {**good_manifest["files"], "tasks.json": hashlib.sha256(listed.read_bytes()).hexdigest()}
        manifest.write_text(json.dumps({**good_manifest, "files": files, **fields}))

    without = json.loads(json.dumps(good_tasks))
    del without["tasks"][1]["support_images"]
    labels = json.loads(json.dumps(good_tasks))
    labels["tasks"][0]["query_labels"][0] = "1"
    cases = [
        (without, {}, f"{listed}, task 2: field 'support_images' is missing: prepare the features again"),
        ({"tasks": [1, 2]}, {}, f"{listed}, task 1: a task record must be a JSON object, got 1"),
        (labels, {}, f"{listed}, task 1: field 'query_labels' must be a list of integers, got ['1', "),
        (good_tasks, {"text_dim": "8"}, f"{manifest}: field 'text_dim' must be a positive integer, got '8'"),
    ]
    for tasks, fields, message in cases:
        tamper(tasks, **fields)
        with pytest.raises(HyperguideError) as e:
            read_task_features(features)
        assert message in str(e.value)
    capsys.readouterr()
    assert main(["tasks", "eval", str(run), str(features)]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.integration  # the easyvqa run (module fixture)
def test_image_paths_stay_inside_the_images_root(
    easyvqa_run: tuple[Path, Path, Path, dict[int, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """N20: `..` climbed out of --images-root (a real image there was read). A path that stays inside after its
    `..` and an absolute path are read."""
    run, home, images_root, shapes = easyvqa_run
    first = next(iter(shapes))
    outside = f"../../train/images/{first}.png"
    assert (images_root / outside).is_file()  # it exists: only the rule refuses it
    tasks = _easyvqa_tasks(shapes)
    tasks[0]["examples"][1]["image"] = outside
    flags = ["--run", str(run), "--images-root", str(images_root), "--home", str(home)]
    task_file = _write(tmp_path / "bad.jsonl", tasks)
    assert main(["tasks", "prepare", str(task_file), *flags]) == 2
    assert (
        f"error: {task_file}, task 1 ('What kind of figure is drawn here?'), example 2: image {outside!r} lies "
        f"outside the images root {images_root} (a relative path must stay inside it: give --images-root a folder "
        "that holds it, or an absolute path)"
    ) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]

    tasks[0]["examples"][1]["image"] = str((images_root / outside).resolve())  # absolute: allowed, as documented
    tasks[0]["examples"][2]["image"] = f"../{images_root.name}/{first}.png"  # `..` that stays inside
    assert main(["tasks", "prepare", str(_write(tmp_path / "good.jsonl", tasks)), *flags]) == 0


@pytest.mark.integration  # the easyvqa run (module fixture)
def test_tasks_prepare_refuses_a_prepared_universe_as_out(
    easyvqa_run: tuple[Path, Path, Path, dict[int, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """N24: `tasks prepare --out $HYPERGUIDE_HOME/easyvqa` overwrote the universe's manifest and features."""
    run, home, images_root, shapes = easyvqa_run
    copy = Path(shutil.copytree(home, tmp_path / "home"))
    before = _hashes(copy)
    task_file = _write(tmp_path / "mine.jsonl", _easyvqa_tasks(shapes))
    flags = ["--run", str(run), "--images-root", str(images_root), "--home", str(copy)]
    for out in (copy / "easyvqa", copy / "easyvqa" / "sub", copy / "metavqa" / "features"):
        assert main(["tasks", "prepare", str(task_file), *flags, "--out", str(out)]) == 2
        assert (
            f"hyperguide tasks prepare: error: --out {out} is in the folder of the prepared universe "
            f"'{out.relative_to(copy).parts[0]}' ({copy / out.relative_to(copy).parts[0]}): the features would "
            "replace the universe's own files; give a folder outside it (the default is beside the task file)"
        ) in capsys.readouterr().err
    assert _hashes(copy) == before and not (copy / "metavqa").exists()

    elsewhere = tmp_path / "elsewhere"  # a universe's folder copied elsewhere: its manifest is not own tasks'
    shutil.copytree(copy / "easyvqa", elsewhere)
    with pytest.raises(HyperguideError, match=r"holds a manifest.json that is not one of own-task features"):
        check_features_dir(elsewhere, copy)
    with pytest.raises(HyperguideError, match=r"holds a run \(its config.json\)"):
        check_features_dir(run, copy)
    earlier = tmp_path / "earlier"  # an earlier `tasks prepare` output is prepared again
    earlier.mkdir()
    (earlier / "manifest.json").write_text(json.dumps({"format": FORMAT}))
    assert check_features_dir(earlier, copy) == earlier


@pytest.mark.integration  # the easyvqa run (module fixture)
def test_easyvqa_load_refuses_a_manifest_of_another_kind(
    easyvqa_run: tuple[Path, Path, Path, dict[int, str]], tmp_path: Path
) -> None:
    """N24 (the universe's side): a manifest.json that own tasks (or anything) wrote into the universe's folder was
    trusted. N32: a manifest of the wrong shape gave KeyError, TypeError, or "dimension 384, expected 384"."""
    _, home, _, _ = easyvqa_run
    copy = Path(shutil.copytree(home, tmp_path / "home"))
    path = copy / "easyvqa" / "manifest.json"
    good = read_json(path)
    options = UniverseOptions(home=copy)
    assert load_universe("easyvqa", options).has_features
    again = "prepare it again with `hyperguide prepare easyvqa`"
    not_ours = f"universe manifest {path} is not a manifest of the easyvqa universe"
    cases = [
        ({"format": FORMAT, "universe": "easyvqa", "text_dim": 384, "image_dim": 384}, not_ours),
        ({**good, "request": {**good["request"], "universe": "metavqa"}}, not_ours),
        ([1, 2], not_ours),
        ({k: v for k, v in good.items() if k != "text_dim"},
         f"universe manifest {path}: field 'text_dim' must be a positive integer (it is missing): {again}"),
        ({**good, "text_dim": "384"},
         f"universe manifest {path}: field 'text_dim' must be a positive integer (got '384'): {again}"),
    ]  # fmt: skip
    for manifest, message in cases:
        path.write_text(json.dumps(manifest))
        with pytest.raises(HyperguideError) as e:
            load_universe("easyvqa", options)
        assert str(e.value).startswith(message) and str(e.value).endswith(again)
