"""The table's rows: one `RowSpec` per method, in the order of the table. The only place that knows a row by name.

A spec says what the row is (`kind`, `summary`), how its model is built (`build`, or `score` for a row that makes no
weights), which training stages its trained parts come from (`stages`, in the order of `Method.trained_parts()`;
a row whose one stage is its own name is meta-trained as a whole, see `trained.stage_table`), whether it reads the
question, whether it uses support labels, and whether it sweeps a setting: a sweeping method is one table row per
value, named `NAME@VALUE` (`hnet+hyperldm@1.5` is `hnet+hyperldm` sampled at guidance scale 1.5).

Add a row by registering a spec (`register(RowSpec(...))`, or one more entry below): train, evaluate, report,
`generate` and the command line all ask the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from torch import nn

from hyperguide.config import RunConfig, apply_overrides
from hyperguide.data.tasks import Task
from hyperguide.errors import HyperguideError
from hyperguide.eval.scoring import Scores, chance_scores, majority_scores
from hyperguide.guides import HYPERCLIP, HYPERLDM
from hyperguide.guides.spec import GUIDES, SPACE_NAMES, GuideBuilder, GuideSpec, add_guide, remove_guide
from hyperguide.guides.spec import KINDS as KINDS  # the row registry's interface, declared with the guides
from hyperguide.guides.spec import BuildContext as BuildContext
from hyperguide.guides.spec import RowKind as RowKind
from hyperguide.meta import methods
from hyperguide.meta.guided import GuidedMethod, ZeroShot, latent_space
from hyperguide.meta.methods import Method
from hyperguide.meta.retrieval import QuestionBank, hyperclip_retrieval, nearest_question
from hyperguide.meta.spaces import LatentSpace, SpaceKind
from hyperguide.models.adapter import AdapterShape

Builder = Callable[[BuildContext], Method]


@dataclass(frozen=True)
class RowSpec:
    name: str
    kind: RowKind
    summary: str  # one line: what the row is
    build: Builder | None = None  # None: the row makes no weights and `score` computes it (chance, majority)
    score: Callable[[Sequence[Task]], Scores] | None = None
    stages: tuple[str, ...] = ()  # the stages its trained parts come from; () for a row nothing trains
    reads_question: bool = False
    uses_labels: bool | Callable[[RunConfig], bool] = False
    sweep: Callable[[RunConfig], Sequence[float]] | None = None  # the values of `NAME@VALUE` rows
    bound: Literal["lower", "upper"] | None = None
    overrides: tuple[str, ...] = ()  # `key=value` settings of this row (and its own stages), on top of the run's
    paper: bool = True  # a row of the paper's table (False: a row this project adds)
    default: bool = True  # in the table of `methods: null` (False: asked for by name)
    needs_shared_space: bool = False  # reads the question's embedding as a direction among the image features

    def configured(self, config: RunConfig) -> RunConfig:
        """The run's config with this row's own settings."""
        return apply_overrides(config, self.overrides) if self.overrides else config

    def __post_init__(self) -> None:
        if (self.build is None) == (self.score is None):
            raise ValueError(f"row {self.name!r}: give exactly one of build and score")
        if "@" in self.name or "," in self.name or not self.name.strip():
            raise ValueError(f"row name {self.name!r} must be non-empty, without '@' or ','")
        if self.kind not in KINDS:
            raise ValueError(f"row {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")

    @property
    def trained_as_a_whole(self) -> bool:
        """Whether the row's model is one stage of its own, meta-trained by its `meta_loss`."""
        return self.stages == (self.name,)

    def labels_used(self, config: RunConfig) -> bool:
        return self.uses_labels(config) if callable(self.uses_labels) else self.uses_labels

    def rows(self, config: RunConfig) -> list[Row]:
        """The table rows of this method under `config`: one, or one per swept value."""
        if self.sweep is None:
            return [Row(self)]
        rows = [Row(self, float(v)) for v in self.sweep(config)]
        names = [row.name for row in rows]
        if len(set(names)) != len(names):
            raise HyperguideError(f"the swept values of {self.name!r} give rows of the same name: {names}")
        return rows


