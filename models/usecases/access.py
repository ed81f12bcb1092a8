"""What is stored about one person, and who did what: the access request of GDPR art. 15
(everything about a person on this device, as a readable document, a printable page and JSON) and
the audit log with its filters (events about a person, their records and the persons merged into
them).

One request gathers its report once (`AccessRequest`): the dialog's text and the saved files are
made from the same report; each of them is audited as an export (counts only). It never
prints or logs personal data and writes no file (the caller chooses where the documents go).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from ..domain.tables import FAMILIES, AuditEventPublic
from ..domain.vocab import VOCABULARIES, AuditAction, RecordType
from .conflicts import ConflictItem, conflicts
from .formats import Translate, fmt_date, fmt_datetime, stable_names
from .reports import to_datetime

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = [
    "AccessReport",
    "AccessRequest",
    "access_report",
    "access_request",
    "access_json",
    "access_text",
    "access_html",
    "audit_log",
    "audit_actors",
    "TEXT_KEYS",
]


# ============================================================================ access request
@dataclass(frozen=True)
class AccessReport:
    """Everything stored about one person on this device (GDPR art. 15), JSON-ready."""

    person_id: str
    made_at: datetime
    person: dict[str, Any]
    contacts: tuple[dict[str, Any], ...]
    follow_ups: tuple[dict[str, Any], ...]
    audit_events: tuple[dict[str, Any], ...]
    conflicts: tuple[dict[str, Any], ...]
    places: dict[str, dict[str, Any]]  # the places the records name

    @property
    def records(self) -> int:
        return 1 + len(self.contacts) + len(self.follow_ups) + len(self.audit_events)


def _jsonable(values: dict[str, Any], rtype: RecordType | None = None) -> dict[str, Any]:
    """A record's stored values in a stable order (id, the model's fields, anything else kept),
    times as ISO text."""
    order = ["id", *(FAMILIES[rtype][2].model_fields if rtype else ())]
    out = {k: values[k] for k in order if k in values}
    out.update((k, v) for k, v in values.items() if k not in out and k != "created_hlc")  # clock internals
    for key in ("created_at", "updated_at"):
        if key in out:
            at = to_datetime(out[key])
            out[key] = at.isoformat(timespec="seconds") if at else None
    return out


def _merged_into(ws: Workspace, person_id: str) -> set[str]:
    """Ids of persons merged into this one, directly or through later merges."""
    index = ws.index
    return {drop for drop in index.merged if index.person_of(drop) == person_id}


def _is_about(event: Mapping[str, Any], about: set[str]) -> bool:
    """Whether an audit event's values name one of these ids (its target, or one of the persons
    a look-up showed)."""
    return event.get("target_id") in about or not about.isdisjoint(event.get("target_ids") or ())


def _about(ws: Workspace, person_id: str) -> set[str]:
    """The ids whose audit events are about this person: theirs, their contacts' and follow-ups',
    and those of persons merged into them."""
    return {*ws.person_record_ids(person_id), *_merged_into(ws, person_id)}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def access_request(ws: Workspace, person_id: str) -> AccessReport:
    """Gather everything about one person (`access_report`), audited as an export (counts only)."""
    report = access_report(ws, person_id)
    _audit(ws, report)
    return report


def _audit(ws: Workspace, report: AccessReport) -> None:
    ws.audit(AuditAction.EXPORT, RecordType.PERSON, report.person_id,
             detail=f"access request: {report.records} records, {len(report.conflicts)} conflicts")


def access_report(ws: Workspace, person_id: str) -> AccessReport:
    """Everything about one person: profile, contacts, follow-ups, audit events about them and
    open conflicts on their records. Not audited: each use of it is (`access_request`,
    `AccessRequest`)."""
    person = ws.get_person(person_id)
    recs = ws.index.records
    ids = ws.person_record_ids(person_id)
    contacts = sorted((recs[RecordType.CONTACT][i] for i in ids if i in recs[RecordType.CONTACT]),
                      key=lambda c: (str(c.get("at")), c["id"]))
    fus = sorted((recs[RecordType.FOLLOWUP][i] for i in ids if i in recs[RecordType.FOLLOWUP]),
                 key=lambda f: (str(f.get("due")), f["id"]))
    about = _about(ws, person_id)
    events = sorted((e for e in recs[RecordType.AUDIT].values() if _is_about(e, about)),
                    key=lambda e: (str(e.get("at")), e["id"]))
    place_ids = {c.get("place_id") for c in contacts} | {recs[RecordType.PERSON][person_id].get("usual_place")}
    places = {pid: dict(recs[RecordType.PLACE][pid]) for pid in sorted(p for p in place_ids if p)
              if pid in recs[RecordType.PLACE]}
    open_conflicts = tuple(
        {k: _json_value(v) for k, v in asdict(c).items()} for c in conflicts(ws, record_ids=set(ids)))
    return AccessReport(
        person_id=person_id, made_at=datetime.now().replace(microsecond=0),
        person=_jsonable({**person.model_dump(mode="json"), **recs[RecordType.PERSON][person_id]}, RecordType.PERSON),
        contacts=tuple(_jsonable(c, RecordType.CONTACT) for c in contacts),
        follow_ups=tuple(_jsonable(f, RecordType.FOLLOWUP) for f in fus),
        audit_events=tuple(_jsonable(e, RecordType.AUDIT) for e in events),
        conflicts=open_conflicts, places={k: _jsonable(v, RecordType.PLACE) for k, v in places.items()},
    )


def access_json(report: AccessReport) -> str:
    """The access request as JSON (UTF-8 text, stable keys, indented)."""
    body = {
        "format": "outreach.access_request.v1",
        "person_id": report.person_id,
        "made_at": report.made_at.isoformat(),
        "person": report.person,
        "contacts": list(report.contacts),
        "follow_ups": list(report.follow_ups),
        "audit_events": list(report.audit_events),
        "conflicts": list(report.conflicts),
        "places": report.places,
    }
    return json.dumps(body, ensure_ascii=False, indent=2, sort_keys=False, default=str)


_DATES = {"consent_date", "status_date", "due", "follow_up"}
_TIMES = {"at", "created_at", "updated_at", "at_a", "at_b"}
_VOCAB_OF = {"gender": "gender", "category": "category", "ethos": "ethos", "consent": "consent", "status": "status",
             "needs": "need", "kind": "kind", "living": "living", "services": "service", "referrals": "referral",
             "action": "action", "target_type": "record", "record_type": "record"}


def _readable(name: str, value: Any, t: Translate, places: Mapping[str, dict[str, Any]]) -> str:
    if value is None or value == [] or value == "":
        return ""
    if name in _DATES:
        return fmt_date(value)
    if name in _TIMES:
        return fmt_datetime(value)
    if name in ("place_id", "usual_place") and value in places:
        return str(places[value].get("name") or value)
    vocab = _VOCAB_OF.get(name)
    if vocab and vocab in VOCABULARIES:
        items = value if isinstance(value, list) else [value]
        return ", ".join(t(f"{vocab}.{v}") for v in items)
    if isinstance(value, bool):
        return t("export.yes") if value else t("export.no")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}".replace(".", ",")
    return str(value)


def _sections(report: AccessReport, t: Translate) -> list[tuple[str, list[list[tuple[str, str]]]]]:
    """(heading, records), each record a list of (label, text) with empty values left out."""

    def lines(values: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = []
        for name, value in values.items():
            text = _readable(name, value, t, report.places)
            if text:
                out.append((t(f"export.{name}"), text))
        return out

    return [
        (t("access.person"), [lines(report.person)]),
        (t("access.contacts"), [lines(c) for c in report.contacts]),
        (t("access.follow_ups"), [lines(f) for f in report.follow_ups]),
        (t("access.audit_events"), [lines(e) for e in report.audit_events]),
        (t("access.conflicts"), [lines(c) for c in report.conflicts]),
        (t("access.places"), [lines(p) for p in report.places.values()]),
    ]


def access_text(report: AccessReport, *, translate: Translate | None = None) -> str:
    """The access request as a plain-text document a person can read."""
    t = translate or stable_names
    out = [t("access.title"), f"{t('access.made_at')}: {fmt_datetime(report.made_at)}", ""]
    for heading, records in _sections(report, t):
        out += [heading, "=" * len(heading)]
        if not records:
            out.append(f"({t('access.none')})")
        for rec in records:
            out += [f"{label}: {text}" for label, text in rec]
            out.append("")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def access_html(report: AccessReport, *, translate: Translate | None = None) -> str:
    """The access request as one self-contained, printable HTML page."""
    t = translate or stable_names
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="da"><head><meta charset="utf-8">',
             f"<title>{esc(t('access.title'))}</title><style>"
             "body{font-family:system-ui,Arial,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}"
             "dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;border-top:1px solid #ccc;"
             "padding-top:.4rem}dt{font-weight:600}dd{margin:0;white-space:pre-wrap}"
             "@page{size:A4;margin:18mm}@media print{body{margin:0}dl{break-inside:avoid}}</style></head><body>",
             f"<h1>{esc(t('access.title'))}</h1>",
             f"<p>{esc(t('access.made_at'))}: {esc(fmt_datetime(report.made_at))}</p>"]
    for heading, records in _sections(report, t):
        parts.append(f"<h2>{esc(heading)}</h2>")
        if not records:
            parts.append(f"<p>({esc(t('access.none'))})</p>")
        for rec in records:
            parts.append("<dl>" + "".join(f"<dt>{esc(label)}</dt><dd>{esc(text)}</dd>" for label, text in rec)
                         + "</dl>")
    parts.append("</body></html>")
    return "\n".join(parts)


class AccessRequest:
    """One access request as the coordinator makes it: the report gathered once, then shown (the
    readable text) and saved (the printable page and the JSON) from that same report. Each use is
    a disclosure and is audited as an export (counts only); the gathering is not repeated."""

    def __init__(self, ws: Workspace, person_id: str, *, translate: Translate | None = None) -> None:
        self.ws = ws
        self.report = access_report(ws, person_id)
        self._translate = translate

    @property
    def person_id(self) -> str:
        return self.report.person_id

    def show(self) -> str:
        """The readable document; audited."""
        _audit(self.ws, self.report)
        return access_text(self.report, translate=self._translate)

    def files(self) -> tuple[str, str]:
        """(printable HTML page, JSON) to be saved; audited."""
        _audit(self.ws, self.report)
        return access_html(self.report, translate=self._translate), access_json(self.report)


def audit_log(ws: Workspace, *, person_id: str | None = None, actor: str | None = None,
              action: AuditAction | str | None = None, device_id: str | None = None,
              start: date | None = None, end: date | None = None,
              limit: int | None = None) -> list[AuditEventPublic]:
    """Audit events, newest first, filtered by person (events about them, their contacts and
    follow-ups, and persons merged into them), worker (the actor: the name on the acting device,
    case-insensitive), action, device and day range."""
    # newest first; events within one second in the order they were written (their clock)
    written = {rid: v.get("created_hlc") or 0 for rid, v in ws.index.records[RecordType.AUDIT].items()}
    events = sorted(ws.audit_events(), key=lambda e: (e.at, written.get(e.id, 0)), reverse=True)
    about = _about(ws, person_id) if person_id else None
    want_actor = " ".join(actor.casefold().split()) if actor else None
    want_action = AuditAction(action) if action else None
    out = []
    for e in events:
        if about is not None and e.target_id not in about and not about.intersection(e.target_ids):
            continue
        if want_actor is not None and " ".join(e.actor.casefold().split()) != want_actor:
            continue
        if want_action is not None and e.action != want_action:
            continue
        if device_id and e.device_id != device_id:
            continue
        day = e.at.date()
        if (start and day < start) or (end and day > end):
            continue
        out.append(e)
        if limit and len(out) >= limit:
            break
    return out


def audit_actors(ws: Workspace) -> list[str]:
    """The workers named in the audit log, for the filter's choices."""
    return sorted({str(e.get("actor") or "") for e in ws.index.records[RecordType.AUDIT].values()} - {""},
                  key=str.casefold)


# Every key this module asks `translate` for besides the vocabularies' `<name>.<value>` (the
# access document's field labels reuse `export.<field>`).
TEXT_KEYS: tuple[str, ...] = tuple(sorted({
    *(f"access.{k}" for k in ("title", "made_at", "none", "person", "contacts", "follow_ups", "audit_events",
                              "conflicts", "places")),
    "export.yes", "export.no",
    *(f"export.{name}" for family in FAMILIES.values() for name in family[2].model_fields),
    "export.created_at", "export.updated_at",
    *(f"export.{name}" for name in ConflictItem.__dataclass_fields__),
}))
