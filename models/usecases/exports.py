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

Danish Excel: `;` between cells, UTF-8 with a byte-order mark (Excel needs it to read UTF-8),
dates dd-mm-yyyy, times dd-mm-yyyy HH:MM, decimal comma, CRLF line ends; free-text cells that
start like a formula (`= + - @`) are prefixed with `'` so that Excel shows them instead of
evaluating them.
"""

from __future__ import annotations

import csv
import html
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain.vocab import AuditAction, HomelessCategory, RecordType, Status
from ..errors import InvalidInput
from .reports import (
    CATEGORIES,
    CATEGORY_NONE,
    ContactFact,
    Facts,
    Goal,
    MonthlySeries,
    PeriodFigures,
    SeriesKind,
    _goal,
    _monthly_series,
    _period,
    _period_figures,
    _status,
    facts,
    iso_week_bounds,
    to_date,
    to_datetime,
)

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

Translate = Callable[[str], str]
CSV_ENCODING = "utf-8-sig"
COUNT_UNKNOWN = "unknown"  # the count's bucket for persons with no category
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def stable_names(key: str) -> str:
    """The default `translate`: the stable key after the first dot (`status.housed` -> `housed`)."""
    return key.partition(".")[2] or key


class DanishExcel(csv.Dialect):
    """What Danish Excel reads without an import wizard (with `CSV_ENCODING`)."""

    delimiter = ";"
    quotechar = '"'
    doublequote = True
    skipinitialspace = False
    lineterminator = "\r\n"
    quoting = csv.QUOTE_MINIMAL


# ================================================================================ formatting
def fmt_date(value: Any) -> str:
    day = to_date(value)
    return day.strftime("%d-%m-%Y") if day else ""


def fmt_datetime(value: Any) -> str:
    at = to_datetime(value)
    return at.strftime("%d-%m-%Y %H:%M") if at else ""


def fmt_decimal(value: float | None, places: int = 6) -> str:
    """A number with a decimal comma and no needless zeros (12.50 -> 12,5; 3.0 -> 3)."""
    if value is None:
        return ""
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return ("0" if text in ("", "-0") else text).replace(".", ",")


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _vocab(translate: Translate, name: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    return translate(f"{name}.{getattr(value, 'value', value)}")


def _vocab_list(translate: Translate, name: str, values: Iterable[Any] | None) -> str:
    return ", ".join(_vocab(translate, name, v) for v in values or ())


def _yes_no(translate: Translate, value: Any) -> str:
    return translate("export.yes") if value else translate("export.no")


def _csv_bytes(rows: Iterable[Sequence[str]]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, dialect=DanishExcel)
    writer.writerows(rows)
    return buf.getvalue().encode(CSV_ENCODING)


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
    count = _national_count(f, req.year, req.week)
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


# ========================================================================= aggregate report
@dataclass(frozen=True)
class AggregateReport:
    """The overview's figures for a period, with no personal data: counts only. The one name it
    can hold is the worker the coordinator filtered by."""

    made_on: date
    period: PeriodFigures
    persons_known: int  # now (the day the report is made)
    by_status: dict[str, int]
    active_by_category: dict[str, int]
    goal: Goal
    series: dict[SeriesKind, MonthlySeries]  # the period's months


def aggregate_report(ws: Workspace, *, start: date | None = None, end: date | None = None,
                     worker: str | None = None, today: date | None = None) -> AggregateReport:
    today = today or date.today()
    start, end = _period(start, end, today)
    f = facts(ws)
    scope = f.persons_of(worker)
    by_status = dict.fromkeys((s.value for s in Status), 0)
    active_by_category = dict.fromkeys(CATEGORIES, 0)
    for pid, p in scope.items():
        by_status[_status(p)] += 1
        if _status(p) == Status.ACTIVE.value:
            active_by_category[f.category(pid)] += 1
    series = {kind: _monthly_series(ws, f, kind, start=start, end=end, worker=worker, by_category=False,
                                    today=today) for kind in SeriesKind}
    return AggregateReport(made_on=today, period=_period_figures(f, start, end, worker), persons_known=len(scope),
                           by_status=by_status, active_by_category=active_by_category, goal=_goal(ws, f, worker),
                           series=series)


def _aggregate_sections(r: AggregateReport, t: Translate) -> list[tuple[str, list[list[str]]]]:
    """(heading, rows) blocks, the first row of each being its column headings."""
    p = r.period
    summary = [
        [t("report.figure"), t("report.value")],
        [t("report.period_start"), fmt_date(p.start)],
        [t("report.period_end"), fmt_date(p.end)],
        [t("report.made_on"), fmt_date(r.made_on)],
    ]
    if p.worker:
        summary.append([t("report.worker"), _text(p.worker)])
    summary += [
        [t("report.contacts"), str(p.contacts)],
        [t("report.persons_met"), str(p.persons_met)],
        [t("report.new_persons"), str(p.new_persons)],
        [t("report.housed"), str(p.housed)],
        [t("report.median_days_to_housed"), fmt_decimal(p.median_days_to_housed, 1)],
        [t("report.persons_known"), str(r.persons_known)],
        [t("report.homeless_now"), str(r.goal.current)],
        [t("report.target"), str(r.goal.target)],
        [t("report.baseline"), str(r.goal.baseline)],
    ]
    status = [[t("report.status"), t("report.persons_known")]] + [
        [_vocab(t, "status", s), str(n)] for s, n in r.by_status.items()]

    def cat(c: str) -> str:
        return t(f"category.{c}")

    categories = [[t("report.category"), t("report.active_now"), t("report.persons_met"), t("report.new_persons"),
                   t("report.housed")]] + [
        [cat(c), str(r.active_by_category.get(c, 0)), str(p.met_by_category.get(c, 0)),
         str(p.new_by_category.get(c, 0)), str(p.housed_by_category.get(c, 0))] for c in CATEGORIES]
    s = r.series
    months = s[SeriesKind.CONTACTS].months
    monthly = [[t("report.month"), t("report.contacts"), t("report.persons_met"), t("report.housed"),
                t("report.homeless_month_end")]] + [
        [m.strftime("%m-%Y"), str(s[SeriesKind.CONTACTS].totals[i]), str(s[SeriesKind.PERSONS_MET].totals[i]),
         str(s[SeriesKind.HOUSED].totals[i]), str(s[SeriesKind.HOMELESS].totals[i])] for i, m in enumerate(months)]
    return [(t("report.summary"), summary), (t("report.by_status"), status),
            (t("report.by_category"), categories), (t("report.by_month"), monthly)]


def aggregate_csv(report: AggregateReport, *, translate: Translate | None = None) -> bytes:
    """The aggregate report as one CSV for Danish Excel: blocks separated by an empty line, each
    starting with its heading. Holds counts only, so it is not audited as a personal export."""
    t = translate or stable_names
    rows: list[list[str]] = [[t("report.title")]]
    for heading, block in _aggregate_sections(report, t):
        rows += [[], [heading], *block]
    return _csv_bytes(rows)


_PRINT_CSS = """
@page { size: A4; margin: 18mm 16mm; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: #111;
       margin: 2rem auto; max-width: 60rem; padding: 0 1rem; font-size: 11pt; }
