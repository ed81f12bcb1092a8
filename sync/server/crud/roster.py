"""The roster: the coordinator's signed statements of the team's devices, kept as they are, and
the signing key a device of the previous version announces.

It must never look inside an entry (the devices check the coordinator's signature), nor store one
for a device of another team.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from sync.protocol import (
    ErrorCode,
)
from sync.server.crud.devices import get_device
from sync.server.errors import ApiError
from sync.server.tables import (
    Device,
    RosterRow,
)

__all__ = ["roster", "roster_entry", "put_roster", "announce_signing_key"]


def roster(session: Session, *, team_id: str) -> list[tuple[str, bytes]]:
    """The coordinator's signed statements of the team's devices: (device id, entry)."""
    rows = session.exec(select(RosterRow).where(RosterRow.team_id == team_id).order_by(col(RosterRow.device_id)))
    return [(row.device_id, row.entry) for row in rows]


def roster_entry(session: Session, *, team_id: str, device_id: str) -> bytes | None:
    row = session.get(RosterRow, (team_id, device_id))
    return row.entry if row is not None else None


def put_roster(session: Session, *, team_id: str, entries: Sequence[tuple[str, bytes]], now: float) -> None:
    """Store (replace) signed roster entries of devices of the team, as they are."""
    for index, (device_id, entry) in enumerate(entries):
        if get_device(session, team_id=team_id, device_id=device_id) is None:  # revoked ones too
            raise ApiError(ErrorCode.NOT_FOUND, "No such device in this team.",
                           {"field": f"entries.{index}.device_id", "device_id": device_id})
        row = session.get(RosterRow, (team_id, device_id))
        if row is None:
            session.add(RosterRow(team_id=team_id, device_id=device_id, entry=entry, updated_at=now))
        else:
            row.entry, row.updated_at = entry, now
            session.add(row)


def announce_signing_key(session: Session, *, device_id: str, signing_key: bytes, announce: bytes) -> None:
    """A device of the previous version's new signing key and its announce (checked by the coordinator)."""
    device = session.get(Device, device_id)
    if device is None:
        raise ApiError(ErrorCode.NOT_FOUND, "No such device.")
    device.signing_key, device.announce = signing_key, announce
    session.add(device)
