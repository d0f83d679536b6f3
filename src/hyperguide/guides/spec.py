"""A guidance model, declared once: `GuideSpec`.

A guide is a network over a latent space of adapters (the HNet's z, the HVAE's u) that reads a question: it is built
by `build`, trained by its stage body `train`, and turned into a task's latent by `zero_shot`. Registering its spec
(`hyperguide.rows.register_guide`) is all the project needs to know of it; from the spec are derived

- its stages, one per latent space of `spaces` (`NAME-hnet`, `NAME-hvae`) and `NAME-hnet-attention` when the
  question can be read through attention, each shaped by the config section `section` (`trained.stage_table`);
- the stage group `NAME`, which `hyperguide train NAME UNIVERSE` trains;
- its rows, `SPACE+NAME` per space, with their `-attention` and `-pointer` variants (`hyperguide.rows`);
- its fit measures: the checkpoint fields results.json's `fit.stages` summarises and results.md's columns (`fit`).

A guide is trained in one of two ways. Most give a `trainer` with the signature every built-in guide's has
(`GuideTrainer`: the space, the adapted latents, the meta-train questions, the guide's config section, and the probe
of its fit); the runner's generic stage body calls it and measures the guide's fit as the accuracy of its zero-shot
weights on the meta-train tasks (`train_acc`). A guide with fit measures of its own names its own stage body in
`body` instead (`"module:function"`, as the built-in guides do). Either is imported only when the stage trains, so
that loading a trained row (`hyperguide generate`, `export`, the report) imports no training stage body (the import
contract "Inference imports no runner", pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import nn

from hyperguide.config import RunConfig
from hyperguide.data.batch import Questions
from hyperguide.events import Callback
from hyperguide.meta.guided import ZeroShot
from hyperguide.meta.spaces import LatentSpace, SpaceKind
from hyperguide.models.adapter import AdapterShape
from hyperguide.train.loop import Probing

RowKind = Literal["bound", "reference", "baseline", "ablation", "guidance"]
KINDS: tuple[RowKind, ...] = ("bound", "reference", "baseline", "ablation", "guidance")
SPACE_NAMES: Mapping[SpaceKind, str] = {"hnet": "the HNet's", "hvae": "the HVAE's"}


@dataclass(frozen=True)
class BuildContext:
    """What a row's model is built from: the adapter's shape, the question embedding's size, the run's config, the
    row's swept value (None for a row that does not sweep) and the seed of its sampler (guidance rows)."""

    shape: AdapterShape
    question_dim: int
    config: RunConfig
    value: float | None = None
    sample_seed: int = 0


GuideBuilder = Callable[[BuildContext, LatentSpace], nn.Module]


@dataclass(frozen=True)
class Measure:
    """A number a stage records in its checkpoint's JSON to say how well it fits its meta-train tasks: results.json's
    `fit.stages` summarises it over seeds, and results.md shows it in a column titled `title` (None: not shown)."""

    key: str
    title: str | None = None


@dataclass(frozen=True)
class Diagnostic:
    """A per-stage number for results.json's diagnostics: two checkpoint metadata fields (meta-train, meta-test)
    summarised over seeds, under the key `<stage>_<key>`, with `extra(config)` beside them."""

    key: str
    train: str
    test: str
    extra: Callable[[RunConfig], dict[str, Any]] = lambda config: {}


class GuideTrainer(Protocol):
    """A guide's training (`meta.regressor.train_regressor` has this signature): on the (A, N, Lz) adapted HNet
    latents mapped into `space` and the N meta-train tasks' questions, with its config section (None for a guide that
    reads none); returns the trained network (in eval mode) and its training records."""

    def __call__(
        self,
        space: LatentSpace,
        latents: torch.Tensor,
        questions: Questions,
        config: Any,
        *,
        generator: torch.Generator,
        name: str,
        device: str,
        probing: Probing[Any] | None,
        callbacks: Sequence[Callback],
    ) -> tuple[nn.Module, list[dict[str, float]]]: ...


GENERIC_BODY = "hyperguide.run.stages.guidance:train_guide_stage"  # trains a guide by its `trainer`
ZERO_SHOT_FIT = Measure("train_acc", "zero-shot acc on meta-train")  # the generic body's fit measure


def _never(config: RunConfig) -> bool:
    return False


