"""What the sync engine hands back: the status the UI's chip shows and the reports of a sync run,
a join, a revocation and a checkpoint written, plus the `Progress` callback's shape.

Plain values only: it must never hold behaviour, import a part of the engine or reach the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Progress", "SyncStatus", "SyncReport", "CheckpointReport", "RevokeReport", "JoinResult"]

Progress = Callable[[str, int, int], None]  # (phase, done, total); total 0 when unknown


@dataclass
class SyncStatus:
    joined: bool
    role: str | None
    device_status: str | None
    pending_ops: int
    last_success: float | None
    last_error: str | None
    server_url: str | None
    history_pending: bool = False  # a checkpoint's first tier taken, the older history still on its way


@dataclass
class SyncReport:
    pushed: int = 0
    pulled: int = 0
    applied: int = 0
    set_aside: int = 0
    purged: int = 0
    erased_late: int = 0  # records of erased persons that arrived late, purged on the server
    retired: int = 0  # devices that handed over and were revoked
    admitted: int = 0
    rejected: int = 0
    pending: bool = False
    from_checkpoint: int = 0  # rows a new device took from a checkpoint instead of replaying the log
    resent: int = 0  # acknowledged ops sent again: the server had lost them (a restore from an older backup)
    checkpoint: CheckpointReport | None = None  # one this coordinator wrote


@dataclass(frozen=True)
class CheckpointReport:
    """A checkpoint written: its id, the log position it holds the state up to, parts, bytes."""

    checkpoint_id: str
    seq: int
    parts: int
    size: int


@dataclass(frozen=True)
class RevokeReport:
    """A revoke's outcome: the new epoch and the devices that got its key (ids)."""

    epoch: int
    keyed: tuple[str, ...]


@dataclass
class JoinResult:
    team_name: str
    role: str
    status: str
    founding: bool
    fingerprint: str
    recovery_code: str | None = None
