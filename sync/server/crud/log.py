"""The team's log: a device's push appended, a page of it pulled.

It owns assigning a team's log sequence under a lock on the team row, refusing a push as a whole,
dropping the ops of a purged record, keeping a signed push as a batch (with its statement and a
place in the log), and reading a page with the batches a puller needs to check it. The hot paths
speak the driver's own SQL (measured: docs/PERFORMANCE.md). It must never read a payload as
anything but opaque bytes, nor log anything but ids and counts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select as core_select
from sqlalchemy import update
from sqlmodel import Session

from sync.protocol import (
    ENTRY_BYTES,
    ErrorCode,
    op_digest,
    pack_entries,
    unpack_entries,
)
from sync.server.continuity import held_through
from sync.server.crud.base import CHUNK, PLACEHOLDER, chunks
from sync.server.errors import ApiError
from sync.server.tables import (
    Batch,
    Team,
)

__all__ = ["PushOp", "PushResult", "push_ops", "OpRow", "PurgeRow", "PullPage", "pull_log"]

log = logging.getLogger("outreach.server")


_TEAM_TABLE = Team.__table__  # type: ignore[attr-defined]
_TEAM = _TEAM_TABLE.c
_OP_COLUMNS = ("team_id", "seq", "op_id", "device_id", "device_seq", "record_id", "key_epoch", "payload", "size",
               "received_at", "batch_id")
_INSERT_OPS = f"INSERT INTO op ({', '.join(_OP_COLUMNS)}) VALUES ({{marks}})"


@dataclass(frozen=True)
class PushOp:
    op_id: str
    device_seq: int
    record_id: str
    key_epoch: int
    payload: bytes


@dataclass(frozen=True)
class PushResult:
    acked_through: int
    accepted: int
    duplicates: int
    purged: int
    last_seq: int
    purged_records: list[str] = field(default_factory=list)


def _log_head(session: Session, *, team_id: str, for_update: bool = False) -> tuple[int, int]:
    """(next_seq, current_epoch) of the team, as a Core row; ``for_update`` as in `get_team`."""
    statement = core_select(_TEAM.next_seq, _TEAM.current_epoch).where(_TEAM.id == team_id)
    if for_update:
        statement = statement.with_for_update()
    row = session.execute(statement).first()
    if row is None:  # a device's team never goes away; this is a server fault
        raise ApiError(ErrorCode.INTERNAL, "The team of this device is missing.")
    return row[0], row[1]


def push_ops(
    session: Session, *, team_id: str, device_id: str, ops: Sequence[PushOp], now: float, sig: bytes | None = None,
    first: int | None = None, sig2: bytes | None = None,
) -> PushResult:
    """Append a device's ops to the team log, all or nothing. Duplicates (by op id, or by device
    sequence) and ops of purged records are acknowledged without being stored again. With the
    device's signature `sig`, the push is kept as a batch (the signature and every op's digest,
    in order: what a puller needs to check the ops it gets) and its new ops name it. With its
    statement (`first`, `sig2`: protocol 1.2) the batch keeps the range and the entries too, and
    a place in the log: its first new op's, or a place of its own when none was stored but some
    were dropped as erased (a puller needs it to see why those sequences are missing). A push of
    duplicates only adds no batch."""
    if (first is None) != (sig2 is None):
        raise ApiError(ErrorCode.MALFORMED, "A statement needs both `first` and `sig2`.", {"field": "first"})
    if first is not None and first > min(op.device_seq for op in ops):
        raise ApiError(ErrorCode.MALFORMED, "`first` is after the push's first op.", {"field": "first"})
    # The team row stays locked until commit: seq order = commit order.
    next_seq, current_epoch = _log_head(session, team_id=team_id, for_update=True)
    head = next_seq
    for index, op in enumerate(ops):
        if op.key_epoch < current_epoch:
            raise ApiError(
                ErrorCode.STALE_EPOCH,
                "Ops sealed under an old key epoch: re-seal them under the current key and push again.",
                {"current_epoch": current_epoch, "field": f"ops.{index}.key_epoch"},
            )
        if op.key_epoch > current_epoch:
            raise ApiError(
                ErrorCode.UNKNOWN_EPOCH,
                "Ops sealed under an epoch the team does not have.",
                {"current_epoch": current_epoch, "field": f"ops.{index}.key_epoch"},
            )
    # The look-ups in the driver's own SQL: Core's rendering of 500-value IN lists cost more
    # than SQLite's search (measured: 1.8 s of 4.9 for 100,000 ops in pushes of 500).
    connection = session.connection()
    mark = PLACEHOLDER[connection.dialect.paramstyle]

    def marks(n: int) -> str:
        return ", ".join([mark] * n)

    op_ids = sorted({op.op_id for op in ops})
    known_ops: dict[str, str] = {}
    for chunk in chunks(op_ids):
        known_ops.update(
            connection.exec_driver_sql(f"SELECT op_id, team_id FROM op WHERE op_id IN ({marks(len(chunk))})",
                                       tuple(chunk)).all()
        )
    if any(owner != team_id for owner in known_ops.values()):
        raise ApiError(ErrorCode.CONFLICT, "An op id of this push is taken.", {"field": "ops"})
    seqs = sorted({op.device_seq for op in ops})
    taken_seqs: dict[int, str] = {}
    for start in range(0, len(seqs), CHUNK):
        chunk_seqs = seqs[start : start + CHUNK]
        taken_seqs.update(
            connection.exec_driver_sql(
                f"SELECT device_seq, op_id FROM op WHERE team_id = {mark} AND device_id = {mark} "
                f"AND device_seq IN ({marks(len(chunk_seqs))})",
                (team_id, device_id, *chunk_seqs),
            ).all()
        )
    purged_ids: set[str] = set()
    if connection.exec_driver_sql(f"SELECT 1 FROM purge WHERE team_id = {mark} LIMIT 1", (team_id,)).first():
        record_ids = sorted({op.record_id for op in ops})
        for chunk in chunks(record_ids):
            purged_ids.update(
                connection.exec_driver_sql(
                    f"SELECT record_id FROM purge WHERE team_id = {mark} AND record_id IN ({marks(len(chunk))})",
                    (team_id, *chunk),
                ).scalars()
            )

    rows: list[tuple[object, ...]] = []
    seen_ops, duplicates, purged = set(known_ops), 0, 0
    purged_records: dict[str, None] = {}
    for op in ops:
        if op.op_id in seen_ops or op.device_seq in taken_seqs:
            duplicates += 1
            if op.op_id not in seen_ops:
                # The spec acknowledges it as a duplicate; a different op at a used device seq is a
                # client fault worth seeing in the log (ids only).
                log.warning(
                    "push team=%s device=%s device_seq=%d holds op=%s, not op=%s: acknowledged as duplicate",
                    team_id,
                    device_id,
                    op.device_seq,
                    taken_seqs[op.device_seq],
                    op.op_id,
                )
            continue
        seen_ops.add(op.op_id)
        taken_seqs[op.device_seq] = op.op_id
        if op.record_id in purged_ids:
            purged += 1
            purged_records[op.record_id] = None
            continue
        rows.append(
            (team_id, next_seq, op.op_id, device_id, op.device_seq, op.record_id, op.key_epoch, op.payload,
             len(op.payload), now)
        )
        next_seq += 1
    batch_id: int | None = None
    if sig is not None and (sig2 is None or rows or purged):
        digests = [op_digest(op.payload) for op in ops]
        batch = Batch(team_id=team_id, device_id=device_id, sig=sig, digests=b"".join(digests), at=now)
        if sig2 is not None:
            if rows:
                batch.pos = int(rows[0][1])  # type: ignore[call-overload]
            else:
                batch.pos, next_seq = next_seq, next_seq + 1  # a place of its own
            batch.first_seq, batch.last_seq, batch.sig2 = first, max(op.device_seq for op in ops), sig2
            batch.entries = pack_entries((op.device_seq, op.record_id, d) for op, d in zip(ops, digests, strict=True))
        elif rows:
            batch.pos = int(rows[0][1])  # type: ignore[call-overload]
        session.add(batch)
        session.flush()
        batch_id = batch.id
    rows = [(*row, batch_id) for row in rows]
    if rows or next_seq != head:
        # The driver's own executemany: Core's per-value bind processing and parameter
        # compilation cost more than SQLite's insert (measured). Every value is a str, int,
        # float or bytes, which both drivers take as they are.
        if rows:
            connection.exec_driver_sql(_INSERT_OPS.format(marks=marks(len(_OP_COLUMNS))), rows)
        connection.execute(update(_TEAM_TABLE).where(_TEAM.id == team_id).values(next_seq=next_seq))
    return PushResult(
        acked_through=max(op.device_seq for op in ops),
        accepted=len(rows),
        duplicates=duplicates,
        purged=purged,
        last_seq=next_seq - 1,
        purged_records=list(purged_records),
    )


# seq, op_id, device_id, device_seq, record_id, key_epoch, payload
OpRow = tuple[int, str, str, int, str, int, bytes, int | None]
PurgeRow = tuple[int, str, bytes | None]  # seq, record_id, the coordinator's signature


@dataclass(frozen=True)
class PullPage:
    ops: Sequence[OpRow]
    purges: Sequence[PurgeRow]
    next: int
    more: bool
    current_epoch: int
    # id, device id, signature, digests; from 1.2: place, first, last, statement signature, absent entries
    batches: Sequence[tuple[int, str, bytes, bytes, int | None, int | None, int | None, bytes | None,
                            bytes | None]] = ()
    held_through: int | None = None  # of the pulling device (`continuity.held_through`)


def pull_log(session: Session, *, team_id: str, since: int, limit: int, max_bytes: int,
             device_id: str | None = None) -> PullPage:
    """The log entries (ops, purges, and batches that have a place of their own) after `since`, in
    order: at most `limit` entries and about `max_bytes` of payload (always at least one entry),
    with the batches a puller needs to check them: those placed on the page and those the page's
    ops came in. Run it in one snapshot (a read transaction). In the driver's own SQL, rows as
    plain tuples: SQLAlchemy's row processing of a page of a thousand ops cost a third of a
    pull's server time (measured)."""
    _next_seq, current_epoch = _log_head(session, team_id=team_id)
    held = held_through(session, team_id=team_id, device_id=device_id) if device_id is not None else None
    connection = session.connection()
    mark = PLACEHOLDER[connection.dialect.paramstyle]
    columns = "id, device_id, sig, digests, pos, first_seq, last_seq, sig2, entries"
    cursor = connection.connection.cursor()  # the DB-API cursor, in this session's transaction
    try:
        cursor.execute(
            "SELECT seq, op_id, device_id, device_seq, record_id, key_epoch, payload, batch_id FROM op "
            f"WHERE team_id = {mark} AND seq > {mark} ORDER BY seq LIMIT {mark}",
            (team_id, since, limit + 1),
        )
        ops: list[Any] = list(cursor.fetchall())
        cursor.execute(
            f"SELECT seq, record_id, sig FROM purge WHERE team_id = {mark} AND seq > {mark} ORDER BY seq LIMIT {mark}",
            (team_id, since, limit + 1),
        )
        purges: list[Any] = list(cursor.fetchall())
        cursor.execute(
            f"SELECT {columns} FROM batch WHERE team_id = {mark} AND pos > {mark} ORDER BY pos LIMIT {mark}",
            (team_id, since, limit + 1),
        )
        placed: list[Any] = list(cursor.fetchall())
    finally:
        cursor.close()
    op_seqs = {op[0] for op in ops}
    own = [b for b in placed if b[4] not in op_seqs]  # batches with a place of their own
    if not ops and not purges and not own:  # the common case of a long-poll: nothing new
        return PullPage([], [], since, False, current_epoch, [], held)
    entries = sorted([(op[0], len(op[6])) for op in ops] + [(purge[0], 0) for purge in purges]
                     + [(b[4], 0) for b in own])
    last = entries[0][0]
    total = 0
    for count, (seq, size) in enumerate(entries[:limit]):
        if count and total + size > max_bytes:
            break
        last = seq
        total += size
    more = entries[-1][0] > last
    ops = [op for op in ops if op[0] <= last]
    purges = [purge for purge in purges if purge[0] <= last]
    found = {b[0]: b for b in placed if b[4] <= last}
    wanted = sorted({op[7] for op in ops if op[7] is not None} - set(found))
    if wanted:
        cursor = connection.connection.cursor()
        try:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                cursor.execute(
                    f"SELECT {columns} FROM batch WHERE team_id = {mark} "
                    f"AND id IN ({', '.join([mark] * len(chunk))}) ORDER BY id",
                    (team_id, *chunk),
                )
                found.update((b[0], b) for b in cursor.fetchall())
        finally:
            cursor.close()
    on_page: dict[int, set[int]] = {}
    for op in ops:
        if op[7] is not None:
            on_page.setdefault(op[7], set()).add(op[3])
    batches = []
    for bid in sorted(found):
        b = found[bid]
        absent = None
        if b[7] is not None and b[8] is not None:
            here, blob = on_page.get(bid, set()), bytes(b[8])
            absent = b"" if len(here) * ENTRY_BYTES == len(blob) else pack_entries(  # all here: the usual case
                e for e in unpack_entries(blob) if e[0] not in here)
        batches.append((b[0], b[1], bytes(b[2]), bytes(b[3]), b[4], b[5], b[6],
                        bytes(b[7]) if b[7] is not None else None, absent))
    return PullPage(ops, purges, last, more, current_epoch, batches, held)
