"""The training stages of a run, declared as data: what each stage needs, what shapes it, what it records of its fit,
and which function trains it (`body`, "module:function", imported by the runner only when the stage trains). The
table is derived from the registries: the meta-trained rows (`hyperguide.rows`) and the guides
(`hyperguide.guides`). The runner (`hyperguide.run.stages`) trains stages; loading a trained row
(`trained.loading`) reads this table and the checkpoints' fingerprints, and imports no stage body.

    a meta-trained row (cond-multitask, ..., uncond-hnet-maml): its own stage, no dependencies (see `stage`)
    latents          <- uncond-hnet-maml      adapted HNet latents of the meta-train tasks (docs/design.md §P2)
    hvae             <- latents               a VAE over HNet(z) (§P3)
    question-bank    <- latents               the meta-train tasks' mean latents and questions (retrieval)
    GUIDE-hnet       <- latents               each guide (`guides.GuideSpec`) over z: hyperclip-hnet (§P4),
    GUIDE-hvae       <- hvae                  hyperldm-hnet (§P6), regressor-hnet; over u: hyperclip-hvae, ...
    GUIDE-hnet-attention <- latents           the guide reading the question through attention over its tokens

and the same chain over the HNet with the pointer (`uncond-hnet-maml-pointer` -> `latents-pointer` -> `hvae-pointer`,
`hyperldm-hnet-pointer`, ...): a stage reads its latent space from the stages its `Chain` names.

A checkpoint's JSON records its fingerprint (`stage_fingerprint`): a hash of each config section that shapes the
stage (`DATA_KEYS`, its own `shaped_by`, and its dependencies' sections, knobs marked `evaluation_only` left out),
of the universe's data, and the sha256 of each checkpoint it was trained from. A checkpoint whose fingerprint or
tensors hash differs from what the run expects is retrained by the runner and refused by `trained.loading`.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from hyperguide.checkpoint import read_metadata
from hyperguide.config import RunConfig, apply_overrides, training_keys, training_view
from hyperguide.errors import HyperguideError
from hyperguide.guides.spec import GUIDES, SPACE_NAMES, Diagnostic, GuideSpec, Measure, guides_version
from hyperguide.meta.spaces import SpaceKind
from hyperguide.rows import BASE, POINTER, POINTER_SETTING, ROWS, Row, RowSpec, row_spec
from hyperguide.trained.folder import RunFolder


def run_seed(name: str, seed: int, fold: int) -> int:
    """A seed for one (stage, seed, fold), independent of which other stages or methods run."""
    return (zlib.crc32(name.encode()) + 1_000_003 * seed + 7919 * fold) % 2**31


@dataclass(frozen=True)
class Chain:
    """The stages a latent-space stage reads: the HNet (`base`), its adapted latents and the HVAE over them."""

    base: str = BASE
    latents: str = "latents"
    hvae: str = "hvae"


DEFAULT_CHAIN = Chain()
POINTER_CHAIN = Chain(BASE + POINTER, "latents" + POINTER, "hvae" + POINTER)  # over the HNet with the pointer
CHAINS = {chain.base: chain for chain in (DEFAULT_CHAIN, POINTER_CHAIN)}


def row_chain(spec: RowSpec) -> Chain:
    """The chain a guidance row's latent space comes from (its first stage is the chain's HNet)."""
    return CHAINS.get(spec.stages[0], DEFAULT_CHAIN) if spec.stages else DEFAULT_CHAIN


CHAIN_BODIES = "hyperguide.run.stages.chain"  # the stage bodies of the HNet's chain and of meta-trained rows


@dataclass(frozen=True)
class StageSpec:
    name: str
    deps: tuple[str, ...]
    body: str  # "module:function" that trains it: `(StageContext, torch.Generator) -> StageOutput`
    summary: str
    diagnostic: Diagnostic | None = None
    fit: tuple[Measure, ...] = ()  # checkpoint metadata fields that measure the stage's fit (results.json's "fit")
    # The config sections (or dotted knobs) that shape it beyond DATA_KEYS and its dependencies'; None (a stage that
    # declares nothing): every section but the evaluation-only ones, so that no setting it reads is left out.
    shaped_by: tuple[str, ...] | None = None
    overrides: tuple[str, ...] = ()  # `key=value` settings of this stage on top of the run's (a row's variant)
    chain: Chain = DEFAULT_CHAIN  # the stages it reads its latent space from
    space: SpaceKind | None = None  # the latent space a guide's stage trains over
    guide: str | None = None  # the guide whose network it trains (`guides.GUIDES`)
    family: str = ""  # the stages that share its fit measures: its guide's name, or its own (results.md's tables)

    @property
    def fit_keys(self) -> tuple[str, ...]:
        return tuple(m.key for m in self.fit)


def pointer_stage(spec: StageSpec) -> StageSpec:
    """`spec` over the HNet with the pointer: named NAME-pointer, its dependencies and chain renamed to the pointer
    chain's, with the pointer's setting (and `spec`'s own)."""
    renamed = {DEFAULT_CHAIN.base: POINTER_CHAIN.base, "latents": POINTER_CHAIN.latents, "hvae": POINTER_CHAIN.hvae}
    return replace(
        spec,
        name=spec.name + POINTER,
        deps=tuple(renamed.get(d, d) for d in spec.deps),
        summary=f"{spec.summary}, over the HNet with the pointer",
        overrides=(POINTER_SETTING, *spec.overrides),
        chain=POINTER_CHAIN,
    )


# What every stage is trained on: the config's keys that choose the tasks and their texts (the data's own hash is
# the fingerprint's "data"). Meta-trained rows are shaped by `META_TRAINING`.
DATA_KEYS: tuple[str, ...] = (
    "universe", "split", "folds", "held_out", "tune_folds", "prompts", "probes"  # probes may stop a stage early
)  # fmt: skip
META_TRAINING: tuple[str, ...] = ("method", "train")


HVAE_FIT = (
    Measure("hnet_acc", "HNet(z) acc"),
    Measure("decoded_acc", "Dec(mean Enc) acc"),
    Measure("gate_ratio", "gate: decoded / HNet"),
)
CHAIN_STAGES: tuple[StageSpec, ...] = (
    StageSpec("latents", (BASE,), f"{CHAIN_BODIES}:collect_stage", "adapted HNet latents of every meta-train task",
              shaped_by=("collect",)),
    StageSpec("hvae", ("latents",), f"{CHAIN_BODIES}:hvae_stage", "a VAE over the adapted weights HNet(z)",
              fit=HVAE_FIT, shaped_by=("hvae",), family="hvae"),
    StageSpec("question-bank", ("latents",), f"{CHAIN_BODIES}:question_bank_stage",
              "the meta-train latents and questions (retrieval)", shaped_by=()),
)  # fmt: skip


def guide_stages(guide: GuideSpec) -> list[StageSpec]:
    """A guide's stages: one per latent space, over the HNet's latents (`latents`) or the HVAE's (`hvae`), and over
    the HNet's reading the question through attention."""
    out = []
    for name in guide.stage_names():
        space: SpaceKind = "hvae" if name == guide.stage_name("hvae") else "hnet"
        attention = name == guide.stage_name("hnet", attention=True)
        summary = guide.stage_summary.format(space=SPACE_NAMES[space]) + (", attention" if attention else "")
        out.append(
            StageSpec(
                name,
                ("hvae",) if space == "hvae" else ("latents",),
                guide.body,
                summary,
                guide.diagnostic,
                fit=guide.fit_measures,
                shaped_by=guide.shaped_by,
                overrides=(guide.attention_setting,) if attention else (),
                space=space,
                guide=guide.name,
                family=guide.name,
            )
        )
    return out


_TABLE: dict[tuple[tuple[StageSpec, ...], int], dict[str, StageSpec]] = {}  # the last table derived


def stage_table() -> dict[str, StageSpec]:
    """Every declared stage (the meta-trained rows' are `stage`'s): the HNet's chain, each registered guide's, and
    all of them again over the HNet with the pointer."""
    key = (CHAIN_STAGES, guides_version())
    if key not in _TABLE:  # derived again only when the registered guides change
        specs = [*CHAIN_STAGES, *(s for guide in GUIDES.values() for s in guide_stages(guide))]
        pointed = [pointer_stage(s) for s in specs if s.name != "question-bank"]
        _TABLE.clear()
        _TABLE[key] = {s.name: s for s in (*specs, *pointed)}
    return dict(_TABLE[key])


def stage_groups() -> dict[str, tuple[str, ...]]:
    """Names `hyperguide train` accepts for several stages: `collect`, and each guide's name."""
    return {"collect": ("latents",), **{name: guide.stage_names() for name, guide in GUIDES.items()}}


def stage_families() -> dict[str, tuple[Measure, ...]]:
    """Each family of stages that share fit measures (the HVAE's, each guide's), with them, in the table's order."""
    return {s.family: s.fit for s in stage_table().values() if s.family and s.fit}


def _meta_training_stage(spec: RowSpec) -> StageSpec:
    return StageSpec(
        spec.name, (), f"{CHAIN_BODIES}:meta_training_stage", f"meta-training of {spec.name}",
        shaped_by=META_TRAINING, overrides=spec.overrides,
    )  # fmt: skip


def stage(name: str) -> StageSpec:
    """The stage of this name: a declared one (`stage_table`), or the meta-training of a row trained as a whole."""
    table = stage_table()
    if name in table:
        if name in ROWS or name in stage_groups():
            raise HyperguideError(f"{name!r} names a stage and a row (or a group of stages); rename the row")
        return table[name]
    try:
        spec = row_spec(name)
    except HyperguideError:
        spec = None
    if spec is None or not spec.trained_as_a_whole:
        raise HyperguideError(f"unknown stage {name!r}; stages: {', '.join(table)} and the meta-trained methods")
    return _meta_training_stage(spec)


def stage_config(name: str, config: RunConfig) -> RunConfig:
    """The run's config as stage `name` sees it: with the stage's own settings."""
    overrides = stage(name).overrides
    return apply_overrides(config, overrides) if overrides else config


def stage_order(names: Iterable[str]) -> list[str]:
    """The stages `names` need, dependencies included, each once and after what it needs."""
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in visiting:
            raise HyperguideError(f"stages depend on each other in a cycle: {' -> '.join([*visiting, name])}")
        visiting.append(name)
        for dep in stage(name).deps:
            visit(dep)
        visiting.pop()
        if name not in order:
            order.append(name)

    for name in names:
        visit(name)
    return order


def row_stages(rows: Iterable[Row]) -> list[str]:
    """Every stage the rows' trained parts come from, dependencies included, in the order they run."""
    return stage_order(s for row in rows for s in row.spec.stages)


def shaping_keys(name: str) -> list[str]:
    """The config keys that shape stage `name`: `DATA_KEYS`, its own `shaped_by` and its dependencies', sorted."""
    spec = stage(name)
    keys = {*DATA_KEYS, *(training_keys(RunConfig) if spec.shaped_by is None else spec.shaped_by)}
    for dep in spec.deps:
        keys.update(shaping_keys(dep))
    keys.discard("precision")  # every stage's: `stage_fingerprint` adds it when it is not float32
    return sorted(keys)


def _config_value(config: RunConfig, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return training_view(value)


def digest(value: Any) -> str:
    """The sha256 of a JSON-able value (keys sorted): how fingerprints hash what they cover."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def stage_fingerprint(
    name: str, config: RunConfig, folder: RunFolder, seed: int, fold: int, data: str | None
) -> dict[str, str]:
    """What stage `name` of (seed, fold) is made from, as {what: hash}: `config.<key>` for each of its
    `shaping_keys` (evaluation-only knobs left out), `data` (the universe's fingerprint, when known) and
    `checkpoint <dep>` (the recorded sha256 of each checkpoint it is trained from; "missing" when there is none),
    and `config.precision` unless the run computes in float32."""
    config = stage_config(name, config)
    out = {f"config.{key}": digest(_config_value(config, key)) for key in shaping_keys(name)}
    if config.precision != "fp32":  # float32 checkpoints keep the fingerprints they had before precision was a knob
        out["config.precision"] = config.precision
    if config.split == "compositional" and config.tune_folds is not None:  # its tune folds hold out concepts now
        out["tune folds"] = "concepts where the universe lists them"
    if data is not None:
        out["data"] = data
    for dep in stage(name).deps:
        try:
            out[f"checkpoint {dep}"] = str(read_metadata(folder.stem(dep, seed, fold)).get("sha256", "missing"))
        except HyperguideError:
            out[f"checkpoint {dep}"] = "missing"
    return out


def stage_identity(name: str, seed: int, fold: int) -> dict[str, str | int]:
    """What the JSON of stage `name`'s checkpoint of (seed, fold) records of where it belongs (`ensure_stage`
    writes it): one that records another stage, seed or fold is not trusted there (`checkpoint_problem`'s
    `expect`)."""
    return {"stage": name, "seed": seed, "fold": fold}
