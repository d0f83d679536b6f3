"""hyperguide: zero-shot neural-network weights from a natural-language task description.

An implementation of "Meta-Learning via Classifier(-free) Diffusion Guidance" (Nava et al., TMLR 2023).
"""

from hyperguide.config import RunConfig
from hyperguide.data.splits import SPLIT_KINDS, TaskSplit, make_splits
from hyperguide.data.tasks import Task, TaskSpec, Universe
from hyperguide.errors import HyperguideError
from hyperguide.universes import (
    UNIVERSES,
    UniverseOptions,
    load_universe,
    load_universe_structure,
    prepare_universe,
)

__version__ = "0.1.0"

__all__ = [
    "SPLIT_KINDS",
    "UNIVERSES",
    "HyperguideError",
    "RunConfig",
    "Task",
    "TaskSpec",
    "TaskSplit",
    "Universe",
    "UniverseOptions",
    "load_universe",
    "load_universe_structure",
    "make_splits",
    "prepare_universe",
]
