"""Training a run: every stage the config's rows need, for every seed and fold, into the run folder, resumably.

Stages whose checkpoints exist are skipped, so an interrupted run picks up where it stopped; every (stage, seed,
fold) is seeded from its own identity, so a resumed run ends with the same numbers as an uninterrupted one. Under
torchrun, every process trains every stage on its share of the batches; the main one writes the run folder and the
training logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from hyperguide.callbacks import JsonlLog
from hyperguide.config import RunConfig, check_device
from hyperguide.config.precision import check_precision, precision
from hyperguide.data.splits import TaskSplit, concept_tuning_splits, make_splits, tuning_splits
from hyperguide.data.tasks import Universe, agreement
from hyperguide.distributed import share, world
from hyperguide.errors import HyperguideError
from hyperguide.events import Callback
from hyperguide.rows import ROWS, method_names, method_of, table_rows
from hyperguide.run.stages import StageContext, ensure_stage
from hyperguide.trained.folder import RunFolder
from hyperguide.trained.loading import adapter_shape_for
from hyperguide.trained.stage_table import row_stages, stage, stage_groups, stage_order, stage_table


def splits_of(universe: Universe, config: RunConfig) -> list[TaskSplit]:
    """The run's folds: the split's, or with `tune_folds` folds of its meta-train tasks alone."""
    splits = make_splits(universe, config.split, folds=config.folds, held_out=config.held_out or None)
    if config.tune_folds is None:
        return splits
    if len(splits) != 1:
        raise HyperguideError(f"tune_folds needs a split with one fold (random, compositional), not {config.split!r}")
    if config.split == "compositional" and universe.concepts:  # folds that hold out concepts, as the split does
        held_out = config.held_out or universe.held_out_concepts
        return concept_tuning_splits(universe, splits[0], config.tune_folds, held_out)
    return tuning_splits(splits[0], config.tune_folds)


def expand_config(config: RunConfig, universe: Universe | None = None) -> RunConfig:
    """A resolved config (`config.resolve_config`) with its shorthands expanded for the run: its methods listed
    (every default one for `methods: null`) and checked; with the universe, the `concepts` split's concepts listed
    too (its folds), so that config.json says which fold held out what."""
    config = replace(config, methods=method_names(config))  # raises for an unknown method
    if universe is not None and config.split == "concepts" and not config.held_out:
        config = replace(config, held_out=universe.concepts)
    return config


def check_run(universe: Universe, config: RunConfig, *, device: str = "cpu", stages: Sequence[str] = ()) -> None:
    """Everything a run can refuse, checked before its folder is touched: the methods and stages exist, the split
    can be made on this universe (folds, held-out concepts), the device is there. A refused command leaves nothing
    behind, so the corrected one is not refused as another run."""
    check_device(device)
    check_precision(config.precision, device)
    for name in stages:
        stage(name)
    training_plan(config, stages)  # every row's stages exist and have no cycle
    splits_of(universe, config)
    check_pointer(universe, config)


def check_pointer(universe: Universe, config: RunConfig) -> None:
    """The pointer (`method.pointer_rows`) only on the -pointer rows, only where questions and images share a space
    of one width, and with at most as many rows as the adapter has hidden units."""
    rows = table_rows(config)
    needs = [row.name for row in rows if row.spec.needs_shared_space]
    if needs and not universe.shared_space:
        raise HyperguideError(
            f"{', '.join(needs)}: {'this row reads' if len(needs) == 1 else 'these rows read'} the question's "
            f"embedding as a direction among the image features, but universe {universe.name!r} has no space its "
            "questions and images share: use the rows without -pointer"
        )
    for row in rows:
        method = row.spec.configured(config).method
        if method.pointer_rows == 0:
            continue
        if not row.spec.needs_shared_space:
            raise HyperguideError(
                f"method.pointer_rows = {method.pointer_rows} would change row {row.name!r}, whose name does not say "
                "so: leave it at 0 and ask for the -pointer rows by name"
            )
        features, texts = universe.image_features, universe.text_features
        if features is None or texts is None:
            continue  # checked when the method is built
        if texts.dim != features.dim:
            raise HyperguideError(
                f"{row.name}: questions are {texts.dim}-d and image features {features.dim}-d in universe "
                f"{universe.name!r}; the pointer needs one space: use the row without -pointer"
            )
        hidden = adapter_shape_for(features.dim, row.spec.configured(config)).hidden_dim
        if method.pointer_rows > hidden:
            raise HyperguideError(
                f"{row.name}: method.pointer_rows = {method.pointer_rows} is more than the adapter's {hidden} hidden "
                "units (method.adapter_hidden)"
            )


def training_plan(config: RunConfig, extra_stages: Sequence[str] = ()) -> list[str]:
    """Every stage the config's rows need (plus `extra_stages`), dependencies first, each once."""
    return stage_order([*row_stages(table_rows(config)), *extra_stages])


