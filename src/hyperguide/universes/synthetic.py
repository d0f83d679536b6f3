"""`synthetic` and `synthetic-concepts`: tiny generated universes for tests and smoke runs (`data/synthetic.py`);
nothing to prepare."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hyperguide.data.synthetic import concepts_universe, synthetic_universe
from hyperguide.data.tasks import Universe
from hyperguide.events import Callback
from hyperguide.universes.base import Encoders, UniverseSource, no_encoders
from hyperguide.universes.options import UniverseOptions


class Synthetic(UniverseSource[UniverseOptions]):
    name = "synthetic"
    summary = "24 generated tasks with generated features: unit tests and smoke runs"
    Options = UniverseOptions

    def structure(self, options: UniverseOptions, prompts: str) -> Universe:
        return synthetic_universe(seed=options.seed)

    def prepare(self, options: UniverseOptions, callbacks: Sequence[Callback]) -> dict[str, Any]:
        return {"universe": self.name, "cached": True, "note": "synthetic universes are generated in memory"}

    def load(self, options: UniverseOptions, prompts: str) -> Universe:
        return self.structure(options, prompts)

    def encoders(self, options: UniverseOptions, prompts: str) -> Encoders:
        raise no_encoders(self.name)


class SyntheticConcepts(Synthetic):
    name = "synthetic-concepts"
    summary = "48 generated yes/no concept tasks, questions and images in one space: the pointer's test bed"

    def structure(self, options: UniverseOptions, prompts: str) -> Universe:
        return concepts_universe(seed=options.seed)