@dataclass(frozen=True)
class Row:
    """One line of the table: a method, and the swept value for a method that sweeps."""

    spec: RowSpec
    value: float | None = None

    @property
    def name(self) -> str:
        return self.spec.name if self.value is None else f"{self.spec.name}@{self.value:g}"

    def build(self, shape: AdapterShape, question_dim: int, config: RunConfig, sample_seed: int = 0) -> Method:
        """An untrained model of the row (its trained parts are loaded from the stages' checkpoints)."""
        if self.spec.build is None:
            raise HyperguideError(f"row {self.name!r} makes no weights: it has no model to build")
        return self.spec.build(BuildContext(shape, question_dim, self.spec.configured(config), self.value, sample_seed))


ROWS: dict[str, RowSpec] = {}


RESERVED = ("all",)  # names the command line gives a meaning of its own
# the stages of the HNet's chain and their group (`trained.stage_table`), which no guide may name
CHAIN_NAMES = ("latents", "hvae", "question-bank", "collect")


def register(spec: RowSpec) -> RowSpec:
    """Add a row (at the end of the table); a name can be registered once."""
    if spec.name in ROWS:
        raise ValueError(f"row {spec.name!r} is registered already")
    if spec.name in RESERVED:
        raise ValueError(f"row name {spec.name!r} is reserved")
    ROWS[spec.name] = spec
    return spec


def variant(
    spec: RowSpec, suffix: str, overrides: Sequence[str], stages: Mapping[str, str] | None, what: str
) -> RowSpec:
    """`spec` with its own settings `overrides`, named NAME+suffix. A row meta-trained as a whole becomes its own
    stage; a guidance row's stages are renamed by `stages` (old -> new), each of which `trained.stage_table` must
    declare with the same overrides."""
    name = spec.name + suffix
    if spec.trained_as_a_whole:
        renamed: tuple[str, ...] = (name,)
    else:
        renamed = tuple((stages or {}).get(s, s) for s in spec.stages)
    return replace(
        spec,
        name=name,
        summary=f"{spec.summary}; {what}",
        stages=renamed,
        overrides=(*spec.overrides, *overrides),
        paper=False,
    )


def unregister(name: str) -> None:
    ROWS.pop(name, None)


def row_spec(name: str) -> RowSpec:
    try:
        return ROWS[name]
    except KeyError:
        raise HyperguideError(f"unknown method {name!r}; methods: {', '.join(ROWS)}") from None


