"""The `outreach` command line: a thin front end over the same service layer as the Flet UI.

It parses flags, asks for the passphrase (``OUTREACH_PASSPHRASE`` or a prompt), calls the
workspace and the sync engine, and prints text or ``--json``. Errors from the layers arrive as
their roots (`StoreError`, `SyncError`) and leave as one line on stderr with a non-zero exit code.
It never prints or logs personal data except what the user asked to see on stdout, and what it
prints has its control characters escaped (a record synced from another device cannot drive this
terminal). Whatever fails ends in one line and an exit code of its own (`EXIT_CODES`, shown in
`--help`), never in a traceback: a damaged or full store, a data folder that cannot be written.

This module only wires: the parser (the commands' own parsers are added by `records`, `team` and
`desk`), the run's language and logging, and the conversion of errors (`errors.explain`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..config import resolve_data_dir
from ..files import keep_private
from ..i18n import LANGUAGES
from .common import (
    CLI_DEFAULT_LANGUAGE,
    EXIT_CODES,
    EXIT_FILES,
    EXIT_INTERRUPTED,
    LANG,
    Output,
    Parser,
    one_line,
    say,
)
from .desk import add_commands as add_desk_commands
from .errors import Failure, explain
from .records import COMMANDS
from .records import add_commands as add_record_commands
from .team import add_commands as add_team_commands

__all__ = ["main", "build_parser"]

log = logging.getLogger("outreach.cli")


def _language(argv: Sequence[str]) -> str:
    """--lang (read before the parser is built: its help is in that language too), else
    OUTREACH_LANG, else the default."""
    lang = None
    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv):
            lang = argv[i + 1]
        elif arg.startswith("--lang="):
            lang = arg.split("=", 1)[1]
    lang = (lang or os.environ.get("OUTREACH_LANG") or CLI_DEFAULT_LANGUAGE).strip().lower()
    return lang if lang in LANGUAGES else CLI_DEFAULT_LANGUAGE



def _exit_codes_text() -> str:
    return say("cli.exit.title") + "\n" + "\n".join(f"  {code:<4}{say(key)}" for code, key in EXIT_CODES.items())



def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="outreach", description=say("cli.help.description_app"),
                     epilog=_exit_codes_text(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help=say("cli.help.data_dir"))
    parser.add_argument("--json", action="store_true", help=say("cli.help.json"))
    parser.add_argument("-v", "--verbose", action="store_true", help=say("cli.help.verbose"))
    parser.add_argument("--lang", choices=LANGUAGES, help=say("cli.help.lang", default=CLI_DEFAULT_LANGUAGE))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_record_commands(sub)
    add_team_commands(sub, Parser)
    add_desk_commands(sub, Parser)
    return parser


def _setup_logging(data_dir: Path, verbose: bool) -> None:
    """The log in the data folder when it can be written; a folder that cannot be is said by the
    command that needs it, not by a traceback of the log."""
    root = logging.getLogger("outreach")
    root.setLevel(logging.INFO)
    root.handlers.clear()
    if data_dir.is_dir():
        try:
            handler = logging.FileHandler(data_dir / "outreach.log", encoding="utf-8")
        except OSError:
            handler = None
        if handler is not None:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
            root.addHandler(handler)
    if verbose:
        root.addHandler(logging.StreamHandler(sys.stderr))


# argparse's own words ("usage:", "invalid choice", ...) as `cli.argparse.*` keys: argparse asks
# its module's `_` (gettext) for each, which `main` points here for the length of a run.
_ARGPARSE_KEYS = {
    "usage: ": "usage", "positional arguments": "positional", "options": "options",
    "show this help message and exit": "help", "invalid choice: %(value)r (choose from %(choices)s)": "choice",
    "the following arguments are required: %s": "required", "unrecognized arguments: %s": "unrecognized",
    "argument %(argument_name)s: %(message)s": "argument", "expected one argument": "exactly_one",
    "expected at least one argument": "at_least_one", "expected at most one argument": "at_most_one",
    "invalid %(type)s value: %(value)r": "invalid", "not allowed with argument %s": "not_with",
    "one of the arguments %s is required": "one_of", "ambiguous option: %(option)s could match %(matches)s":
    "ambiguous", "ignored explicit argument %r": "ignored",
}


def _argparse_words(message: str) -> str:
    key = _ARGPARSE_KEYS.get(message)
    return say(f"cli.argparse.{key}") if key else message


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    token = LANG.set(_language(argv))
    argparse_gettext = argparse._  # type: ignore[attr-defined]
    argparse._ = _argparse_words  # type: ignore[attr-defined]
    try:
        return _run(argv)
    finally:
        argparse._ = argparse_gettext  # type: ignore[attr-defined]
        for handler in logging.getLogger("outreach").handlers:
            handler.close()
        LANG.reset(token)


def _run(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return int(exc.code or 0)
    out = Output(args.json)
    command = getattr(args, "command", "?")
    try:
        args.data_dir_path = resolve_data_dir(args.data_dir)
        if args.data_dir_path.exists() and not args.data_dir_path.is_dir():
            raise Failure(EXIT_FILES, say("cli.error.not_a_folder", path=args.data_dir_path))
        keep_private(args.data_dir_path)  # 0700 folder, 0600 files: the log and the store alike
        _setup_logging(args.data_dir_path, args.verbose)
        handler = getattr(args, "handler", None) or COMMANDS.get(args.command)
        if handler is None:
            parser.error(say("cli.error.unknown_command", command=args.command))
        return int(handler(args, out))
    except KeyboardInterrupt:
        print("outreach: " + say("cli.error.interrupted"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `outreach ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - every error leaves as one line; the kind goes to the log
        code, line = explain(exc, getattr(args, "data_dir_path", None))
        # the kind only: messages of lower layers may quote what was typed
        log.info("%s failed: %s (exit %d)", command, type(exc).__name__, code)
        print("outreach: " + one_line(line), file=sys.stderr)
        return code
