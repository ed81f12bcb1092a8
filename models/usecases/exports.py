"""Exports: CSV files that open correctly in Danish Excel (persons, contacts, follow-ups, the
national count's per-person forms), the aggregate report without personal data (CSV and a
printable, self-contained HTML page), and the national homeless count of a chosen ISO week.

It owns the file formats and the rule that every export of personal data leaves an audit event
(action `export`, detail = what and how many rows, never a value). Asking for confirmation and
choosing where the file goes is the UI's job; `export_warning` gives it the facts to warn with.
Words come from the caller's `translate` (this package never depends on the UI's i18n): it is
called with the same keys as `app.i18n` uses, `<vocabulary>.<value>` for enum values
(`status.housed`) and `export.<column>` / `report.<label>` for headings, so a `Translator` can be
passed as it is; without one, the stable key after the first dot is written (`housed`).
It never prints or logs personal data, and writes files only where it is told to.
Its neighbours hold the rest of the job and are re-exported here, so a caller imports `exports`
alone: `formats` (the CSV dialect, dates, decimals), `aggregate` (the report without personal data)
and `national_count` (the count week).

Danish Excel: `;` between cells, UTF-8 with a byte-order mark (Excel needs it to read UTF-8),
dates dd-mm-yyyy, times dd-mm-yyyy HH:MM, decimal comma, CRLF line ends; free-text cells that
start like a formula (`= + - @`) are prefixed with `'` so that Excel shows them instead of
evaluating them.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from ..domain.vocab import AuditAction, RecordType
from ..errors import InvalidInput
from .aggregate import AggregateReport, aggregate_csv, aggregate_html, aggregate_report
from .formats import (
    CSV_ENCODING,
    DanishExcel,
    Translate,
    fmt_date,
    fmt_datetime,
    fmt_decimal,
    stable_names,
)
from .formats import csv_bytes as _csv_bytes
from .formats import text_cell as _text
from .formats import vocab_cell as _vocab
from .formats import vocab_list as _vocab_list
from .formats import yes_no as _yes_no
from .national_count import (
    COUNT_UNKNOWN,
    CountPerson,
    NationalCount,
    birth_date_of,
    count_csv,
    initials,
    national_count,
    national_count_of,
)
from .reports import CATEGORY_NONE, Facts, _status, facts, to_date

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = [
    "Translate",
    "stable_names",
    "DanishExcel",
    "CSV_ENCODING",
    "fmt_date",
    "fmt_datetime",
    "fmt_decimal",
    "ExportKind",
    "export_filename",
    "write_private",
    "is_within",
    "ExportRequest",
    "CsvExport",
    "ExportWarning",
    "export_csv",
    "export_warning",
    "write_export",
    "AggregateReport",
    "aggregate_report",
    "aggregate_csv",
    "aggregate_html",
    "CountPerson",
    "NationalCount",
    "COUNT_UNKNOWN",
    "national_count",
    "count_csv",
    "initials",
    "birth_date_of",
    "PERSON_COLUMNS",
    "CONTACT_COLUMNS",
    "FOLLOW_UP_COLUMNS",
    "COUNT_COLUMNS",
    "TEXT_KEYS",
]


# ============================================================================ personal exports
class ExportKind(StrEnum):
    PERSONS = "persons"
    CONTACTS = "contacts"
    FOLLOW_UPS = "follow_ups"
    COUNT_FORMS = "count_forms"  # the national count's per-person list for one week


_TARGET = {
    ExportKind.PERSONS: RecordType.PERSON, ExportKind.CONTACTS: RecordType.CONTACT,
    ExportKind.FOLLOW_UPS: RecordType.FOLLOWUP, ExportKind.COUNT_FORMS: RecordType.PERSON,
}


@dataclass(frozen=True)
class ExportRequest:
    """What to export. `person_id` keeps one person's rows; `start`/`end` keep contacts by their
    day and follow-ups by their due day (persons: all); `year`/`week` choose the count week."""

    kind: ExportKind
    person_id: str | None = None
    start: date | None = None
    end: date | None = None
    year: int | None = None
    week: int = 6

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ExportKind(self.kind))  # "persons" is accepted too

    def describe(self) -> str:
        """For the audit detail: what, never a value (ids and days only)."""
        parts = [f"csv {self.kind.value}"]
        if self.kind is ExportKind.COUNT_FORMS:
            parts.append(f"week {self.year}-W{self.week:02d}")
        elif self.start or self.end:
            parts.append(f"{self.start or ''}..{self.end or ''}")
        return " ".join(parts)


@dataclass(frozen=True)
class CsvExport:
    kind: ExportKind
    data: bytes  # the file's bytes (BOM included)
    rows: int  # data rows, the header not counted
    filename: str  # a suggested name without personal data


@dataclass(frozen=True)
class ExportWarning:
    """The facts the UI warns with before a personal-data file is written."""

    path: Path  # absolute
    rows: int
    inside_data_dir: bool  # next to the encrypted data: the one place that must never hold plaintext
    synced_folder: str | None  # the cloud folder the path is in (Dropbox, OneDrive, ...), if any
    exists: bool  # a file is there and would be replaced


def _person_rows(ws: Workspace, f: Facts, req: ExportRequest, t: Translate) -> list[list[str]]:
    places = ws.index.records[RecordType.PLACE]
    header = PERSON_COLUMNS
    last_at: dict[str, datetime] = {}
    for c in f.contacts:
        if c.person_id:
            last_at[c.person_id] = c.at
    rows = [[t(f"export.{h}") for h in header]]
    persons = sorted(f.persons.values(), key=lambda p: (str(p.get("alias") or "").casefold(), p["id"]))
    for p in persons:
        if req.person_id and p["id"] != req.person_id:
            continue
        place = places.get(p.get("usual_place") or "", {})
        rows.append([
            p["id"], _text(p.get("alias")), _text(p.get("full_name")), _text(p.get("cpr")),
            str(p["birth_year"]) if p.get("birth_year") else "", _vocab(t, "gender", p.get("gender")),
            _text(p.get("nationality")), _text(", ".join(p.get("languages") or ())), _text(p.get("description")),
            _vocab(t, "category", p.get("category")), _vocab(t, "ethos", p.get("ethos")),
            _vocab(t, "consent", p.get("consent")), fmt_date(p.get("consent_date")), _text(p.get("consent_scope")),
            _vocab(t, "status", _status(p)), fmt_date(p.get("status_date")), _text(p.get("icm_worker")),
            _vocab_list(t, "need", p.get("needs")), _text(p.get("safety_note")), _text(place.get("name")),
            _text(p.get("retention_note")), fmt_date(f.first_seen.get(p["id"])),
            fmt_datetime(last_at.get(p["id"])), fmt_datetime(p.get("created_at")),
        ])
    return rows


def _in_period(day: date | None, req: ExportRequest) -> bool:
    if day is None:
        return not (req.start or req.end)
    return (req.start is None or day >= req.start) and (req.end is None or day <= req.end)


def _contact_rows(ws: Workspace, f: Facts, req: ExportRequest, t: Translate) -> list[list[str]]:
    recs = ws.index.records
    header = CONTACT_COLUMNS
    rows = [[t(f"export.{h}") for h in header]]
    for fact in f.contacts:
        c = recs[RecordType.CONTACT][fact.id]
        if req.person_id and c.get("person_id") != req.person_id:
            continue
        if not _in_period(fact.day, req):
            continue
        person = f.persons.get(c.get("person_id") or "", {})
        place = recs[RecordType.PLACE].get(c.get("place_id") or "", {})
        rows.append([
            fact.id, fmt_datetime(fact.at), c.get("person_id") or "", _text(person.get("alias")),
            _text(place.get("name")), _text(place.get("zone")), fmt_decimal(c.get("lat")), fmt_decimal(c.get("lon")),
            _text(", ".join(c.get("workers") or ())), _vocab(t, "kind", c.get("kind")),
            _vocab(t, "living", c.get("living")), _vocab_list(t, "service", c.get("services")),
            _vocab_list(t, "referral", c.get("referrals")), _text(c.get("note")), fmt_date(c.get("follow_up")),
        ])
    return rows


def _follow_up_rows(ws: Workspace, f: Facts, req: ExportRequest, t: Translate) -> list[list[str]]:
    header = FOLLOW_UP_COLUMNS
    rows = [[t(f"export.{h}") for h in header]]
    items = sorted(ws.index.records[RecordType.FOLLOWUP].values(), key=lambda v: (str(v.get("due")), v["id"]))
    for fu in items:
        if req.person_id and fu.get("person_id") != req.person_id:
            continue
        if not _in_period(to_date(fu.get("due")), req):
            continue
        person = f.persons.get(fu.get("person_id") or "", {})
        rows.append([
            fu["id"], fmt_date(fu.get("due")), _yes_no(t, fu.get("done")), fu.get("person_id") or "",
            _text(person.get("alias")), fu.get("contact_id") or "", _text(fu.get("assignee")), _text(fu.get("note")),
        ])
    return rows


def _count_rows(ws: Workspace, f: Facts, req: ExportRequest, t: Translate) -> list[list[str]]:
    if req.year is None:
        raise InvalidInput("year", "the count week needs a year")
    count = national_count_of(f, req.year, req.week)
    header = COUNT_COLUMNS
    rows = [[t(f"export.{h}") for h in header]]
    for cp in count.persons:
        if req.person_id and req.person_id not in cp.person_ids:
            continue
        rows.append([
            t(f"export.dedup_{cp.key_kind}"), " ".join(cp.person_ids), _text(cp.alias), _text(cp.full_name),
            _text(cp.initials), _text(cp.cpr), fmt_date(cp.birth_date), str(cp.birth_year or ""),
            _vocab(t, "gender", cp.gender), _text(cp.nationality),
            _vocab(t, "category", cp.category) if cp.category != COUNT_UNKNOWN else t("report.unknown"),
            _vocab(t, "category", cp.person_category), _vocab(t, "living", cp.living), _vocab(t, "ethos", cp.ethos),
            _vocab_list(t, "need", cp.needs), _vocab(t, "consent", cp.consent), str(cp.contacts_in_week),
            fmt_datetime(cp.last_contact),
        ])
    return rows


PERSON_COLUMNS = ("id", "alias", "full_name", "cpr", "birth_year", "gender", "nationality", "languages",
                  "description", "category", "ethos", "consent", "consent_date", "consent_scope", "status",
                  "status_date", "icm_worker", "needs", "safety_note", "usual_place", "retention_note",
                  "first_seen", "last_contact", "created_at")
CONTACT_COLUMNS = ("id", "at", "person_id", "alias", "place", "zone", "lat", "lon", "workers", "kind", "living",
                   "services", "referrals", "note", "follow_up")
FOLLOW_UP_COLUMNS = ("id", "due", "done", "person_id", "alias", "contact_id", "assignee", "note")
COUNT_COLUMNS = ("dedup_key", "person_ids", "alias", "full_name", "initials", "cpr", "birth_date", "birth_year",
                 "gender", "nationality", "category", "person_category", "living", "ethos", "needs", "consent",
                 "contacts_in_week", "last_contact")
_ROWS = {
    ExportKind.PERSONS: _person_rows, ExportKind.CONTACTS: _contact_rows,
    ExportKind.FOLLOW_UPS: _follow_up_rows, ExportKind.COUNT_FORMS: _count_rows,
}


def _table(ws: Workspace, req: ExportRequest, translate: Translate | None) -> list[list[str]]:
    if req.start and req.end and req.start > req.end:
        raise InvalidInput("start", "the period starts after it ends")
    if req.person_id and req.person_id not in ws.index.records[RecordType.PERSON]:
        ws.get_person(req.person_id)  # raises NotFound
    return _ROWS[req.kind](ws, facts(ws), req, translate or stable_names)


def export_filename(req: ExportRequest, today: date) -> str:
    """A file name for the export that holds no personal data (kind and day, or the count week)."""
    if req.kind is ExportKind.COUNT_FORMS:
        return f"outreach-count-{req.year}-w{req.week:02d}.csv"
    return f"outreach-{req.kind.value.replace('_', '-')}-{today.isoformat()}.csv"


def export_csv(ws: Workspace, req: ExportRequest, *, translate: Translate | None = None) -> CsvExport:
    """The export as CSV bytes for Danish Excel; writes the audit event (what, how many rows)."""
    table = _table(ws, req, translate)
    rows = len(table) - 1
    data = _csv_bytes(table)
    ws.audit(AuditAction.EXPORT, _TARGET[req.kind], req.person_id, detail=f"{req.describe()}: {rows} rows")
    return CsvExport(kind=req.kind, data=data, rows=rows, filename=export_filename(req, date.today()))


_SYNCED_NAMES = (
    ("dropbox", "Dropbox"), ("onedrive", "OneDrive"), ("google drive", "Google Drive"),
    ("googledrive", "Google Drive"), ("my drive", "Google Drive"), ("icloud", "iCloud Drive"),
    ("mobile documents", "iCloud Drive"), ("nextcloud", "Nextcloud"), ("owncloud", "ownCloud"),
    ("pcloud", "pCloud"), ("box sync", "Box"), ("box", "Box"), ("megasync", "MEGA"), ("mega", "MEGA"),
    ("seafile", "Seafile"), ("sync.com", "Sync.com"), ("syncthing", "Syncthing"), ("cloudstorage", "cloud storage"),
)


def _synced_folder(path: Path, env: dict[str, str]) -> str | None:
    for var in ("OneDrive", "OneDriveCommercial", "OneDriveConsumer"):
        root = env.get(var)
        if root and is_within(path, Path(root)):
            return "OneDrive"
    for part in path.parts[:-1]:
        low = part.casefold()
        for name, label in _SYNCED_NAMES:
            if low == name or low.startswith(name + " ") or low.startswith(name + "-") or (
                    name in ("onedrive", "google drive", "dropbox", "icloud", "nextcloud") and low.startswith(name)):
                return label
    return None


def is_within(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies inside it (links resolved)."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def export_warning(ws: Workspace, req: ExportRequest, path: str | os.PathLike[str], *,
                   env: dict[str, str] | None = None) -> ExportWarning:
    """What the UI says before writing `req` to `path`: rows, and whether the path is next to the
    encrypted data or in a folder a cloud service copies. Writes nothing, audits nothing."""
    target = Path(path).expanduser().resolve()
    rows = len(_table(ws, req, None)) - 1
    return ExportWarning(
        path=target, rows=rows, inside_data_dir=is_within(target, ws.data_dir),
        synced_folder=_synced_folder(target, dict(os.environ) if env is None else env), exists=target.exists(),
    )


def write_private(path: Path, data: bytes) -> None:
    """Replace the file at `path` whole or not at all, readable by this user only: what every
    file of personal data the app writes on request goes through."""
    fd, tmp = tempfile.mkstemp(prefix=".outreach-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_export(ws: Workspace, req: ExportRequest, path: str | os.PathLike[str], *,
                 translate: Translate | None = None) -> CsvExport:
    """Write the export to `path` (readable by this user only, replaced whole or not at all) and
    audit it. The UI has confirmed and warned before calling this."""
    target = Path(path).expanduser().resolve()
    if target.is_dir():
        raise InvalidInput("path", "choose a file name, not a folder")
    if not target.parent.is_dir():
        raise InvalidInput("path", "the folder does not exist")
    table = _table(ws, req, translate)
    data = _csv_bytes(table)
    write_private(target, data)
    rows = len(table) - 1
    ws.audit(AuditAction.EXPORT, _TARGET[req.kind], req.person_id, detail=f"{req.describe()}: {rows} rows")
    return CsvExport(kind=req.kind, data=data, rows=rows, filename=target.name)


_REPORT_LABELS = (
    "title", "summary", "figure", "value", "period", "period_start", "period_end", "made_on", "worker", "contacts",
    "persons_met", "new_persons", "housed", "median_days_to_housed", "persons_known", "homeless_now", "target",
    "baseline", "status", "by_status", "category", "by_category", "active_now", "month", "by_month",
    "homeless_month_end", "goal", "goal_chart", "count_title", "persons", "total", "unknown",
)

# Every key this module asks `translate` for besides the vocabularies' `<name>.<value>`: what the
# UI's translation files need (a test checks that nothing else is asked for).
TEXT_KEYS: tuple[str, ...] = tuple(sorted({
    *(f"export.{c}" for c in (*PERSON_COLUMNS, *CONTACT_COLUMNS, *FOLLOW_UP_COLUMNS, *COUNT_COLUMNS)),
    "export.yes", "export.no", "export.dedup_cpr", "export.dedup_initials", "export.dedup_id",
    *(f"report.{label}" for label in _REPORT_LABELS), f"category.{CATEGORY_NONE}",
}))
