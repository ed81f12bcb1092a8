"""Whether a device and the server's log still agree after a restore from a backup.

It owns two questions, each asked once per device and process, whose answers go to the log for
the operator (docs/DEPLOY.md, "Restore"), never to the device: the protocol has no answer for
them yet. When a pull finds nothing after `since`: is `since` past the end of the team's log (the
database was restored from an older backup and its positions were not advanced)? When a push
accounts for the device's sequence from `first` (protocol 1.2): does the server hold that
device's sequence only up to well before `first` (ops it acknowledged were lost with the
restore)? It must never change the log: what the server lacks only the devices hold, and they
must send it again.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import Session

__all__ = ["log_end", "held_through"]


def log_end(session: Session, *, team_id: str) -> int:
    """The last position handed out in the team's log (0 when it is empty)."""
    row = session.execute(text("SELECT next_seq FROM team WHERE id = :team"), {"team": team_id}).first()
    return int(row[0]) - 1 if row is not None else 0


def held_through(session: Session, *, team_id: str, device_id: str) -> int:
    """The highest sequence number of the device the server accounts for: its ops, and the ranges
    its signed statements covered (also when those ops were erased since). 0: none."""
    ids = {"team": team_id, "device": device_id}
    ops = session.execute(text("SELECT MAX(device_seq) FROM op WHERE team_id = :team AND device_id = :device"),
                          ids).scalar()
    stated = session.execute(text("SELECT MAX(last_seq) FROM batch WHERE team_id = :team AND device_id = :device"),
                             ids).scalar()
    return max(int(ops or 0), int(stated or 0))
