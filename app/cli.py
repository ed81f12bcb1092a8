"""The `outreach` command line: a thin front end over the same service layer as the Flet UI.

It parses flags, asks for the passphrase (``OUTREACH_PASSPHRASE`` or a prompt), calls the
workspace and the sync engine, and prints text or ``--json``. Errors from the layers arrive as
their roots (`StoreError`, `SyncError`) and leave as one line on stderr with a non-zero exit code.
It never prints or logs personal data except what the user asked to see on stdout, and what it
prints has its control characters escaped (a record synced from another device cannot drive this
terminal). Whatever fails ends in one line and an exit code of its own (`EXIT_CODES`, shown in
`--help`), never in a traceback: a damaged or full store, a data folder that cannot be written.
"""

from __future__ import annotations

import argparse
import errno
import getpass
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn
from weakref import WeakKeyDictionary

from pydantic import ValidationError

from models.domain.ids import Ambiguous, resolve, short_ids
from models.domain.tables import CONTROL_CHARACTERS
from models.domain.vocab import (
    Consent,
    ContactKind,
    Ethos,
    Gender,
    HomelessCategory,
    Living,
    Need,
    RecordType,
    Referral,
    Service,
    Status,
)
from models.errors import InvalidInput, NotFound, StoreError, TamperedRecord
from models.usecases.demo import populate
from models.workspace import Workspace

from .config import resolve_data_dir
from .i18n import LANGUAGES, Translator

__all__ = ["main", "build_parser", "EXIT_CODES", "CliError", "say", "escape"]

log = logging.getLogger("outreach.cli")

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
_LANG: ContextVar[str] = ContextVar("outreach_cli_lang", default=CLI_DEFAULT_LANGUAGE)


def say(key: str, **params: Any) -> str:
    """The CLI's words for `key` in this run's language (assets/i18n/<lang>.json)."""
    return Translator(_LANG.get())(key, **params)


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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + line
        self.exit(EXIT_USAGE, "outreach: " + escape(say("cli.usage_error", message=message)) + "\n")


def _values(enum: type[StrEnum]) -> str:
    return ", ".join(e.value for e in enum)


def _choices(enum: type[StrEnum]) -> list[str]:
    return [e.value for e in enum]


def _add_person_flags(p: argparse.ArgumentParser, *, alias_required: bool) -> None:
    p.add_argument("--alias", required=alias_required, help=say("cli.help.alias"))
    p.add_argument("--name", dest="full_name", help=say("cli.help.name"))
    p.add_argument("--cpr", help=say("cli.help.cpr"))
    p.add_argument("--birth-year", type=_int("birth-year"))
    p.add_argument("--gender", choices=_choices(Gender))
    p.add_argument("--nationality")
    p.add_argument("--language", dest="languages", action="append", help=say("cli.help.repeatable"))
    p.add_argument("--description", help=say("cli.help.description"))
    p.add_argument("--category", choices=_choices(HomelessCategory), help=say("cli.help.category"))
    p.add_argument("--ethos", choices=_choices(Ethos))
    p.add_argument("--consent", choices=_choices(Consent))
    p.add_argument("--consent-date", help=say("cli.help.date"))
    p.add_argument("--consent-scope")
    p.add_argument("--status", choices=_choices(Status))
    p.add_argument("--status-date", help=say("cli.help.date"))
    p.add_argument("--icm-worker")
    p.add_argument("--need", dest="needs", action="append", choices=_choices(Need), help=say("cli.help.repeatable"))
    p.add_argument("--safety-note")
    p.add_argument("--usual-place", help=say("cli.help.usual_place"))


_PERSON_KEYS = ("alias", "full_name", "cpr", "birth_year", "gender", "nationality", "languages", "description",
                "category", "ethos", "consent", "consent_date", "consent_scope", "status", "status_date",
                "icm_worker", "needs", "safety_note", "usual_place")


def _exit_codes_text() -> str:
    return say("cli.exit.title") + "\n" + "\n".join(f"  {code:<4}{say(key)}" for code, key in EXIT_CODES.items())


def _hours(text: str) -> float:
    """Hours an invite stays valid: a finite number from one minute to a week (the server's bounds)."""
    try:
        hours = float(text)
    except ValueError:
        hours = math.nan
    if not (math.isfinite(hours) and 1 / 60 <= hours <= 7 * 24):
        raise argparse.ArgumentTypeError(say("cli.invalid_hours", text=text))
    return hours


