"""The `outreach` command line (`[project.scripts] outreach = "app.cli:main"`, `python -m app.cli`).

`main` wires the parser and converts errors; `records` (persons, contacts, places, follow-ups,
search, conflicts, demo), `team` (join, invite, devices, sync, ...) and `desk` (the coordinator's
figures, exports, review and audit) hold the commands; `common` and `errors` hold what they share,
so that no command module imports `main` or this package. The exit codes are the CLI's contract
with scripts and are exported here. It never imports the Flet UI (`app.ui`) or its facade
(`app.services`).
"""

from .common import (
    EXIT_BUG,
    EXIT_CODES,
    EXIT_DAMAGED,
    EXIT_DISK_FULL,
    EXIT_ERROR,
    EXIT_FILES,
    EXIT_INTERRUPTED,
    EXIT_NOT_HERE,
    EXIT_OFFLINE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    escape,
    say,
)
from .main import build_parser, main

__all__ = [
    "main", "build_parser", "EXIT_CODES", "CliError", "say", "escape", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE",
    "EXIT_NOT_HERE", "EXIT_FILES", "EXIT_DISK_FULL", "EXIT_DAMAGED", "EXIT_OFFLINE", "EXIT_BUG", "EXIT_INTERRUPTED",
]
