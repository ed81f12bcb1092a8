"""Checkpoints: sealed parts a coordinator puts and any device of the team fetches, kept blind.

It owns a checkpoint's position being in the log and its epoch the team's, a part stored once
with the same bytes, and keeping only the newest `KEEP_CHECKPOINTS` complete ones. It must never
look inside a part or the manifest.
"""

from __future__ import annotations

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from sync.protocol import (
    ErrorCode,
)
from sync.server.crud.teams import get_team
from sync.server.errors import ApiError
from sync.server.tables import (
    CheckpointPartRow,
    CheckpointRow,
)

__all__ = ["KEEP_CHECKPOINTS", "create_checkpoint", "put_checkpoint_part", "list_checkpoints", "checkpoint_part",
           "drop_checkpoints_before"]


KEEP_CHECKPOINTS = 2  # complete checkpoints kept per team: the newest, and the one before it


def create_checkpoint(session: Session, *, team_id: str, checkpoint_id: str, seq: int, epoch: int, parts: int,
                      manifest: bytes, now: float) -> None:
    """Start a checkpoint (idempotent for the same values). Its position must be in the log and
    its epoch the team's; an unfinished checkpoint of the team made before is dropped."""
    team = get_team(session, team_id=team_id, for_update=True)
    if seq > team.next_seq - 1:
        raise ApiError(ErrorCode.MALFORMED, "A checkpoint cannot be ahead of the log.",
                       {"field": "seq", "last_seq": team.next_seq - 1})
    if epoch != team.current_epoch:
        raise ApiError(ErrorCode.STALE_EPOCH, "A checkpoint is sealed under the team's current key epoch.",
                       {"field": "epoch", "current_epoch": team.current_epoch})
    row = session.get(CheckpointRow, checkpoint_id)
    if row is not None:
        if (row.team_id, row.seq, row.epoch, row.parts, row.manifest) != (team_id, seq, epoch, parts, manifest):
            raise ApiError(ErrorCode.CONFLICT, "A checkpoint of this id exists with other values.", {"field": "id"})
        return
    for old in session.exec(select(CheckpointRow).where(CheckpointRow.team_id == team_id,
                                                        col(CheckpointRow.complete).is_(False))).all():
        _drop_checkpoint(session, old.id)
    session.add(CheckpointRow(id=checkpoint_id, team_id=team_id, seq=seq, epoch=epoch, parts=parts,
                              manifest=manifest, size=0, created_at=now, complete=False))
    session.flush()


def put_checkpoint_part(session: Session, *, team_id: str, checkpoint_id: str, n: int, blob: bytes) -> bool:
    """Store part `n` (1-based) of a checkpoint; True once every part is there, when the team's
    older complete checkpoints beyond `KEEP_CHECKPOINTS` are dropped."""
    row = session.get(CheckpointRow, checkpoint_id)
    if row is None or row.team_id != team_id:
        raise ApiError(ErrorCode.NOT_FOUND, "No such checkpoint (a purge may have dropped it).", {"field": "id"})
    if not 1 <= n <= row.parts:
        raise ApiError(ErrorCode.MALFORMED, f"A part number from 1 to {row.parts}.", {"field": "n"})
    part = session.get(CheckpointPartRow, (checkpoint_id, n))
    if part is not None:
        if bytes(part.blob) != blob:
            raise ApiError(ErrorCode.CONFLICT, "This part was stored with other bytes.", {"field": "blob"})
    else:
        session.add(CheckpointPartRow(checkpoint_id=checkpoint_id, n=n, blob=blob))
        row.size += len(blob)
        session.add(row)
        session.flush()
    stored = session.exec(select(func.count()).select_from(CheckpointPartRow)
                          .where(CheckpointPartRow.checkpoint_id == checkpoint_id)).one()
    if stored == row.parts and not row.complete:
        row.complete = True
        session.add(row)
        session.flush()
        done = session.exec(select(CheckpointRow).where(CheckpointRow.team_id == team_id,
                                                        col(CheckpointRow.complete).is_(True))
                            .order_by(col(CheckpointRow.seq).desc(), col(CheckpointRow.created_at).desc())).all()
        for old in done[KEEP_CHECKPOINTS:]:
            _drop_checkpoint(session, old.id)
    return bool(row.complete)


def list_checkpoints(session: Session, *, team_id: str) -> list[CheckpointRow]:
    """The team's complete checkpoints, the newest first."""
    return list(session.exec(select(CheckpointRow).where(CheckpointRow.team_id == team_id,
                                                         col(CheckpointRow.complete).is_(True))
                             .order_by(col(CheckpointRow.seq).desc(), col(CheckpointRow.created_at).desc())).all())


def checkpoint_part(session: Session, *, team_id: str, checkpoint_id: str, n: int) -> bytes:
    row = session.get(CheckpointRow, checkpoint_id)
    part = session.get(CheckpointPartRow, (checkpoint_id, n)) if row is not None and row.team_id == team_id else None
    if part is None:
        raise ApiError(ErrorCode.NOT_FOUND, "No such checkpoint part (a purge or a newer checkpoint may have "
                       "dropped it).", {"field": "n"})
    return bytes(part.blob)


def _drop_checkpoint(session: Session, checkpoint_id: str) -> None:
    session.exec(delete(CheckpointPartRow).where(col(CheckpointPartRow.checkpoint_id) == checkpoint_id))
    session.exec(delete(CheckpointRow).where(col(CheckpointRow.id) == checkpoint_id))


def drop_checkpoints_before(session: Session, *, team_id: str, seq: int) -> int:
    """An erasure at log position `seq` makes every checkpoint made before it unusable: a new
    device must never get the erased record from one."""
    ids = session.exec(select(CheckpointRow.id).where(CheckpointRow.team_id == team_id,
                                                      CheckpointRow.seq < seq)).all()
    for checkpoint_id in ids:
        _drop_checkpoint(session, checkpoint_id)
    return len(ids)
