"""The house's machinery: the one training loop and its EMA, the events and the JSONL log, config files and
overrides, the typed results.json reader, and the tiers of the test suite."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from hyperguide.callbacks import JsonlLog, Lines
from hyperguide.config import RunConfig, apply_overrides, from_dict, knobs, merge, resolve_config, to_dict
from hyperguide.errors import HyperguideError
from hyperguide.eval.results import read_results
from hyperguide.events import EpochEnded, Event, FitStarted, Note, StageFinished, StageStarted, StepEnded
from hyperguide.train.loop import EMA, FitOptions, Probed, Probing, epochs_for, fit, plateau_reached

# ------------------------------------------------------------------------------------------------ the training loop


def _regression(seed: int = 0) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    torch.manual_seed(seed)
    return nn.Linear(3, 1), x, y


def test_fit_solves_a_least_squares_problem_and_logs_every_epoch() -> None:
    model, x, y = _regression()
    events: list[Event] = []

    def batches(epoch: int):
        for start in range(0, 64, 16):
            yield x[start : start + 16], y[start : start + 16]

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        xb, yb = batch
        return {"loss": ((model(xb) - yb) ** 2).mean(), "bias": model.bias[0]}

    history = fit(
        step, batches, torch.optim.Adam(model.parameters(), lr=0.05), epochs=150, name="ls", callbacks=[events.append]
    )
    assert len(history) == 150 and history[-1]["step"] == 600 and history[-1]["loss"] < 1e-4
    assert torch.allclose(model.weight.detach(), torch.tensor([[1.0, -2.0, 0.5]]), atol=1e-2)
    assert abs(history[-1]["bias"] - 0.3) < 1e-2
    assert isinstance(events[0], FitStarted) and events[0].epochs == 150
    assert sum(isinstance(e, StepEnded) for e in events) == 600
    ends = [e for e in events if isinstance(e, EpochEnded)]
    assert [e.epoch for e in ends] == list(range(1, 151)) and ends[-1].record == history[-1]


def test_fit_probes_the_fit_and_stops_at_its_plateau() -> None:
    """Probes at evenly spread epochs, recorded in the log and run in eval mode; with patience, training stops once
    the first measure stops rising, and runs to the end while it rises."""
    model, x, y = _regression()

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": ((model(batch[0]) - batch[1]) ** 2).mean()}

    def measure(m: nn.Module) -> dict[str, float]:
        assert not m.training
        with torch.no_grad():
            return {"fit_r2": min(95.0, 100 * (1 - float(((m(x) - y) ** 2).mean() / y.var())))}  # saturates at 95

    def run(probing: Probing[nn.Linear]) -> list[dict[str, float]]:
        model.train()
        out = fit(step, lambda e: [(x, y)], torch.optim.Adam(model.parameters(), lr=0.05), epochs=400, name="ls",
                  probing=Probed(probing, model))  # fmt: skip
        assert model.training  # its mode is restored after each probe
        return out

    full = run(Probing(measure, count=8))
    probed = [r for r in full if "fit_r2" in r]
    assert len(full) == 400 and [r["epoch"] for r in probed] == [50, 100, 150, 200, 250, 300, 350, 400]
    torch.manual_seed(0)
    model.reset_parameters()
    stopped = run(Probing(measure, count=40, patience=3, min_delta=0.5))
    assert stopped[-1].get("stopped") == 1.0 and len(stopped) < 400
    values = [r["fit_r2"] for r in stopped if "fit_r2" in r]
    assert values[-1] == 95.0 and max(values[-3:]) <= max(values[:-3]) + 0.5  # three probes without progress
    assert plateau_reached([1, 5, 5.2, 5.1, 5.3], 3, 0.5) and not plateau_reached([1, 5, 5.2, 5.6, 5.3], 3, 0.5)


def test_fit_clips_the_gradient_and_runs_the_step_hooks() -> None:
    model, x, y = _regression()
    seen_lr: list[float] = []
    after: list[int] = []
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)

    def step(batch: object) -> dict[str, torch.Tensor]:
        seen_lr.append(optimizer.param_groups[0]["lr"])
        return {"loss": 1000.0 * ((model(x) - y) ** 2).mean()}

    before = torch.cat([model.weight.flatten(), model.bias]).detach().clone()
    options = FitOptions(
        grad_clip=0.5, lr_at=lambda n: 0.1 * (n + 1), after_step=lambda: after.append(1), history="step"
    )
    history = fit(step, lambda e: [None], optimizer, epochs=1, name="clip", options=options)
    moved = torch.cat([model.weight.flatten(), model.bias]).detach() - before
    assert history[0]["grad_norm"] > 0.5  # logged before clipping
    assert seen_lr == [0.1] and after == [1]
    # one SGD step at lr 0.1 on a gradient clipped to norm 0.5 moves the parameters by 0.05 (the bias included)
    assert float(moved.norm()) == pytest.approx(0.05, rel=1e-4)


def test_ema_warms_up_and_averages() -> None:
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema = EMA(net, decay=0.9)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update()  # decay min(0.9, 2/11): the average moves 9/11 of the way
    assert float(ema.module.weight) == pytest.approx(9 / 11)
    for _ in range(200):
        ema.update()
    assert float(ema.module.weight) == pytest.approx(1.0, abs=1e-6) and not ema.module.weight.requires_grad
    with pytest.raises(ValueError, match="decay"):
        EMA(net, decay=1.0)


def test_epochs_for_a_minimum_number_of_steps() -> None:
    assert epochs_for(10, 0, 3) == 10 and epochs_for(10, 100, 3) == 34 and epochs_for(1, 5, 0) == 5


# -------------------------------------------------------------------------------------------------- events, logs


def test_jsonl_log_appends_as_it_comes_and_never_follows_a_symlink(tmp_path: Path) -> None:
    path = tmp_path / "run" / "stage" / "seed0-fold0.metrics.jsonl"
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    path.parent.mkdir(parents=True)
    os.symlink(outside, path)  # planted in the run folder
    log = JsonlLog(lambda stage, seed, fold: tmp_path / "run" / stage / f"seed{seed}-fold{fold}.metrics.jsonl")
    log(StageStarted("stage", 0, 0, 10))
    log(EpochEnded("stage", 1, 2, {"epoch": 1, "loss": 0.5}))
    assert json.loads(path.read_text()) == {"epoch": 1, "loss": 0.5}  # on disk before the stage ends
    log(EpochEnded("stage", 2, 2, {"epoch": 2, "loss": 0.25}))
    log(StageFinished("stage", 0, 0, 1.0))
    assert not path.is_symlink() and len(path.read_text().splitlines()) == 2
    assert outside.read_text() == "precious\n"
    log(EpochEnded("other", 1, 1, {"epoch": 1}))  # outside a stage: nothing is written
    assert len(path.read_text().splitlines()) == 2
    log(StageStarted("stage", 0, 0, 10))  # the stage runs again (after a crash): its log starts again
    log(EpochEnded("stage", 1, 2, {"epoch": 1, "loss": 0.7}))
    assert [json.loads(line)["loss"] for line in path.read_text().splitlines()] == [0.7]


def test_lines_print_what_a_person_reads(capsys: pytest.CaptureFixture[str]) -> None:
    lines = Lines(prefix="> ")
    for event in (StageStarted("hvae", 1, 0, 75), Note("done"), StepEnded("hvae", 3, 0.1)):
        lines(event)
    assert capsys.readouterr().err == "> train hvae seed 1 fold 0 (75 tasks)\n> done\n"


# ------------------------------------------------------------------------------------------------------- config


def test_config_round_trips_and_lists_every_knob_with_help() -> None:
    config = resolve_config("quick")
    assert from_dict(RunConfig, json.loads(json.dumps(to_dict(config)))) == config
    every = knobs(config)
    assert len({k.key for k in every}) == len(every) >= 90
    assert all(k.help for k in every), [k.key for k in every if not k.help]
    steps = next(k for k in every if k.key == "method.oracle.steps")
    assert (steps.value, steps.default) == (10, 100)  # a nested default is its parent's


def test_bad_config_values_name_the_key_and_what_is_allowed(tmp_path: Path) -> None:
    cases = [
        (["method.inner.optimizer=rmsprop"], "config.method.inner.optimizer: 'rmsprop' is not one of 'sgd', 'adam'"),
        (["split=iid"], "config.split: 'iid' is not one of 'random', 'compositional', 'kfold'"),
        (["seeds=[]"], "config.seeds: must be at least one seed, got []"),
        (["seeds=[0,0]"], "config.seeds: must be distinct"),
        (["hyperldm.gammas=[1,-2]"], "config.hyperldm.gammas: must be finite numbers >= 0"),
        (["train.lr=NaN"], "config.train.lr: NaN is not a finite number"),
        (["train=3"], "'train' is a section"),
        (['eval.k_shots=["0"]'], "config.eval.k_shots: must be positive integers or 'full'"),
    ]
    for overrides, message in cases:
        with pytest.raises(HyperguideError, match=message.replace("(", r"\(").replace("[", r"\[")):
            apply_overrides(RunConfig(), overrides)
    with pytest.raises(HyperguideError, match=r"config: unknown key 'trian'; known here"):
        merge(RunConfig(), {"trian": {"epochs": 1}})
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"epochs": "many"}}')
    with pytest.raises(HyperguideError, match=r"config file .*bad.json.train.epochs: expected int, got 'many'"):
        resolve_config(bad)
    assert merge(RunConfig(), {"$comment": "ignored", "train": {"epochs": 2}}).train.epochs == 2


# -------------------------------------------------------------------------------------------------- results.json


def test_read_results_names_a_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    row = {"zero_shot": {"acc": {"mean": 1, "ci95": 0, "per_seed": [1]}, "per_task_acc": [[1]]}, "k_shot": {}}
    data = {"universe": "u", "split": "random", "folds": 1, "seeds": [0], "test_tasks": ["q"], "methods": {"r": row}}
    path.write_text(json.dumps(data))
    with pytest.raises(HyperguideError, match=r"methods\['r'\] lacks 'uses_support_labels'"):
        read_results(path)
    row["uses_support_labels"] = False
    path.write_text(json.dumps(data))
    with pytest.raises(HyperguideError, match=r"methods\['r'\].zero_shot lacks 'bal_acc'"):
        read_results(path)
    row["zero_shot"]["bal_acc"] = row["zero_shot"]["acc"]
    path.write_text(json.dumps(data))
    assert read_results(path)["diagnostics"] == {}


# ------------------------------------------------------------------------------------------------ the test tiers

TESTS = Path(__file__).resolve().parent
LEFT_OUT = {"integration", "slow"}  # the marks `make test-fast` deselects


def _mark(node: ast.expr) -> str | None:
    """X of a `pytest.mark.X` or `pytest.mark.X(...)` expression, else None."""
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute) and target.value.attr == "mark":
        return target.attr
    return None


def _marked_whole(tree: ast.Module, lines: list[str]) -> bool:
    """Whether the module's `pytestmark` leaves it out of the fast tier; its line must say why."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and "pytestmark" in {getattr(t, "id", None) for t in node.targets}:
            values = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
            if {_mark(v) for v in values} & LEFT_OUT:
                assert any("#" in line for line in lines[node.lineno - 1 : node.end_lineno]), "say why it is left out"
                return True
    return False


def test_every_test_module_keeps_unit_tests_in_the_fast_tier() -> None:
    """`make test-fast` runs the default suite less the tests marked integration or slow: every test module keeps at
    least one test in it, unless its `pytestmark` leaves the whole module out and says why."""
    for path in sorted(TESTS.glob("test_*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        tests = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
        fast = [t for t in tests if not {_mark(d) for d in t.decorator_list} & LEFT_OUT]
        assert fast or _marked_whole(tree, source.splitlines()), f"{path.name} has no test in the fast tier"
