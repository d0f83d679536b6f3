"""Shared fixtures: every test gets its own HYPERGUIDE_HOME, so nothing touches the user's cache; a tiny CLIP; a
finished small bench."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import make_images, make_tiny_clip, small_bench

REPO = Path(__file__).resolve().parents[1]
SHARED_METAVQA = REPO.parent / "shared" / "data" / "metavqa"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("hyperguide_home")
    monkeypatch.setenv("HYPERGUIDE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised CLIP model folder (see `tests/helpers.py`)."""
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path]]:
    return make_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished small bench (`tests.helpers.small_bench`, one thread), shared: a test that changes a run copies it
    first (`tests.test_trust.copy_run`)."""
    out = tmp_path_factory.mktemp("small") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert small_bench(out) == 0
    finally:
        torch.set_num_threads(threads)
    return out
