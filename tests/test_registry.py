"""The registries: a new table row is one `RowSpec` (train, evaluate, report and the CLI need nothing else), a new
universe is one source; every built-in row's declaration agrees with the model it builds."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from hyperguide.cli import main
from hyperguide.config import HyperLDMConfig, MethodConfig, RunConfig
from hyperguide.data.batch import TaskBatch
from hyperguide.data.synthetic import synthetic_universe
from hyperguide.data.tasks import Universe
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback
from hyperguide.guides import GUIDES
from hyperguide.meta.guided import latent_space
from hyperguide.meta.methods import Method, UncondHNetMAML
from hyperguide.models.adapter import AdapterShape
from hyperguide.report.markdown import render_markdown, row_kind
from hyperguide.report.plots import GAMMA_SWEEP, write_plots
from hyperguide.rows import ROWS, BuildContext, RowSpec, register, row_spec, table_rows, unregister
from hyperguide.run.evaluate import evaluate_run
from hyperguide.run.train import train_run
from hyperguide.trained.folder import RunFolder
from hyperguide.trained.loading import adapter_shape, question_dim
from hyperguide.trained.stage_table import stage
from hyperguide.universes import UNIVERSES, UniverseOptions, UniverseSource, load_universe, option
from hyperguide.universes.base import Encoders, no_encoders
from tests.helpers import TINY

TOY = "toy-question-shift"
# The module each stage of the HNet's chain saves (a stage's checkpoint must load into the row's part); a guide's
# stages save what its spec builds.
CHAIN_MODULES = {"uncond-hnet-maml": "UncondHNetMAML", "hvae": "WeightVAE", "question-bank": "QuestionBank"}


def saved_module(name: str, shape: AdapterShape, question_dim: int, config: RunConfig) -> str:
    """The class a stage's checkpoint holds: the chain's, or its guide's network over its space."""
    spec = stage(name)
    if name in CHAIN_MODULES:
        return CHAIN_MODULES[name]
    assert spec.space is not None, name
    base = UncondHNetMAML(shape, question_dim, config.method)
    space = latent_space(spec.space, base, config.hvae)
    return type(GUIDES[spec.family].build(BuildContext(shape, question_dim, config), space)).__name__


class QuestionShift(Method):
    """A toy method: one shared adapter, plus a learned linear map of the question into its output bias b2, scaled
    by the row's swept value (0: the question is ignored)."""

    trained_by = "multitask"

    def __init__(self, shape: AdapterShape, question_dim: int, config: MethodConfig, scale: float) -> None:
        super().__init__(shape, question_dim, config)
        self.weights = self._own_weights()
        self.shift = nn.Linear(question_dim, shape.feature_dim)
        self.scale = scale

    def init_phi(self, batch: TaskBatch) -> torch.Tensor:
        parts = self.shape.unflatten(self.weights.expand(len(batch), -1))
        parts["b2"] = parts["b2"] + self.scale * self.shift(batch.question_emb)
        return self.shape.flatten(parts)


def _build(ctx: BuildContext) -> Method:
    return QuestionShift(ctx.shape, ctx.question_dim, ctx.config.method, 1.0 if ctx.value is None else ctx.value)


@pytest.fixture
def toy_row() -> Iterator[RowSpec]:
    spec = register(
        RowSpec(
            TOY,
            "ablation",
            "a shared adapter whose output bias the question shifts, by the swept scale",
            build=_build,
            stages=(TOY,),  # its own stage: meta-trained as a whole by its meta_loss
            reads_question=True,
            sweep=lambda config: (0.0, 1.0),
        )
    )
    yield spec
    unregister(TOY)


def test_a_row_added_through_the_registry_alone_trains_evaluates_and_reports(toy_row: RowSpec, tmp_path: Path) -> None:
    universe = synthetic_universe()
    config = replace(TINY, methods=("chance", "cond-multitask", TOY), seeds=(0,))
    folder = RunFolder(tmp_path / "run")
    seconds = train_run(universe, config, folder)
    assert set(seconds) == {"cond-multitask", TOY} and seconds[TOY] > 0
    log = [json.loads(line) for line in folder.metrics(TOY, 0, 0).read_text().splitlines()]
    assert len(log) == config.train.epochs and log[-1]["loss"] < log[0]["loss"]  # it fits its training tasks

    results = evaluate_run(universe, folder)
    assert list(results["methods"]) == ["chance", "cond-multitask", f"{TOY}@0", f"{TOY}@1"]
    toy0, toy1 = (results["methods"][f"{TOY}@{v}"] for v in (0, 1))
    assert toy0["train_seconds"] == toy1["train_seconds"] > 0 and not toy1["uses_support_labels"]
    assert toy0["zero_shot"]["per_task_acc"] != toy1["zero_shot"]["per_task_acc"]  # the scale is the row's value
    assert row_kind(f"{TOY}@1") == "ablation"

    plots = write_plots(results, folder.path)
    assert plots["Zero-shot accuracy against the guidance scale"] == GAMMA_SWEEP  # a sweeping row is plotted
    table = render_markdown(results, plots)
    assert f"| `{TOY}@0` |" in table and f"| `{TOY}@1` |" in table