h1 { font-size: 18pt; margin: 0 0 .2rem; } h2 { font-size: 13pt; margin: 1.4rem 0 .4rem; }
p.meta { color: #444; margin: 0 0 1rem; }
table { border-collapse: collapse; width: 100%; margin-bottom: .6rem; }
th, td { border: 1px solid #bbb; padding: .25rem .5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #eee; }
figure { margin: 0; } svg { width: 100%; height: auto; }
section { break-inside: avoid; page-break-inside: avoid; }
@media print { body { margin: 0; max-width: none; padding: 0; } thead { display: table-header-group; }
               a { color: inherit; text-decoration: none; } }
"""


def _svg_goal_chart(series: MonthlySeries, target: int, t: Translate) -> str:
    """The homeless curve against the target line, as inline SVG (no script, no external file)."""
    w, h, left, bottom, top = 640, 220, 40, 30, 10
    values = list(series.totals)
    if not values:
        return ""
    top_value = max([*values, target, 1])
    n = len(values)
    step = (w - left - 10) / max(n - 1, 1)

    def y(v: float) -> float:
        return top + (h - top - bottom) * (1 - v / top_value)

    points = " ".join(f"{left + i * step:.1f},{y(v):.1f}" for i, v in enumerate(values))
    labels = "".join(
        f'<text x="{left + i * step:.1f}" y="{h - 10}" font-size="10" text-anchor="middle">'
        f"{html.escape(m.strftime('%m-%y'))}</text>" for i, m in enumerate(series.months))
    return (
        f'<figure><svg viewBox="0 0 {w} {h}" role="img" aria-label="{html.escape(t("report.goal_chart"))}">'
        f'<line x1="{left}" y1="{y(0):.1f}" x2="{w - 10}" y2="{y(0):.1f}" stroke="#999"/>'
        f'<line x1="{left}" y1="{y(target):.1f}" x2="{w - 10}" y2="{y(target):.1f}" stroke="#2a7" '
        f'stroke-dasharray="6 4"/>'
        f'<text x="{left - 4}" y="{y(target) + 4:.1f}" font-size="10" text-anchor="end">{target}</text>'
        f'<text x="{left - 4}" y="{y(top_value) + 4:.1f}" font-size="10" text-anchor="end">{top_value}</text>'
        f'<polyline fill="none" stroke="#c33" stroke-width="2" points="{points}"/>{labels}</svg>'
        f"<figcaption>{html.escape(t('report.goal_chart'))}</figcaption></figure>"
    )


def aggregate_html(report: AggregateReport, *, translate: Translate | None = None) -> str:
    """The aggregate report as one self-contained, printable HTML page (inline CSS and SVG)."""
    t = translate or stable_names
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="da"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(t('report.title'))}</title><style>{_PRINT_CSS}</style></head><body>",
        f"<h1>{esc(t('report.title'))}</h1>",
        f'<p class="meta">{esc(t("report.period"))}: {esc(fmt_date(report.period.start))} – '
        f'{esc(fmt_date(report.period.end))} · {esc(t("report.made_on"))}: {esc(fmt_date(report.made_on))}</p>',
    ]
    for heading, block in _aggregate_sections(report, t):
        head, body = block[0], block[1:]
        parts.append(f"<section><h2>{esc(heading)}</h2><table><thead><tr>")
        parts += [f"<th>{esc(c)}</th>" for c in head]
        parts.append("</tr></thead><tbody>")
        for row in body:
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
        parts.append("</tbody></table></section>")
    parts.append(f"<section><h2>{esc(t('report.goal'))}</h2>"
                 f"{_svg_goal_chart(report.series[SeriesKind.HOMELESS], report.goal.target, t)}</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ========================================================================== national count
@dataclass(frozen=True)
class CountPerson:
    """One person of the count week (one form), merged from every record that is the same person."""

    key_kind: str  # "cpr", "initials" (initials of the full name + birth year) or "id"
    person_ids: tuple[str, ...]
    alias: str
    full_name: str | None
    initials: str | None
    cpr: str | None
    birth_date: date | None  # from the CPR number
    birth_year: int | None
    gender: str | None
    nationality: str | None
    category: str  # counted under: living at the week's last contact if a count category, else the person's
    person_category: str | None
    living: str | None  # at the week's last contact
    ethos: str | None
    needs: tuple[str, ...]
    consent: str | None
    contacts_in_week: int
    last_contact: datetime


@dataclass(frozen=True)
class NationalCount:
    year: int
    week: int
    start: date
    end: date
    counts: dict[str, int]  # every HomelessCategory value, then COUNT_UNKNOWN
    persons: tuple[CountPerson, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def initials(full_name: str | None) -> str | None:
    parts = [w for w in (full_name or "").replace("-", " ").split() if w[:1].isalpha()]
    return "".join(w[0].upper() for w in parts) or None


def birth_date_of(cpr: str | None) -> date | None:
    """The birth date in a CPR number (the 7th digit gives the century)."""
    if not cpr:
        return None
    digits = cpr.replace("-", "")
    if len(digits) != 10 or not digits.isdigit():
        return None
    dd, mm, yy, c = int(digits[0:2]), int(digits[2:4]), int(digits[4:6]), int(digits[6])
    if c <= 3:
        century = 1900
    elif c in (4, 9):
        century = 2000 if yy <= 36 else 1900
    else:
        century = 2000 if yy <= 57 else 1800
    try:
        return date(century + yy, mm, dd)
    except ValueError:
        return None


def _dedup_key(p: dict[str, Any]) -> tuple[str, str]:
    if p.get("cpr"):
        return "cpr", str(p["cpr"]).replace("-", "")
    ini = initials(p.get("full_name"))
    if ini and p.get("birth_year"):
        return "initials", f"{ini}|{p['birth_year']}"
    return "id", str(p["id"])


def _national_count(f: Facts, year: int, week: int) -> NationalCount:
    start, end = iso_week_bounds(year, week)
    groups: dict[tuple[str, str], list[str]] = {}
    week_contacts: dict[str, list[ContactFact]] = {}
    for c in f.contacts:
        if c.met and start <= c.day <= end and c.person_id:
            week_contacts.setdefault(c.person_id, []).append(c)
    for pid in week_contacts:
        groups.setdefault(_dedup_key(f.persons[pid]), []).append(pid)
    counts = dict.fromkeys((c.value for c in HomelessCategory), 0)
    counts[COUNT_UNKNOWN] = 0
    valid = {c.value for c in HomelessCategory}
    out = []
    for (kind, _), pids in groups.items():
        contacts = sorted((c for pid in pids for c in week_contacts[pid]),
                          key=lambda c: (c.at.replace(tzinfo=None), c.id))
        latest = contacts[-1]
        main = f.persons[latest.person_id or pids[0]]
        records = [main] + [f.persons[p] for p in pids if p != main["id"]]

        def first(name: str, records: list[dict[str, Any]] = records) -> Any:
            return next((r.get(name) for r in records if r.get(name)), None)

        living = latest.living
        person_category = first("category")
        category = living if living in valid else (person_category or COUNT_UNKNOWN)
        counts[category] += 1
        cpr = first("cpr")
        out.append(CountPerson(
            key_kind=kind, person_ids=tuple(sorted(pids)), alias=str(main.get("alias") or ""),
            full_name=first("full_name"), initials=initials(first("full_name")), cpr=cpr,
            birth_date=birth_date_of(cpr), birth_year=first("birth_year"), gender=first("gender"),
            nationality=first("nationality"), category=category, person_category=person_category, living=living,
            ethos=first("ethos"), needs=tuple(sorted({n for r in records for n in r.get("needs") or ()})),
            consent=first("consent"), contacts_in_week=len(contacts), last_contact=latest.at,
        ))
    out.sort(key=lambda cp: (cp.alias.casefold(), cp.person_ids))
    return NationalCount(year=year, week=week, start=start, end=end, counts=counts, persons=tuple(out))


def national_count(ws: Workspace, *, year: int, week: int = 6) -> NationalCount:
    """The national homeless count for ISO week `week` of `year`: every person with a contact that
    week (not `not_found`), counted once (same CPR number; else same initials of the full name and
    birth year; else the record itself), under the living situation of their last contact that
    week when it is one of the count's categories, else under their record's category, else
    COUNT_UNKNOWN. `persons` holds one form's facts per counted person: personal data, for the
    screen; exporting it is `ExportKind.COUNT_FORMS` (audited)."""
    return _national_count(facts(ws), year, week)


def count_csv(count: NationalCount, *, translate: Translate | None = None) -> bytes:
    """The count's figures per category (no personal data) as CSV for Danish Excel."""
    t = translate or stable_names
    rows = [[t("report.count_title"), f"{count.year}-W{count.week:02d}"],
            [t("report.period_start"), fmt_date(count.start)], [t("report.period_end"), fmt_date(count.end)],
            [], [t("report.category"), t("report.persons")]]
    rows += [[t(f"category.{c}") if c != COUNT_UNKNOWN else t("report.unknown"), str(n)]
             for c, n in count.counts.items()]
    rows.append([t("report.total"), str(count.total)])
    return _csv_bytes(rows)


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
