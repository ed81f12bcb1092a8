"""How an `outreach` command's failure is said: every error a command ends in becomes one line in
the run's language and an exit code of its own (`explain`), bad input names the flag it came from
(`invalid_words`, `as_flag`), and the store's and the sync's errors are said in the user's words
(`layer_words`). It never lets pydantic's or a lower layer's own words (which may quote what was
typed) reach the terminal, and it imports no command module.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from models.errors import InvalidInput, StoreError, TamperedRecord
from sync.errors import SyncError

from ..i18n import Translator
from .common import (
    EXIT_BUG,
    EXIT_DAMAGED,
    EXIT_DISK_FULL,
    EXIT_ERROR,
    EXIT_FILES,
    EXIT_OFFLINE,
    LANG,
    CliError,
    say,
)

__all__ = ["Failure", "explain", "layer_words", "flag_of", "invalid_words", "as_flag"]


class Failure(Exception):
    def __init__(self, code: int, line: str) -> None:
        super().__init__(line)
        self.code = code


def _sqlite_error(exc: BaseException) -> BaseException | None:
    """The SQLite error behind `exc`, if any (by its class's name: the CLI does not import the
    database layer)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if any(c.__module__ == "sqlite3" and c.__name__ == "DatabaseError" for c in type(seen).__mro__):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def explain(exc: BaseException, data_dir: Path | None) -> tuple[int, str]:
    """(exit code, one line in the user's words) for any error a command ends in."""
    folder = str(data_dir) if data_dir else "?"
    if isinstance(exc, Failure):
        return exc.code, str(exc)
    if isinstance(exc, CliError):
        return exc.exit_code, str(exc)
    db = _sqlite_error(exc)
    if db is not None:
        text = str(db).lower()
        if "full" in text:
            return EXIT_DISK_FULL, say("cli.error.disk_full")
        if any(w in text for w in ("readonly", "read-only", "unable to open", "permission", "access")):
            return EXIT_FILES, say("cli.error.cannot_write", path=folder)
        if "locked" in text or "busy" in text:
            return EXIT_ERROR, say("cli.error.busy")
        return EXIT_DAMAGED, say("cli.error.damaged", path=Path(folder) / "outreach.db")
    if isinstance(exc, OSError):
        path = exc.filename or folder
        if exc.errno in _FULL:
            return EXIT_DISK_FULL, say("cli.error.disk_full")
        if exc.errno in (errno.ENOTDIR, errno.EEXIST) and not Path(str(path)).is_dir():
            return EXIT_FILES, say("cli.error.not_a_folder", path=path)
        return EXIT_FILES, say("cli.error.cannot_write", path=path)
    if isinstance(exc, TamperedRecord):
        return EXIT_DAMAGED, say("cli.error.tampered", kind=exc.kind, id=exc.record_id)
    if isinstance(exc, InvalidInput):
        return EXIT_ERROR, invalid_words(exc)
    if type(exc).__name__ in ("Offline", "ServerFault", "ServerUnavailable", "ServerEmpty"):
        # nothing is lost and nothing is wrong here: a script may simply try again
        return EXIT_OFFLINE, layer_words(exc)
    if isinstance(exc, (StoreError, SyncError)):
        return EXIT_ERROR, layer_words(exc)
    return EXIT_BUG, say("cli.error.bug", kind=type(exc).__name__)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def layer_words(exc: BaseException) -> str:
    """An error of the store or the sync in this run's language. The layers say it in English,
    naming what went wrong precisely: in English that sentence is kept; in another language the
    words of its class (`cli.error.store.<class>`, `cli.error.sync.<class>`), nearest first."""
    lang = LANG.get()
    if lang == "en":
        return str(exc)
    t = Translator(lang)
    params = {k: (round(v) if isinstance(v, float) else v) for k, v in vars(exc).items()
              if isinstance(v, (int, float, str))}
    for cls in type(exc).__mro__:
        part = "store" if cls.__module__.startswith("models") else "sync"
        key = f"cli.error.{part}.{_snake(cls.__name__)}"
        if t.has(key):
            return t(key, **params)
    return t("cli.error.other", kind=type(exc).__name__)


# the flag that sets a field, where it is not the field's name with dashes
_FLAGS = {"full_name": "--name", "languages": "--language", "needs": "--need", "services": "--service",
          "referrals": "--referral", "workers": "--worker", "person_id": "--person", "place_id": "--place",
          "path": "--out", "worker_name": "--worker"}
_PYDANTIC_WORDS = {
    "string_too_short": "cli.invalid.empty", "string_too_long": "cli.invalid.too_long",
    "too_long": "cli.invalid.too_many", "greater_than_equal": "cli.invalid.at_least",
    "greater_than": "cli.invalid.above", "less_than_equal": "cli.invalid.at_most", "less_than": "cli.invalid.below",
    "int_parsing": "cli.invalid.whole_number", "int_from_float": "cli.invalid.whole_number",
    "int_type": "cli.invalid.whole_number", "float_parsing": "cli.invalid.number", "float_type": "cli.invalid.number",
    "date_parsing": "cli.invalid.date", "date_from_datetime_parsing": "cli.invalid.date",
    "date_from_datetime_inexact": "cli.invalid.date", "date_type": "cli.invalid.date",
    "datetime_parsing": "cli.invalid.datetime", "datetime_from_date_parsing": "cli.invalid.datetime",
    "datetime_type": "cli.invalid.datetime", "enum": "cli.invalid.choice", "missing": "cli.invalid.missing",
    "control_characters": "cli.invalid.control_characters", "date_too_early": "cli.invalid.date_too_early",
    "date_too_late": "cli.invalid.date_too_late", "date_in_future": "cli.invalid.date_in_future",
    "birth_year": "cli.invalid.birth_year", "cpr_format": "cli.invalid.cpr_format",
    "cpr_date": "cli.invalid.cpr_date",
}


def flag_of(field: str) -> str:
    name = field.split(".")[0]
    return _FLAGS.get(name) or "--" + name.replace("_", "-")


def invalid_words(exc: InvalidInput, flag: str | None = None) -> str:
    """Bad input in plain words naming the flag: pydantic's own words ('Input should be ...',
    'month value is outside expected range of 1-12') never reach the user."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ValidationError) and cause.errors():
        first = cause.errors()[0]
        field = ".".join(str(p) for p in first["loc"] if not isinstance(p, int)) or exc.field
        ctx = {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in (first.get("ctx") or {}).items()}
        key = _PYDANTIC_WORDS.get(first["type"], "cli.invalid.value")
        return say("cli.invalid.line", flag=flag or flag_of(field), words=say(key, **ctx))
    return say("cli.invalid.line", flag=flag or flag_of(exc.field), words=_reason_words(exc.reason))


@contextmanager
def as_flag(flag: str) -> Iterator[None]:
    """Bad input of the records made inside, said as the flag (or argument) it came from: a new
    place's name is `--place` to `contact add`."""
    try:
        yield
    except InvalidInput as exc:
        raise CliError(invalid_words(exc, flag)) from exc


def _reason_words(reason: str) -> str:
    """The reasons the layers give in English, in this run's language where they have words."""
    known = {"no such place (add it with 'outreach place add')": "cli.invalid.no_place",
             "choose a file name, not a folder": "cli.invalid.not_a_file",
             "the folder does not exist": "cli.invalid.no_folder",
             "a person needs an alias": "cli.invalid.empty"}
    key = known.get(reason)
    if key:
        return say(key)
    return reason if LANG.get() == "en" else say("cli.invalid.value")  # the layers say it in English