def test_the_cli_lists_and_trains_a_registered_row(toy_row: RowSpec, tmp_path: Path, capsys) -> None:
    assert main(["config", "synthetic", "--quick", "--json"]) == 0
    assert TOY in json.loads(capsys.readouterr().out)["methods"]
    run = tmp_path / "cli"
    assert main(["train", f"{TOY}@1", "synthetic", "--quick", "--seeds", "0", "--out", str(run)]) == 0
    assert (run / TOY / "seed0-fold0.safetensors").is_file()


@pytest.mark.parametrize("few_shot_scale", [0.0, 2.0])
def test_every_row_declares_what_its_model_does(few_shot_scale: float) -> None:
    universe = synthetic_universe()
    tasks = universe.materialize(range(3))
    config = replace(RunConfig(), hyperldm=HyperLDMConfig(few_shot_scale=few_shot_scale))
    shape, dq = adapter_shape(tasks, config), question_dim(tasks)
    for row in table_rows(config):
        spec = row.spec
        if spec.build is None:
            assert spec.score is not None and not spec.stages
            continue
        method = row.build(shape, dq, config)
        assert method.uses_support_for_zero_shot == spec.labels_used(config), row.name
        assert (method.trained_by == "none") == (not spec.stages), row.name
        if spec.trained_as_a_whole:
            assert method.trained_by in ("multitask", "maml") and method.trained_parts() == [method], row.name
        elif spec.stages:  # a guidance row: its parts, in the order of its stages, are what those stages save
            parts = method.trained_parts()
            assert [type(p).__name__ for p in parts] == [saved_module(s, shape, dq, config) for s in spec.stages]
        for name in spec.stages:
            assert stage(name).name == name  # every stage resolves
    assert row_spec("hnet+hyperldm").labels_used(config) == (few_shot_scale > 0)
    assert [s.bound for s in ROWS.values() if s.bound] == ["lower", "upper"]


@dataclass(frozen=True)
class SmallOptions(UniverseOptions):
    """The toy universe's own option, declared once: its flag, its help and its default come from here."""

    attributes: int = option(2, help="how many attributes the generated tasks ask about (default 2)")


class SmallSynthetic(UniverseSource[SmallOptions]):
    """A universe of a few attributes with an option of its own, registered by a test: one class, its options and
    one `register` line."""

    name = "small-synthetic"
    summary = "6 generated tasks per attribute"
    Options = SmallOptions

    def structure(self, options: SmallOptions, prompts: str) -> Universe:
        return synthetic_universe(n_attributes=options.attributes, tasks_per_attribute=6, seed=options.seed)

    def prepare(self, options: SmallOptions, callbacks: Sequence[Callback]) -> dict[str, Any]:
        return {"universe": self.name, "cached": True}

    def load(self, options: SmallOptions, prompts: str) -> Universe:
        return self.structure(options, prompts)

    def encoders(self, options: SmallOptions, prompts: str) -> Encoders:
        raise no_encoders(self.name)


@pytest.fixture
def small_universe() -> Iterator[SmallSynthetic]:
    from hyperguide.universes import register as register_universe

    source = SmallSynthetic()
    register_universe(source)
    yield source
    UNIVERSES.pop(source.name)


