"""Typed configuration machinery: frozen dataclasses with a help line per knob, JSON round-trip, config files,
dotted `--set key=value` overrides, and a listing of every knob with its value, default and help.

An override is parsed as JSON when it can be (numbers, booleans, lists) and as a plain string otherwise, then checked
against the field's type: `--set train.epochs=20 --set method.inner.steps=5 --set eval.k_shots='["1","full"]'`.
A config file is a JSON object holding any part of the tree (`{"train": {"epochs": 3}}`); keys named `$comment` are
ignored. Every failure is a `HyperguideError` that names the key and what would be right.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hyperguide.errors import HyperguideError

T = TypeVar("T")
COMMENT_KEY = "$comment"


def knob(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    factory: Callable[[], Any] | None = None,
    evaluation_only: bool = False,
    omit_default: bool = False,
) -> Any:
    """A dataclass field with a one-line `help`, listed by `hyperguide config`: `epochs: int = knob(100, help=...)`.

    `evaluation_only=True` marks a knob that changes how trained models are used (sampling, guidance, the table's
    sweep) but nothing any training stage produces: a checkpoint's fingerprint leaves it out (`training_view`), so
    changing it never retrains anything. A knob not marked counts as training's (the safe default).
    `omit_default=True` marks a training knob added after checkpoints were written without it: at its default it
    is left out of `training_view`, so those checkpoints keep their fingerprints."""
    metadata = {"help": help, "evaluation_only": evaluation_only, "omit_default": omit_default}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class FieldError(ValueError):
    """A field's value is outside what the field allows; `from_dict` reports it as `<where>.<field>: <message>`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def require(ok: bool, field: str, right: str, value: Any) -> None:
    """The one check of a config field, for `__post_init__`: raise `FieldError` saying what would be right unless
    `ok`, e.g. `require(self.epochs >= 1, "epochs", ">= 1", self.epochs)` -> `epochs: must be >= 1, got -3`."""
    if not ok:
        raise FieldError(field, f"must be {right}, got {to_dict(value)!r}")


def positive(x: float) -> bool:
    """A finite number > 0 (NaN and infinity are not)."""
    return math.isfinite(x) and x > 0


def at_least(x: float, low: float) -> bool:
    """A finite number >= low."""
    return math.isfinite(x) and x >= low


def to_dict(obj: Any) -> Any:
    """A dataclass (nested) as plain JSON-able data; tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def training_view(obj: Any) -> Any:
    """`to_dict` without the knobs marked `evaluation_only` (nor those marked `omit_default`, at their default):
    what of a config can shape a training stage."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: training_view(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not f.metadata.get("evaluation_only", False)
            and not (f.metadata.get("omit_default", False) and getattr(obj, f.name) == f.default)
        }
    return to_dict(obj)


def training_keys(cls: type) -> list[str]:
    """The fields of dataclass `cls` that are not marked `evaluation_only`."""
    return [f.name for f in dataclasses.fields(cls) if not f.metadata.get("evaluation_only", False)]


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise HyperguideError(f"{where}: expected an object for {_type_name(annotation)}, got {value!r}")
        return from_dict(annotation, value, where)  # type: ignore[arg-type]
    if origin is typing.Literal:
        if value not in args:
            raise HyperguideError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is type(None) and value is None:
                return None
            try:
                return _coerce(value, arg, where)
            except HyperguideError:
                continue
        raise HyperguideError(f"{where}: {value!r} fits none of {_type_name(annotation)}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise HyperguideError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise HyperguideError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise HyperguideError(f"{where}: {value!r} is not a finite number")
        return float(value)
    if annotation in (int, str, bool) and type(value) is annotation:
        return value
    if annotation is Any:
        return value
    raise HyperguideError(f"{where}: expected {_type_name(annotation)}, got {value!r}")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from plain data, checking every field's type; unknown keys are errors. A field left
    out keeps its default. A value the class's own checks refuse is reported with its key."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = set(data) - set(names) - {COMMENT_KEY}
    if unknown:
        raise HyperguideError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items() if k != COMMENT_KEY}
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise HyperguideError(f"{where}.{e.field}: {e.message}") from None
    except ValueError as e:
        raise HyperguideError(f"{where}: {e}") from None


