"""N19: a JSON file nested too deeply for the decoder (100,000 brackets) is refused by `io.read_json` with the
project's error naming the file, not a RecursionError traceback; the CLI's JSON readers go through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperguide.cli import main
from hyperguide.errors import HyperguideError
from hyperguide.io import read_json

DEPTH = 100_000


def write_deep(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"tasks": ' + "[" * DEPTH + "]" * DEPTH + "}\n")
    return path


def test_read_json_refuses_a_file_nested_too_deeply(tmp_path: Path) -> None:
    path = write_deep(tmp_path / "deep.json")
    with pytest.raises(HyperguideError, match=r"^results .*deep\.json is nested too deeply to read \(brackets deeper"):
        read_json(path, what="results")


def test_read_json_still_reads_a_file_nested_moderately(tmp_path: Path) -> None:
    path = tmp_path / "nested.json"
    path.write_text("[" * 100 + "]" * 100)
    value = read_json(path)
    for _ in range(99):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == []


@pytest.mark.parametrize(
    ("command", "deep_file", "what"),
    [
        (["config", "--config", "{dir}/deep.json"], "deep.json", "config file"),
        (["compare", "{dir}", "a", "b"], "results.json", "results"),
        (["generate", "{dir}", "what is it?"], "config.json", "config"),  # a bundle's config.json
    ],
)
def test_cli_commands_refuse_a_deep_json_file_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], deep_file: str, what: str
) -> None:
    path = write_deep(tmp_path / "d" / deep_file)
    assert main([part.format(dir=path.parent) for part in command]) == 2
    err = capsys.readouterr().err
    assert f"error: {what} {path} is nested too deeply to read" in err
    assert "Traceback" not in err and "RecursionError" not in err
