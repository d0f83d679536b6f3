"""Encoding a list of texts or images in batches, where an item the encoder refuses is named by where it came from
(the file, the task and the field), not by its place in a batch."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from hyperguide.errors import HyperguideError
from hyperguide.events import Callback, Note, Progress, emit

BATCH = 256  # texts or images per encoder call
T = TypeVar("T")


def in_batches(
    encode: Callable[[list[Any]], T],
    items: list[Any],
    blame: Mapping[Any, str],
    name: str,
    callbacks: Sequence[Callback],
    batch: int = BATCH,
) -> list[T]:
    """`encode` over `items` in batches; an item the encoder refuses is named by `blame[item]` (file, task, field)."""
    out: list[T] = []
    starts = range(0, len(items), batch)
    for done, start in enumerate(starts, 1):
        chunk = items[start : start + batch]
        try:
            out.append(encode(chunk))
        except HyperguideError:
            for item in chunk:  # find the one it refuses, and say which task it belongs to
                try:
                    encode([item])
                except HyperguideError as e:
                    raise HyperguideError(f"{blame[item]}: {e}") from None
            raise
        emit(callbacks, Progress(name, done, len(starts), "batch"))
        if len(starts) > 1:
            emit(callbacks, Note(f"{name}: {min(start + batch, len(items))}/{len(items)}"))
    return out
