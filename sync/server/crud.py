"""Every read and write of the server's database: keyword-only functions that take the session.

It owns the SQL and the rules that must hold inside one transaction: claiming a code once (the
founding code only with a proof under its secret),
assigning a team's log sequence under a lock on the team row, refusing a push as a whole, dropping
the ops of a purged record. The caller (a route handler) owns the transaction (`Database.transaction`)
and decodes the wire format; the functions here take plain values. They raise only `ApiError`.
They must never open a transaction themselves, read sealed bytes as anything but opaque bytes, or
log anything but ids and counts (never a device name, a hash or a payload).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import bindparam, delete, func, literal, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from sync.protocol import (
    ENTRY_BYTES,
    DeviceStatus,
    ErrorCode,
    Role,
    enrollment_proof_ok,
    op_digest,
    pack_entries,
    unpack_entries,
)
from sync.server.continuity import held_through
from sync.server.errors import ApiError
from sync.server.keys import ServerKey
from sync.server.tables import (
    Batch,
    CheckpointPartRow,
    CheckpointRow,
    Device,
    Invite,
    JoinFailure,
    Op,
    Purge,
    RosterRow,
    Team,
    WrappedKeyRow,
)

__all__ = [
    "sha256_hex",
    "ping",
    "create_team",
    "get_team",
    "throttle_retry_after",
    "server_throttle_retry_after",
    "record_failure",
    "join_team",
    "recover_team",
    "device_by_token",
    "touch_device",
    "get_device",
    "list_devices",
    "count_open_invites",
    "create_invite",
    "revoke_device",
    "keys_for_device",
    "upload_keys",
    "store_recovery",
    "PushOp",
    "PushResult",
    "push_ops",
    "PullPage",
    "pull_log",
    "roster",
    "put_roster",
    "announce_signing_key",
    "purge_records",
]

log = logging.getLogger("outreach.server")

_CHUNK = 500  # ids per IN (...) list


def sha256_hex(value: str | bytes) -> str:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def ping(session: Session) -> None:
    session.exec(select(literal(1))).one()


# --- teams ------------------------------------------------------------------------------------


def create_team(
    session: Session, *, name: str, lookup: str, secret: str, key: ServerKey, ttl_seconds: float, now: float
) -> Team:
    """A new team and its founding invite (the operator's code, both halves): the first device to
    join with its lookup *and* a proof under its secret becomes the team's coordinator. The lookup
    is stored keyed, the secret sealed, both under the server key (`keys.py` says why)."""
    team = Team(id=uuid.uuid4().hex, name=name, created_at=now)
    session.add(team)
    session.flush()
    lookup_hash = key.lookup_hash(lookup)
    session.add(
        Invite(
            lookup_hash=lookup_hash,
            team_id=team.id,
            role=Role.COORDINATOR.value,
            founding=True,
            created_at=now,
            expires_at=now + ttl_seconds,
            lookup_scheme=_HMAC,
            founding_seal=key.seal_founding(secret.encode("ascii"), lookup_hash=lookup_hash),
        )
    )
    session.flush()
    return team


def get_team(session: Session, *, team_id: str, for_update: bool = False) -> Team:
    """The team row; ``for_update`` locks it until the transaction ends (PostgreSQL; SQLite's write
    transaction already holds the database's write lock)."""
    statement = select(Team).where(Team.id == team_id)
    if for_update:
        statement = statement.with_for_update()
    team = session.exec(statement).first()
    if team is None:  # a device's team never goes away; this is a server fault
        raise ApiError(ErrorCode.INTERNAL, "The team of this device is missing.")
    return team


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


# --- enrollment -------------------------------------------------------------------------------


def _ensure_new_device(session: Session, device_id: str) -> None:
    if session.get(Device, device_id) is not None:
        raise ApiError(ErrorCode.CONFLICT, "This device id is taken.", {"field": "device_id"})


_HMAC, _SHA256 = "hmac", "sha256"  # Invite.lookup_scheme


def _open_invite(session: Session, *, key: ServerKey, lookup: str, now: float) -> Invite | None:
    """The unused, unexpired invite of `lookup`: by its keyed hash, or by its plain SHA-256 when
    an older server stored it so (each row says which: a hash of one scheme never matches the other)."""
    lookup = lookup.strip().upper()
    keyed, plain = key.lookup_hash(lookup), sha256_hex(lookup)
    return session.exec(
        select(Invite).where(
            ((col(Invite.lookup_hash) == keyed) & (col(Invite.lookup_scheme) == _HMAC))
            | ((col(Invite.lookup_hash) == plain) & (col(Invite.lookup_scheme) == _SHA256)),
            col(Invite.used_at).is_(None),
            col(Invite.expires_at) > now,
        )
    ).first()


def _founding_proof_ok(
    invite: Invite, *, key: ServerKey, public_key: bytes, signing_key: bytes | None, device_id: str, proof: bytes
) -> bool:
    """Whether the joining device holds the founding code's secret. A founding invite without a
    seal (made by a server before the secret was kept) founds nothing: its lookup alone would."""
    if invite.founding_seal is None:
        log.warning("founding code of team=%s has no sealed secret: make the team again", invite.team_id)
        return False
    secret = key.open_founding(invite.founding_seal, lookup_hash=invite.lookup_hash)
    if secret is None:  # sealed under another server key
        log.warning("founding code of team=%s is sealed under another server key", invite.team_id)
        return False
    return enrollment_proof_ok(secret, public_key, signing_key, device_id, proof)


def join_team(
    session: Session,
    *,
    key: ServerKey,
    lookup: str,
    device_id: str,
    name: str,
    public_key: bytes,
    proof: bytes,
    token_hash: str,
    now: float,
    signing_key: bytes | None = None,
) -> tuple[Team, Device, bool] | None:
    """Claim the code's invite (once, while unexpired) and enroll the device: pending, or active
    when the code is the operator's founding code and the proof is under its secret. None when
    the code is unknown, used or expired, or a founding proof is wrong (the code stays open)."""
    lookup = lookup.strip().upper()
    found = _open_invite(session, key=key, lookup=lookup, now=now)
    if found is None:
        return None
    if found.founding and not _founding_proof_ok(
        found, key=key, public_key=public_key, signing_key=signing_key, device_id=device_id, proof=proof
    ):
        return None
    lookup_hash = found.lookup_hash
    # One atomic claim: of two concurrent joins with the same code, exactly one updates the row.
    # The founding secret goes with it: once used it opens nothing, so it is not kept.
    claimed = session.exec(
        update(Invite)
        .where(
            col(Invite.lookup_hash) == lookup_hash,
            col(Invite.used_at).is_(None),
            col(Invite.expires_at) > now,
        )
        .values(used_at=now, used_by=device_id, founding_seal=None)
    )
    if claimed.rowcount != 1:
        return None
    session.expire(found)
    invite = session.get(Invite, lookup_hash)
    assert invite is not None
    _ensure_new_device(session, device_id)
    status = DeviceStatus.ACTIVE if invite.founding else DeviceStatus.PENDING
    device = Device(
        id=device_id,
        team_id=invite.team_id,
        name=name,
        role=invite.role,
        status=status.value,
        public_key=public_key,
        signing_key=signing_key,
        proof=proof,
        invite_lookup=lookup,
        token_hash=token_hash,
        joined_at=now,
        last_seen=now,
    )
    session.add(device)
    session.flush()
    return get_team(session, team_id=invite.team_id), device, invite.founding


def recover_team(
    session: Session,
    *,
    recovery_lookup_hash: str,
    device_id: str,
    name: str,
    public_key: bytes,
    token_hash: str,
    now: float,
) -> tuple[Team, Device, list[WrappedKeyRow]] | None:
    """Enroll a new active coordinator for the team whose recovery lookup matches, and return the
    team keys wrapped under the recovery key. None when no team matches."""
    team = session.exec(select(Team).where(Team.recovery_lookup_hash == recovery_lookup_hash)).first()
    if team is None:
        return None
    _ensure_new_device(session, device_id)
    device = Device(
        id=device_id,
        team_id=team.id,
        name=name,
        role=Role.COORDINATOR.value,
        status=DeviceStatus.ACTIVE.value,
        public_key=public_key,
        proof=None,
        invite_lookup=None,
        token_hash=token_hash,
        joined_at=now,
        last_seen=now,
    )
    session.add(device)
    session.flush()
    keys = session.exec(
        select(WrappedKeyRow)
        .where(WrappedKeyRow.team_id == team.id, col(WrappedKeyRow.device_id).is_(None))
        .order_by(col(WrappedKeyRow.epoch))
    ).all()
    return team, device, list(keys)


# --- devices ----------------------------------------------------------------------------------


_DEVICE = Device.__table__.c  # type: ignore[attr-defined]
_OP = Op.__table__.c  # type: ignore[attr-defined]
_PURGE = Purge.__table__.c  # type: ignore[attr-defined]
_TEAM_TABLE = Team.__table__  # type: ignore[attr-defined]
_TEAM = _TEAM_TABLE.c
_OP_TABLE = Op.__table__  # type: ignore[attr-defined]
_OP_COLUMNS = ("team_id", "seq", "op_id", "device_id", "device_seq", "record_id", "key_epoch", "payload", "size",
               "received_at", "batch_id")
# positional parameters of the drivers the server runs on (sqlite3, psycopg); another driver
# fails here with a KeyError, not with wrong SQL
_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}

_INSERT_OPS = f"INSERT INTO op ({', '.join(_OP_COLUMNS)}) VALUES ({{marks}})"

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


def count_open_invites(session: Session, *, team_id: str, now: float) -> int:
    return session.exec(
        select(func.count())
        .select_from(Invite)
        .where(Invite.team_id == team_id, col(Invite.used_at).is_(None), col(Invite.expires_at) > now)
    ).one()


def create_invite(
    session: Session, *, key: ServerKey, team_id: str, lookup: str, role: Role, expires_at: float, now: float
) -> Invite:
    """A coordinator's invite: its lookup stored keyed (the secret half never reaches the server)."""
    lookup_hash = key.lookup_hash(lookup)
    if session.get(Invite, lookup_hash) is not None or _open_invite(session, key=key, lookup=lookup, now=now):
        raise ApiError(
            ErrorCode.CONFLICT, "This code lookup is taken: generate a new code.", {"field": "lookup"}
        )
    invite = Invite(
        lookup_hash=lookup_hash, team_id=team_id, role=role.value, created_at=now, expires_at=expires_at,
        lookup_scheme=_HMAC,
    )
    session.add(invite)
    session.flush()
    return invite


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


# --- keys -------------------------------------------------------------------------------------


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


# --- the log: push, pull, purge ---------------------------------------------------------------


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
    mark = _PLACEHOLDER[connection.dialect.paramstyle]

    def marks(n: int) -> str:
        return ", ".join([mark] * n)

    op_ids = sorted({op.op_id for op in ops})
    known_ops: dict[str, str] = {}
    for chunk in _chunks(op_ids):
        known_ops.update(
            connection.exec_driver_sql(f"SELECT op_id, team_id FROM op WHERE op_id IN ({marks(len(chunk))})",
                                       tuple(chunk)).all()
        )
    if any(owner != team_id for owner in known_ops.values()):
        raise ApiError(ErrorCode.CONFLICT, "An op id of this push is taken.", {"field": "ops"})
    seqs = sorted({op.device_seq for op in ops})
    taken_seqs: dict[int, str] = {}
    for start in range(0, len(seqs), _CHUNK):
        chunk_seqs = seqs[start : start + _CHUNK]
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
        for chunk in _chunks(record_ids):
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
    mark = _PLACEHOLDER[connection.dialect.paramstyle]
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
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
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
    for chunk in _chunks(unique_ids):
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
    _drop_checkpoints_before(session, team_id=team_id, seq=team.next_seq)
    session.add(team)
    session.flush()
    return deleted, team.next_seq - 1


# --- checkpoints ------------------------------------------------------------------------------

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


def _drop_checkpoints_before(session: Session, *, team_id: str, seq: int) -> int:
    """An erasure at log position `seq` makes every checkpoint made before it unusable: a new
    device must never get the erased record from one."""
    ids = session.exec(select(CheckpointRow.id).where(CheckpointRow.team_id == team_id,
                                                      CheckpointRow.seq < seq)).all()
    for checkpoint_id in ids:
        _drop_checkpoint(session, checkpoint_id)
    return len(ids)
