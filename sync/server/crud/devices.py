"""The team's devices: looked up by token (every authenticated request), listed, noted as seen,
revoked.

It must never hand out another team's device (one of another team is as good as absent), nor let
a coordinator revoke the device it is using.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import bindparam, func, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from sync.protocol import (
    DeviceStatus,
    ErrorCode,
)
from sync.server.errors import ApiError
from sync.server.tables import (
    Device,
    WrappedKeyRow,
)

__all__ = ["device_by_token", "touch_device", "get_device", "list_devices", "revoke_device"]


_DEVICE = Device.__table__.c  # type: ignore[attr-defined]

_BY_TOKEN = core_select(_DEVICE.id, _DEVICE.team_id, _DEVICE.role, _DEVICE.status, _DEVICE.last_seen).where(
    _DEVICE.token_hash == bindparam("token_hash")
)


def device_by_token(session: Session, *, token_hash: str) -> tuple[str, str, str, str, float | None] | None:
    """(id, team_id, role, status, last_seen) of the device holding the token, from one Core select."""
    row = session.execute(_BY_TOKEN, {"token_hash": token_hash}).first()
    return None if row is None else cast("tuple[str, str, str, str, float | None]", tuple(row))


def touch_device(session: Session, *, device_id: str, now: float) -> None:
    session.exec(update(Device).where(col(Device.id) == device_id).values(last_seen=now))


def get_device(session: Session, *, team_id: str, device_id: str) -> Device | None:
    """The device if it belongs to `team_id`: another team's device is as good as absent."""
    device = session.get(Device, device_id)
    return device if device is not None and device.team_id == team_id else None


def list_devices(session: Session, *, team_id: str) -> list[tuple[Device, int | None]]:
    """Every device of the team, oldest first, with the newest epoch wrapped for each."""
    newest = dict(
        session.exec(
            select(WrappedKeyRow.device_id, func.max(WrappedKeyRow.epoch))
            .where(WrappedKeyRow.team_id == team_id, col(WrappedKeyRow.device_id).is_not(None))
            .group_by(col(WrappedKeyRow.device_id))
        ).all()
    )
    devices = session.exec(
        select(Device).where(Device.team_id == team_id).order_by(col(Device.joined_at), col(Device.id))
    ).all()
    return [(device, newest.get(device.id)) for device in devices]



def revoke_device(session: Session, *, team_id: str, device_id: str, caller_id: str) -> Device:
    """Mark the device revoked; its token is refused from the next request on."""
    device = get_device(session, team_id=team_id, device_id=device_id)
    if device is None:
        raise ApiError(ErrorCode.NOT_FOUND, "No such device in this team.", {"device_id": device_id})
    if device.id == caller_id:
        raise ApiError(ErrorCode.CONFLICT, "A coordinator cannot revoke the device it is using.")
    device.status = DeviceStatus.REVOKED.value
    session.add(device)
    session.flush()
    return device