def _int(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(say("cli.invalid_int", flag=f"--{name}", text=text)) from None
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="outreach", description=say("cli.help.description_app"),
                     epilog=_exit_codes_text(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help=say("cli.help.data_dir"))
    parser.add_argument("--json", action="store_true", help=say("cli.help.json"))
    parser.add_argument("-v", "--verbose", action="store_true", help=say("cli.help.verbose"))
    parser.add_argument("--lang", choices=LANGUAGES, help=say("cli.help.lang", default=CLI_DEFAULT_LANGUAGE))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("init", help=say("cli.help.init"))
    p.add_argument("--worker", default="", help=say("cli.help.init_worker"))
    p.add_argument("--max-failures", type=_int("max-failures"), default=10,
                   help=say("cli.help.max_failures"))

    sub.add_parser("passwd", help=say("cli.help.passwd"))

    person = sub.add_parser("person", help=say("cli.help.person")).add_subparsers(dest="action", required=True,
                                                                     parser_class=_Parser)
    p = person.add_parser("add", help=say("cli.help.person_add"))
    _add_person_flags(p, alias_required=True)
    p = person.add_parser("list", help=say("cli.help.person_list"))
    p.add_argument("--status", choices=_choices(Status))
    p.add_argument("--category", choices=_choices(HomelessCategory))
    p.add_argument("--not-seen", type=_int("not-seen"), metavar="DAYS")
    p = person.add_parser("show", help=say("cli.help.person_show"))
    p.add_argument("id")
    p = person.add_parser("edit", help=say("cli.help.person_edit"))
    p.add_argument("id")
    _add_person_flags(p, alias_required=False)
    p = person.add_parser("delete", help=say("cli.help.person_delete"))
    p.add_argument("id")

    contact = sub.add_parser("contact", help=say("cli.help.contact")).add_subparsers(dest="action", required=True,
                                                                                   parser_class=_Parser)
    p = contact.add_parser("add", help=say("cli.help.contact_add"))
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--person", help=say("cli.help.contact_person"))
    who.add_argument("--anonymous", action="store_true")
    p.add_argument("--at", help=say("cli.help.at"))
    p.add_argument("--place", help=say("cli.help.place"))
    p.add_argument("--kind", default=ContactKind.STREET.value, choices=_choices(ContactKind))
    p.add_argument("--living", choices=_choices(Living), help=say("cli.help.living"))
    p.add_argument("--service", dest="services", action="append", default=[], choices=_choices(Service),
                   help=say("cli.help.repeatable"))
    p.add_argument("--referral", dest="referrals", action="append", default=[], choices=_choices(Referral),
                   help=say("cli.help.repeatable"))
    p.add_argument("--worker", dest="workers", action="append", default=[], help=say("cli.help.workers"))
    p.add_argument("--note")
    p.add_argument("--follow-up", help=say("cli.help.date"))
    p = contact.add_parser("list", help=say("cli.help.contact_list"))
    p.add_argument("--person")
    p.add_argument("--limit", type=_int("limit"), default=50)

    place = sub.add_parser("place", help=say("cli.help.place_group")).add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = place.add_parser("add", help=say("cli.help.place_add"))
    p.add_argument("name")
    p.add_argument("--zone")
    place.add_parser("list", help=say("cli.help.place_list"))

    fu = sub.add_parser("followup", help=say("cli.help.followup")).add_subparsers(dest="action", required=True,
                                                                      parser_class=_Parser)
    p = fu.add_parser("list", help=say("cli.help.followup_list"))
    p.add_argument("--due", action="store_true", help=say("cli.help.due"))
    p = fu.add_parser("done", help=say("cli.help.followup_done"))
    p.add_argument("id")

    p = sub.add_parser("search", help=say("cli.help.search"))
    p.add_argument("text")
    p.add_argument("--limit", type=_int("limit"), default=20)

    conflicts = sub.add_parser("conflicts", help=say("cli.help.conflicts"))
    what = conflicts.add_subparsers(dest="conflict_action", parser_class=_Parser)
    what.add_parser("list", help=say("cli.help.conflicts_list"))
    p = what.add_parser("resolve", help=say("cli.help.conflicts_resolve"))
    p.add_argument("record", help=say("cli.help.conflict_record"))
    p.add_argument("field", help=say("cli.help.conflict_field"))
    how = p.add_mutually_exclusive_group()
    how.add_argument("--keep", choices=("a", "b"), help=say("cli.help.conflict_keep"))
    how.add_argument("--value", help=say("cli.help.conflict_value"))

    p = sub.add_parser("demo", help=say("cli.help.demo"))
    p.add_argument("--persons", type=_int("persons"), default=50)
    p.add_argument("--contacts", type=_int("contacts"), default=500)
    p.add_argument("--seed", type=_int("seed"), default=169)

    _add_team_commands(sub)
    return parser


def _add_team_commands(sub: Any) -> None:
    """Team lifecycle and sync; the handlers live in `app.cli_team` (imported lazily: `requests`)."""
    try:
        from .cli_team import add_commands
    except ImportError:  # the sync part is optional until it exists
        return
    add_commands(sub, _Parser)
    from .cli_desk import add_commands as add_desk_commands

    add_desk_commands(sub, _Parser)


# ============================================================================ helpers
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
    return Translator(_LANG.get())


def workspace(args: argparse.Namespace) -> Workspace:
    """This device's workspace as the CLI opens it: the keystore's secret where the laptop has
    one (the same as the app's), else a passphrase strong enough for offline guessing; creates,
    edits and deletes audited."""
    from .keystore import desktop_pepper

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


def _parse_date(text: str | None, flag: str) -> str | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise CliError(say("cli.invalid.line", flag=f"--{flag}", words=say("cli.invalid.date"))) from None


def _person_fields(args: argparse.Namespace, ws: Workspace) -> dict[str, Any]:
    fields = {k: getattr(args, k) for k in _PERSON_KEYS if getattr(args, k, None) is not None}
    for key in ("consent_date", "status_date"):
        if key in fields:
            fields[key] = _parse_date(fields[key], key.replace("_", "-"))
    if fields.get("usual_place"):
        place = ws.find_place(fields["usual_place"])
        if place is None:
            raise InvalidInput("usual-place", "no such place (add it with 'outreach place add')")
        fields["usual_place"] = place.id
    return fields


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


def _person_line(p: Any, last: datetime | None, ws: Workspace) -> str:
    t = words()
    seen = say("cli.person.last_seen", date=last.strftime("%d-%m-%Y")) if last else say("cli.person.never_seen")
    cat = t.vocab("category", p.category) if p.category else "-"
    return (f"{short(ws, 'person', p.id):<12} {one_line(p.alias):<32.32}  {t.vocab('status', p.status):<16.16} "
            f"{cat:<22.22} {seen}")


def _contact_line(c: Any, ws: Workspace) -> str:
    t = words()
    who = say("cli.anonymous")
    if c.person_id:
        person = ws.index.records[RecordType.PERSON].get(c.person_id)
        who = person["alias"] if person else short(ws, "person", c.person_id)
    place = ws.index.records[RecordType.PLACE].get(c.place_id or "")
    where = place["name"] if place else "-"
    services = ", ".join(t.vocab("service", s) for s in c.services) or "-"
    return (f"{short(ws, 'contact', c.id):<12} {c.at:%d-%m-%Y %H:%M}  {one_line(who):<28.28} {one_line(where):<22.22} "
            f"{t.vocab('kind', c.kind):<12.12} {services}")


_VOCAB_FIELDS = {"gender": "gender", "category": "category", "ethos": "ethos", "consent": "consent",
                 "status": "status", "needs": "need", "kind": "kind", "living": "living", "services": "service",
                 "referrals": "referral"}


def _readable(name: str, value: Any) -> str:
    """A field's value in words: vocabularies translated, days the Danish way."""
    t = words()
    vocab = _VOCAB_FIELDS.get(name)
    if vocab:
        return ", ".join(t.vocab(vocab, v) for v in (value if isinstance(value, list) else [value]))
    if isinstance(value, bool):
        return t("export.yes") if value else t("export.no")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return date.fromisoformat(value).strftime("%d-%m-%Y")
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}T[\d:.]+Z?", value):
        return datetime.fromisoformat(value.rstrip("Z")).strftime("%d-%m-%Y %H:%M")
    return str(value)


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json")  # type: ignore[no-any-return]


