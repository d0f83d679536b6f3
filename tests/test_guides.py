"""A guidance model is one registration: a toy guide (a linear map from the question to the latent, fitted in closed
form by least squares) registered through `register_guide` alone is trained, evaluated and reported, by a stage body
of its own or by the generic one through its trainer; and the built-in guides' declarations derive the stages,
groups and report columns the project had written out by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from hyperguide.cli import main
from hyperguide.data.batch import Questions, TaskBatch
from hyperguide.data.synthetic import synthetic_universe
from hyperguide.diffusion.noise import Noise
from hyperguide.eval.fit import latent_scores, mean
from hyperguide.events import Callback
from hyperguide.guides import BUILTIN_GUIDES, GUIDES, BuildContext, GuideSpec, Measure
from hyperguide.guides.spec import GENERIC_BODY, ZERO_SHOT_FIT
from hyperguide.meta.guided import ZeroShot
from hyperguide.meta.spaces import LatentSpace
from hyperguide.report.markdown import render_markdown
from hyperguide.rows import ROWS, register_guide, unregister_guide
from hyperguide.run.evaluate import evaluate_run
from hyperguide.run.stages import StageContext, StageOutput
from hyperguide.run.train import resolve_targets, train_run
from hyperguide.train.loop import Probing
from hyperguide.trained.folder import RunFolder
from hyperguide.trained.stage_table import stage, stage_families, stage_groups, stage_table
from tests.helpers import TINY


class QuestionMap(nn.Module):
    """The toy guide's network: latent = W q + b."""

    def __init__(self, question_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.map = nn.Linear(question_dim, latent_dim)

    def forward(self, question: torch.Tensor) -> torch.Tensor:
        return self.map(question)


def least_squares(questions: torch.Tensor, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimum-norm (W, b) of min ||[Q 1] [W b]^T - Z||: the closed form the toy's stage stores."""
    design = torch.cat([questions, torch.ones(len(questions), 1)], dim=1).double()
    solution = torch.linalg.pinv(design) @ latents.double()
    return solution[:-1].T.float(), solution[-1].float()


def train_toy_stage(ctx: StageContext, generator: torch.Generator) -> StageOutput:
    """The toy's stage body: no loop, the least-squares map from the meta-train questions to their tasks' mean
    adapted latents; its fit is the accuracy of the latents it gives those questions."""
    space = ctx.load_space(ctx.space_kind)
    latents = space.from_hnet_latents(ctx.load_latents().mean(0))[0]
    questions = torch.stack([t.question_emb for t in ctx.train_tasks])
    model = QuestionMap(questions.shape[1], space.latent_dim)
    weight, bias = least_squares(questions, latents.detach())
    with torch.no_grad():
        model.map.weight.copy_(weight)
        model.map.bias.copy_(bias)
        fit = mean(latent_scores(space, ctx.train_tasks, model(questions))["acc"])
    return StageOutput(model, metadata={"train_acc": fit})


def least_squares_trainer(
    space: LatentSpace,
    latents: torch.Tensor,
    questions: Questions,
    config: None,
    *,
    generator: torch.Generator,
    name: str,
    device: str,
    probing: Probing[Any] | None,
    callbacks: Sequence[Callback],
) -> tuple[nn.Module, list[dict[str, float]]]:
    """The same closed form as a `GuideTrainer`, for the generic stage body (which measures the fit itself)."""
    model = QuestionMap(int(questions.emb.shape[1]), space.latent_dim)
    weight, bias = least_squares(questions.emb, space.from_hnet_latents(latents.mean(0))[0].detach())
    with torch.no_grad():
        model.map.weight.copy_(weight)
        model.map.bias.copy_(bias)
    return model.eval(), []


def _build(ctx: BuildContext, space: LatentSpace) -> nn.Module:
    return QuestionMap(ctx.question_dim, space.latent_dim)


def _mapped(space: LatentSpace, guide: nn.Module, batch: TaskBatch, x0: torch.Tensor, noise: Noise) -> torch.Tensor:
    return guide(batch.question_emb)


def _zero_shot(ctx: BuildContext) -> ZeroShot:
    return _mapped


TOY = GuideSpec(
    "toymap",
    build=_build,
    zero_shot=_zero_shot,
    body=f"{__name__}:train_toy_stage",
    summary="a least-squares map from the question to {space} latent",
    stage_summary="the least-squares question map over {space} latents",
    section="",  # it reads no config section
    attention=False,
    kind="ablation",
    paper=False,
    fit=(Measure("train_acc", "toy map: acc on meta-train"),),
)


TRAINED = GuideSpec(
    "toytrained",
    build=_build,
    zero_shot=_zero_shot,
    trainer=least_squares_trainer,
    summary="a least-squares map from the question to {space} latent, by the generic stage body",
    stage_summary="the least-squares question map over {space} latents",
    section="",
    spaces=("hnet",),
    attention=False,
    kind="ablation",
    paper=False,
)


@pytest.fixture
def toy_guide() -> Iterator[GuideSpec]:
    register_guide(TOY)
    yield TOY
    unregister_guide(TOY.name)


@pytest.fixture(params=[TOY, TRAINED], ids=["own-body", "generic-body"])
def any_toy(request: pytest.FixtureRequest) -> Iterator[GuideSpec]:
    guide: GuideSpec = request.param
    register_guide(guide)
    yield guide
    unregister_guide(guide.name)


def test_the_toy_least_squares_is_the_closed_form() -> None:
    """The toy's own check: with fewer tasks than question dimensions the map interpolates its targets exactly."""
    generator = torch.Generator().manual_seed(0)
    questions, latents = torch.randn(5, 12, generator=generator), torch.randn(5, 3, generator=generator)
    weight, bias = least_squares(questions, latents)
    assert torch.allclose(questions @ weight.T + bias, latents, atol=1e-4)


def test_registering_a_guide_derives_its_stages_group_rows_and_columns(toy_guide: GuideSpec) -> None:
    assert stage_groups()["toymap"] == ("toymap-hnet", "toymap-hvae")
    hnet, hvae = stage("toymap-hnet"), stage("toymap-hvae")
    assert (hnet.deps, hvae.deps) == (("latents",), ("hvae",)) and hnet.shaped_by == hvae.shaped_by == ()
    assert stage("toymap-hvae-pointer").deps == ("hvae-pointer",)
    assert ROWS["hnet+toymap"].stages == ("uncond-hnet-maml", "toymap-hnet")
    assert ROWS["hvae+toymap"].stages == ("uncond-hnet-maml", "hvae", "toymap-hvae")
    assert not ROWS["hnet+toymap-pointer"].default and "hnet+toymap-attention" not in ROWS  # attention=False
    assert stage_families()["toymap"] == TOY.fit
    register_guide(TRAINED)
    try:  # the generic stage body's guide: its fit is its zero-shot accuracy on the meta-train tasks
        assert stage("toytrained-hnet").body == GENERIC_BODY and stage_families()["toytrained"] == (ZERO_SHOT_FIT,)
        with pytest.raises(ValueError, match="not both"):
            replace(TRAINED, body=f"{__name__}:train_toy_stage")
    finally:
        unregister_guide(TRAINED.name)
    assert resolve_targets(["toymap"]) == (("hnet+toymap", "hvae+toymap"), ("toymap-hnet", "toymap-hvae"))


def test_unregistering_a_guide_leaves_the_registries_as_they_were() -> None:
    rows, stages = list(ROWS), list(stage_table())
    register_guide(TOY)
    unregister_guide(TOY.name)
    assert list(ROWS) == rows and list(stage_table()) == stages and TOY.name not in GUIDES


@pytest.mark.integration
def test_a_guide_registered_alone_trains_evaluates_and_reports(any_toy: GuideSpec, tmp_path: Path) -> None:
    universe = synthetic_universe()
    row, own = f"hnet+{any_toy.name}", f"{any_toy.name}-hnet"
    config = replace(TINY, methods=("chance", "uncond-hnet-maml", row), seeds=(0,))
    folder = RunFolder(tmp_path / "run")
    seconds = train_run(universe, config, folder)
    assert set(seconds) == {"uncond-hnet-maml", "latents", own}
    assert (folder.path / own / "seed0-fold0.safetensors").is_file()

    results = evaluate_run(universe, folder)
    assert list(results["methods"]) == ["chance", "uncond-hnet-maml", row]
    toy = results["methods"][row]
    chance = results["methods"]["chance"]["zero_shot"]["acc"]["mean"]
    # fit first: the map reproduces its meta-train tasks' latents well enough to beat chance on them by far, and
    # the stage's own fit measure is its row's zero-shot accuracy on those tasks
    fit = results["fit"]["stages"][own]["train_acc"]["mean"]
    assert fit > chance + 20 and results["fit"]["rows"][row]["acc"]["mean"] == pytest.approx(fit, abs=1e-6)
    assert 0 <= toy["zero_shot"]["acc"]["mean"] <= 100 and toy["train_seconds"] > 0

    report = render_markdown(results, {})
    assert f"| `{row}` |" in report and f"| `{own}` |" in report
    assert all(m.title in report for m in any_toy.fit_measures if m.title)


@pytest.mark.integration
def test_the_cli_trains_a_registered_guide_by_its_group(toy_guide: GuideSpec, tmp_path: Path, capsys) -> None:
    run = tmp_path / "cli"
    assert main(["train", "toymap", "synthetic", "--quick", "--seeds", "0", "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["methods"] == ["hnet+toymap", "hvae+toymap"]
    assert {p.name for p in run.iterdir() if p.is_dir()} >= {"toymap-hnet", "toymap-hvae", "hvae"}


def test_the_built_in_guides_give_the_stage_table_and_rows() -> None:
    """The built-in declarations give the stage table's groups, shaping sections and attention settings, and the
    rows that combine two guides' stages."""
    assert [g.name for g in BUILTIN_GUIDES] == ["hyperclip", "hyperldm", "regressor"]
    groups = stage_groups()
    assert groups["hyperclip"] == ("hyperclip-hnet", "hyperclip-hvae", "hyperclip-hnet-attention")
    assert groups["hyperldm"] == ("hyperldm-hnet", "hyperldm-hvae", "hyperldm-hnet-attention")
    assert groups["regressor"] == ("regressor-hnet", "regressor-hnet-attention")
    assert stage("hyperldm-hnet-attention").overrides == ("hyperldm.question=attention",)
    assert stage("hyperclip-hvae").diagnostic is not None and stage("hyperclip-hvae").shaped_by == ("hyperclip",)
    assert ROWS["hnet+hyperldm+hyperclip-attention"].overrides == (
        "hyperldm.question=attention",
        "hyperclip.question=attention",
    )
    assert ROWS["hnet+hyperldm+hyperclip-attention"].stages == (
        "uncond-hnet-maml",
        "hyperldm-hnet-attention",
        "hyperclip-hnet-attention",
    )
    assert list(stage_families()) == ["hvae", "hyperclip", "hyperldm", "regressor"]
    assert set(stage_table()) == {
        "latents", "hvae", "question-bank", "latents-pointer", "hvae-pointer",
        *(f"{g}-{s}{p}" for g in ("hyperclip", "hyperldm") for s in ("hnet", "hvae", "hnet-attention")
          for p in ("", "-pointer")),
        "regressor-hnet", "regressor-hnet-attention", "regressor-hnet-pointer", "regressor-hnet-attention-pointer",
    }  # fmt: skip


def test_every_stage_names_a_body_that_imports() -> None:
    """A stage's body is named by a string (inference must not import it): each one resolves to a function."""
    from hyperguide.rows import CHAIN_NAMES, ROWS
    from hyperguide.run.stages import stage_body

    assert all(callable(stage_body(spec)) for spec in stage_table().values())
    assert callable(stage_body(stage("cond-multitask")))  # a meta-trained row's
    assert set(CHAIN_NAMES) == {s for s in stage_table() if not s.endswith("-pointer") and stage(s).guide is None} | {
        "collect"
    }
    assert all(ROWS[row].stages for row in ROWS if row.endswith("-pointer"))


def test_a_guide_with_an_attention_variant_registers_it_and_its_names_must_be_free() -> None:
    attentive = replace(TRAINED, name="toyattention", section="regressor", attention=True, spaces=("hnet", "hvae"))
    register_guide(attentive)
    try:
        row = ROWS["hnet+toyattention-attention"]
        assert row.stages == ("uncond-hnet-maml", "toyattention-hnet-attention")
        assert row.overrides == ("regressor.question=attention",)
        assert stage("toyattention-hnet-attention").overrides == ("regressor.question=attention",)
        assert ROWS["hnet+toyattention-attention-pointer"].stages == (
            "uncond-hnet-maml-pointer",
            "toyattention-hnet-attention-pointer",
        )
        assert stage_groups()["toyattention"] == (
            "toyattention-hnet",
            "toyattention-hvae",
            "toyattention-hnet-attention",
        )
    finally:
        unregister_guide("toyattention")
    rows = list(ROWS)
    for taken in ("hyperldm", "latents", "collect", "all"):
        with pytest.raises(ValueError, match="already"):
            register_guide(replace(TRAINED, name=taken))
    with pytest.raises(ValueError, match="no section"):
        register_guide(replace(TRAINED, name="toysection", section="nosuch", attention=False))
    assert list(ROWS) == rows and "toysection" not in GUIDES  # nothing registered


def test_the_quick_preset_caps_every_built_in_guide() -> None:
    """`--quick` runs every stage briefly: a guide whose section the quick preset does not cap would train at the
    paper's length in a smoke run."""
    from hyperguide.config import RunConfig
    from hyperguide.config.presets import QUICK_PRESET, preset_path
    from hyperguide.config.typed import read_config_file

    quick = read_config_file(preset_path(QUICK_PRESET))
    for guide in GUIDES.values():
        section = guide.config_section
        if not section:
            continue  # a guide without settings has no length to cap
        assert section in quick, f"the quick preset does not cap {section}"
        assert quick[section]["epochs"] < getattr(RunConfig(), section).epochs, section
