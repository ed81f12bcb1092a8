"""View-models of the Flet app: plain data the screens show and the drafts the forms fill in, with
the rules that need no I/O (parsing what a worker typed, checking a form, choosing what the sync
chip says, which layout fits a width). Nothing here touches a control, a file or the network;
`services` fills these objects in, the views draw them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

__all__ = [
    "WIDE_MIN_WIDTH",
    "SEARCH_PAUSE",
    "is_wide",
    "parse_date",
    "parse_when",
    "ContactDraft",
    "PersonDraft",
    "PlaceDraft",
    "SyncView",
    "ChipModel",
    "chip_model",
    "ContactRow",
    "FollowUpRow",
    "PersonRow",
    "PlaceRow",
    "ConflictRow",
    "PersonDetail",
    "PlaceDetail",
    "TodayData",
    "ContactChoices",
    "DeviceInfo",
    "JoinOutcome",
    "NOTICE_KINDS",
    "NoticeRow",
    "Preferences",
    "AUTOLOCK_CHOICES",
    "NOT_SEEN_CHOICES",
    "FORM_FIELDS",
    "PERIOD_CHOICES",
    "period_bounds",
    "parse_count",
    "typed_fingerprint",
    "DeskDevice",
    "DevicesView",
    "Invite",
    "OverviewView",
    "DeskConflict",
    "DuplicateRow",
    "ErasureView",
    "RetentionRow",
    "AuditRow",
    "ExportPlan",
    "ExportDone",
    "CountView",
]

WIDE_MIN_WIDTH = 600
# the pause after a keystroke before searching. None: a search takes ~12 ms at 1,000 persons
# (p95), so every keystroke searches at once and a result for text since changed is dropped; the
# 100 ms from keystroke to results (issue 4) go to the search and the round trip to the browser
SEARCH_PAUSE = 0.0
AUTOLOCK_CHOICES = (1, 2, 5, 10, 15, 30)
NOT_SEEN_CHOICES = (7, 14, 30, 90)


def is_wide(width: float | None) -> bool:
    """Under 600 px: one pane and a bottom bar; from 600 px: a rail and list beside detail."""
    return bool(width) and float(width or 0) >= WIDE_MIN_WIDTH


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


# ------------------------------------------------------------------------------- the sync chip
@dataclass
class SyncView:
    """What the app knows about syncing right now."""

    joined: bool = False
    running: bool = False
    online: bool = True
    pending_ops: int = 0
    last_success: datetime | None = None
    error_key: str | None = None  # i18n key of the last error, None when the last run went well
    error_params: dict[str, Any] = field(default_factory=dict)
    offline_error: bool = False  # the last error was "cannot reach the server"
    device_status: str | None = None  # pending | active | ...
    role: str | None = None  # coordinator | worker, once joined
    progress: float | None = None  # 0..1 during a long sync, None otherwise
    progress_count: int = 0
    progress_phase: str = ""  # "push", "pull" (sent or received so far) or "fold" (received, being put in place)
    progress_total: int = 0
    first_sync: bool = False
    history_pending: bool = False  # usable from a checkpoint's first tier; the older history still coming


@dataclass(frozen=True)
class ChipModel:
    tone: str  # ok | busy | waiting | offline | error | idle
    key: str
    params: dict[str, Any]
    icon: str


def chip_model(view: SyncView, now: datetime | None = None) -> ChipModel:
    """The truth at a glance: offline, N waiting, synced 2 min ago, or the error in plain words.
    It never claims more than it knows: "synced" says when the last exchange with the server went
    well (`now` is when it is drawn), not that the server is there now."""
    n = view.pending_ops
    if not view.joined:
        return ChipModel("idle", "sync.not_joined", {}, "CLOUD_OFF")
    if view.running:
        if view.history_pending:
            return ChipModel("busy", "sync.history_loading", {"n": n}, "DOWNLOADING")
        return ChipModel("busy", "sync.running", {"n": n}, "SYNC")
    if view.device_status == "pending" and view.error_key is None:
        return ChipModel("waiting", "sync.device_pending", {"n": n}, "HOURGLASS_TOP")
    if not view.online or view.offline_error:
        key = "sync.offline_waiting" if n else "sync.offline"
        return ChipModel("offline", key, {"n": n}, "CLOUD_OFF")
    if view.error_key:
        return ChipModel("error", view.error_key, {**view.error_params, "n": n}, "ERROR_OUTLINE")
    if n:
        return ChipModel("waiting", "sync.waiting", {"n": n}, "CLOUD_UPLOAD")
    if view.history_pending:  # not running, not offline: it comes at the next sync
        return ChipModel("waiting", "sync.history_pending", {}, "DOWNLOADING")
    if view.last_success:
        minutes = int(((now or datetime.now()) - view.last_success).total_seconds() // 60)
        if minutes < 1:
            return ChipModel("ok", "sync.synced_now", {}, "CLOUD_DONE")
        if minutes < 60:
            return ChipModel("ok", "sync.synced_ago", {"n": minutes}, "CLOUD_DONE")
        return ChipModel("ok", "sync.synced_at", {"time": view.last_success.strftime("%H:%M")}, "CLOUD_DONE")
    return ChipModel("idle", "sync.never", {}, "CLOUD_QUEUE")


# --------------------------------------------------------------------------- what screens show
@dataclass(frozen=True)
class ContactRow:
    id: str
    at: datetime
    person_id: str | None
    person_alias: str | None  # None: anonymous (or a person this device cannot see)
    place_id: str | None
    place_name: str | None
    kind: str
    living: str | None
    services: tuple[str, ...]
    referrals: tuple[str, ...]
    note: str | None
    follow_up: date | None


@dataclass(frozen=True)
class FollowUpRow:
    id: str
    due: date
    person_id: str | None
    person_alias: str | None
    note: str | None
    overdue: bool


@dataclass(frozen=True)
class PersonRow:
    id: str
    alias: str
    status: str
    category: str | None
    last_contact: datetime | None
    description: str | None = None


@dataclass(frozen=True)
class PlaceRow:
    id: str
    name: str
    zone: str | None
    last_alias: str | None = None
    last_at: datetime | None = None


@dataclass(frozen=True)
class ConflictRow:
    field: str
    value_a: Any
    at_a: datetime
    device_a: str
    value_b: Any  # shown meanwhile
    at_b: datetime
    device_b: str


@dataclass
class PersonDetail:
    person: Any  # models.domain.tables.PersonPublic
    usual_place_name: str | None
    contacts: list[ContactRow]
    follow_ups: list[FollowUpRow]
    conflicts: list[ConflictRow]
    last_contact: datetime | None


@dataclass
class PlaceDetail:
    place: PlaceRow
    contacts: list[ContactRow]


@dataclass
class TodayData:
    day: date
    contacts: list[ContactRow]
    follow_ups: list[FollowUpRow]
    joined: bool
    device_status: str | None


@dataclass
class ContactChoices:
    recent_persons: list[PersonRow]
    places: list[PlaceRow]
    suggested_place_id: str | None = None


@dataclass
class DeviceInfo:
    device_id: str
    fingerprint: str
    worker_name: str
    joined: bool
    team_name: str | None
    role: str | None
    device_status: str | None
    server_url: str | None
    pending_ops: int
    last_sync: datetime | None
    data_dir: str
    app_version: str


@dataclass(frozen=True)
class JoinOutcome:
    team_name: str
    role: str
    status: str
    fingerprint: str
    recovery_code: str | None


# what a device notes when it refuses or sets aside something for a security reason
# (docs/SECURITY.md); each has words of its own (`notice.<kind>`), any other kind is said generally
NOTICE_KINDS = ("key_refused", "purge_refused", "erased_edit", "erased_late", "audit_refused", "future_op", "unknown_device",
                "unsigned_op", "revoked_write", "roster_refused", "revocation_unproven", "missing_ops",
                "history_differs", "checkpoint_refused", "lost_on_server")


@dataclass(frozen=True)
class NoticeRow:
    """One security notice as the settings screen lists it: what happened (the kind), when, and
    the ids involved. Never personal data; the technical detail stays for the CLI and the log."""

    at: datetime
    kind: str
    record_id: str | None
    device_id: str | None

    @property
    def kind_key(self) -> str:
        return f"notice.{self.kind}" if self.kind in NOTICE_KINDS else "notice.other"

    @property
    def short_device(self) -> str | None:
        return self.device_id[:8] if self.device_id else None


@dataclass
class Preferences:
    language: str = "da"
    autolock_minutes: int = 5


# ------------------------------------------------------------------------- the coordinator's desk
PERIOD_CHOICES = ("12m", "this_year", "last_year", "24m")


def period_bounds(period: str, today: date) -> tuple[date, date]:
    """The days a period choice of the desk covers (both ends included)."""
    if period == "this_year":
        return date(today.year, 1, 1), today
    if period == "last_year":
        return date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
    if period in ("12m", "24m"):
        months = 12 if period == "12m" else 24
        index = today.year * 12 + today.month - 1 - (months - 1)
        return date(index // 12, index % 12 + 1, 1), today
    raise ValueError(period)


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


@dataclass(frozen=True)
class DeskDevice:
    device_id: str
    name: str
    role: str
    status: str  # pending | active | revoked | rejected
    joined_at: datetime
    last_seen: datetime | None
    key_epoch: int | None
    this_device: bool
    fingerprint: str  # the figure the device's own screen shows: compared before it is trusted
    # pending, invited from here, and let in only once someone typed the fingerprint its screen shows
    awaiting_confirmation: bool = False
    retiring: bool = False  # asked to hand over and leave: it goes at its next sync


@dataclass(frozen=True)
class DevicesView:
    devices: list[DeskDevice]
    current_epoch: int
    invites_pending: int
    recovery_here: bool  # the recovery code's secret is kept on this device (never shown again)
    recovery_made: datetime | None
    admitted: int  # devices let in by this look (their proofs checked here)
    confirms_devices: bool = False  # a new device is let in only after its fingerprint was compared here


@dataclass(frozen=True)
class Invite:
    code: str
    role: str
    hours: float
    qr_png: bytes


@dataclass(frozen=True)
class OverviewView:
    overview: Any  # models.usecases.reports.Overview
    series: dict[str, Any]  # SeriesKind value -> models.usecases.reports.MonthlySeries
    workers: list[str]  # the worker filter's choices (names as contacts record them, normalised)
    period: str
    worker: str | None


@dataclass(frozen=True)
class DeskConflict:
    item: Any  # models.usecases.review.ConflictItem
    key: str  # record id and field: stable across a redraw


@dataclass(frozen=True)
class DuplicateRow:
    a: PersonRow
    b: PersonRow
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ErasureView:
    person_id: str
    alias: str
    contacts: int
    follow_ups: int
    records: int


@dataclass(frozen=True)
class RetentionRow:
    person_id: str
    alias: str
    last_contact: date | None
    since: date
    kept_on: date | None
    reason: str | None


@dataclass(frozen=True)
class AuditRow:
    id: str
    at: datetime
    actor: str
    device_id: str
    action: str
    target_type: str | None
    target_id: str | None
    target_alias: str | None  # for the coordinator's screen only
    detail: str | None


@dataclass(frozen=True)
class ExportPlan:
    kind: str
    period: str
    year: int | None
    week: int | None
    path: Any  # pathlib.Path, absolute
    rows: int
    synced_folder: str | None
    exists: bool


@dataclass(frozen=True)
class ExportDone:
    path: Any
    rows: int


@dataclass(frozen=True)
class CountView:
    year: int
    week: int
    start: date
    end: date
    counts: dict[str, int]
    total: int