# =========================================================================== commands
def cmd_init(args: argparse.Namespace, out: Output) -> int:
    if CONTROL_CHARACTERS.search(args.worker):
        raise CliError(say("cli.invalid.line", flag="--worker", words=say("cli.invalid.control_characters")))
    ws = workspace(args)
    device_id = ws.init(passphrase("cli.prompt.new_passphrase", confirm=True), worker_name=args.worker,
                        max_failures=args.max_failures)
    log.info("init: device %s", device_id)
    out.emit({"device_id": device_id, "data_dir": str(ws.data_dir)},
             say("cli.init.done", path=ws.data_dir, device=device_id))
    ws.close()
    return EXIT_OK


def cmd_passwd(args: argparse.Namespace, out: Output) -> int:
    ws = workspace(args)
    old = passphrase("cli.prompt.current_passphrase")
    ws.unlock(old)
    new = os.environ.get("OUTREACH_NEW_PASSPHRASE") or passphrase("cli.prompt.new_passphrase", confirm=True)
    ws.change_passphrase(old, new)
    log.info("passwd: changed")
    out.emit({"changed": True}, say("cli.passwd.done"))
    return EXIT_OK


def cmd_person(args: argparse.Namespace, out: Output) -> int:
    ws = open_workspace(args)
    if args.action == "add":
        p = ws.add_person(_person_fields(args, ws))
        log.info("person add: %s", p.id)
        out.emit({"id": p.id}, p.id)
    elif args.action == "list":
        persons = ws.persons(status=args.status, category=args.category, not_seen_days=args.not_seen)
        ws.log_lookup((p.id for p in persons), "list")
        out.emit([{**_dump(p), "last_contact": ws.last_contact_at(p.id)} for p in persons],
                 lambda: "\n".join(_person_line(p, ws.last_contact_at(p.id), ws) for p in persons)
                 or say("cli.person.none"))
    elif args.action == "show":
        p = ws.get_person(person_id(ws, args.id))
        contacts = ws.contacts(person_id=p.id, limit=1000)
        fus = ws.follow_ups(person_id=p.id)
        ws.audit(_audit_read(), _rt("person"), p.id)
        log.info("person show: %s", p.id)

        def text() -> str:
            t = words()
            lines = [f"{t(f'export.{k}')}: {_readable(k, v)}" for k, v in _dump(p).items() if v not in (None, [], "")]
            lines.append(say("cli.person.contacts", n=len(contacts)))
            lines += ["  " + _contact_line(c, ws) for c in contacts[:20]]
            notes = {c.id: c.note for c in contacts}
            lines += [say("cli.person.follow_up", date=f"{f.due:%d-%m-%Y}",
                          note=one_line(f.note or notes.get(f.contact_id or "") or "-")) for f in fus]
            return "\n".join(lines)
        out.emit({**_dump(p), "contacts": [_dump(c) for c in contacts], "follow_ups": [_dump(f) for f in fus]}, text)
    elif args.action == "edit":
        pid = person_id(ws, args.id)
        p = ws.edit_person(pid, _person_fields(args, ws))
        log.info("person edit: %s", p.id)
        out.emit(_dump(p), p.id)
    elif args.action == "delete":
        pid = person_id(ws, args.id)
        ws.delete_record(_rt("person"), pid)
        log.info("person delete: %s", pid)
        out.emit({"deleted": pid}, say("cli.person.deleted", id=pid))
    return EXIT_OK


