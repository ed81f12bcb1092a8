"""Whether a device's place in the log still exists on this server: after a restore from a backup
the log may end before the cursor a device holds.

It owns one question, asked when a pull finds nothing after `since`: is `since` past the end of the
team's log? Then the server lost entries that device has seen (the database was restored from an
older backup, or moved without its newest data). The protocol answers such a pull with an empty
page (`next` = `since`), so the app only says so in the log, once per device, for the operator
(docs/DEPLOY.md, "Restore"). It must never change the log: what the server lacks only the devices
hold, and they must send it again.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import Session

__all__ = ["log_end"]


def log_end(session: Session, *, team_id: str) -> int:
    """The last position handed out in the team's log (0 when it is empty)."""
    row = session.execute(text("SELECT next_seq FROM team WHERE id = :team"), {"team": team_id}).first()
    return int(row[0]) - 1 if row is not None else 0
