"""What the sync chip says: the app's knowledge of syncing right now (`SyncView`, kept by the
facade's scheduler) and the chip's words, tone and icon drawn from it (`chip_model`), never
claiming more than it knows. No I/O, no control.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["SyncView", "ChipModel", "chip_model"]

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
