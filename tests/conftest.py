"""Shared fixtures: every test gets its own HYPERGUIDE_HOME, so nothing touches the user's cache."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_METAVQA = REPO.parent / "shared" / "data" / "metavqa"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("hyperguide_home")
    monkeypatch.setenv("HYPERGUIDE_HOME", str(home))
    return home
