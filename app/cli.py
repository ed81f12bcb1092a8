"""The `outreach` command line: a thin front end over the same service layer as the Flet UI.

It parses flags, asks for the passphrase (``OUTREACH_PASSPHRASE`` or a prompt), calls the
workspace and the sync engine, and prints text or ``--json``. Errors from the layers arrive as
their roots (`StoreError`, `SyncError`) and leave as one line on stderr with a non-zero exit code.
It never prints or logs personal data except what the user asked to see on stdout.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

from models.demo import populate
from models.errors import InvalidInput, StoreError, VaultMissing
from models.vocab import (
    Consent,
    ContactKind,
    Ethos,
    Gender,
    HomelessCategory,
    Living,
    Need,
    Referral,
    Service,
    Status,
)
from models.workspace import Workspace

from .config import resolve_data_dir

__all__ = ["main", "build_parser"]

log = logging.getLogger("outreach.cli")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A problem with what the user typed, found by the CLI itself."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + line
        self.exit(EXIT_USAGE, f"outreach: {message} (see 'outreach --help')\n")


def _values(enum: type[StrEnum]) -> str:
    return ", ".join(e.value for e in enum)


def _add_person_flags(p: argparse.ArgumentParser, *, alias_required: bool) -> None:
    p.add_argument("--alias", required=alias_required, help="street name or what the team calls the person")
    p.add_argument("--name", dest="full_name", help="full name, if known and consented")
    p.add_argument("--cpr", help="CPR number DDMMYY-XXXX")
    p.add_argument("--birth-year", type=_int("birth-year"))
    p.add_argument("--gender", help=_values(Gender))
    p.add_argument("--nationality")
    p.add_argument("--language", dest="languages", action="append", help="repeatable")
    p.add_argument("--description", help="for recognition")
    p.add_argument("--category", help=f"homeless category: {_values(HomelessCategory)}")
    p.add_argument("--ethos", help=_values(Ethos))
    p.add_argument("--consent", help=_values(Consent))
    p.add_argument("--consent-date", help="YYYY-MM-DD")
    p.add_argument("--consent-scope")
    p.add_argument("--status", help=_values(Status))
    p.add_argument("--status-date", help="YYYY-MM-DD")
    p.add_argument("--icm-worker")
    p.add_argument("--need", dest="needs", action="append", help=f"repeatable: {_values(Need)}")
    p.add_argument("--safety-note")
    p.add_argument("--usual-place", help="place name or id")


_PERSON_KEYS = ("alias", "full_name", "cpr", "birth_year", "gender", "nationality", "languages", "description",
                "category", "ethos", "consent", "consent_date", "consent_scope", "status", "status_date",
                "icm_worker", "needs", "safety_note", "usual_place")


def _int(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} must be a whole number, not {text!r}") from None
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="outreach", description="Outreach: offline-first field records for street outreach teams.")
    parser.add_argument("--data-dir", help="where this device keeps its data (default: OUTREACH_DATA_DIR, "
                                           "FLET_APP_STORAGE_DATA, or the platform's user data dir)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr as well")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("init", help="create this device's encrypted store")
    p.add_argument("--worker", default="", help="your name, shown to the team in the audit log")
    p.add_argument("--max-failures", type=_int("max-failures"), default=10,
                   help="wrong passphrases before the local data is erased (default 10)")

    sub.add_parser("passwd", help="change the passphrase (re-wraps keys, data untouched)")

    person = sub.add_parser("person", help="persons").add_subparsers(dest="action", required=True,
                                                                     parser_class=_Parser)
    p = person.add_parser("add", help="add a person; prints the new id")
    _add_person_flags(p, alias_required=True)
    p = person.add_parser("list", help="persons, most recently met first")
    p.add_argument("--status")
    p.add_argument("--category")
    p.add_argument("--not-seen", type=_int("not-seen"), metavar="DAYS")
    p = person.add_parser("show", help="one person, with contacts and follow-ups")
    p.add_argument("id")
    p = person.add_parser("edit", help="change fields of a person")
    p.add_argument("id")
    _add_person_flags(p, alias_required=False)
    p = person.add_parser("delete", help="delete a person (a tombstone; see 'erase' for GDPR erasure)")
    p.add_argument("id")

    contact = sub.add_parser("contact", help="contacts (meetings)").add_subparsers(dest="action", required=True,
                                                                                   parser_class=_Parser)
    p = contact.add_parser("add", help="log a contact; prints the new id")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--person", help="person id (or a unique prefix of 6+ characters)")
    who.add_argument("--anonymous", action="store_true")
    p.add_argument("--at", help="when, YYYY-MM-DDTHH:MM (default: now)")
    p.add_argument("--place", help="place name or id; a new name creates the place")
    p.add_argument("--kind", default=ContactKind.STREET.value, help=_values(ContactKind))
    p.add_argument("--living", help=f"where the person sleeps tonight: {_values(Living)}")
    p.add_argument("--service", dest="services", action="append", default=[], help=f"repeatable: {_values(Service)}")
    p.add_argument("--referral", dest="referrals", action="append", default=[], help=f"repeatable: {_values(Referral)}")
    p.add_argument("--worker", dest="workers", action="append", default=[], help="workers present, repeatable")
    p.add_argument("--note")
    p.add_argument("--follow-up", help="YYYY-MM-DD")
    p = contact.add_parser("list", help="contacts, most recent first")
    p.add_argument("--person")
    p.add_argument("--limit", type=_int("limit"), default=50)

    place = sub.add_parser("place", help="places").add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = place.add_parser("add", help="add a named place; prints the new id")
    p.add_argument("name")
    p.add_argument("--zone")
    place.add_parser("list", help="places, most recently used first")

    fu = sub.add_parser("followup", help="follow-ups").add_subparsers(dest="action", required=True,
                                                                      parser_class=_Parser)
    p = fu.add_parser("list", help="open follow-ups by due date")
    p.add_argument("--due", action="store_true", help="only those due today or earlier")
    p = fu.add_parser("done", help="mark a follow-up done")
    p.add_argument("id")

    p = sub.add_parser("search", help="search persons, contacts' notes and places")
    p.add_argument("text")
    p.add_argument("--limit", type=_int("limit"), default=20)

    sub.add_parser("conflicts", help="concurrent changes waiting for review")

    p = sub.add_parser("demo", help="fill the store with clearly fake demo data")
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
class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def emit(self, data: Any, text: str | Callable[[], str]) -> None:
        if self.as_json:
            print(json.dumps(data, ensure_ascii=False, default=str, indent=None))
        else:
            print(text() if callable(text) else text)


def passphrase(prompt: str = "Passphrase: ", *, confirm: bool = False) -> str:
    env = os.environ.get("OUTREACH_PASSPHRASE")
    if env:
        return env
    if not sys.stdin.isatty():
        raise CliError("no passphrase: set OUTREACH_PASSPHRASE or run in a terminal")
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("Again: ") != first:
        raise CliError("the two passphrases differ")
    return first


def open_workspace(args: argparse.Namespace) -> Workspace:
    ws = Workspace(args.data_dir_path)
    if not ws.exists():
        raise VaultMissing(f"No Outreach data in {ws.data_dir}. Run 'outreach init' first.")
    ws.unlock(passphrase())
    return ws


def _parse_date(text: str | None, flag: str) -> str | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise InvalidInput(flag, f"not a date: use YYYY-MM-DD (got {text!r})") from None


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


def _person_line(p: Any, last: datetime | None) -> str:
    seen = last.strftime("%d-%m-%Y") if last else "never"
    cat = p.category.value if p.category else "-"
    return f"{p.id[:8]}  {p.alias:<32.32}  {p.status.value:<10} {cat:<14} last seen {seen}"


def _contact_line(c: Any, ws: Workspace) -> str:
    who = "anonymous"
    if c.person_id:
        person = ws.index.records["person"].get(c.person_id)  # type: ignore[index]
        who = person["alias"] if person else c.person_id[:8]
    place = ws.index.records["place"].get(c.place_id or "")  # type: ignore[index]
    where = place["name"] if place else "-"
    services = ",".join(s.value for s in c.services) or "-"
    return f"{c.id[:8]}  {c.at:%d-%m-%Y %H:%M}  {who:<28.28} {where:<22.22} {c.kind.value:<9} {services}"


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json")  # type: ignore[no-any-return]


# =========================================================================== commands
def cmd_init(args: argparse.Namespace, out: Output) -> int:
    ws = Workspace(args.data_dir_path)
    device_id = ws.init(passphrase("New passphrase or PIN: ", confirm=True), worker_name=args.worker,
                        max_failures=args.max_failures)
    log.info("init: device %s", device_id)
    out.emit({"device_id": device_id, "data_dir": str(ws.data_dir)},
             f"Created an encrypted store in {ws.data_dir}\nDevice id: {device_id}")
    ws.close()
    return EXIT_OK


def cmd_passwd(args: argparse.Namespace, out: Output) -> int:
    ws = Workspace(args.data_dir_path)
    old = passphrase("Current passphrase: ")
    ws.unlock(old)
    new = os.environ.get("OUTREACH_NEW_PASSPHRASE") or passphrase("New passphrase: ", confirm=True)
    ws.change_passphrase(old, new)
    log.info("passwd: changed")
    out.emit({"changed": True}, "Passphrase changed.")
    return EXIT_OK


def cmd_person(args: argparse.Namespace, out: Output) -> int:
    ws = open_workspace(args)
    if args.action == "add":
        p = ws.add_person(_person_fields(args, ws))
        log.info("person add: %s", p.id)
        out.emit({"id": p.id}, p.id)
    elif args.action == "list":
        persons = ws.persons(status=args.status, category=args.category, not_seen_days=args.not_seen)
        out.emit([{**_dump(p), "last_contact": ws.last_contact_at(p.id)} for p in persons],
                 lambda: "\n".join(_person_line(p, ws.last_contact_at(p.id)) for p in persons) or "No persons.")
    elif args.action == "show":
        p = ws.get_person(ws.resolve_person_id(args.id))
        contacts = ws.contacts(person_id=p.id, limit=1000)
        fus = ws.follow_ups(person_id=p.id)
        ws.audit(_audit_read(), _rt("person"), p.id)
        log.info("person show: %s", p.id)

        def text() -> str:
            lines = [f"{k}: {v}" for k, v in _dump(p).items() if v not in (None, [], "")]
            lines.append(f"contacts: {len(contacts)}")
            lines += ["  " + _contact_line(c, ws) for c in contacts[:20]]
            lines += [f"follow-up {f.due:%d-%m-%Y}: {f.note or ''}" for f in fus]
            return "\n".join(lines)
        out.emit({**_dump(p), "contacts": [_dump(c) for c in contacts], "follow_ups": [_dump(f) for f in fus]}, text)
    elif args.action == "edit":
        pid = ws.resolve_person_id(args.id)
        p = ws.edit_person(pid, _person_fields(args, ws))
        log.info("person edit: %s", p.id)
        out.emit(_dump(p), p.id)
    elif args.action == "delete":
        pid = ws.resolve_person_id(args.id)
        ws.delete_record(_rt("person"), pid)
        log.info("person delete: %s", pid)
        out.emit({"deleted": pid}, f"Deleted {pid}")
    return EXIT_OK


def _rt(name: str) -> Any:
    from models.vocab import RecordType

    return RecordType(name)


def _audit_read() -> Any:
    from models.vocab import AuditAction

    return AuditAction.READ


def cmd_contact(args: argparse.Namespace, out: Output) -> int:
    ws = open_workspace(args)
    if args.action == "add":
        at = args.at or datetime.now().isoformat(timespec="minutes")
        with ws.bulk():  # a new place and the contact land together or not at all
            place_id = None
            if args.place:
                place = ws.find_place(args.place)
                place_id = place.id if place else ws.add_place({"name": args.place}).id
            c = ws.add_contact({
                "at": at,
                "person_id": None if args.anonymous else ws.resolve_person_id(args.person),
                "place_id": place_id, "kind": args.kind, "living": args.living, "services": args.services,
                "referrals": args.referrals, "workers": args.workers, "note": args.note,
                "follow_up": _parse_date(args.follow_up, "follow-up"),
            })
        log.info("contact add: %s", c.id)
        out.emit({"id": c.id}, c.id)
    elif args.action == "list":
        pid = ws.resolve_person_id(args.person) if args.person else None
        contacts = ws.contacts(person_id=pid, limit=args.limit)
        out.emit([_dump(c) for c in contacts], lambda: "\n".join(_contact_line(c, ws) for c in contacts) or "No contacts.")
    return EXIT_OK


def cmd_place(args: argparse.Namespace, out: Output) -> int:
    ws = open_workspace(args)
    if args.action == "add":
        pl = ws.add_place({"name": args.name, "zone": args.zone})
        log.info("place add: %s", pl.id)
        out.emit({"id": pl.id}, pl.id)
    else:
        places = ws.places()
        out.emit([_dump(p) for p in places],
                 lambda: "\n".join(f"{p.id[:8]}  {p.name:<30} {p.zone or ''}" for p in places) or "No places.")
    return EXIT_OK


def cmd_followup(args: argparse.Namespace, out: Output) -> int:
    ws = open_workspace(args)
    if args.action == "list":
        fus = ws.follow_ups(due_by=date.today() if args.due else None)
        out.emit([_dump(f) for f in fus],
                 lambda: "\n".join(f"{f.id[:8]}  due {f.due:%d-%m-%Y}  {f.note or ''}" for f in fus) or "No follow-ups.")
    else:
        fid = ws._resolve(_rt("followup"), args.id)
        ws.edit_follow_up(fid, {"done": True})
        out.emit({"done": fid}, f"Done: {fid}")
    return EXIT_OK


def cmd_search(args: argparse.Namespace, out: Output) -> int:
    ws = open_workspace(args)
    res = ws.search(args.text, limit=args.limit)

    def text() -> str:
        lines = [_person_line(p, ws.last_contact_at(p.id)) for p in res.persons]
        lines += [_contact_line(c, ws) for c in res.contacts]
        lines += [f"{p.id[:8]}  place {p.name}" for p in res.places]
        return "\n".join(lines) or "Nothing found."
    out.emit({"persons": [_dump(p) for p in res.persons], "contacts": [_dump(c) for c in res.contacts],
              "places": [_dump(p) for p in res.places]}, text)
    return EXIT_OK


def cmd_conflicts(args: argparse.Namespace, out: Output) -> int:
    ws = open_workspace(args)
    items = ws.conflicts()
    out.emit([{"record_type": c.record_type.value, "record_id": c.record_id, "field": c.field,
               "a": c.value_a, "device_a": c.device_a, "at_a": c.at_a, "b": c.value_b, "device_b": c.device_b,
               "at_b": c.at_b} for c in items],
             lambda: "\n".join(f"{c.record_id[:8]} {c.field}: {c.value_a!r} ({c.at_a:%d-%m %H:%M}) vs "
                               f"{c.value_b!r} ({c.at_b:%d-%m %H:%M})" for c in items) or "No conflicts.")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    if args.persons < 1 or args.contacts < 0:
        raise InvalidInput("persons", "needs at least 1 person and 0 or more contacts")
    ws = open_workspace(args)
    counts = populate(ws, persons=args.persons, contacts=args.contacts, seed=args.seed)
    log.info("demo: %s", counts)
    out.emit(counts, f"Added demo data: {counts['places']} places, {counts['persons']} persons, "
                     f"{counts['contacts']} contacts (all marked Demo).")
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Output], int]] = {
    "init": cmd_init, "passwd": cmd_passwd, "person": cmd_person, "contact": cmd_contact, "place": cmd_place,
    "followup": cmd_followup, "search": cmd_search, "conflicts": cmd_conflicts, "demo": cmd_demo,
}


def _setup_logging(data_dir: Path, verbose: bool) -> None:
    root = logging.getLogger("outreach")
    root.setLevel(logging.INFO)
    root.handlers.clear()
    if data_dir.exists():
        handler = logging.FileHandler(data_dir / "outreach.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
    if verbose:
        root.addHandler(logging.StreamHandler(sys.stderr))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return int(exc.code or 0)
    args.data_dir_path = resolve_data_dir(args.data_dir)
    out = Output(args.json)
    _setup_logging(args.data_dir_path, args.verbose)
    handler = getattr(args, "handler", None) or COMMANDS.get(args.command)
    if handler is None:
        parser.error(f"unknown command {args.command!r}")
    try:
        return int(handler(args, out))
    except (StoreError, CliError) as exc:
        log.info("%s failed: %s", args.command, type(exc).__name__)
        print(f"outreach: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except _sync_errors() as exc:
        log.info("%s failed: %s", args.command, type(exc).__name__)
        print(f"outreach: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("outreach: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `outreach ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


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
