"""Typed run configuration: frozen dataclasses, JSON round-trip, and dotted `--set key=value` overrides.

An override is parsed as JSON when it can be (numbers, booleans, lists) and as a plain string otherwise, then checked
against the field's type: `--set train.epochs=20 --set method.inner.steps=5 --set eval.k_shots=[1,2,"full"]`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from hyperguide.errors import HyperguideError

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """A dataclass (nested) as plain JSON-able data; tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise HyperguideError(f"{where}: expected an object for {annotation.__name__}, got {value!r}")
        return from_dict(annotation, value, where)
    if origin is typing.Literal:
        if value not in args:
            raise HyperguideError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            if arg is type(None) and value is None:
                return None
            try:
                return _coerce(value, arg, where)
            except HyperguideError as e:
                errors.append(str(e))
        raise HyperguideError(f"{where}: {value!r} fits none of {annotation}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise HyperguideError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise HyperguideError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, str, bool) and type(value) is annotation:
        return value
    if annotation is Any:
        return value
    raise HyperguideError(f"{where}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from plain data, checking every field's type; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise HyperguideError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def apply_overrides(config: T, overrides: Sequence[str]) -> T:
    """A copy of `config` with dotted `key=value` overrides applied and type-checked."""
    data = to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise HyperguideError(f"override {item!r} is not of the form key=value")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise HyperguideError(f"override {item!r}: {part!r} is not a section of the config")
            node = node[part]
        if parts[-1] not in node:
            raise HyperguideError(f"override {item!r}: unknown key {key!r}; known here: {sorted(node)}")
        node[parts[-1]] = value
    return from_dict(type(config), data)