def _rt(name: str) -> Any:
    from models.domain.vocab import RecordType

    return RecordType(name)


def _audit_read() -> Any:
    from models.domain.vocab import AuditAction

    return AuditAction.READ


def cmd_contact(args: argparse.Namespace, out: Output) -> int:
    ws = open_workspace(args)
    if args.action == "add":
        at = args.at or datetime.now().isoformat(timespec="minutes")
        with ws.bulk():  # a new place and the contact land together or not at all
            place_id = None
            if args.place:
                place = ws.find_place(args.place)
                with as_flag("--place"):
                    place_id = place.id if place else ws.add_place({"name": args.place}).id
            c = ws.add_contact({
                "at": at,
                "person_id": None if args.anonymous else person_id(ws, args.person),
                "place_id": place_id, "kind": args.kind, "living": args.living, "services": args.services,
                "referrals": args.referrals, "workers": args.workers or _this_worker(ws), "note": args.note,
                "follow_up": _parse_date(args.follow_up, "follow-up"),
            })
        log.info("contact add: %s", c.id)
        out.emit({"id": c.id}, c.id)
    elif args.action == "list":
        pid = person_id(ws, args.person) if args.person else None
        contacts = ws.contacts(person_id=pid, limit=args.limit)
        out.emit([_dump(c) for c in contacts], lambda: "\n".join(_contact_line(c, ws) for c in contacts)
                 or say("cli.contact.none"))
    return EXIT_OK


