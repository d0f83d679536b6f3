"""A table row's model from a trained run, without training anything: its stages' checkpoints are checked against the
fingerprints the run's config expects (`trained.stage_table`), then loaded into the row's untrained model. This is
all that `hyperguide generate`, `export`, evaluation and the report need of a run; it imports no stage body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hyperguide.checkpoint import checkpoint_problem, load_checkpoint, read_metadata
from hyperguide.config import RunConfig
from hyperguide.data.tasks import Task, Universe
from hyperguide.errors import HyperguideError
from hyperguide.meta.methods import Method
from hyperguide.models.adapter import AdapterShape
from hyperguide.rows import Row, table_rows
from hyperguide.trained.folder import RunFolder
from hyperguide.trained.stage_table import row_stages, run_seed, stage_fingerprint, stage_identity


def adapter_shape(tasks: Sequence[Task], config: RunConfig) -> AdapterShape:
    return adapter_shape_for(int(tasks[0].support_x.shape[1]), config)


def adapter_shape_for(feature_dim: int, config: RunConfig) -> AdapterShape:
    """The adapter's shape on `feature_dim`-d features: `method.adapter_hidden` hidden units, else a third of D."""
    return AdapterShape(feature_dim, config.method.adapter_hidden or feature_dim // 3)


def question_dim(tasks: Sequence[Task]) -> int:
    return int(tasks[0].question_emb.shape[0])


@dataclass
class LoadedRow:
    """A table row's model with its trained parts loaded, and the seconds its stages took to train them."""

    row: Row
    method: Method
    train_seconds: float


def load_row(
    row: Row, tasks: list[Task], config: RunConfig, folder: RunFolder, seed: int, fold: int, data: str | None = None
) -> LoadedRow:
    """The row's model for `tasks` (their feature and question sizes), every trained part loaded from its stage's
    checkpoint: `load_row_shaped`."""
    return load_row_shaped(row, adapter_shape(tasks, config), question_dim(tasks), config, folder, seed, fold, data)


def trained_data(folder: RunFolder, config: RunConfig) -> set[str]:
    """The universe fingerprints that the run's checkpoints record as their training data."""
    found: set[str] = set()
    for stage in row_stages(table_rows(config)):
        for path in sorted((folder.path / stage).glob("seed*-fold*.json")):
            data = read_metadata(path.with_suffix("")).get("fingerprint", {}).get("data")
            if isinstance(data, str):
                found.add(data)
    return found


def check_trained_on(universe: Universe, folder: RunFolder, config: RunConfig, prepared: Path) -> str:
    """The fingerprint of `universe` (prepared in `prepared`), refused unless the run's checkpoints were trained on
    it: the encoders of another preparation (another seed, another task file) embed what the run never saw."""
    data = universe.fingerprint()
    trained_on = trained_data(folder, config)
    if not trained_on:
        raise HyperguideError(
            f"{folder.path} has no trained checkpoint: train the run first (hyperguide train or bench)"
        )
    if data not in trained_on:
        also = " and the --tasks FILE" if config.universe == "taskfile" else ""
        raise HyperguideError(
            f"the {config.universe} universe prepared in {prepared} is not the data run {folder.path} was trained "
            f"on (their fingerprints differ), so its encoders are not the run's; give the --home (and --seed){also} "
            "the run was trained with"
        )
    return data


def check_row(row: Row, config: RunConfig, folder: RunFolder, seed: int, fold: int, data: str | None = None) -> None:
    """Refuse (`HyperguideError`, saying which and why) a row whose stage checkpoints are missing, were made from
    something else than `config` (and `data`, the universe's fingerprint, when given) expects, or no longer have
    their recorded sha256. Nothing is read but the checkpoints' JSON and hashes."""
    for stage_name in row.spec.stages:
        expected = stage_fingerprint(stage_name, config, folder, seed, fold, data)
        problem = checkpoint_problem(
            folder.stem(stage_name, seed, fold),
            expected,
            ignore=("data",) if data is None else (),
            expect=stage_identity(stage_name, seed, fold),
        )
        if problem is not None:
            raise HyperguideError(
                f"row {row.name!r} (seed {seed}, fold {fold}): {problem}; retrain it with `hyperguide train` or "
                "`hyperguide bench` on this run folder"
            )


def build_row(row: Row, shape: AdapterShape, question_dim: int, config: RunConfig, seed: int, fold: int) -> Method:
    """The row's untrained model as its (seed, fold) builds it: the global seed and the sampler's seed are the
    row's own (`run_seed`), so what is not loaded (clip-zeroshot's random W1) and what is sampled are the same
    wherever the row is built."""
    s = run_seed(row.spec.name, seed, fold)
    torch.manual_seed(s)
    return row.build(shape, question_dim, config, sample_seed=s)


def row_parts(row: Row, method: Method) -> list[tuple[str, nn.Module]]:
    """(stage, module) for each trained part of the row's model, in the order of `spec.stages`."""
    parts = method.trained_parts() if row.spec.stages else []
    if len(parts) != len(row.spec.stages):
        raise HyperguideError(
            f"row {row.spec.name!r}: its model has {len(parts)} trained parts but the row lists stages "
            f"{row.spec.stages}"
        )
    return list(zip(row.spec.stages, parts, strict=True))


def load_row_shaped(
    row: Row,
    shape: AdapterShape,
    question_dim: int,
    config: RunConfig,
    folder: RunFolder,
    seed: int,
    fold: int,
    data: str | None = None,
) -> LoadedRow:
    """The row's model for adapters of `shape` and `question_dim`-d questions, every trained part loaded from its
    stage's checkpoint (in the order of `spec.stages`). Each checkpoint must carry the fingerprint `config` (and
    `data`, the universe's fingerprint, when given) expects and its recorded sha256 (`check_row`, before anything
    is built: a crafted config cannot allocate first); else a `HyperguideError` says which and why."""
    check_row(row, config, folder, seed, fold, data)
    method = build_row(row, shape, question_dim, config, seed, fold)
    seconds = 0.0
    for stage_name, module in row_parts(row, method):
        seconds += float(load_checkpoint(folder.stem(stage_name, seed, fold), module).get("train_seconds", 0.0))
    return LoadedRow(row, method, seconds)
