"""`main`: parse the command line, run the command, and turn what went wrong into one line and an exit status."""

from __future__ import annotations

import errno
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from hyperguide.cli.commands import COMMANDS
from hyperguide.cli.parser import build_parser
from hyperguide.errors import HyperguideError, HyperguideWarning

WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
                errno.EEXIST}  # fmt: skip


def _os_error(e: OSError) -> str:
    path = e.filename if e.filename is not None else "a file"
    reason = e.strerror or str(e)
    return f"cannot write {path}: {reason}" if e.errno in WRITE_ERRNOS else f"{path}: {reason}"


@contextmanager
def warnings_as_lines(command: str) -> Iterator[None]:
    """The library's own warnings shown as one line, `hyperguide CMD: warning: TEXT` (not Python's `FILE:LINE:
    UserWarning: TEXT` and a source line); other packages' warnings as Python shows them."""
    with warnings.catch_warnings():
        default = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if issubclass(category, HyperguideWarning):
                print(f"hyperguide {command}: warning: {message}", file=sys.stderr)
            else:
                default(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Run `hyperguide` with `argv` (default: the process's arguments); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        with warnings_as_lines(args.command):
            return COMMANDS[args.command](args)
    except HyperguideError as e:
        print(f"hyperguide {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except OSError as e:  # what the library did not name itself: a full disk, a read-only folder, a file in the way
        print(f"hyperguide {args.command}: error: {_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"hyperguide {args.command}: interrupted; finished work is kept and reused on the next run", file=sys.stderr
        )
        return 130
