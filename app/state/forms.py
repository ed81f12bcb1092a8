"""What a worker or a coordinator types, read and checked without I/O: dates and times as typed,
the drafts the forms fill in (a contact, a person, a place) with their checks and payloads, a
count, a fingerprint typed from another phone's screen. The facade turns a draft's payload into a
record; the CLI reads a typed fingerprint with the same rule. Nothing here touches a control.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

__all__ = ["parse_date", "parse_when", "ContactDraft", "PersonDraft", "PlaceDraft", "FORM_FIELDS", "parse_count", "typed_fingerprint"]

# ------------------------------------------------------------------------------ parsing input
_DATE_FORMS = ("%d-%m-%Y", "%d.%m.%Y", "%d/%m/%Y", "%Y-%m-%d", "%d-%m-%y")


def parse_date(text: str) -> date | None:
    """A date as a worker types it: 24-12-2025, 24.12.2025, 24/12/2025 or 2025-12-24.
    Empty gives None; anything else raises ValueError."""
    text = text.strip()
    if not text:
        return None
    for form in _DATE_FORMS:
        try:
            return datetime.strptime(text, form).date()
        except ValueError:
            continue
    raise ValueError(text)


_WHEN = re.compile(r"^\s*(?P<d>[\d.\-/]+)\s+(?P<h>\d{1,2})[:.](?P<m>\d{2})\s*$")


def parse_when(text: str) -> datetime:
    """Date and time of a meeting, `24-12-2025 21:30`; raises ValueError."""
    m = _WHEN.match(text)
    if not m:
        raise ValueError(text)
    day = parse_date(m["d"])
    if day is None:
        raise ValueError(text)
    return datetime(day.year, day.month, day.day, int(m["h"]), int(m["m"]))


# --------------------------------------------------------------------------------- the drafts
FORM_FIELDS = ("person", "place", "when", "follow_up", "note", "alias", "birth_year", "cpr", "name",
               "status_date", "consent_date", "zone", "full_name", "description", "safety_note",
               "nationality", "icm_worker", "consent_scope", "languages")


@dataclass
class ContactDraft:
    """The new-contact form. A person is chosen, anonymous, or new (just an alias); a place is
    chosen, new (a name), or none."""

    person_id: str | None = None
    person_label: str = ""
    anonymous: bool = False
    new_person_alias: str = ""
    place_id: str | None = None
    place_label: str = ""
    new_place_name: str = ""
    kind: str = "street"
    living: str | None = None
    services: set[str] = field(default_factory=set)
    referrals: set[str] = field(default_factory=set)
    note: str = ""
    when_text: str = ""
    follow_up_text: str = ""
    lat: float | None = None
    lon: float | None = None
    workers: list[str] = field(default_factory=list)

    def choose_person(self, person_id: str | None, label: str = "", *, anonymous: bool = False,
                      new_alias: str = "") -> None:
        self.person_id, self.person_label = person_id, label
        self.anonymous = anonymous
        self.new_person_alias = new_alias.strip()

    def choose_place(self, place_id: str | None, label: str = "", *, new_name: str = "") -> None:
        self.place_id, self.place_label = place_id, label
        self.new_place_name = new_name.strip()

    @property
    def has_person(self) -> bool:
        return bool(self.person_id or self.anonymous or self.new_person_alias)

    def check(self, now: datetime) -> dict[str, str]:
        """Problems a worker can fix, by field -> i18n key. Empty when the draft can be saved."""
        errors: dict[str, str] = {}
        if not self.has_person:
            errors["person"] = "errors.choose_person"
        elif self.new_person_alias and len(self.new_person_alias) > 80:
            errors["person"] = "errors.too_long"
        if self.new_place_name and len(self.new_place_name) > 80:
            errors["place"] = "errors.too_long"
        try:
            when = self.when(now)
            if when > now + timedelta(minutes=10):
                errors["when"] = "errors.in_future"
        except ValueError:
            errors["when"] = "errors.datetime_format"
        try:
            due = parse_date(self.follow_up_text)
            if due is not None and due < now.date():
                errors["follow_up"] = "errors.date_past"
        except ValueError:
            errors["follow_up"] = "errors.date_format"
        if len(self.note) > 4000:
            errors["note"] = "errors.too_long"
        return errors

    def when(self, now: datetime) -> datetime:
        return parse_when(self.when_text) if self.when_text.strip() else now.replace(second=0, microsecond=0)

    def payload(self, now: datetime) -> dict[str, Any]:
        """The contact's fields (person and place ids are filled in by the service when new)."""
        due = parse_date(self.follow_up_text)
        return {
            "at": self.when(now).isoformat(timespec="minutes"),
            "person_id": None if self.anonymous else self.person_id,
            "place_id": self.place_id,
            "kind": self.kind,
            "living": self.living,
            "services": sorted(self.services),
            "referrals": sorted(self.referrals),
            "note": self.note.strip() or None,
            "follow_up": due.isoformat() if due else None,
            "lat": self.lat,
            "lon": self.lon,
            "workers": list(self.workers),
        }


