"""Wrapped team keys: for each device and epoch, and under the recovery key.

It owns a team's key epochs going up one at a time, a pending device becoming active with a key
of the current epoch (and rejected ones), and the recovery lookup. The keys are opaque bytes here:
it must never look inside one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import delete
from sqlmodel import Session, col, select

from sync.protocol import (
    DeviceStatus,
    ErrorCode,
)
from sync.server.crud.devices import get_device
from sync.server.crud.teams import get_team
from sync.server.errors import ApiError
from sync.server.tables import (
    Device,
    Team,
    WrappedKeyRow,
)

__all__ = ["keys_for_device", "upload_keys", "store_recovery"]

log = logging.getLogger("outreach.server")



def keys_for_device(session: Session, *, team_id: str, device_id: str) -> list[WrappedKeyRow]:
    return list(
        session.exec(
            select(WrappedKeyRow)
            .where(WrappedKeyRow.team_id == team_id, WrappedKeyRow.device_id == device_id)
            .order_by(col(WrappedKeyRow.epoch))
        ).all()
    )


def upload_keys(
    session: Session,
    *,
    team_id: str,
    epoch: int,
    keys: Sequence[tuple[str, int, bytes]],
    reject: Sequence[str],
    now: float,
) -> Team:
    """Store team keys wrapped for devices (``keys``: device id, epoch, wrapped blob). ``epoch`` is
    the current epoch or an older one (more devices), or current + 1 to start a new epoch (e.g.
    after a revocation); each key may be of any epoch the team has once that is done. A pending
    device with a key for the current epoch becomes active; the ``reject`` devices, pending, become
    rejected."""
    team = get_team(session, team_id=team_id, for_update=True)
    if epoch == team.current_epoch + 1:
        team.current_epoch = epoch
        session.add(team)
        log.info("keys team=%s new_epoch=%d", team_id, epoch)
    elif epoch > team.current_epoch:
        raise ApiError(
            ErrorCode.UNKNOWN_EPOCH,
            "Key epochs go up one at a time.",
            {"current_epoch": team.current_epoch, "field": "epoch"},
        )
    for index, (device_id, key_epoch, blob) in enumerate(keys):
        if key_epoch > team.current_epoch:
            raise ApiError(
                ErrorCode.UNKNOWN_EPOCH,
                "An epoch the team does not have.",
                {"current_epoch": team.current_epoch, "field": f"keys.{index}.epoch"},
            )
        device = _key_target(session, team_id=team_id, device_id=device_id, field=f"keys.{index}.device_id")
        existing = session.exec(
            select(WrappedKeyRow).where(
                WrappedKeyRow.team_id == team_id,
                WrappedKeyRow.epoch == key_epoch,
                WrappedKeyRow.device_id == device_id,
            )
        ).first()
        if existing is None:
            session.add(
                WrappedKeyRow(
                    team_id=team_id, epoch=key_epoch, device_id=device_id, blob=blob, created_at=now
                )
            )
        else:  # the coordinator re-wrapped (a retried upload): the newest wins
            existing.blob = blob
            session.add(existing)
        if device.status == DeviceStatus.PENDING.value and key_epoch == team.current_epoch:
            device.status = DeviceStatus.ACTIVE.value
            session.add(device)
    for index, device_id in enumerate(reject):
        device = _key_target(session, team_id=team_id, device_id=device_id, field=f"reject.{index}")
        if device.status == DeviceStatus.ACTIVE.value:
            raise ApiError(
                ErrorCode.CONFLICT,
                "An active device cannot be rejected: revoke it.",
                {"field": f"reject.{index}", "device_id": device_id},
            )
        device.status = DeviceStatus.REJECTED.value
        session.add(device)
    session.flush()
    return team


def _key_target(session: Session, *, team_id: str, device_id: str, field: str) -> Device:
    device = get_device(session, team_id=team_id, device_id=device_id)
    if device is None:
        raise ApiError(
            ErrorCode.NOT_FOUND, "No such device in this team.", {"field": field, "device_id": device_id}
        )
    if device.status in (DeviceStatus.REVOKED.value, DeviceStatus.REJECTED.value):
        raise ApiError(
            ErrorCode.CONFLICT,
            f"This device is {device.status}.",
            {"field": field, "device_id": device_id, "status": device.status},
        )
    return device


def store_recovery(
    session: Session, *, team_id: str, lookup_hash: str, keys: Sequence[tuple[int, bytes]], now: float
) -> None:
    """Replace the team's recovery lookup and its keys wrapped under the recovery key."""
    team = get_team(session, team_id=team_id, for_update=True)
    for index, (epoch, _blob) in enumerate(keys):
        if epoch > team.current_epoch:
            raise ApiError(
                ErrorCode.UNKNOWN_EPOCH,
                "An epoch the team does not have.",
                {"current_epoch": team.current_epoch, "field": f"keys.{index}.epoch"},
            )
    other = session.exec(
        select(Team.id).where(Team.recovery_lookup_hash == lookup_hash, Team.id != team_id)
    ).first()
    if other is not None:
        raise ApiError(ErrorCode.CONFLICT, "This recovery lookup is taken.", {"field": "recovery_lookup"})
    session.exec(
        delete(WrappedKeyRow).where(
            col(WrappedKeyRow.team_id) == team_id, col(WrappedKeyRow.device_id).is_(None)
        )
    )
    session.flush()
    for epoch, blob in keys:
        session.add(WrappedKeyRow(team_id=team_id, epoch=epoch, device_id=None, blob=blob, created_at=now))
    team.recovery_lookup_hash = lookup_hash
    session.add(team)
    session.flush()
