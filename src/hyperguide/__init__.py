"""hyperguide: zero-shot neural-network weights from a natural-language task description.

An implementation of "Meta-Learning via Classifier(-free) Diffusion Guidance" (Nava et al., TMLR 2023). The names
below are imported when first used, so that importing one layer (`hyperguide.config`, say) does not load the others.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "hyperguide.config",
    "SPLIT_KINDS": "hyperguide.data.splits",
    "TaskSplit": "hyperguide.data.splits",
    "make_splits": "hyperguide.data.splits",
    "Task": "hyperguide.data.tasks",
    "TaskSpec": "hyperguide.data.tasks",
    "Universe": "hyperguide.data.tasks",
    "HyperguideError": "hyperguide.errors",
    "Generator": "hyperguide.generate",
    "export_generator": "hyperguide.bundle",
    "load_generator": "hyperguide.bundle",
    "UNIVERSES": "hyperguide.universes",
    "UniverseOptions": "hyperguide.universes",
    "load_universe": "hyperguide.universes",
    "load_universe_structure": "hyperguide.universes",
    "prepare_universe": "hyperguide.universes",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hyperguide' has no attribute {name!r}")
