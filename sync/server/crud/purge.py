"""Purges: every op of a record deleted, one signed purge entry per record in the log.

It owns that an erasure also drops every checkpoint made before it (a new device must never get
an erased record from one). The signatures are opaque here: the devices check them.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete
from sqlmodel import Session, col, select

from sync.server.crud.base import chunks
from sync.server.crud.checkpoints import drop_checkpoints_before
from sync.server.crud.teams import get_team
from sync.server.tables import (
    Op,
    Purge,
)

__all__ = ["purge_records"]


def purge_records(
    session: Session, *, team_id: str, record_ids: Sequence[str], now: float,
    signatures: Sequence[bytes | None] | None = None,
) -> tuple[int, int]:
    """Delete every op of the record ids and append one purge entry per record id not purged
    before, with its signature (opaque: devices check it). Returns (ops deleted, the log's last
    sequence)."""
    team = get_team(session, team_id=team_id, for_update=True)
    sig_of = dict(zip(record_ids, signatures or [None] * len(record_ids), strict=True))
    unique_ids = list(dict.fromkeys(record_ids))
    already: set[str] = set()
    deleted = 0
    for chunk in chunks(unique_ids):
        already.update(
            session.exec(
                select(Purge.record_id).where(Purge.team_id == team_id, col(Purge.record_id).in_(chunk))
            ).all()
        )
        result = session.exec(delete(Op).where(col(Op.team_id) == team_id, col(Op.record_id).in_(chunk)))
        deleted += result.rowcount
    for record_id in unique_ids:
        if record_id in already:
            continue
        session.add(Purge(team_id=team_id, seq=team.next_seq, record_id=record_id, at=now, sig=sig_of[record_id]))
        team.next_seq += 1
    drop_checkpoints_before(session, team_id=team_id, seq=team.next_seq)
    session.add(team)
    session.flush()
    return deleted, team.next_seq - 1
