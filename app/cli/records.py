"""The data commands of the `outreach` CLI: init and passwd, persons, contacts, places,
follow-ups, search, conflicts and the demo data. Thin: each parses its flags, calls the workspace
(or `models.usecases.review` for conflicts), and prints through `Output`; what they share with the team and
desk commands is in `common` and `errors`. It never imports the sync engine or client.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from models.domain.ids import Ambiguous, resolve
from models.domain.tables import CONTROL_CHARACTERS
from models.domain.vocab import (
    AuditAction,
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
from models.errors import InvalidInput, NotFound
from models.usecases import review
from models.usecases.demo import populate
from models.workspace import Workspace

from .common import (
    EXIT_OK,
    CliError,
    Output,
    Parser,
    choices,
    find_id,
    int_flag,
    one_line,
    open_workspace,
    passphrase,
    person_id,
    require_desk,
    say,
    short,
    words,
    workspace,
)
from .errors import as_flag

__all__ = ["add_commands", "COMMANDS"]

log = logging.getLogger("outreach.cli")


def _add_person_flags(p: argparse.ArgumentParser, *, alias_required: bool) -> None:
    p.add_argument("--alias", required=alias_required, help=say("cli.help.alias"))
    p.add_argument("--name", dest="full_name", help=say("cli.help.name"))
    p.add_argument("--cpr", help=say("cli.help.cpr"))
    p.add_argument("--birth-year", type=int_flag("birth-year"))
    p.add_argument("--gender", choices=choices(Gender))
    p.add_argument("--nationality")
    p.add_argument("--language", dest="languages", action="append", help=say("cli.help.repeatable"))
    p.add_argument("--description", help=say("cli.help.description"))
    p.add_argument("--category", choices=choices(HomelessCategory), help=say("cli.help.category"))
    p.add_argument("--ethos", choices=choices(Ethos))
    p.add_argument("--consent", choices=choices(Consent))
    p.add_argument("--consent-date", help=say("cli.help.date"))
    p.add_argument("--consent-scope")
    p.add_argument("--status", choices=choices(Status))
    p.add_argument("--status-date", help=say("cli.help.date"))
    p.add_argument("--icm-worker")
    p.add_argument("--need", dest="needs", action="append", choices=choices(Need), help=say("cli.help.repeatable"))
    p.add_argument("--safety-note")
    p.add_argument("--usual-place", help=say("cli.help.usual_place"))


_PERSON_KEYS = ("alias", "full_name", "cpr", "birth_year", "gender", "nationality", "languages", "description",
                "category", "ethos", "consent", "consent_date", "consent_scope", "status", "status_date",
                "icm_worker", "needs", "safety_note", "usual_place")



def add_commands(sub: Any) -> None:
    """The data commands' parsers, in the order `--help` lists them (their handlers: `COMMANDS`)."""

    p = sub.add_parser("init", help=say("cli.help.init"))
    p.add_argument("--worker", default="", help=say("cli.help.init_worker"))
    p.add_argument("--max-failures", type=int_flag("max-failures"), default=10,
                   help=say("cli.help.max_failures"))

    sub.add_parser("passwd", help=say("cli.help.passwd"))

    person = sub.add_parser("person", help=say("cli.help.person")).add_subparsers(dest="action", required=True,
                                                                     parser_class=Parser)
    p = person.add_parser("add", help=say("cli.help.person_add"))
    _add_person_flags(p, alias_required=True)
    p = person.add_parser("list", help=say("cli.help.person_list"))
    p.add_argument("--status", choices=choices(Status))
    p.add_argument("--category", choices=choices(HomelessCategory))
    p.add_argument("--not-seen", type=int_flag("not-seen"), metavar="DAYS")
    p = person.add_parser("show", help=say("cli.help.person_show"))
    p.add_argument("id")
    p = person.add_parser("edit", help=say("cli.help.person_edit"))
    p.add_argument("id")
    _add_person_flags(p, alias_required=False)
    p = person.add_parser("delete", help=say("cli.help.person_delete"))
    p.add_argument("id")

    contact = sub.add_parser("contact", help=say("cli.help.contact")).add_subparsers(dest="action", required=True,
                                                                                   parser_class=Parser)
    p = contact.add_parser("add", help=say("cli.help.contact_add"))
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--person", help=say("cli.help.contact_person"))
    who.add_argument("--anonymous", action="store_true")
    p.add_argument("--at", help=say("cli.help.at"))
    p.add_argument("--place", help=say("cli.help.place"))
    p.add_argument("--kind", default=ContactKind.STREET.value, choices=choices(ContactKind))
    p.add_argument("--living", choices=choices(Living), help=say("cli.help.living"))
    p.add_argument("--service", dest="services", action="append", default=[], choices=choices(Service),
                   help=say("cli.help.repeatable"))
    p.add_argument("--referral", dest="referrals", action="append", default=[], choices=choices(Referral),
                   help=say("cli.help.repeatable"))
    p.add_argument("--worker", dest="workers", action="append", default=[], help=say("cli.help.workers"))
    p.add_argument("--note")
    p.add_argument("--follow-up", help=say("cli.help.date"))
    p = contact.add_parser("list", help=say("cli.help.contact_list"))
    p.add_argument("--person")
    p.add_argument("--limit", type=int_flag("limit"), default=50)

    place = sub.add_parser("place", help=say("cli.help.place_group")).add_subparsers(dest="action", required=True, parser_class=Parser)
    p = place.add_parser("add", help=say("cli.help.place_add"))
    p.add_argument("name")
    p.add_argument("--zone")
    place.add_parser("list", help=say("cli.help.place_list"))

    fu = sub.add_parser("followup", help=say("cli.help.followup")).add_subparsers(dest="action", required=True,
                                                                      parser_class=Parser)
    p = fu.add_parser("list", help=say("cli.help.followup_list"))
    p.add_argument("--due", action="store_true", help=say("cli.help.due"))
    p = fu.add_parser("done", help=say("cli.help.followup_done"))
    p.add_argument("id")

    p = sub.add_parser("search", help=say("cli.help.search"))
    p.add_argument("text")
    p.add_argument("--limit", type=int_flag("limit"), default=20)

    conflicts = sub.add_parser("conflicts", help=say("cli.help.conflicts"))
    what = conflicts.add_subparsers(dest="conflict_action", parser_class=Parser)
    what.add_parser("list", help=say("cli.help.conflicts_list"))
    p = what.add_parser("resolve", help=say("cli.help.conflicts_resolve"))
    p.add_argument("record", help=say("cli.help.conflict_record"))
    p.add_argument("field", help=say("cli.help.conflict_field"))
    how = p.add_mutually_exclusive_group()
    how.add_argument("--keep", choices=("a", "b"), help=say("cli.help.conflict_keep"))
    how.add_argument("--value", help=say("cli.help.conflict_value"))

    p = sub.add_parser("demo", help=say("cli.help.demo"))
    p.add_argument("--persons", type=int_flag("persons"), default=50)
    p.add_argument("--contacts", type=int_flag("contacts"), default=500)
    p.add_argument("--seed", type=int_flag("seed"), default=169)



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
        ws.audit(AuditAction.READ, RecordType.PERSON, p.id)
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
        ws.delete_record(RecordType.PERSON, pid)
        log.info("person delete: %s", pid)
        out.emit({"deleted": pid}, say("cli.person.deleted", id=pid))
    return EXIT_OK




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
