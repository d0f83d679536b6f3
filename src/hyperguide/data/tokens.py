"""Token-level question features: each question's (L, Dq) token states, stored flat in one safetensors file.

A `TokenTable` holds every question's token states stacked into one (total_tokens, Dq) float32 matrix plus
(n + 1,) int64 offsets: question i owns rows `offsets[i]:offsets[i + 1]`. The questions (the keys, in order) travel
as a JSON list in the file's metadata, so the table is one self-contained file, written atomically like a
`FeatureTable`. Only real tokens are stored (no padding); what a "token" is (special tokens included or not) is the
encoder's business and is documented where the states are computed.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from hyperguide.errors import HyperguideError, HyperguideWarning
from hyperguide.io import WriteError, read_tensor_metadata, read_tensors, write_tensors

QUESTION_TOKENS_FILE = "question_tokens.safetensors"


class TokenTable:
    """Variable-length token states addressed by question. `get(key)` returns an (L, Dq) float32 tensor."""

    def __init__(self, keys: Sequence[str], tokens: torch.Tensor, offsets: torch.Tensor, *, source: str = "<memory>"):
        offsets = offsets.long()
        if tokens.ndim != 2 or offsets.ndim != 1 or offsets.shape[0] != len(keys) + 1:
            raise HyperguideError(
                f"token table {source}: expected (total, dim) tokens and {len(keys) + 1} offsets for {len(keys)} keys, "
                f"got shapes {tuple(tokens.shape)} and {tuple(offsets.shape)}"
            )
        if int(offsets[0]) != 0 or int(offsets[-1]) != tokens.shape[0] or bool((offsets[1:] <= offsets[:-1]).any()):
            raise HyperguideError(f"token table {source}: offsets must rise strictly from 0 to {tokens.shape[0]}")
        self.keys = list(keys)
        self.tokens = tokens.float()
        self.offsets = offsets
        self.source = source
        self._row = {k: i for i, k in enumerate(self.keys)}
        if len(self._row) != len(self.keys):
            raise HyperguideError(f"token table {source}: duplicate keys")

    @classmethod
    def from_rows(cls, keys: Sequence[str], rows: Sequence[torch.Tensor], *, source: str = "<memory>") -> TokenTable:
        """A table from one (L_i, Dq) tensor per key (every L_i >= 1)."""
        if len(rows) != len(keys):
            raise HyperguideError(f"token table {source}: {len(keys)} keys but {len(rows)} token matrices")
        lengths = torch.tensor([0] + [int(r.shape[0]) for r in rows], dtype=torch.long)
        tokens = torch.cat([r.float() for r in rows]) if rows else torch.zeros(0, 0)
        return cls(keys, tokens, lengths.cumsum(0), source=source)

    @property
    def dim(self) -> int:
        return int(self.tokens.shape[1])

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: str) -> bool:
        return key in self._row

    def covers(self, keys: Sequence[str]) -> bool:
        return all(k in self._row for k in keys)

    def get(self, key: str) -> torch.Tensor:
        """The (L, Dq) token states of one question."""
        try:
            i = self._row[key]
        except KeyError:
            raise HyperguideError(f"token table {self.source} has no tokens for {key!r}") from None
        return self.tokens[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def save(self, path: str | Path, **metadata: str) -> None:
        write_tensors(
            path, {"tokens": self.tokens, "offsets": self.offsets}, {"keys": json.dumps(self.keys), **metadata}
        )

    @classmethod
    def load(cls, path: str | Path, *, dim: int | None = None) -> TokenTable:
        """Load a table; with `dim`, raise a clear error if its token dimension differs."""
        tensors = read_tensors(path, what="token table")
        meta = read_tensor_metadata(path)
        if "tokens" not in tensors or "offsets" not in tensors or "keys" not in meta:
            raise HyperguideError(f"token table {path} lacks its 'tokens' or 'offsets' tensor or 'keys' metadata")
        try:
            keys = json.loads(meta["keys"])
        except json.JSONDecodeError as e:
            raise HyperguideError(f"token table {path}: its 'keys' metadata is not valid JSON: {e}") from None
        table = cls(keys, tensors["tokens"], tensors["offsets"], source=str(path))
        if dim is not None and table.dim != dim:
            raise HyperguideError(f"token table {path} has tokens of dimension {table.dim}, expected {dim}")
        return table


def cached_question_tokens(
    path: str | Path,
    questions: Sequence[str],
    compute: Callable[[list[str]], list[torch.Tensor]],
    *,
    encoder: str,
    dim: int | None = None,
) -> TokenTable:
    """The token table at `path` if it covers `questions` and came from `encoder`; else computed and cached there.

    The load-time fallback for folders prepared before token features existed (or whose token file is unreadable or
    stale): `compute(questions)` returns one (L_i, Dq) matrix per question, and the table is written atomically (or,
    in a folder that cannot be written, used uncached with a warning).
    """
    path = Path(path)
    questions = list(dict.fromkeys(questions))
    if path.is_file():
        try:
            table = TokenTable.load(path, dim=dim)
            if read_tensor_metadata(path).get("encoder") == encoder and table.covers(questions):
                return table
        except HyperguideError:
            pass  # unreadable or of another dimension: recompute below
    table = TokenTable.from_rows(questions, compute(questions), source=str(path))
    if dim is not None and table.dim != dim:
        raise HyperguideError(f"encoder {encoder!r} gives question tokens of dimension {table.dim}, expected {dim}")
    try:
        table.save(path, encoder=encoder)
    except WriteError as e:  # a read-only home: the tokens serve this run and are computed again next time
        warnings.warn(f"question tokens computed but not cached: {e}", HyperguideWarning, stacklevel=2)
    return table