def parse_row(name: str) -> Row:
    """The row a table name stands for: `cond-multitask`, or `NAME@VALUE` for a method that sweeps."""
    method, at, value = name.partition("@")
    spec = row_spec(method)
    if not at:
        if spec.sweep is not None:
            raise HyperguideError(f"{name!r} sweeps a value: name one of its rows, {name}@VALUE (e.g. {name}@1)")
        return Row(spec)
    if spec.sweep is None:
        raise HyperguideError(f"{method!r} does not sweep a value; its row is {method!r}, without @{value}")
    try:
        number = float(value)
    except ValueError:
        raise HyperguideError(f"{name!r}: {value!r} after '@' is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise HyperguideError(f"{name!r}: the value after '@' must be a finite number >= 0")
    return Row(spec, number)


def method_of(name: str) -> RowSpec:
    """The method a name stands for: a method (`hnet+hyperldm`) or one of its table rows (`hnet+hyperldm@2`)."""
    _, at, _ = name.partition("@")
    return parse_row(name).spec if at else row_spec(name)


def find_row(name: str) -> Row | None:
    """`parse_row`, or None for a name the registry does not know (a results.json from another registry)."""
    try:
        return parse_row(name)
    except HyperguideError:
        return None


def method_names(config: RunConfig) -> tuple[str, ...]:
    """The config's methods (every default one for `methods: null`), each a method or one of its rows; a row
    stands for its method, whose rows are those of the config's sweep."""
    names = tuple(n for n, spec in ROWS.items() if spec.default) if config.methods is None else config.methods
    return tuple(dict.fromkeys(method_of(name).name for name in names))


def table_rows(config: RunConfig) -> list[Row]:
    """The rows of the config's table, in order: each method's row, or its rows at every swept value."""
    return [row for name in method_names(config) for row in row_spec(name).rows(config)]


# ------------------------------------------------------------------------------------------------- the built-in rows


def _method(cls: type[Method]) -> Builder:
    return lambda ctx: cls(ctx.shape, ctx.question_dim, ctx.config.method)


def _guided(
    space: SpaceKind,
    parts: Sequence[GuideBuilder],
    zero_shot: Callable[[BuildContext], ZeroShot],
    lead: GuideSpec | None = None,
) -> Builder:
    """A guidance row: the space of `space` over the HNet of `uncond-hnet-maml`, the guide networks `parts` build (a
    `nn.ModuleList` for several, each from its own stage), and the zero-shot procedure. The guide `lead` says whether
    the row answers with an ensemble and reads the support set (neither for None)."""

    def build(ctx: BuildContext) -> Method:
        cfg = ctx.config
        latents = latent_space(space, methods.UncondHNetMAML(ctx.shape, ctx.question_dim, cfg.method), cfg.hvae)
        built = [part(ctx, latents) for part in parts]
        return GuidedMethod(
            ctx.shape,
            ctx.question_dim,
            cfg.method,
            space=latents,
            guide=built[0] if len(built) == 1 else nn.ModuleList(built),
            zero_shot=zero_shot(ctx),
            uses_support=lead is not None and lead.few_shot(cfg),
            sample_seed=ctx.sample_seed,
            members=1 if lead is None else lead.members(cfg),
        )

    return build


BASE = "uncond-hnet-maml"  # the HNet every guidance row's latent space starts from
ATTENTION = "-attention"


def _space_stages(space: SpaceKind) -> tuple[str, ...]:
    """The stages a row over `space` reads its latent space from: the HNet, and the HVAE over it."""
    return (BASE, "hvae") if space == "hvae" else (BASE,)


def guide_row(space: SpaceKind, guides: Sequence[GuideSpec]) -> RowSpec:
    """The row `SPACE+G1+G2...` of `guides` over `space`, zero-shot by the first guide's procedure, which also gives
    its kind, summary, sweep and whether it is the paper's and uses the support set's labels."""
    lead = guides[0]
    return RowSpec(
        "+".join((space, *(g.name for g in guides))),
        lead.kind,
        lead.summary.format(space=SPACE_NAMES[space]),
        build=_guided(space, [g.build for g in guides], lead.zero_shot, lead),
        stages=(*_space_stages(space), *(g.stage_name(space) for g in guides)),
        reads_question=True,
        uses_labels=lead.few_shot,
        sweep=lead.sweep,
        paper=lead.paper,
    )


def attention_variant(spec: RowSpec, guides: Sequence[GuideSpec]) -> RowSpec:
    """`spec`, a row over the HNet's latents, reading the question through attention over its tokens: each guide's
    stage becomes its `-attention` stage, with its section's `question=attention`."""
    renamed = {g.stage_name("hnet"): g.stage_name("hnet", attention=True) for g in guides}
    what = "the question through attention over its tokens"
    return variant(spec, ATTENTION, tuple(g.attention_setting for g in guides), renamed, what)


def guide_rows(guide: GuideSpec) -> list[RowSpec]:
    """A guide's rows: `SPACE+NAME` over each of its spaces, then over the HNet's latents reading the question
    through attention (`attention_variant`) when it can."""
    rows = [guide_row(space, (guide,)) for space in guide.spaces]
    if guide.attention and "hnet" in guide.spaces:
        rows.append(attention_variant(rows[guide.spaces.index("hnet")], (guide,)))
    return rows


# The question's embedding as a direction in the image space (models/pointer.py): rows whose generator points some
# hidden units along it, for words no meta-train question used. Asked for by name until measured on the full
# protocol (they need a universe whose questions and images share a space).
#
# The guidance rows keep the HNet unconditional in its latent and give it the pointer as a decoder input: weights =
# HNet(z) + P(code(z), q) (`UncondHNetMAML.weights`). The latent then spans programs ("detect the concept, this
# polarity, this threshold"), the question supplies the direction, and guidance picks the program from the question.
# Their stages are the guidance chain over that HNet (`trained.stage_table`'s `POINTER_CHAIN`), each named
# NAME-pointer.
POINTER = "-pointer"
POINTER_SETTING = "method.pointer_rows=4"
_POINTED = "4 hidden units point along the question"


def pointer_variant(spec: RowSpec) -> RowSpec:
    """`spec` with the pointer: a meta-trained row becomes its own stage; a guidance row's stages (the HNet's chain
    and its guides') become their pointer stages. Asked for by name (not in the default table)."""
    guided = not spec.trained_as_a_whole and spec.stages[:1] == (BASE,)
    renamed = {s: s + POINTER for s in spec.stages} if guided else None
    what = f"the HNet's {_POINTED} with gains from its code" if guided else _POINTED
    pointed = replace(variant(spec, POINTER, (POINTER_SETTING,), renamed, what), default=False)
    return replace(pointed, needs_shared_space=True, reads_question=True)


def _register_guide_rows(guide: GuideSpec) -> None:
    rows = guide_rows(guide)
    for spec in (*rows, *(pointer_variant(row) for row in rows)):
        register(spec)


def register_guide(guide: GuideSpec) -> GuideSpec:
    """Register a guidance model: its rows (with their `-attention` and `-pointer` variants), and through its spec
    its stages, stage group and report columns (`hyperguide.guides.spec`). Its config section must be one of
    `RunConfig`'s, with a `question` knob for its `-attention` variant, and none of its names may be taken; nothing
    is registered when one is."""
    if guide.config_section and not hasattr(RunConfig(), guide.config_section):
        raise ValueError(f"guide {guide.name!r}: RunConfig has no section {guide.config_section!r}")
    if guide.attention:
        apply_overrides(RunConfig(), [guide.attention_setting])  # raises unless its section reads tokens
    rows = [name for row in guide_rows(guide) for name in (row.name, row.name + POINTER)]
    guides = {name for g in GUIDES.values() for name in (g.name, *g.stage_names())}
    names = (guide.name, *guide.stage_names(), *rows)
    taken = [name for name in names if name in ROWS or name in guides or name in (*CHAIN_NAMES, *RESERVED)]
    if taken:
        raise ValueError(f"guide {guide.name!r}: {', '.join(taken)} name(s) a row or stage already")
    add_guide(guide)
    _register_guide_rows(guide)
    return guide


def unregister_guide(name: str) -> None:
    """Remove a guide and every row over its stages (a row of several guides' stages included)."""
    guide = GUIDES.get(name)
    if guide is None:
        return
    own = set(guide.stage_names())
    for row in [n for n, spec in ROWS.items() if {s.removesuffix(POINTER) for s in spec.stages} & own]:
        unregister(row)
    remove_guide(name)


def _question_bank(ctx: BuildContext, space: LatentSpace) -> nn.Module:
    return QuestionBank(space.latent_dim, ctx.question_dim)


def _nearest(ctx: BuildContext) -> ZeroShot:
    return nearest_question


def _retrieved(ctx: BuildContext) -> ZeroShot:
    return hyperclip_retrieval


for _spec in (
    RowSpec("chance", "bound", "100/K: the accuracy of guessing among a task's K answers", score=chance_scores,
            bound="lower"),
    RowSpec("majority", "reference", "the support set's most frequent answer for every query", score=majority_scores,
            uses_labels=True),
    RowSpec("clip-zeroshot", "baseline", "the identity adapter: the frozen encoders alone",
            build=_method(methods.ClipZeroShot)),
    RowSpec("uncond-multitask", "baseline", "one adapter trained on every meta-train task's data",
            build=_method(methods.UncondMultitask), stages=("uncond-multitask",)),
    RowSpec("uncond-mnet-maml", "baseline", "MAML on the adapter's weights",
            build=_method(methods.UncondMNetMAML), stages=("uncond-mnet-maml",)),
    RowSpec(BASE, "baseline", "an HNet (latent z -> weights), MAML on z; the guidance rows' latent space",
            build=_method(methods.UncondHNetMAML), stages=(BASE,)),
    RowSpec("cond-multitask", "baseline", "a hypernetwork from the question to the weights, trained multitask",
            build=_method(methods.CondMultitask), stages=("cond-multitask",), reads_question=True),
    RowSpec("cond-multitask-film", "baseline", "a shared adapter whose hidden units FiLM modulates from the question",
            build=_method(methods.CondMultitaskFiLM), stages=("cond-multitask-film",), reads_question=True),
    RowSpec("cond-hnet-maml", "baseline", "a hypernetwork from the question, MAML on its input",
            build=_method(methods.CondHNetMAML), stages=("cond-hnet-maml",), reads_question=True),
    RowSpec("oracle", "bound", "an adapter fine-tuned on the task's full support set", build=_method(methods.Oracle),
            uses_labels=True, bound="upper"),
):  # fmt: skip
    register(_spec)

# The table's order: the baselines; each guide's rows over its spaces, the rows that combine two guides' stages after
# the second of them; the retrieval references; then every row that reads the question through attention over its
# tokens instead of the pooled vector, in the same order. The `-pointer` variants, asked for by name, come last.
_COMBINED = replace(
    guide_row("hnet", (HYPERLDM, HYPERCLIP)),
    paper=False,
    summary="HyperLDM samples at scale @G with HyperCLIP as the classifier of classifier guidance",
)
_COMBINES = (HYPERLDM, HYPERCLIP)  # _COMBINED's guides: it follows their rows
_BY_GUIDE = {name: guide_rows(guide) for name, guide in GUIDES.items()}
_FIRST = [name for name in GUIDES if name in {guide.name for guide in _COMBINES}]
_LATER = [name for name in GUIDES if name not in _FIRST]


def _guides_rows(names: Sequence[str], attention: bool) -> list[RowSpec]:
    """The rows of the guides `names`, the attention variants or the others."""
    return [row for name in names for row in _BY_GUIDE[name] if row.name.endswith(ATTENTION) == attention]


_CONDITIONED = [variant(ROWS[name], ATTENTION, ("method.question=attention",), None,
                        "the question through attention over its tokens")
                for name in ("cond-multitask", "cond-multitask-film")]  # fmt: skip
for _spec in (
    *_guides_rows(_FIRST, attention=False),
    _COMBINED,
    *_guides_rows(_LATER, attention=False),
    RowSpec("nearest-question", "reference",
            "retrieval: the adapted latent of the meta-train task whose question embedding is nearest",
            build=_guided("hnet", [_question_bank], _nearest), stages=(BASE, "question-bank"), reads_question=True,
            paper=False),
    RowSpec("hyperclip-retrieval", "reference", "retrieval: the meta-train latent HyperCLIP scores highest",
            build=_guided("hnet", [HYPERCLIP.build], _retrieved), stages=(BASE, HYPERCLIP.stage_name("hnet")),
            reads_question=True, paper=False),
    *_CONDITIONED,
    *_guides_rows(_FIRST, attention=True),
    attention_variant(_COMBINED, _COMBINES),
    *_guides_rows(_LATER, attention=True),
):  # fmt: skip
    register(_spec)
for _spec in (ROWS["cond-multitask"], ROWS["cond-multitask-film"], *_CONDITIONED, ROWS[BASE]):
    register(pointer_variant(_spec))
for _spec in (row for rows in _BY_GUIDE.values() for row in rows):
    register(pointer_variant(_spec))
