"""The `taskfile` universe: your own task family from a task file, end to end by each of the three feature routes
(embedded, a tiny local CLIP-like model, precomputed features), what it refuses, and an independent check that it
feeds a run exactly what the synthetic universe would for the same tasks."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from hyperguide.cli import main
from hyperguide.data.synthetic import synthetic_universe
from hyperguide.data.taskfile import easyvqa_image, read_task_file
from hyperguide.data.taskfile_universe import Filters, split_examples, taskfile_structure
from hyperguide.errors import HyperguideError
from hyperguide.io import read_json
from hyperguide.universes import EasyVQAOptions, TaskFileOptions, load_universe, prepare_universe, universe_encoders
from tests.test_own_tasks import _fake_easyvqa_home

REPO = Path(__file__).resolve().parents[1]
GROUPS = REPO / "examples" / "groups" / "tasks.jsonl"
# A few rows that cover a baseline, the paper's chain of stages and a guidance row, at quick settings.
ROWS = ["--set", 'methods=["chance","cond-multitask","hnet+hyperldm"]', "--set", "hyperldm.gammas=[1]"]
# A baseline alone, one seed: where a test is about the universe's plumbing, not about the chain of stages.
BASELINE = ["--set", 'methods=["chance","cond-multitask"]', "--seeds", "0"]


def write_jsonl(path: Path, tasks: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    return path


def nothing_prepared(home: Path) -> bool:
    """No taskfile folder at all, and the easyvqa preparation (where there is one) the manifest `fake_easyvqa` wrote."""
    easyvqa = home / "easyvqa" / "manifest.json"
    return not (home / "taskfile").exists() and (not easyvqa.is_file() or read_json(easyvqa) == fake_manifest(home))


def fake_manifest(home: Path) -> dict[str, Any]:
    from hyperguide.universes.easyvqa import EasyVQA

    return {"request": EasyVQA().request(EasyVQAOptions(home=home)), "text_dim": 384, "image_dim": 384}


def fake_easyvqa(home: Path) -> None:
    """A prepared easyvqa under `home` (stand-in features, the real MiniLM, an untrained tower) whose manifest
    records the request a default preparation makes, so the embedded route reuses its tower."""
    from hyperguide.io import write_json

    _fake_easyvqa_home(home / "easyvqa")
    write_json(home / "easyvqa" / "manifest.json", fake_manifest(home))


# ------------------------------------------------------------------------------------------------- structure


def test_examples_without_a_split_go_70_30_per_answer_and_given_ones_stay(tmp_path: Path) -> None:
    examples = [{"image": f"{a}{i}.png", "answer": a} for a, n in (("yes", 10), ("no", 3)) for i in range(n)]
    examples += [
        {"image": "q.png", "answer": "no", "split": "query"},
        {"image": "s.png", "answer": "yes", "split": "support"},
    ]
    path = write_jsonl(tmp_path / "t.jsonl", [{"question": "q?", "answers": ["yes", "no"], "examples": examples}])
    task = read_task_file(path, default_split=None).tasks[0]
    support, query = split_examples(task.examples, task.answers)
    assert "s.png" in {e.image for e in support} and "q.png" in {e.image for e in query}
    assert sum(e.answer == "yes" for e in support) == 1 + 7 and sum(e.answer == "no" for e in support) == 2
    expected = [f"yes{i}.png" for i in range(10)]
    random.Random(2021).shuffle(expected)
    assert [e.image for e in support if e.image.startswith("yes")] == expected[:7]  # Meta-VQA's rule, seeded
    assert split_examples(task.examples, task.answers) == (support, query)  # deterministic
    # `tasks prepare` reads the same file with the query default: nothing is split there.
    assert {e.split for e in read_task_file(path).tasks[0].examples} == {"query", "support"}


def test_filters_drop_and_say_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def task(q: str, counts: dict[str, int]) -> dict[str, Any]:
        examples = [{"image": f"{q}{a}{i}.png", "answer": a} for a, n in counts.items() for i in range(n)]
        return {"question": q, "answers": list(counts), "examples": examples}

    path = write_jsonl(
        tmp_path / "t.jsonl",
        [
            task("a?", {"x": 5, "y": 5, "z": 1}),
            task("b?", {"x": 2, "y": 2}),
            task("c?", {"x": 9, "y": 1}),
            task("d?", {"x": 3, "y": 3}),
        ],
    )
    universe = taskfile_structure(
        read_task_file(path, default_split=None), Filters(min_examples=5, min_answer_examples=2)
    )
    assert [t.question for t in universe.tasks] == ["a?", "d?"] and universe.tasks[0].answers == ("x", "y")
    dropped = {d["question"]: d["why"] for d in universe.info["dropped"]}  # type: ignore[union-attr]
    assert dropped == {"b?": "4 examples, fewer than 5", "c?": "fewer than two answers with >= 2 examples"}
    with pytest.raises(HyperguideError, match=r"--min-examples must be >= 0"):
        Filters(min_examples=-1)
    assert main(["stats", "taskfile", "--tasks", str(path), "--min-examples", "5", "--min-answer-examples", "2"]) == 0
    assert "task 2 ('b?'): 4 examples, fewer than 5" in capsys.readouterr().out


def test_a_task_with_no_query_side_is_refused_not_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lone = {
        "question": "lone?",
        "answers": ["a", "b"],
        "examples": [{"image": "1.png", "answer": "a"}, {"image": "2.png", "answer": "b"}],
    }
    ok = {
        "question": "ok?",
        "answers": ["a", "b"],
        "examples": [{"image": f"{i}.png", "answer": "ab"[i % 2]} for i in range(8)],
    }
    path = write_jsonl(tmp_path / "t.jsonl", [ok, lone])
    assert main(["stats", "taskfile", "--tasks", str(path)]) == 2
    assert re.search(
        r"t.jsonl, task 2 \('lone\?'\): its query examples give 0 answer\(s\) \[\] once split", capsys.readouterr().err
    )


def test_a_jsonl_file_is_streamed_and_hashed_as_its_bytes(tmp_path: Path) -> None:
    ok = {"question": "ok?", "answers": ["a", "b"], "examples": [{"image": "1.png", "answer": "a"}]}
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n" + json.dumps(ok).encode() + b"\n\n")
    assert read_task_file(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(json.dumps(ok).encode() + b"\n" + b'{"question": "\xff"}\n')
    with pytest.raises(HyperguideError, match=r"t.jsonl: not UTF-8 text .* at byte \d+"):
        read_task_file(path)


# ------------------------------------------------------------------------------------------- embedded route


def groups_subset(path: Path, tasks: int = 8, examples: int = 24) -> Path:
    """The first tasks of the shipped example family, each cut to its first examples of two answers' worth."""
    out = []
    for line in GROUPS.read_text().splitlines()[:tasks]:
        task = json.loads(line)
        task["examples"] = sorted(task["examples"], key=lambda e: e["answer"])
        per = {
            a: [e for e in task["examples"] if e["answer"] == a][: examples // len(task["answers"])]
            for a in task["answers"]
        }
        task["examples"] = [e for a in task["answers"] for e in per[a]]
        out.append(task)
    return write_jsonl(path, out)


@pytest.mark.integration
def test_the_embedded_route_end_to_end_with_generate_and_export(
    tmp_path: Path, isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MiniLM and easyvqa's tower: features are theirs, a run trains and reports, generate and export work."""
    pytest.importorskip("easy_vqa")
    from hyperguide.bundle import export_generator, load_generator
    from hyperguide.data.easyvqa_images import read_image
    from hyperguide.encoders.image_tower import encode
    from hyperguide.generate import generate

    fake_easyvqa(isolated_home)
    tasks = groups_subset(tmp_path / "groups.jsonl")
    picture = tmp_path / "pictures" / "teal.png"
    picture.parent.mkdir()
    Image.new("RGB", (64, 64), "teal").save(picture)
    lines = tasks.read_text().splitlines()
    first = json.loads(lines[0])
    first["examples"][0]["image"] = "pictures/teal.png"  # a path relative to the task file's folder
    tasks.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")

    assert main(["prepare", "taskfile", "--tasks", str(tasks)]) == 0
    options = TaskFileOptions(tasks=tasks)
    universe = load_universe("taskfile", options)
    assert universe.shared_space and universe.question_tokens is not None and len(universe.tasks) == 8
    encoders = universe_encoders("taskfile", options)
    task = universe.task(0)
    assert torch.allclose(task.question_emb, encoders.texts([universe.tasks[0].question])[0], atol=1e-5)
    assert "pictures/teal.png" in universe.tasks[0].support_images + universe.tasks[0].query_images
    tower, table = encoders.tower, universe.image_features  # type: ignore[attr-defined]
    assert table is not None
    other = next(k for k in table.keys if k.startswith("easy-vqa:"))
    for key, path in (("pictures/teal.png", picture), (other, easyvqa_image(other))):
        assert path is not None
        assert torch.allclose(table.get([key])[0], encode(tower, read_image(path)[None])[0], atol=1e-5), key

    out = tmp_path / "run"
    assert main(["bench", "taskfile", "--tasks", str(tasks), "--quick", "--quiet", "--out", str(out), *BASELINE]) == 0
    results = read_json(out / "results.json")
    assert results["universe"] == "taskfile" and set(results["methods"]) >= {"chance", "cond-multitask"}
    assert "cond-multitask" in results["fit"]["rows"] and (out / "results.md").is_file()

    question = "is the teal shape a warm colour?"
    made = generate(out, [question], [["yes", "no"]], method="cond-multitask", images=[picture], options=options)
    bundle = export_generator(out, tmp_path / "bundle", method="cond-multitask", options=options)
    again = load_generator(bundle).generate([question], [["yes", "no"]], images=[picture])
    assert torch.equal(again.weights, made.weights) and again.probabilities is not None
    assert read_json(bundle / "config.json")["encoders"]["reference"]["route"] == "embedded"
    capsys.readouterr()
    assert (
        main(
            [
                "generate",
                str(out),
                question,
                "--answers",
                "yes",
                "no",
                "--tasks",
                str(tasks),
                "--out",
                str(tmp_path / "g"),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out

    # New tasks scored by the run (`hyperguide tasks`): the run's universe is the task file it was trained on.
    new = write_jsonl(tmp_path / "new.jsonl", [json.loads(lines[3])])
    features = tmp_path / "new.features"
    assert main(["tasks", "prepare", str(new), "--run", str(out), "--tasks", str(tasks), "--out", str(features)]) == 0
    assert main(["tasks", "eval", str(out), str(features), "--out", str(tmp_path / "report"), "--quiet"]) == 0
    assert read_json(tmp_path / "report" / "results.json")["methods"]["cond-multitask"]["zero_shot"]["acc"]


@pytest.mark.integration
def test_the_example_family_runs_at_quick_settings(tmp_path: Path, isolated_home: Path) -> None:
    """The shipped example (examples/groups/tasks.jsonl), every task, quick settings, a few rows: it prepares and
    trains, and the report shows fit beside zero-shot. (The untrained stand-in tower makes its numbers
    meaningless here; the README's table is the real run's.)"""
    pytest.importorskip("easy_vqa")
    fake_easyvqa(isolated_home)
    assert len(read_task_file(GROUPS).tasks) >= 40
    assert main(["prepare", "taskfile", "--tasks", str(GROUPS), "--quiet"]) == 0
    out = tmp_path / "run"
    assert main(["bench", "taskfile", "--tasks", str(GROUPS), "--quick", "--quiet", "--out", str(out), *BASELINE]) == 0
    results = read_json(out / "results.json")
    assert len(results["test_tasks"]) == 13  # 43 tasks: 30 meta-train, 13 meta-test by the random split's rule
    assert results["fit"]["rows"]["cond-multitask"]["tasks"] == 30
    assert "meta-train" in (out / "results.md").read_text()


# --------------------------------------------------------------------------------------- transformers route


def clip_tasks(tmp_path: Path, images: list[tuple[str, Path]]) -> Path:
    """Six two-answer tasks of eight images, copies of the fixture's five (several sizes and modes) under eight names
    each (an image is in a task once), paths relative."""
    for copy in range(8):
        for _, path in images:
            (tmp_path / f"c{copy}-{path.name}").write_bytes(path.read_bytes())
    tasks = []
    for t in range(6):
        examples = [{"image": f"c{i}-{images[(t + i) % 5][1].name}", "answer": "ab"[i % 2]} for i in range(8)]
        tasks.append(
            {
                "question": f"is thing {t} on the left?",
                "answers": ["a", "b"],
                "prompts": [f"left {t}", f"right {t}"],
                "examples": examples,
            }
        )
    return write_jsonl(tmp_path / "clip.jsonl", tasks)


@pytest.mark.integration
def test_the_transformers_route_with_a_tiny_local_clip(
    tmp_path: Path, model_dir: Path, images: list[tuple[str, Path]], isolated_home: Path
) -> None:
    from hyperguide.encoders.clip import ClipEncoder
    from hyperguide.generate import generate

    tasks = clip_tasks(tmp_path, images)
    assert main(["prepare", "taskfile", "--tasks", str(tasks), "--model", str(model_dir), "--quiet"]) == 0
    options = TaskFileOptions(tasks=tasks)
    universe = load_universe("taskfile", options)
    clip = ClipEncoder(model_dir)
    path = tmp_path / f"c0-{images[3][1].name}"
    want = clip.image_features(clip.load_pixels(path)[None])[0]
    assert torch.allclose(universe.image_features.get([path.name])[0], want, atol=1e-5)  # type: ignore[union-attr]
    assert torch.allclose(universe.task(0).answer_emb, clip.encode_texts(["left 0", "right 0"]), atol=1e-5)
    assert universe.shared_space and universe.info["encoder"] == "transformers"

    out = tmp_path / "run"
    assert main(["bench", "taskfile", "--tasks", str(tasks), "--quick", "--quiet", "--out", str(out), *ROWS]) == 0
    made = generate(
        out, ["is thing 9 on the left?"], [["a", "b"]], method="cond-multitask", images=[path], options=options
    )
    assert made.probabilities is not None and made.weights.shape[0] == 1
    # Another task file's features are not the run's: generate and export say so, instead of embedding wrongly.
    lines = tasks.read_text().splitlines()
    other = write_jsonl(tmp_path / "other.jsonl", [json.loads(line) for line in lines[1:]])
    assert main(["prepare", "taskfile", "--tasks", str(other), "--model", str(model_dir), "--quiet"]) == 0
    with pytest.raises(HyperguideError, match=r"is not the data run .* was trained on .* and the --tasks FILE"):
        generate(
            out, ["q?"], [["a", "b"]], method="cond-multitask", images=[path], options=TaskFileOptions(tasks=other)
        )  # noqa: E501
    # Another route than the prepared one is refused, not silently swapped.
    with pytest.raises(
        HyperguideError, match=r"was prepared with --encoder transformers --model .*tiny-clip.*, not embedded"
    ):
        load_universe("taskfile", TaskFileOptions(tasks=tasks, encoder="embedded"))


# ----------------------------------------------------------------------------------------- precomputed route


def synthetic_as_files(folder: Path) -> tuple[Path, Path]:
    """The synthetic universe written as a task file (its own support/query sides) and a features file."""
    u = synthetic_universe()
    tasks, tensors = [], {}
    for spec in u.tasks:
        sides = [("support", spec.support_images, spec.support_labels), ("query", spec.query_images, spec.query_labels)]
        examples = [
            {"image": i, "answer": spec.answers[y], "split": s}
            for s, ims, ys in sides
            for i, y in zip(ims, ys, strict=True)
        ]
        tasks.append(
            {
                "question": spec.question,
                "answers": list(spec.answers),
                "prompts": list(spec.prompts),
                "examples": examples,
            }
        )
    assert u.image_features is not None and u.text_features is not None and u.question_tokens is not None
    for key in u.image_features.keys:
        tensors[f"image/{key}"] = u.image_features.get([key])[0].clone()
    for key in u.text_features.keys:
        tensors[f"text/{key}"] = u.text_features.get([key])[0].clone()
    for key in u.question_tokens.keys:
        tensors[f"tokens/{key}"] = u.question_tokens.get(key).clone()
    save_file(tensors, str(folder / "features.safetensors"))
    return write_jsonl(folder / "synthetic.jsonl", tasks), folder / "features.safetensors"


@pytest.mark.integration
def test_precomputed_features_feed_a_run_exactly_what_the_synthetic_universe_does(tmp_path: Path) -> None:
    """The independent check: the synthetic universe's tasks and features as files, through the taskfile universe,
    give the same tasks tensor for tensor and the same run results number for number."""
    tasks, features = synthetic_as_files(tmp_path)
    assert main(["prepare", "taskfile", "--tasks", str(tasks), "--features-file", str(features), "--quiet"]) == 0
    mine, ref = load_universe("taskfile", TaskFileOptions(tasks=tasks)), synthetic_universe()
    assert not mine.shared_space and len(mine.tasks) == len(ref.tasks)
    for i in range(len(ref.tasks)):
        a, b = mine.task(i), ref.task(i)
        for name in ("question_emb", "answer_emb", "support_x", "support_y", "query_x", "query_y", "question_tokens"):
            assert torch.equal(getattr(a, name), getattr(b, name)), (i, name)

    split = ["--split", "kfold", "--folds", "2"]  # the same folds of the same task order in both universes
    for name, extra in (("synthetic", []), ("taskfile", ["--tasks", str(tasks)])):
        assert main(["bench", name, "--quick", "--quiet", "--out", str(tmp_path / name), *ROWS, *split, *extra]) == 0
    got, want = (read_json(tmp_path / n / "results.json")["methods"] for n in ("taskfile", "synthetic"))
    assert set(got) == set(want)
    for row in want:
        assert got[row]["zero_shot"]["per_task_acc"] == want[row]["zero_shot"]["per_task_acc"], row
        assert got[row]["k_shot"] == want[row]["k_shot"], row


def test_a_runs_default_folder_is_named_by_the_task_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tasks, features = synthetic_as_files(tmp_path)
    assert main(["prepare", "taskfile", "--tasks", str(tasks), "--features-file", str(features), "--quiet"]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["train", "chance", "taskfile", "--tasks", str(tasks), "--quick", "--quiet"]) == 0
    sha8 = hashlib.sha256(tasks.read_bytes()).hexdigest()[:8]
    assert (tmp_path / "runs" / f"taskfile-synthetic-{sha8}-random-quick" / "config.json").is_file()


BAD_FEATURES: list[tuple[str, Any, str]] = [
    (
        "beyond float32",
        lambda t: t.__setitem__("image/img3", torch.full((16,), 1e300, dtype=torch.float64)),
        r"tensor 'image/img3' \(for .*\) holds NaN or infinity in float32",
    ),
    (
        "missing",
        lambda t: t.pop("image/img3"),
        r"has no tensor 'image/img3' \(1 needed keys are missing\), which "
        r".*synthetic.jsonl, task \d+ .*example \d+: image 'img3' needs",
    ),
    (
        "shape",
        lambda t: t.__setitem__("text/attribute 0 has value 0", torch.zeros(2, 16)),
        r"tensor 'text/attribute 0 has value 0' \(for .*synthetic.jsonl, task 1 .*field 'prompts'\) "
        r"has shape \[2, 16\], expected \(D,\)",
    ),
    (
        "dimension",
        lambda t: t.__setitem__("image/img3", torch.zeros(15)),
        r"tensor 'image/img3' \(for .*example \d+: image 'img3'\) has dimension 15, but",
    ),
    (
        "nan",
        lambda t: t.__setitem__("image/img3", torch.full((16,), math.nan)),
        r"tensor 'image/img3' \(for .*image 'img3'\) holds NaN or infinity",
    ),
    (
        "integers",
        lambda t: t.__setitem__("image/img3", torch.zeros(16, dtype=torch.int64)),
        r"tensor 'image/img3' \(for .*image 'img3'\) is I64, not floating point",
    ),
]


@pytest.mark.parametrize(("case", "edit", "message"), BAD_FEATURES, ids=[c for c, _, _ in BAD_FEATURES])
def test_a_bad_features_file_is_refused_by_name_and_nothing_is_written(
    tmp_path: Path, isolated_home: Path, case: str, edit: Any, message: str
) -> None:
    from safetensors.torch import load_file

    tasks, features = synthetic_as_files(tmp_path)
    tensors = load_file(str(features))
    if case == "missing":  # an image a task uses
        assert any("img3" in json.dumps(t) for t in map(json.loads, tasks.read_text().splitlines()))
    edit(tensors)
    save_file(tensors, str(features))
    with pytest.raises(HyperguideError, match=message):
        prepare_universe("taskfile", TaskFileOptions(tasks=tasks, features_file=features))
    assert nothing_prepared(isolated_home)


def test_a_file_that_is_not_safetensors_and_bad_metadata_are_refused(tmp_path: Path, isolated_home: Path) -> None:
    tasks, features = synthetic_as_files(tmp_path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a tensor file")
    with pytest.raises(HyperguideError, match=r"features file .*junk.safetensors is not a readable safetensors file"):
        prepare_universe("taskfile", TaskFileOptions(tasks=tasks, features_file=junk))
    from safetensors.torch import load_file

    save_file(load_file(str(features)), str(features), metadata={"shared_space": "yes"})
    with pytest.raises(HyperguideError, match=r"metadata 'shared_space' must be 'true' or 'false', got 'yes'"):
        prepare_universe("taskfile", TaskFileOptions(tasks=tasks, features_file=features))
    assert nothing_prepared(isolated_home)


# ------------------------------------------------------------------------------------------------ refusals


def test_bad_task_files_and_images_are_refused_by_name_and_nothing_is_written(
    tmp_path: Path, isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("easy_vqa")
    fake_easyvqa(isolated_home)
    good = [{"image": f"easy-vqa:train/{i}", "answer": "ab"[i % 2]} for i in range(8)]

    def refused(examples: list[dict[str, str]], message: str, *flags: str) -> None:
        path = write_jsonl(
            tmp_path / "t.jsonl",
            [
                {"question": "ok?", "answers": ["a", "b"], "examples": good},
                {"question": "bad?", "answers": ["a", "b"], "examples": examples},
            ],
        )
        assert main(["prepare", "taskfile", "--tasks", str(path), "--quiet", *flags]) == 2
        assert re.search(message, capsys.readouterr().err), message
        assert nothing_prepared(isolated_home)

    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    Image.new("RGB", (32, 32)).save(tmp_path / "small.png")
    bad_examples = [
        ("nope.png", "a", r"t.jsonl, task 2 \('bad\?'\), example 7: image 'nope.png' does not exist"),
        ("broken.png", "a", r"task 2 \('bad\?'\), example 7: image 'broken.png'.*does not decode"),
        ("small.png", "a", r"task 2 \('bad\?'\), example 7: image 'small.png'.*32x32 pixels, expected 64x64"),
        ("easy-vqa:train/99999", "a", r"example 7: image 'easy-vqa:train/99999' is not an image of the installed"),
        ("../outside.png", "a", r"example 7: image '../outside.png' lies outside the images root"),
        ("easy-vqa:train/1", "c", r"task 2 \('bad\?'\), example 7: answer 'c' is not one of the task's answers"),
    ]
    for image, answer, message in bad_examples:
        refused([*good[:6], {"image": image, "answer": answer}], message)
    refused(
        good,
        r"--model is read by --encoder transformers, not by --encoder features",
        "--model",
        "m",
        "--encoder",
        "features",
    )
    refused(good, r"--encoder transformers needs --model", "--encoder", "transformers")
    assert main(["stats", "taskfile"]) == 2
    assert "universe 'taskfile' needs --tasks FILE" in capsys.readouterr().err
    path = write_jsonl(
        tmp_path / "t.jsonl", [{"question": q, "answers": ["a", "b"], "examples": good} for q in ("1?", "2?")]
    )
    assert main(["bench", "taskfile", "--tasks", str(path), "--quick", "--quiet", "--out", str(tmp_path / "r")]) == 2
    assert "is not prepared under" in capsys.readouterr().err
    with pytest.raises(HyperguideError, match=r"--prompts declarative is easyvqa's rule; leave it out"):
        load_universe("taskfile", TaskFileOptions(tasks=path), prompts="declarative")


# -------------------------------------------------------------------------------- what a universe task needs


def two_answers(question: str, images: list[str], answers: str = "ab") -> dict[str, Any]:
    return {
        "question": question,
        "answers": list(answers),
        "examples": [{"image": i, "answer": answers[n % len(answers)]} for n, i in enumerate(images)],
    }


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {
                "question": "q?",
                "answers": ["a", "b", "c"],
                "examples": [{"image": f"{i}.png", "answer": "ab"[i % 2]} for i in range(8)],
            },
            r"task 2 \('q\?'\): answer 'c' has no example",
        ),
        (
            {
                "question": "q?",
                "answers": ["a", "b"],
                "examples": [{"image": f"{i}.png", "answer": "a"} for i in range(6)]
                + [{"image": "x.png", "answer": "b"}],
            },
            r"task 2 \('q\?'\): its query examples give 1 answer\(s\) \['a'\]",
        ),
        (
            {
                "question": "q?",
                "answers": ["a", "b"],
                "examples": [{"image": f"{i}.png", "answer": "ab"[i % 2], "split": "query"} for i in range(6)],
            },
            r"its support examples give 0 answer\(s\)",
        ),
        (
            two_answers("q?", ["1.png", "2.png", "3.png", "1.png"]),
            r"task 2 \('q\?'\), example 4: image '1.png' is already example 1 of this task",
        ),
        (two_answers("ok?", [f"x{i}.png" for i in range(8)]), r"task 2 \('ok\?'\): asks the question of task 1"),
    ],
    ids=["unused answer", "one answer on the query side", "no support side", "an image twice", "a repeated question"],
)
def test_a_task_that_cannot_be_trained_and_scored_is_refused(tmp_path: Path, bad: dict[str, Any], message: str) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [two_answers("ok?", [f"{i}.png" for i in range(8)]), bad])
    with pytest.raises(HyperguideError, match=message):
        taskfile_structure(read_task_file(path, default_split=None))


def test_the_70_30_rule_is_meta_vqas(tmp_path: Path) -> None:
    """`split_examples` against `metavqa_rules.build_task`, the rule easyvqa's and Meta-VQA's tasks are built by."""
    from hyperguide.data.metavqa_rules import build_task

    rng = random.Random(0)
    answer_images = {a: [f"{a}{i}" for i in range(rng.randint(1, 15))] for a in ("x", "y", "z")}
    task = {
        "question": "q?",
        "answers": list(answer_images),
        "examples": [{"image": i, "answer": a} for a, ims in answer_images.items() for i in ims],
    }
    entry = read_task_file(write_jsonl(tmp_path / "t.jsonl", [task]), default_split=None).tasks[0]
    support, query = split_examples(entry.examples, entry.answers)
    want = build_task(answer_images)
    assert [[e.image, e.answer] for e in support] == want["train"]
    assert [[e.image, e.answer] for e in query] == want["test"]


def test_compositional_and_concepts_splits_hold_out_words(capsys: pytest.CaptureFixture[str]) -> None:
    def stats(split: str, *held_out: str) -> dict[str, Any]:
        assert (
            main(["stats", "taskfile", "--tasks", str(GROUPS), "--split", split, "--held-out", *held_out, "--json"])
            == 0
        )
        out: dict[str, Any] = json.loads(capsys.readouterr().out)
        return out

    compositional = stats("compositional", "warm", "cool")
    assert compositional["meta_test_tasks"] == 8 and compositional["meta_train_tasks"] == 35
    assert [s["meta_test_tasks"] for s in stats("concepts", "warm", "round+corners")["fold_sizes"]] == [4, 27]


# ---------------------------------------------------------------------------------------- caches and routes


def test_a_preparation_is_reused_until_an_image_or_the_encoder_changes(
    tmp_path: Path, model_dir: Path, images: list[tuple[str, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = clip_tasks(tmp_path, images)
    prepare = ["prepare", "taskfile", "--tasks", str(tasks), "--model", str(model_dir), "--quiet"]
    assert main(prepare) == 0 and "prepared" in capsys.readouterr().out
    assert main(prepare) == 0 and "reused cached preparation" in capsys.readouterr().out
    assert main([*prepare, "--force"]) == 0 and "reused" not in capsys.readouterr().out
    before = load_universe("taskfile", TaskFileOptions(tasks=tasks)).image_features
    changed = tmp_path / f"c0-{images[0][1].name}"
    Image.new("RGB", (48, 40), "red").save(changed)  # the same name, other pixels
    assert main(prepare) == 0 and "reused" not in capsys.readouterr().out
    after = load_universe("taskfile", TaskFileOptions(tasks=tasks)).image_features
    assert before is not None and after is not None
    assert not torch.equal(before.get([changed.name]), after.get([changed.name]))
    kept = f"c1-{images[1][1].name}"
    assert torch.equal(before.get([kept]), after.get([kept]))
    other = tmp_path / "other-model"
    other.mkdir()
    with pytest.raises(
        HyperguideError,
        match=r"prepared with --encoder transformers --model .*tiny-clip.*, not transformers --model .*other-model",
    ):
        load_universe("taskfile", TaskFileOptions(tasks=tasks, model=str(other)))


def test_a_hub_id_not_in_the_local_cache_is_refused_offline(tmp_path: Path, images: list[tuple[str, Path]]) -> None:
    tasks = clip_tasks(tmp_path, images)
    with pytest.raises(HyperguideError, match=r"cannot load CLIP model 'nobody/no-such-model' offline"):
        prepare_universe("taskfile", TaskFileOptions(tasks=tasks, model="nobody/no-such-model"))


def make_tiny_siglip(folder: Path, clip: Path) -> Path:
    """A randomly initialised SiglipModel (no text projection: it pools its last position) with the tiny CLIP's
    tokenizer files: a dual encoder that is not CLIP."""
    from transformers import SiglipConfig, SiglipModel

    folder.mkdir()
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((clip / name).read_bytes())
    vocab = len(json.loads((clip / "vocab.json").read_text()))
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    torch.manual_seed(0)
    config = SiglipConfig(
        text_config=dict(
            vocab_size=vocab,
            max_position_embeddings=40,
            pad_token_id=vocab - 1,
            bos_token_id=vocab - 2,
            eos_token_id=vocab - 1,
            **layers,
        ),
        vision_config=dict(image_size=32, patch_size=8, **layers),
    )
    SiglipModel(config).save_pretrained(folder)
    return folder


def test_a_dual_encoder_that_is_not_clip(tmp_path: Path, model_dir: Path, images: list[tuple[str, Path]]) -> None:
    """A tiny SigLIP: its features do not depend on the batch (texts padded to its full length), each question's
    pooled feature is its one token, and a run trains on it."""
    from hyperguide.encoders.clip import ClipEncoder

    siglip = make_tiny_siglip(tmp_path / "siglip", model_dir)
    encoder = ClipEncoder(siglip)
    assert encoder.dim == 32 and encoder.padding == "max_length"
    alone, batched = encoder.encode_texts(["left 0"]), encoder.encode_texts(["left 0", "a much longer text than that"])
    assert torch.allclose(alone[0], batched[0], atol=1e-5)
    tasks = clip_tasks(tmp_path, images)
    assert main(["prepare", "taskfile", "--tasks", str(tasks), "--model", str(siglip), "--quiet"]) == 0
    universe = load_universe("taskfile", TaskFileOptions(tasks=tasks))
    task = universe.task(0)
    assert task.question_tokens is not None and task.question_tokens.shape == (1, 32)
    assert torch.allclose(task.question_tokens[0], task.question_emb)
    out = tmp_path / "run"
    assert main(["bench", "taskfile", "--tasks", str(tasks), "--quick", "--quiet", "--out", str(out), *BASELINE]) == 0


def test_easyvqa_prepared_with_other_settings_is_not_replaced(tmp_path: Path, isolated_home: Path) -> None:
    pytest.importorskip("easy_vqa")
    fake_easyvqa(isolated_home)
    manifest = (isolated_home / "easyvqa" / "manifest.json").read_bytes()
    tasks = groups_subset(tmp_path / "groups.jsonl")
    with pytest.raises(HyperguideError, match=r"easyvqa is prepared in .* with other settings than these \(--seed 3"):
        prepare_universe("taskfile", TaskFileOptions(tasks=tasks, seed=3))
    assert (isolated_home / "easyvqa" / "manifest.json").read_bytes() == manifest and nothing_prepared(isolated_home)


def test_missing_tokens_and_a_missing_features_file_are_named(tmp_path: Path, isolated_home: Path) -> None:
    from safetensors.torch import load_file

    tasks, features = synthetic_as_files(tmp_path)
    tensors = load_file(str(features))
    question = next(k for k in tensors if k.startswith("tokens/")).removeprefix("tokens/")
    del tensors[f"tokens/{question}"]  # some questions have tokens: then every one must
    save_file(tensors, str(features))
    with pytest.raises(
        HyperguideError, match=r"no tensor 'tokens/.*' \(1 needed keys are missing\), which .*field 'question' needs"
    ):
        prepare_universe("taskfile", TaskFileOptions(tasks=tasks, features_file=features))
    with pytest.raises(HyperguideError, match=r"--features-file .*nope.safetensors is not a file"):
        prepare_universe("taskfile", TaskFileOptions(tasks=tasks, features_file=tmp_path / "nope.safetensors"))
    assert nothing_prepared(isolated_home)