def merge(config: T, partial: dict[str, Any], where: str = "config") -> T:
    """A copy of `config` with the values of `partial` (any part of the tree, nested as the config is) put in."""
    data = to_dict(config)

    def put(node: dict[str, Any], update: dict[str, Any], path: str) -> None:
        for key, value in update.items():
            if key == COMMENT_KEY:
                continue
            if key not in node:
                raise HyperguideError(f"{path}: unknown key {key!r}; known here: {sorted(node)}")
            if isinstance(node[key], dict):
                if not isinstance(value, dict):
                    raise HyperguideError(f"{path}.{key}: expected an object (a section of the config), got {value!r}")
                put(node[key], value, f"{path}.{key}")
            else:
                node[key] = value

    if not isinstance(partial, dict):
        raise HyperguideError(f"{where}: a config must be a JSON object, got {type(partial).__name__}")
    put(data, partial, where)
    return from_dict(type(config), data, where)


def apply_overrides(config: T, overrides: Sequence[str]) -> T:
    """A copy of `config` with dotted `key=value` overrides applied and type-checked."""
    data = to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise HyperguideError(f"override {item!r} is not of the form key=value")
        try:
            value = json.loads(raw, parse_constant=_refuse_constant)
        except json.JSONDecodeError:
            value = raw
        except ValueError as e:  # NaN, Infinity or -Infinity anywhere in the value
            raise HyperguideError(f"config.{key}: {e}; give a finite number (in --set {item})") from None
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise HyperguideError(f"override {item!r}: {part!r} is not a section of the config")
            node = node[part]
        if parts[-1] not in node:
            raise HyperguideError(f"override {item!r}: unknown key {key!r}; known here: {sorted(node)}")
        if isinstance(node[parts[-1]], dict):
            raise HyperguideError(
                f"override {item!r}: {key!r} is a section; set one of its keys: {sorted(node[parts[-1]])}"
            )
        node[parts[-1]] = value
    return from_dict(type(config), data)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


@dataclasses.dataclass(frozen=True)
class Knob:
    """One leaf of a config tree, as `hyperguide config` lists it."""

    key: str  # dotted path, e.g. "method.inner.lr"
    value: Any
    default: Any
    help: str
    evaluation_only: bool = False  # changing it retrains nothing (`knob(evaluation_only=True)`)


def knobs(config: Any, default: Any | None = None, prefix: str = "") -> list[Knob]:
    """Every leaf of `config` with its value, its default (the field's default in a default-built tree, so nested
    defaults such as `method.oracle.steps` are the parent's) and its help line; a section's own leaves first."""
    default = type(config)() if default is None else default
    out: list[Knob] = []
    nested: list[Knob] = []  # a section's own knobs come first, then its sub-sections'
    for f in dataclasses.fields(config):
        value, base = getattr(config, f.name), getattr(default, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            nested += knobs(value, base, f"{key}.")
        else:
            help_line, evaluation = f.metadata.get("help", ""), f.metadata.get("evaluation_only", False)
            out.append(Knob(key, to_dict(value), to_dict(base), help_line, evaluation))
    return out + nested


def sections(config: Any, prefix: str = "") -> dict[str, str]:
    """Dotted section name -> its help line (the field's, else its dataclass's docstring), for every section."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            doc = (type(value).__doc__ or "").strip().splitlines()[0]
            out[f"{prefix}{f.name}"] = f.metadata.get("help", "") or doc
            out.update(sections(value, f"{prefix}{f.name}."))
    return out


def render(config: Any) -> str:
    """The whole tree, one knob a line: `key = value  # help  (default d)` (the default where it differs), a heading
    before each section."""
    heads = sections(config)
    rows = knobs(config)
    width = min(44, max(len(k.key) + 3 + len(json.dumps(k.value)) for k in rows))  # a long list overflows
    lines: list[str] = []
    section = ""
    for k in rows:
        parent = k.key.rpartition(".")[0]
        if parent != section:
            section = parent
            lines += ["", f"[{section}] {heads.get(section, '')}".rstrip()]
        text = f"{k.key} = {json.dumps(k.value)}"
        changed = "" if k.value == k.default else f"  (default {json.dumps(k.default)})"
        lines.append(f"{text.ljust(width)}  # {k.help}{changed}")
    return "\n".join(lines).lstrip("\n")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file's JSON object (any part of the tree), or a clear error naming the file."""
    from hyperguide.io import read_json

    data = read_json(path, what="config file")
    if not isinstance(data, dict):
        raise HyperguideError(f"config file {path} must hold a JSON object, got {type(data).__name__}")
    return data
