"""Teams and enrolment: a team and its founding code, invites, joining with a code, recovering
with the recovery code.

It owns claiming a code once (the founding code only with a proof under its secret: `keys.py` says
how the lookup is keyed and the secret sealed) and enrolling the device. It must never keep a used
founding secret, nor log a code, a hash or a device name.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from sync.protocol import (
    DeviceStatus,
    ErrorCode,
    Role,
    enrollment_proof_ok,
)
from sync.server.crud.base import sha256_hex
from sync.server.errors import ApiError
from sync.server.keys import ServerKey
from sync.server.tables import (
    Device,
    Invite,
    Team,
    WrappedKeyRow,
)

__all__ = ["create_team", "get_team", "join_team", "recover_team", "count_open_invites", "create_invite"]

log = logging.getLogger("outreach.server")


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



# --- invites ----------------------------------------------------------------------------------


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
