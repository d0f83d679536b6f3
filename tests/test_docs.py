"""The code blocks of the README, CONTRIBUTING and the documentation site, checked against the code they describe.

Every block fenced ```bash or ```python is checked: each `hyperguide ...` command (also after `torchrun ... -m` or
`python -m`) must parse with the real argument parser and its `--set` keys must be knobs of the config; `make X` must
be a Makefile target; `python path.py` must exist; a Python block must compile and its imports must import. So a
renamed flag, knob, target or function breaks the build, not the reader.

A block is also executed unless the nearest non-blank line before its fence says why not (`<!-- not-run: needs a
prepared easyvqa -->`): a page's executed blocks run in order in one empty temporary folder (a block sees what the
page's earlier blocks made), with their own HYPERGUIDE_HOME and the repository's `examples/`, `bench/` and
`configs/` beside them. Blocks fenced otherwise (```text, ```json) are output or file contents and are not checked.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hyperguide.cli import build_parser
from hyperguide.config import RunConfig
from hyperguide.config.typed import apply_overrides
from hyperguide.errors import HyperguideError

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "docs" / "results"  # its sub-folders hold generated reports, with no code blocks of their own
PAGES = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    + [p for p in (ROOT / "docs").rglob("*.md") if not (REPORTS in p.parents and p.parent != REPORTS)]
)
CHECKED = {"bash": "bash", "sh": "bash", "python": "python", "py": "python"}
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(\S.*?)\s*-->$")
FENCE = re.compile(r"^(\s*)(```+)\s*([\w+-]*)")
BESIDE = ("examples", "bench", "configs")  # repository folders an executed block may read


@dataclasses.dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str  # "bash" or "python"
    code: str
    not_run: str | None  # why it is not executed; None: it is

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The page's bash and Python blocks, each with its not-run reason (indented fences, in lists, included)."""
    lines = page.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        if lang in CHECKED:
            body = [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[i + 1 : j]]
            before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
            reason = NOT_RUN.match(before)
            out.append(Block(page, i + 1, CHECKED[lang], "\n".join(body) + "\n", reason and reason.group(1)))
        i = j + 1
    return out


ALL = [b for page in PAGES for b in blocks(page)]


def commands(code: str) -> list[list[str]]:
    """The simple commands of a bash block: continuations joined, comments dropped, split at newlines, ; && || |,
    redirections (`> out.json`, `2>&1`) left out."""
    out: list[list[str]] = []
    for line in code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        target = False  # the next word is a redirection's target
        for token in lexer:
            if set(token) <= set("<>&") and set(token) & set("<>"):
                if current and current[-1].isdigit():  # a file descriptor: 2>
                    current.pop()
                target = True
            elif set(token) <= set(";&|"):
                out.append(current)
                current = []
            elif target:
                target = False
            else:
                current.append(token)
        out.append(current)
    return [cmd for cmd in out if cmd]


def hyperguide_argv(cmd: list[str]) -> list[str] | None:
    """The arguments of `hyperguide` in a command (directly, by path, `python -m` or `torchrun ... -m`), else None."""
    while cmd and re.match(r"^[A-Z_][A-Z0-9_]*=", cmd[0]):  # environment assignments
        cmd = cmd[1:]
    if not cmd:
        return None
    if Path(cmd[0]).name == "hyperguide":
        return cmd[1:]
    if Path(cmd[0]).name in ("torchrun", "python", "python3") and "-m" in cmd:
        at = cmd.index("-m")
        if at + 1 < len(cmd) and cmd[at + 1] in ("hyperguide", "hyperguide.cli"):
            return cmd[at + 2 :]
    return None


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+):", (ROOT / "Makefile").read_text(), flags=re.M))


