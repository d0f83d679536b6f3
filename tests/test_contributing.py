"""CONTRIBUTING.md's recipes name real things: every file or folder it names exists, and every dotted name of the
package it names (`rows.register_guide`, `guides.spec.GuideTrainer`) resolves, so that a recipe cannot drift from the
code unnoticed."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "hyperguide"
TEXT = re.sub(r"```.*?```", "", (REPO / "CONTRIBUTING.md").read_text(), flags=re.S)  # prose, without code blocks
CODE = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", TEXT)]  # a span may wrap a line
PLACEHOLDER = re.compile(r"my_|my-|MY_|<|\.\.\.")


def _paths() -> list[str]:
    return [c for c in CODE if re.fullmatch(r"[\w./-]+\.(py|json|md)|[\w/]+/", c) and not PLACEHOLDER.search(c)]


TOP = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}


def _dotted() -> list[str]:
    """The backticked dotted names that start at a module of the package (`hyperguide.` dropped)."""
    calls = [re.sub(r"\(.*\)$", "", c) for c in CODE]  # `rows.register(spec)` names `rows.register`
    names = [c.removeprefix("hyperguide.") for c in calls if re.fullmatch(r"[a-z_]+(\.[A-Za-z_]\w*)+", c)]
    return [n for n in names if n.split(".")[0] in TOP and not n.endswith(("py", "json", "md"))]


def _exists(path: str) -> bool:
    """A path from the repository, the package or the tests; a bare file name (a layer table's) anywhere in the
    package."""
    if any((root / path).exists() for root in (REPO, PACKAGE, REPO / "tests")):
        return True
    return "/" not in path.rstrip("/") and any(PACKAGE.rglob(path.rstrip("/")))


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module("hyperguide." + ".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[cut:]:
                found = getattr(found, attr)
        except AttributeError:
            return False
        return True
    return False


def test_the_files_contributing_names_exist() -> None:
    paths = _paths()
    assert len(paths) > 20  # the recipes name their files
    assert [p for p in paths if not _exists(p)] == []


def test_the_code_contributing_names_resolves() -> None:
    names = _dotted()
    assert {"rows.register_guide", "guides.spec.GuideTrainer", "universes.options.UniverseOptions"} <= set(names)
    assert [n for n in names if not _resolves(n)] == []
