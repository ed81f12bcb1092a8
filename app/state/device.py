"""This device as the settings and setup screens show it: its identity and team (`DeviceInfo`),
what joining gave (`JoinOutcome`), and its security notices (`NoticeRow`, with the kinds that
have words of their own). Never personal data. No I/O, no control.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["DeviceInfo", "JoinOutcome", "NOTICE_KINDS", "NoticeRow"]

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