@dataclass
class PersonDraft:
    """The person form (new or edit). Text fields hold what was typed."""

    alias: str = ""
    full_name: str = ""
    cpr: str = ""
    birth_year: str = ""
    gender: str | None = None
    nationality: str = ""
    languages: str = ""  # comma separated
    description: str = ""
    category: str | None = None
    ethos: str | None = None
    consent: str = "none"
    consent_date: str = ""
    consent_scope: str = ""
    status: str = "active"
    icm_worker: str = ""
    needs: set[str] = field(default_factory=set)
    safety_note: str = ""
    usual_place: str | None = None

    @classmethod
    def from_person(cls, p: Any) -> PersonDraft:
        def s(v: Any) -> str:
            return "" if v is None else str(v)

        return cls(
            alias=p.alias, full_name=s(p.full_name), cpr=s(p.cpr), birth_year=s(p.birth_year),
            gender=getattr(p.gender, "value", p.gender), nationality=s(p.nationality),
            languages=", ".join(p.languages or []), description=s(p.description),
            category=getattr(p.category, "value", p.category), ethos=getattr(p.ethos, "value", p.ethos),
            consent=getattr(p.consent, "value", p.consent) or "none",
            consent_date=p.consent_date.strftime("%d-%m-%Y") if p.consent_date else "",
            consent_scope=s(p.consent_scope), status=getattr(p.status, "value", p.status) or "active",
            icm_worker=s(p.icm_worker), needs={getattr(n, "value", n) for n in p.needs or []},
            safety_note=s(p.safety_note), usual_place=p.usual_place,
        )

    def check(self, today: date) -> dict[str, str]:
        errors: dict[str, str] = {}
        if not self.alias.strip():
            errors["alias"] = "errors.required"
        elif len(self.alias.strip()) > 80:
            errors["alias"] = "errors.too_long"
        if self.birth_year.strip():
            try:
                year = int(self.birth_year.strip())
                if not 1900 <= year <= today.year:
                    errors["birth_year"] = "errors.year_range"
            except ValueError:
                errors["birth_year"] = "errors.year_range"
        if self.cpr.strip() and not re.fullmatch(r"\d{6}-?\d{4}", self.cpr.strip()):
            errors["cpr"] = "errors.cpr"
        try:
            parse_date(self.consent_date)
        except ValueError:
            errors["consent_date"] = "errors.date_format"
        for name, limit in (("full_name", 120), ("nationality", 60), ("icm_worker", 80),
                            ("description", 4000), ("safety_note", 1000), ("consent_scope", 400)):
            if len(str(getattr(self, name)).strip()) > limit:
                errors[name] = "errors.too_long"
        return errors

    def payload(self) -> dict[str, Any]:
        consent_date = parse_date(self.consent_date)
        return {
            "alias": self.alias.strip(),
            "full_name": self.full_name.strip() or None,
            "cpr": self.cpr.strip() or None,
            "birth_year": int(self.birth_year) if self.birth_year.strip() else None,
            "gender": self.gender or None,
            "nationality": self.nationality.strip() or None,
            "languages": [x.strip() for x in self.languages.split(",") if x.strip()],
            "description": self.description.strip() or None,
            "category": self.category or None,
            "ethos": self.ethos or None,
            "consent": self.consent or "none",
            "consent_date": consent_date.isoformat() if consent_date else None,
            "consent_scope": self.consent_scope.strip() or None,
            "status": self.status or "active",
            "icm_worker": self.icm_worker.strip() or None,
            "needs": sorted(self.needs),
            "safety_note": self.safety_note.strip() or None,
            "usual_place": self.usual_place or None,
        }


@dataclass
class PlaceDraft:
    name: str = ""
    zone: str = ""

    def check(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        if not self.name.strip():
            errors["name"] = "errors.required"
        elif len(self.name.strip()) > 80:
            errors["name"] = "errors.too_long"
        if len(self.zone.strip()) > 60:
            errors["zone"] = "errors.too_long"
        return errors

    def payload(self) -> dict[str, Any]:
        return {"name": self.name.strip(), "zone": self.zone.strip() or None}




def parse_count(text: str, *, low: int, high: int) -> int:
    """A whole number a coordinator typed (a target, a week, months); raises ValueError."""
    value = int(text.strip())
    if not low <= value <= high:
        raise ValueError(text)
    return value


def typed_fingerprint(text: str, *, length: int | None = None) -> str:
    """A fingerprint as a coordinator typed it from a joining phone's screen, in the groups that
    screen shows ("1A2B 3C4D ..."): spaces, dashes and case do not matter. Raises ValueError when
    it is empty, holds other than 0-9 and A-F, or (with `length`, the listed one's) is too short
    or too long: a slip of the finger, not a different key."""
    digits = "".join(text.replace("-", " ").split()).upper()
    if not digits or any(c not in "0123456789ABCDEF" for c in digits):
        raise ValueError(text)
    if length is not None and len(digits) != length:
        raise ValueError(text)
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))
