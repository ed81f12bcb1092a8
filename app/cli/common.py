"""What every `outreach` command shares: the exit codes, this run's language and words (`say`),
the terminal-safe output (`escape`, `one_line`, `Output`), the user's errors (`CliError`), the
passphrase prompt, opening this device's workspace, the desk's role check and the ids a user types
(`short`, `find_id`, `person_id`). The command modules (`records`, `team`, `desk`) and `main`
import it; it imports none of them, and it never prints personal data the user did not ask for.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import re
import sys
from collections.abc import Callable
from contextvars import ContextVar
from enum import StrEnum
from typing import Any, NoReturn
from weakref import WeakKeyDictionary

from models.domain.ids import Ambiguous, resolve, short_ids
from models.domain.vocab import RecordType
from models.errors import NotFound
from models.workspace import Workspace

from ..i18n import Translator
from ..keystore import desktop_pepper

__all__ = [
    "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_NOT_HERE", "EXIT_FILES", "EXIT_DISK_FULL", "EXIT_DAMAGED",
    "EXIT_OFFLINE", "EXIT_BUG", "EXIT_INTERRUPTED", "EXIT_CODES", "CLI_DEFAULT_LANGUAGE", "LANG", "say", "words",
    "escape", "one_line", "show", "Output", "CliError", "NotHere", "Parser", "choices", "hours", "int_flag",
    "passphrase", "workspace", "open_workspace", "require_desk", "short", "find_id", "person_id",
]


EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_NOT_HERE = 3  # a coordinator's command on a worker's device
EXIT_FILES = 4  # a folder or file could not be read or written (permissions, read-only, not a folder)
EXIT_DISK_FULL = 5  # the disk is full: nothing was saved
EXIT_DAMAGED = 6  # the data file is damaged: restore this device from the server
EXIT_OFFLINE = 7  # no connection, or the server failed: nothing is lost, try again
EXIT_BUG = 70  # an error the CLI did not expect (a bug: the log names its kind)
EXIT_INTERRUPTED = 130
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "cli.exit.ok", EXIT_ERROR: "cli.exit.error", EXIT_USAGE: "cli.exit.usage",
    EXIT_NOT_HERE: "cli.exit.not_here", EXIT_FILES: "cli.exit.files", EXIT_DISK_FULL: "cli.exit.disk_full",
    EXIT_DAMAGED: "cli.exit.damaged", EXIT_OFFLINE: "cli.exit.offline", EXIT_BUG: "cli.exit.bug", EXIT_INTERRUPTED: "cli.exit.interrupted",
}
CLI_DEFAULT_LANGUAGE = "da"  # Danish first, as the app and the files

# the language of one run (set by `main` from --lang or OUTREACH_LANG): not import-time state
LANG: ContextVar[str] = ContextVar("outreach_cli_lang", default=CLI_DEFAULT_LANGUAGE)


def say(key: str, **params: Any) -> str:
    """The CLI's words for `key` in this run's language (assets/i18n/<lang>.json)."""
    return Translator(LANG.get())(key, **params)




# Control characters (C0 but line break and tab, DEL, C1) as visible escapes: a record typed or
# synced elsewhere, or stored by an older version, may still hold them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_C1 = re.compile(r"[\x7f-\x9f]")


def escape(text: str) -> str:
    """`text` safe for a terminal: NUL, ESC, BEL, CR, DEL and C1 shown as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def one_line(text: str | None) -> str:
    """A field inside a table row: line breaks and tabs too as escapes."""
    return escape(text or "").replace("\n", "\\n").replace("\t", "\\t")


class CliError(Exception):
    """A problem with what the user typed, found by the CLI itself."""

    exit_code = EXIT_ERROR


class NotHere(CliError):
    """A command this device may not run (the desk on a worker's device)."""

    exit_code = EXIT_NOT_HERE


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + line
        self.exit(EXIT_USAGE, "outreach: " + escape(say("cli.usage_error", message=message)) + "\n")


def choices(enum: type[StrEnum]) -> list[str]:
    return [e.value for e in enum]



def hours(text: str) -> float:
    """Hours an invite stays valid: a finite number from one minute to a week (the server's bounds)."""
    try:
        hours = float(text)
    except ValueError:
        hours = math.nan
    if not (math.isfinite(hours) and 1 / 60 <= hours <= 7 * 24):
        raise argparse.ArgumentTypeError(say("cli.invalid_hours", text=text))
    return hours