def check_command(cmd: list[str]) -> None:
    argv = hyperguide_argv(cmd)
    if argv is not None:
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):
                args = build_parser().parse_args(argv)
        except SystemExit:
            error = said.getvalue().strip().splitlines()[-1:]
            raise AssertionError(f"`hyperguide {shlex.join(argv)}` does not parse: {''.join(error)}") from None
        overrides = getattr(args, "overrides", None) or []
        apply_overrides(RunConfig(), overrides)  # every --set key is a knob of the config
        return
    program = Path(cmd[0]).name
    if program == "make":
        missing = [t for t in cmd[1:] if not t.startswith("-") and "=" not in t and t not in make_targets()]
        assert not missing, f"`{shlex.join(cmd)}`: no Makefile target {missing}"
    elif program in ("python", "python3") and len(cmd) > 1 and cmd[1].endswith(".py"):
        assert (ROOT / cmd[1]).is_file(), f"`{shlex.join(cmd)}`: no file {cmd[1]}"


def check_python(code: str, where: str) -> None:
    tree = ast.parse(code, filename=where)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    importlib.import_module(f"{node.module}.{alias.name}")  # a submodule, or ImportError


@pytest.mark.parametrize("block", ALL, ids=[b.id for b in ALL])
def test_block_matches_the_code(block: Block) -> None:
    if block.lang == "python":
        check_python(block.code, block.id)
        return
    for cmd in commands(block.code):
        check_command(cmd)


RUN_PAGES = sorted({b.page for b in ALL if b.not_run is None})


@pytest.mark.integration
@pytest.mark.parametrize("page", RUN_PAGES, ids=[f"run-{p.relative_to(ROOT)}" for p in RUN_PAGES])
def test_page_blocks_run(page: Path, tmp_path: Path) -> None:
    for name in BESIDE:
        (tmp_path / name).symlink_to(ROOT / name)
    env = {
        **os.environ,
        "HYPERGUIDE_HOME": str(tmp_path / "home"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for block in blocks(page):
        if block.not_run is not None:
            continue
        shell = ["bash", "-euo", "pipefail"] if block.lang == "bash" else [sys.executable]
        argv = [*shell, "-c", block.code]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{block.id} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"


def test_block_parsing_finds_fences_markers_and_commands(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- not-run: needs data -->\n\n```bash\nhyperguide bench easyvqa \\\n  --seeds 0  # a comment\n"
        "make check && python bench/x.py > out.txt 2>&1\nhyperguide config synthetic --json >> my.json\n```\n\n"
        "- item\n\n  ```python\n  import json\n  ```\n```text\nout\n```\n"
    )
    found = blocks(page)
    assert [(b.line, b.lang, b.not_run) for b in found] == [(5, "bash", "needs data"), (14, "python", None)]
    assert found[1].code == "import json\n"
    assert commands(found[0].code) == [
        ["hyperguide", "bench", "easyvqa", "--seeds", "0"],
        ["make", "check"],
        ["python", "bench/x.py"],
        ["hyperguide", "config", "synthetic", "--json"],
    ]
    assert hyperguide_argv(["torchrun", "--nproc-per-node", "2", "-m", "hyperguide", "train"]) == ["train"]
    assert hyperguide_argv(["OMP_NUM_THREADS=1", ".venv/bin/hyperguide", "stats"]) == ["stats"]
    assert hyperguide_argv(["pip", "install", "-e", "."]) is None


@pytest.mark.parametrize(
    ("cmd", "says"),
    [
        (["hyperguide", "bench", "easyvqa", "--sedes", "0"], "does not parse"),
        (["hyperguide", "bench", "easyvqa", "--set", "train.epoch=3"], "unknown key"),
        (["make", "chek"], "no Makefile target"),
        (["python", "bench/no_such_script.py"], "no file"),
    ],
)
def test_a_renamed_flag_knob_target_or_script_is_refused(cmd: list[str], says: str) -> None:
    with pytest.raises((AssertionError, HyperguideError), match=says):
        check_command(cmd)


def test_a_renamed_import_is_refused() -> None:
    with pytest.raises(ImportError):
        check_python("from hyperguide import no_such_name\n", "x")
    check_python("from hyperguide import load_generator\nfrom hyperguide.config import typed\n", "x")