def resolve_targets(names: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What `hyperguide train` was asked for -> (methods, extra stages). A name is a method (`cond-multitask`), one
    of its rows (`hvae+hyperldm@2`: the method), `all`, a stage (`hvae`, `hyperldm-hnet`) or a group of stages
    (`collect`, `hyperclip`, `hyperldm`). A stage brings the methods whose last stage it is."""
    methods: list[str] = []
    stages: list[str] = []
    groups, table = stage_groups(), stage_table()
    for name in names:
        if name == "all":
            methods += list(ROWS)
        elif name in groups or name in table:
            for s in groups.get(name, (name,)):
                stages.append(s)
                methods += [spec.name for spec in ROWS.values() if spec.stages and spec.stages[-1] == s]
        else:
            try:
                methods.append(method_of(name).name)
            except HyperguideError as e:
                raise HyperguideError(f"{e}; or a stage: {', '.join([*groups, *table])}, or 'all'") from None
    return tuple(dict.fromkeys(methods)), tuple(dict.fromkeys(stages))


def write_config(folder: RunFolder, config: RunConfig) -> None:
    """`folder.write_config(config)` by the main process (all of them raise if it refuses), the others waiting."""
    if world().size == 1:
        folder.write_config(config)
        return
    refused = None
    if world().main:
        try:
            folder.write_config(config)
        except HyperguideError as e:
            refused = str(e)
    refused = share(refused)
    if refused is not None:
        raise HyperguideError(refused)


def train_run(
    universe: Universe,
    config: RunConfig,
    folder: RunFolder,
    *,
    device: str = "cpu",
    callbacks: Sequence[Callback] = (),
    stages: Sequence[str] = (),
) -> dict[str, float]:
    """Train every stage the config's rows need (plus `stages`) for every seed and fold, skipping stages whose
    checkpoints exist with the fingerprint this config and universe expect (others are retrained); returns seconds
    spent per stage (0 where everything was already there). Nothing is written before the run is checked."""
    config = expand_config(config, universe)
    check_run(universe, config, device=device, stages=stages)  # nothing is written for a refused run
    write_config(folder, config)  # refuses a folder that holds a run with another config
    tasks = universe.materialize(range(len(universe.tasks)))
    splits = splits_of(universe, config)
    agree = agreement(universe.tasks)
    data = universe.fingerprint()
    listeners: list[Callback] = [JsonlLog(folder.metrics), *callbacks] if world().main else list(callbacks)
    seconds: dict[str, float] = {}
    with precision(config.precision, device):
        for name in training_plan(config, stages):
            for seed in config.seeds:
                for split in splits:
                    ctx = StageContext(folder, seed, split, tasks, config, device, listeners, agree=agree, data=data)
                    for done, spent in ensure_stage(name, ctx).items():
                        seconds[done] = seconds.get(done, 0.0) + spent
            seconds.setdefault(name, 0.0)
    return seconds