def int_flag(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(say("cli.invalid_int", flag=f"--{name}", text=text)) from None
    return parse



def show(text: str) -> None:
    """Print for the user: control characters escaped (see `escape`)."""
    print(escape(text))


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def emit(self, data: Any, text: str | Callable[[], str]) -> None:
        if self.as_json:
            # json escapes C0 itself; DEL and C1 it leaves raw, and a terminal may act on them
            raw = json.dumps(data, ensure_ascii=False, default=str, indent=None)
            print(_C1.sub(lambda m: f"\\u{ord(m.group()):04x}", raw))
        else:
            show(text() if callable(text) else text)


def passphrase(prompt: str = "cli.prompt.passphrase", *, confirm: bool = False) -> str:
    env = os.environ.get("OUTREACH_PASSPHRASE")
    if env:
        return env
    if not sys.stdin.isatty():
        raise CliError(say("cli.error.no_passphrase"))
    first = getpass.getpass(say(prompt) + " ")
    if confirm and getpass.getpass(say("cli.prompt.again") + " ") != first:
        raise CliError(say("cli.error.passphrases_differ"))
    return first


def words() -> Translator:
    """This run's translations, for vocabularies and field names (`t.vocab("status", ...)`)."""
    return Translator(LANG.get())




def workspace(args: argparse.Namespace) -> Workspace:
    """This device's workspace as the CLI opens it: the keystore's secret where the laptop has
    one (the same as the app's), else a passphrase strong enough for offline guessing; creates,
    edits and deletes audited."""
    return Workspace(args.data_dir_path, audit_writes=True, guard_offline=True,
                     pepper=desktop_pepper(args.data_dir_path))


def open_workspace(args: argparse.Namespace) -> Workspace:
    ws = workspace(args)
    if not ws.exists():
        raise CliError(say("cli.error.no_data", path=ws.data_dir))
    ws.unlock(passphrase())
    return ws


def require_desk(ws: Workspace) -> None:
    """The desk (figures, exports, access, audit, review, the team's devices) is the
    coordinator's, in the CLI as in the app: a worker's device refuses it with one line. A device
    in no team has only its user's own records, and keeps it."""
    if ws.setting("team_id") is not None and ws.setting("role") != "coordinator":
        raise NotHere(say("cli.not_here"))



# ------------------------------------------------------------------------------ ids
_SHORTS: WeakKeyDictionary[Workspace, dict[str, dict[str, str]]] = WeakKeyDictionary()


def short(ws: Workspace, kind: str, rid: str | None) -> str:
    """The short id printed for a record: unique among every record of its kind (models.domain.ids)."""
    if not rid:
        return "-"
    known = _SHORTS.setdefault(ws, {})
    if rid not in known.get(kind, {}):
        known[kind] = short_ids(ws.index.records[RecordType(kind)])
    return known[kind].get(rid, rid)


def _names(ws: Workspace, kind: str) -> dict[str, tuple[str | None, ...]] | None:
    table = ws.index.records[RecordType(kind)]
    if kind == "person":
        return {rid: (v.get("alias"), v.get("full_name")) for rid, v in table.items()}
    if kind == "place":
        return {rid: (v.get("name"),) for rid, v in table.items()}
    return None


def _label(ws: Workspace, kind: str, rid: str) -> str:
    values = ws.index.records[RecordType(kind)].get(rid) or {}
    return str(values.get("alias") or values.get("name") or values.get("due") or values.get("at") or "")


def find_id(ws: Workspace, kind: str, typed: str) -> str:
    """The record of `kind` that `typed` means: an id as printed, the whole id, a unique prefix,
    or (persons, places) a name only one has. Ambiguous: one line naming the candidates."""
    try:
        return resolve(typed, ws.index.records[RecordType(kind)], kind=kind, names=_names(ws, kind))
    except Ambiguous as exc:
        shown = [f"{short(ws, kind, rid)} ({_label(ws, kind, rid)})" for rid in exc.candidates[:10]]
        more = len(exc.candidates) - len(shown)
        raise CliError(say("cli.ambiguous", typed=typed, n=len(exc.candidates), kinds=say(f"cli.kinds.{kind}"),
                           candidates=", ".join(shown) + (say("cli.and_more", n=more) if more else ""))) from None
    except NotFound:
        raise CliError(say("cli.not_found", kind=say(f"cli.kind.{kind}"), typed=typed)) from None


def person_id(ws: Workspace, typed: str) -> str:
    return find_id(ws, "person", typed)