def _this_worker(ws: Workspace) -> list[str]:
    """A contact saved here was met by this device's worker unless --worker names who was there
    (the coordinator's figures per worker count it)."""
    name = ws.worker_name()
    return [name] if name else []


def cmd_place(args: argparse.Namespace, out: Output) -> int:
    ws = open_workspace(args)
    if args.action == "add":
        with as_flag("name"):  # the positional name; --zone is named by its flag
            pl = ws.add_place({"name": args.name, "zone": args.zone})
        log.info("place add: %s", pl.id)
        out.emit({"id": pl.id}, pl.id)
    else:
        places = ws.places()
        out.emit([_dump(p) for p in places],
                 lambda: "\n".join(f"{short(ws, 'place', p.id):<12} {one_line(p.name):<30} {one_line(p.zone)}" for p in places)
                 or say("cli.place.none"))
    return EXIT_OK


def cmd_followup(args: argparse.Namespace, out: Output) -> int:
    ws = open_workspace(args)
    if args.action == "list":
        fus = ws.follow_ups(due_by=date.today() if args.due else None)
        persons = ws.index.records[RecordType.PERSON]
        contacts = ws.index.records[RecordType.CONTACT]

        def about(f: Any) -> tuple[str, str]:
            """The person's alias, and the follow-up's note or else the note of its contact."""
            alias = str((persons.get(f.person_id or "") or {}).get("alias") or say("cli.anonymous"))
            note = f.note or (contacts.get(f.contact_id or "") or {}).get("note") or ""
            return alias, str(note)

        def line(f: Any) -> str:
            alias, note = about(f)
            return (f"{short(ws, 'followup', f.id):<12} {say('cli.followup.due', date=f'{f.due:%d-%m-%Y}')}  "
                    f"{one_line(alias):<24.24} {one_line(note)}")
        out.emit([{**_dump(f), "alias": about(f)[0], "note": about(f)[1]} for f in fus],
                 lambda: "\n".join(line(f) for f in fus) or say("cli.followup.none"))
    else:
        fid = find_id(ws, "followup", args.id)
        ws.edit_follow_up(fid, {"done": True})
        out.emit({"done": fid}, say("cli.followup.done", id=short(ws, "followup", fid)))
    return EXIT_OK


def cmd_search(args: argparse.Namespace, out: Output) -> int:
    ws = open_workspace(args)
    res = ws.search(args.text, limit=args.limit)
    ws.log_lookup((p.id for p in res.persons), "search")

    def text() -> str:
        lines = [_person_line(p, ws.last_contact_at(p.id), ws) for p in res.persons]
        lines += [_contact_line(c, ws) for c in res.contacts]
        lines += [f"{short(ws, 'place', p.id):<12} {say('cli.kind.place')} {one_line(p.name)}" for p in res.places]
        return "\n".join(lines) or say("cli.search.none")
    out.emit({"persons": [_dump(p) for p in res.persons], "contacts": [_dump(c) for c in res.contacts],
              "places": [_dump(p) for p in res.places]}, text)
    return EXIT_OK


def _device_names(ws: Workspace) -> dict[str, str]:
    """Device id -> who: the names the last 'outreach devices' (or the app's devices screen) saw,
    the workers that devices' audit events name, and this device's worker."""
    names: dict[str, str] = {}
    for event in ws.audit_events():
        if event.actor:
            names.setdefault(event.device_id, event.actor)
    try:
        listed = json.loads(ws.setting("desk_device_names") or "{}")
    except ValueError:
        listed = {}
    if isinstance(listed, dict):
        names.update({str(k): str(v) for k, v in listed.items() if v})
    names[ws.device_id] = ws.worker_name() or names.get(ws.device_id) or say("cli.this_device")
    return names