def test_a_registered_universe_works_everywhere(small_universe: SmallSynthetic, tmp_path: Path, capsys) -> None:
    assert main(["stats", "small-synthetic", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["meta_train_tasks"] + 4 == 12
    assert len(load_universe("small-synthetic").tasks) == 12
    run = tmp_path / "run"
    argv = ["bench", "small-synthetic", "--quick", "--seeds", "0", "--out", str(run), "--set", 'methods=["chance"]']
    assert main(argv) == 0
    assert json.loads((run / "results.json").read_text())["universe"] == "small-synthetic"


def test_a_registered_universe_gets_the_flags_of_its_options(
    small_universe: SmallSynthetic, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    given: list[SmallOptions] = []
    structure = small_universe.structure

    def recorded(options: SmallOptions, prompts: str) -> Universe:
        given.append(options)
        return structure(options, prompts)

    monkeypatch.setattr(small_universe, "structure", recorded)
    assert main(["stats", "small-synthetic", "--attributes", "3", "--seed", "1", "--json"]) == 0
    assert given == [SmallOptions(attributes=3, seed=1)]  # the parsed values, in the universe's own options
    stats = json.loads(capsys.readouterr().out)
    assert stats["meta_train_tasks"] + stats["meta_test_tasks"] == 18
    with pytest.raises(SystemExit):
        main(["stats", "small-synthetic", "--help"])
    assert "--attributes ATTRIBUTES" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["stats", "synthetic", "--attributes", "3"])  # the option is the toy universe's alone
    assert "unrecognized arguments: --attributes 3" in capsys.readouterr().err
    assert main(["config", "small-synthetic", "--attributes", "4"]) == 0
    assert "--attributes = 4" in capsys.readouterr().out


def test_a_universe_whose_options_no_flag_can_read_is_refused_when_registered() -> None:
    from hyperguide.universes import register as register_universe

    @dataclass(frozen=True)
    class Listed(UniverseOptions):
        sizes: list[int] = option(factory=list, help="sizes")

    @dataclass(frozen=True)
    class Clashing(UniverseOptions):
        tasks: int = option(0, help="how many tasks")  # taskfile reads its --tasks as a path

    refusals = [
        (Listed, TypeError, r"Listed\.sizes: a flag cannot be read as list\[int\]"),
        (Clashing, ValueError, r"option 'tasks' is read as int.*'taskfile' reads its"),
    ]
    for options, error, match in refusals:
        source = SmallSynthetic()
        source.Options = options
        with pytest.raises(error, match=match):
            register_universe(source)
        assert source.name not in UNIVERSES


# ------------------------------------------------------------------------------ run folders and train targets


def test_stage_targets_train_their_stages_only(tmp_path: Path) -> None:
    from hyperguide.run.train import resolve_targets

    assert resolve_targets(["collect"]) == ((), ("latents",))
    assert resolve_targets(["hyperldm"]) == (
        ("hnet+hyperldm", "hvae+hyperldm", "hnet+hyperldm-attention"),
        ("hyperldm-hnet", "hyperldm-hvae", "hyperldm-hnet-attention"),
    )
    assert resolve_targets(["hvae+hyperldm@2", "hvae"]) == (("hvae+hyperldm",), ("hvae",))
    run = tmp_path / "run"
    assert main(["collect", "synthetic", "--quick", "--seeds", "0", "--out", str(run)]) == 0
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == ["latents", "uncond-hnet-maml"]
    assert json.loads((run / "config.json").read_text())["methods"] == []


def test_a_run_folder_gathers_methods_refuses_other_configs_and_reads_old_ones(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.write_config(replace(TINY, methods=("chance",)))
    merged = folder.write_config(replace(TINY, methods=("oracle",)))
    assert merged.methods == ("chance", "oracle") == folder.read_config().methods
    with pytest.raises(HyperguideError, match=r"different config \(differs in: seeds\)"):
        folder.write_config(replace(TINY, methods=("chance",), seeds=(7,)))
    with pytest.raises(HyperguideError, match=r"different config \(differs in: train\)"):
        folder.write_config(replace(TINY, methods=("chance",), train=replace(TINY.train, lr=0.5)))
    # evaluation-only settings may change: the run is then evaluated with them
    sampled = replace(TINY, methods=("chance",), hyperldm=replace(TINY.hyperldm, sample_steps=7))
    assert folder.write_config(sampled).hyperldm.sample_steps == 7 == folder.read_config().hyperldm.sample_steps
    # a config.json of the version before the row registry: rows in `methods`, a dead `train.log_every`
    old = json.loads((folder.path / "config.json").read_text())
    old["methods"] = ["chance", "hnet+hyperldm@0", "hnet+hyperldm@1.5"]
    old["train"]["log_every"] = 1
    (folder.path / "config.json").write_text(json.dumps(old))
    assert folder.read_config().methods == ("chance", "hnet+hyperldm")
    assert folder.write_config(replace(TINY, methods=("chance",))).methods == ("chance", "hnet+hyperldm")
    assert "log_every" not in json.loads((folder.path / "config.json").read_text())["train"]
