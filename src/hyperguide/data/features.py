"""Frozen feature tables: a float32 matrix with one row per key (an image id or a text), stored as safetensors.

The keys travel inside the file's metadata, so a table is one self-contained file that is written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from hyperguide.errors import HyperguideError
from hyperguide.io import read_tensor_metadata, read_tensors, write_tensors

MANIFEST = "manifest.json"  # written last into a folder of prepared features: without it, nothing there is trusted


class FeatureTable:
    """Rows of frozen features addressed by key. `get(keys)` returns a (len(keys), dim) float32 tensor."""

    def __init__(self, keys: Sequence[str], values: torch.Tensor, *, source: str = "<memory>") -> None:
        if values.ndim != 2 or values.shape[0] != len(keys):
            raise HyperguideError(
                f"feature table {source}: expected a ({len(keys)}, dim) matrix for {len(keys)} keys, "
                f"got shape {tuple(values.shape)}"
            )
        self.keys = list(keys)
        self.values = values.float()
        self.source = source
        self._row = {k: i for i, k in enumerate(self.keys)}
        if len(self._row) != len(self.keys):
            raise HyperguideError(f"feature table {source}: duplicate keys")

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: str) -> bool:
        return key in self._row

    def get(self, keys: Sequence[str]) -> torch.Tensor:
        try:
            rows = [self._row[k] for k in keys]
        except KeyError as e:
            raise HyperguideError(f"feature table {self.source} has no row for {e.args[0]!r}") from None
        return self.values[rows]

    def save(self, path: str | Path, **metadata: str) -> None:
        write_tensors(path, {"features": self.values}, {"keys": json.dumps(self.keys), **metadata})

    @classmethod
    def load(cls, path: str | Path, *, dim: int | None = None) -> FeatureTable:
        """Load a table; with `dim`, raise a clear error if its feature dimension differs."""
        tensors = read_tensors(path, what="feature table")
        meta = read_tensor_metadata(path)
        if "features" not in tensors or "keys" not in meta:
            raise HyperguideError(f"feature table {path} lacks its 'features' tensor or 'keys' metadata")
        try:
            keys = json.loads(meta["keys"])
        except json.JSONDecodeError as e:
            raise HyperguideError(f"feature table {path}: its 'keys' metadata is not valid JSON: {e}") from None
        table = cls(keys, tensors["features"], source=str(path))
        if dim is not None and table.dim != dim:
            raise HyperguideError(f"feature table {path} has features of dimension {table.dim}, expected {dim}")
        return table
