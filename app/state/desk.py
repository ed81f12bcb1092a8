"""What the coordinator's desk shows: the team's devices, an invite, the overview against the
goal, conflicts and duplicates, erasure, retention and the audit log, and the files planned and
written. Plain frozen data filled by the facade's desk. No I/O, no control.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from .records import PersonRow

__all__ = ["DeskDevice", "DevicesView", "Invite", "OverviewView", "DeskConflict", "DuplicateRow", "ErasureView", "RetentionRow", "AuditRow", "ExportPlan", "ExportDone", "CountView"]

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
