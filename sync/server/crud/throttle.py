"""The throttle of code lookups: failures per address and per server, and how long to wait.

It must never store more than the address (cut to 64 characters) and the time of a failure, and
forgets failures older than its windows.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlmodel import Session, col, select

from sync.server.tables import (
    JoinFailure,
)

__all__ = ["SERVER_WINDOW", "throttle_retry_after", "server_throttle_retry_after", "record_failure"]


# --- throttling of code lookups ---------------------------------------------------------------

SERVER_WINDOW = 60.0  # seconds: the server-wide limit counts failures per minute


def throttle_retry_after(
    session: Session, *, address: str, now: float, limit: int, window: float
) -> float | None:
    """Seconds until `address` may try a code again, or None when it may now."""
    recent = session.exec(
        select(JoinFailure.at)
        .where(JoinFailure.address == address, JoinFailure.at > now - window)
        .order_by(col(JoinFailure.at).desc())
        .limit(limit)
    ).all()
    if len(recent) < limit:
        return None
    return max(recent[-1] + window - now, 1.0)


def server_throttle_retry_after(session: Session, *, now: float, limit: int) -> float | None:
    """Seconds until anyone may try a code again, when `limit` lookups failed in the last minute
    from all addresses together; None when not."""
    recent = session.exec(
        select(JoinFailure.at)
        .where(JoinFailure.at > now - SERVER_WINDOW)
        .order_by(col(JoinFailure.at).desc())
        .limit(limit)
    ).all()
    if len(recent) < limit:
        return None
    return max(recent[-1] + SERVER_WINDOW - now, 1.0)


def record_failure(session: Session, *, address: str, now: float, window: float) -> None:
    session.exec(delete(JoinFailure).where(col(JoinFailure.at) <= now - max(window, SERVER_WINDOW)))
    session.add(JoinFailure(address=address[:64], at=now))
