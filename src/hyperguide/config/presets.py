"""Named config files: the presets under `configs/` (this package's `presets/` folder), or any JSON file.

`resolve_config(preset="default", overrides=...)` is how every command builds its run config: the dataclass defaults
(the paper's), then the preset or file, then the command's own values, then `--set key=value` overrides. A file may
start from another preset or file (`"$base": "default"`): its own values then go on top of that one's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hyperguide.config.sections import RunConfig
from hyperguide.config.typed import apply_overrides, merge, read_config_file
from hyperguide.errors import HyperguideError

PRESETS_DIR = Path(__file__).parent / "presets"
DEFAULT_PRESET = "default"
QUICK_PRESET = "quick"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json"))


def preset_path(name_or_path: str | Path) -> Path:
    """The file of a preset name (`default`, `quick`) or the path itself when it names a file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    named = PRESETS_DIR / f"{name_or_path}.json"
    if named.is_file():
        return named
    raise HyperguideError(
        f"config {str(name_or_path)!r} is neither a file nor a preset; presets: {', '.join(preset_names())}"
    )


BASE_KEY = "$base"


def _from_file(config: RunConfig, name_or_path: str | Path, seen: tuple[Path, ...]) -> RunConfig:
    """`config` <- the file's base (its `$base`, recursively) <- the file."""
    path = preset_path(name_or_path)
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise HyperguideError(f"config files name each other as {BASE_KEY} in a cycle: {chain}")
    data = read_config_file(path)
    base = data.pop(BASE_KEY, None)
    if base is not None:
        if not isinstance(base, str):
            raise HyperguideError(f"config file {path}: {BASE_KEY} must name a preset or a file, got {base!r}")
        beside = path.parent / base  # a file next to the including one first, then a preset or a path from here
        config = _from_file(config, beside if beside.is_file() else base, (*seen, path.resolve()))
    return merge(config, data, where=f"config file {path}")


def resolve_config(
    preset: str | Path | None = DEFAULT_PRESET,
    values: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> RunConfig:
    """RunConfig's defaults <- the preset or config file (None: none) <- `values` (a partial tree) <- overrides."""
    config = RunConfig()
    if preset is not None:
        config = _from_file(config, preset, ())
    if values:
        config = merge(config, values)
    return apply_overrides(config, list(overrides))