def _one(config: RunConfig) -> int:
    return 1


@dataclass(frozen=True)
class GuideSpec:
    """One guidance model: everything its stages, rows and report columns are derived from (see the module)."""

    name: str  # its stages are NAME-SPACE, its rows SPACE+NAME
    build: GuideBuilder  # the untrained guide network over a latent space
    zero_shot: Callable[[BuildContext], ZeroShot]  # the procedure that turns a question into a latent with it
    summary: str  # its rows' one line; "{space}" stands for "the HNet's" or "the HVAE's"
    stage_summary: str  # its stages' one line, with "{space}" as in `summary`
    trainer: GuideTrainer | None = None  # its training, run by the generic stage body
    body: str = GENERIC_BODY  # or "module:function": its own stage body `(StageContext, Generator) -> StageOutput`
    section: str | None = None  # its config section, which shapes its stages (None: its name; "": it reads none)
    spaces: tuple[SpaceKind, ...] = ("hnet", "hvae")
    kind: RowKind = "guidance"
    paper: bool = True  # its rows are rows of the paper's table
    attention: bool = True  # its section's `question` knob reads tokens: an `-attention` variant over the HNet's
    fit: tuple[Measure, ...] = ()  # its stage body's fit measures (the generic body's: `ZERO_SHOT_FIT`)
    diagnostic: Diagnostic | None = None
    sweep: Callable[[RunConfig], Sequence[float]] | None = None  # a sampler's swept guidance scale (`NAME@VALUE`)
    members: Callable[[RunConfig], int] = _one  # zero-shot latents per task, scored as an ensemble
    few_shot: Callable[[RunConfig], bool] = _never  # whether its zero-shot procedure reads the support set

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "@,+"):
            raise ValueError(f"guide name {self.name!r} must be non-empty, without '@', ',' or '+'")
        if self.body.count(":") != 1:
            raise ValueError(f"guide {self.name!r}: body must name its stage body as 'module:function'")
        if (self.body == GENERIC_BODY) == (self.trainer is None) or (self.trainer is not None and self.fit):
            raise ValueError(
                f"guide {self.name!r}: give a trainer (the generic stage body trains it and measures its zero-shot "
                "fit), or body= its own stage body with its fit measures, not both"
            )
        if not self.spaces:
            raise ValueError(f"guide {self.name!r}: give at least one latent space")
        if self.attention and not self.config_section:
            raise ValueError(f"guide {self.name!r}: an -attention variant needs a config section with a question knob")

    @property
    def fit_measures(self) -> tuple[Measure, ...]:
        """What its stages record of their fit."""
        return (ZERO_SHOT_FIT,) if self.trainer is not None else self.fit

    @property
    def config_section(self) -> str:
        """Its config section ("" for a guide that reads none)."""
        return self.name if self.section is None else self.section

    @property
    def shaped_by(self) -> tuple[str, ...]:
        """The config sections that shape its stages beyond the data and the stages they read."""
        return (self.config_section,) if self.config_section else ()

    def stage_name(self, space: SpaceKind, attention: bool = False) -> str:
        return f"{self.name}-{space}" + ("-attention" if attention else "")

    def stage_names(self) -> tuple[str, ...]:
        """Its stages: one per latent space, then the attention one."""
        names = tuple(self.stage_name(space) for space in self.spaces)
        return (*names, self.stage_name("hnet", attention=True)) if self.attention and "hnet" in self.spaces else names

    @property
    def attention_setting(self) -> str:
        """The `key=value` setting of its `-attention` stage and rows."""
        return f"{self.config_section}.question=attention"


GUIDES: dict[str, GuideSpec] = {}
_VERSION = [0]  # bumped by every change to GUIDES: what the stage table derived from them is cached by


def add_guide(spec: GuideSpec) -> GuideSpec:
    """Record a guide (`hyperguide.rows.register_guide` also registers its rows); a name is registered once."""
    if spec.name in GUIDES:
        raise ValueError(f"guide {spec.name!r} is registered already")
    GUIDES[spec.name] = spec
    _VERSION[0] += 1
    return spec


def remove_guide(name: str) -> None:
    if GUIDES.pop(name, None) is not None:
        _VERSION[0] += 1


def guides_version() -> int:
    """A number that changes whenever a guide is added or removed."""
    return _VERSION[0]
