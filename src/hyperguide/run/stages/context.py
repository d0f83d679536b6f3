"""What a stage body is given (`StageContext`) and what it returns (`StageOutput`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from hyperguide.checkpoint import load_checkpoint, load_tensors
from hyperguide.config import RunConfig
from hyperguide.data.splits import TaskSplit
from hyperguide.data.tasks import Task
from hyperguide.events import Callback
from hyperguide.meta.guided import latent_space
from hyperguide.meta.methods import UncondHNetMAML
from hyperguide.meta.spaces import HVAESpace, LatentSpace, SpaceKind
from hyperguide.models.adapter import AdapterShape
from hyperguide.train.loop import Probing
from hyperguide.trained.folder import RunFolder
from hyperguide.trained.loading import adapter_shape, question_dim
from hyperguide.trained.stage_table import DEFAULT_CHAIN, Chain, StageSpec

M = TypeVar("M", bound=nn.Module)


@dataclass
class StageContext:
    """Everything a stage of one (seed, fold) needs."""

    folder: RunFolder
    seed: int
    split: TaskSplit
    tasks: list[Task]
    config: RunConfig
    device: str = "cpu"
    callbacks: Sequence[Callback] = ()
    agree: torch.Tensor | None = None  # (n_tasks, n_tasks) `data.tasks.agreement` of the universe's tasks
    data: str | None = None  # the universe's fingerprint (`Universe.fingerprint`); None: not checked
    chain: Chain = DEFAULT_CHAIN  # where the latent space is read from (the running stage's `StageSpec.chain`)
    spec: StageSpec | None = None  # the stage running (set by `ensure_stage`)

    @property
    def running(self) -> StageSpec:
        """The stage this context runs."""
        if self.spec is None:
            raise ValueError("this stage context runs no stage (ensure_stage sets it)")
        return self.spec

    @property
    def space_kind(self) -> SpaceKind:
        """The latent space the running guide's stage trains over."""
        if self.running.space is None:
            raise ValueError(f"stage {self.running.name!r} is no guide's stage: it has no latent space")
        return self.running.space

    def stem(self, stage: str) -> Path:
        return self.folder.stem(stage, self.seed, self.split.fold)

    @property
    def train_tasks(self) -> list[Task]:
        return [self.tasks[i] for i in self.split.train]

    @property
    def test_tasks(self) -> list[Task]:
        return [self.tasks[i] for i in self.split.test]

    @property
    def shape(self) -> AdapterShape:
        return adapter_shape(self.tasks, self.config)

    def probing(self, measure: Callable[[M], Mapping[str, float]]) -> Probing[M]:
        """`measure` (its first measure is the one a plateau is watched on) with the run's probe settings."""
        p = self.config.probes
        return Probing(measure, p.count, p.patience, p.min_delta)

    def agreement(self, rows: Sequence[int], cols: Sequence[int]) -> torch.Tensor:
        """Which tasks of `rows` agree with which of `cols` (identity where the universe's agreement is unknown)."""
        if self.agree is None:
            return torch.tensor([[r == c for c in cols] for r in rows])
        return self.agree[torch.tensor(list(rows))[:, None], torch.tensor(list(cols))[None, :]]

    def load_base(self) -> UncondHNetMAML:
        base = UncondHNetMAML(self.shape, question_dim(self.tasks), self.config.method)
        load_checkpoint(self.stem(self.chain.base), base)
        return base.to(self.device)

    def load_latents(self) -> torch.Tensor:
        return load_tensors(self.stem(self.chain.latents))[0]["latents"]

    def load_space(self, kind: SpaceKind) -> LatentSpace:
        space = latent_space(kind, self.load_base(), self.config.hvae)
        if isinstance(space, HVAESpace):
            load_checkpoint(self.stem(self.chain.hvae), space.vae)
        return space.to(self.device)


@dataclass
class StageOutput:
    """What a stage produced: a module to checkpoint, or plain tensors; metadata for its JSON."""

    module: nn.Module | None = None
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


StageBody = Callable[[StageContext, torch.Generator], StageOutput]