def cmd_conflicts(args: argparse.Namespace, out: Output) -> int:
    from models.usecases import review

    ws = open_workspace(args)
    if getattr(args, "conflict_action", None) == "resolve":
        require_desk(ws)  # the list is every device's (a worker sees what it holds); settling, the desk's
    names = _device_names(ws)
    items = review.conflicts(ws, device_names=names)

    def who(device: str, name: str | None) -> str:
        return one_line(name or device[:8])

    if getattr(args, "conflict_action", None) == "resolve":
        ids = {c.record_id for c in items}
        try:
            rid = resolve(args.record, ids, kind="record", names={c.record_id: (c.label,) for c in items})
        except Ambiguous as exc:
            raise CliError(say("cli.ambiguous", typed=args.record, n=len(exc.candidates), kinds=say("cli.kinds.record"),
                               candidates=", ".join(short(ws, next(c.record_type.value for c in items
                                                                   if c.record_id == r), r)
                                                    for r in exc.candidates))) from None
        except NotFound:
            raise CliError(say("cli.conflict.no_such", typed=args.record)) from None
        item = next((c for c in items if c.record_id == rid and c.field == args.field), None)
        if item is None:
            raise CliError(say("cli.conflict.no_field", field=args.field,
                               fields=", ".join(c.field for c in items if c.record_id == rid)))
        if (args.keep is None) == (args.value is None):
            raise CliError(say("cli.conflict.how"))
        with as_flag("--value"):
            if args.keep is not None:
                review.resolve_conflict(ws, item, keep=args.keep)
            else:
                review.resolve_conflict(ws, item, value=args.value)
        kept = args.value if args.value is not None else (item.value_a if args.keep == "a" else item.value_b)
        log.info("conflict resolved: %s %s", rid, item.field)
        out.emit({"record_id": rid, "field": item.field, "value": kept},
                 say("cli.conflict.resolved", field=item.field, value=one_line(str(kept))))
        return EXIT_OK

    def line(c: Any) -> str:
        return say("cli.conflict.line", id=short(ws, c.record_type.value, c.record_id), label=one_line(c.label),
                   field=c.field, a=one_line(str(c.value_a)), who_a=who(c.device_a, c.device_a_name),
                   at_a=f"{c.at_a:%d-%m-%Y %H:%M}", b=one_line(str(c.value_b)), who_b=who(c.device_b, c.device_b_name),
                   at_b=f"{c.at_b:%d-%m-%Y %H:%M}")
    # the same on every device (who made a change is named from each device's view: text only)
    out.emit([{"record_type": c.record_type.value, "record_id": c.record_id, "field": c.field,
               "a": c.value_a, "device_a": c.device_a, "at_a": c.at_a,
               "b": c.value_b, "device_b": c.device_b, "at_b": c.at_b} for c in items],
             lambda: ("\n".join(line(c) for c in items) + "\n" + say("cli.conflict.next")) if items
             else say("cli.conflict.none"))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    if args.persons < 1 or args.contacts < 0:
        raise CliError(say("cli.demo.bad_counts"))
    ws = open_workspace(args)
    counts = populate(ws, persons=args.persons, contacts=args.contacts, seed=args.seed)
    log.info("demo: %s", counts)
    out.emit(counts, say("cli.demo.done", places=counts["places"], persons=counts["persons"],
                         contacts=counts["contacts"]))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Output], int]] = {
    "init": cmd_init, "passwd": cmd_passwd, "person": cmd_person, "contact": cmd_contact, "place": cmd_place,
    "followup": cmd_followup, "search": cmd_search, "conflicts": cmd_conflicts, "demo": cmd_demo,
}


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
    token = _LANG.set(_language(argv))
    argparse_gettext = argparse._  # type: ignore[attr-defined]
    argparse._ = _argparse_words  # type: ignore[attr-defined]
    try:
        return _run(argv)
    finally:
        argparse._ = argparse_gettext  # type: ignore[attr-defined]
        for handler in logging.getLogger("outreach").handlers:
            handler.close()
        _LANG.reset(token)


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
            raise _Failure(EXIT_FILES, say("cli.error.not_a_folder", path=args.data_dir_path))
        from .files import keep_private

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


class _Failure(Exception):
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
    if isinstance(exc, _Failure):
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
    if isinstance(exc, (StoreError, *_sync_errors())):
        return EXIT_ERROR, layer_words(exc)
    return EXIT_BUG, say("cli.error.bug", kind=type(exc).__name__)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def layer_words(exc: BaseException) -> str:
    """An error of the store or the sync in this run's language. The layers say it in English,
    naming what went wrong precisely: in English that sentence is kept; in another language the
    words of its class (`cli.error.store.<class>`, `cli.error.sync.<class>`), nearest first."""
    lang = _LANG.get()
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
    return reason if _LANG.get() == "en" else say("cli.invalid.value")  # the layers say it in English


def _sync_errors() -> tuple[type[BaseException], ...]:
    try:
        from sync.errors import SyncError
    except ImportError:
        return ()
    return (SyncError,)


if __name__ == "__main__":
    # through the package module, so that `app.cli_team` and `app.cli_desk`, which import from
    # `app.cli`, see the same classes (CliError) as this entry point
    from app.cli import main as _main

    sys.exit(_main())
