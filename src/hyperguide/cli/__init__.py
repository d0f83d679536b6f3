"""The `hyperguide` command line: it parses arguments, chooses the callbacks that show progress, and calls the
library; nothing more.

    app.py          `main`: parse, run the command, one line and an exit status for what went wrong
    parser.py       the commands that name a universe and their flags (`build_parser`)
    parser_runs.py  the commands that read a trained run and their flags
    flags.py        the flags several commands share: the run's configuration, --log, --precision, --quiet
    universes.py    the universes: a sub-command per registered universe, its options' flags, `config`'s listing
    runs.py         the run's config and default folder from the flags, the progress callbacks
    commands.py     what each command does (`COMMANDS`)
"""

from hyperguide.cli.app import main, warnings_as_lines
from hyperguide.cli.commands import COMMANDS
from hyperguide.cli.parser import build_parser

__all__ = ["COMMANDS", "build_parser", "main", "warnings_as_lines"]
