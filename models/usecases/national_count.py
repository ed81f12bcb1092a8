"""The national homeless count of a chosen ISO week: every person met that week counted once
(merged by CPR number, else initials and birth year, else the record), under the week's living
situation or their category; one form's facts per person for the screen, and the figures per
category (no personal data) as CSV.

Exporting the per-person forms is `exports.ExportKind.COUNT_FORMS` (audited there); this module
writes no file and logs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from ..domain.vocab import HomelessCategory
from .formats import Translate, fmt_date, stable_names
from .formats import csv_bytes as _csv_bytes
from .reports import ContactFact, Facts, facts, iso_week_bounds

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = [
    "CountPerson",
    "NationalCount",
    "COUNT_UNKNOWN",
    "national_count",
    "national_count_of",
    "count_csv",
    "initials",
    "birth_date_of",
]

COUNT_UNKNOWN = "unknown"  # the count's bucket for persons with no category


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


def national_count_of(f: Facts, year: int, week: int) -> NationalCount:
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
    return national_count_of(facts(ws), year, week)


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
