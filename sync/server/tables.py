"""The server's tables (SQLModel), on their own metadata so they never meet the client's tables.

What the server keeps is exactly the blind metadata of DESIGN.md: team id, device id, device
sequence, op id, record id, key epoch, byte size, arrival time, and opaque ciphertext (sealed ops,
wrapped keys). The only free text is the team name (chosen by the operator) and each device's name
(shown to the coordinator). Secrets are stored only as digests: tokens and the recovery lookup as
SHA-256 hex (256 and 160 random bits), code lookups as HMAC-SHA256 hex under the server key
(`keys.py`; rows of older servers as SHA-256, named by `lookup_scheme`), and the founding code's
secret sealed under the server key while the code is open. This module must never hold SQL statements or business rules (see `crud/`)
and never create tables: the schema is built by the named migrations in `db.py`, and a test checks
that the two agree.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, LargeBinary, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = ["ServerTable", "Team", "Device", "Invite", "WrappedKeyRow", "Op", "Purge", "JoinFailure", "Batch",
           "RosterRow"]


class ServerTable(SQLModel, registry=registry()):
    """Base of the server's tables: a metadata of its own (the client's SQLModel tables live elsewhere)."""


class Team(ServerTable, table=True):
    __tablename__ = "team"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    created_at: float
    next_seq: int = 1  # the sequence number the next log entry (op or purge) gets
    current_epoch: int = 1
    recovery_lookup_hash: str | None = Field(default=None, max_length=64, unique=True)


class Device(ServerTable, table=True):
    __tablename__ = "device"

    id: str = Field(primary_key=True, max_length=32)
    team_id: str = Field(foreign_key="team.id", index=True, max_length=32)
    name: str = Field(max_length=80)
    role: str = Field(max_length=16)
    status: str = Field(max_length=16)
    public_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    proof: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    invite_lookup: str | None = Field(default=None, max_length=64)
    token_hash: str = Field(max_length=64, unique=True)
    joined_at: float
    last_seen: float | None = None
    signing_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    announce: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class Invite(ServerTable, table=True):
    __tablename__ = "invite"

    lookup_hash: str = Field(primary_key=True, max_length=64)
    team_id: str = Field(foreign_key="team.id", index=True, max_length=32)
    role: str = Field(max_length=16)
    founding: bool = False
    created_at: float
    expires_at: float
    used_at: float | None = None
    used_by: str | None = Field(default=None, max_length=32)
    # "hmac": lookup_hash is HMAC-SHA256 under the server key; "sha256": a row of an older server
    lookup_scheme: str = Field(default="hmac", max_length=16)
    # The founding code's secret sealed under the server key (keys.py), until the code is used.
    founding_seal: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class WrappedKeyRow(ServerTable, table=True):
    """A team key epoch wrapped for one device, or for the recovery key when `device_id` is None."""

    __tablename__ = "wrapped_key"
    __table_args__ = (UniqueConstraint("team_id", "epoch", "device_id", name="uq_wrapped_key"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(foreign_key="team.id", index=True, max_length=32)
    epoch: int
    device_id: str | None = Field(default=None, foreign_key="device.id", max_length=32)
    blob: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: float


class Op(ServerTable, table=True):
    """One sealed op in a team's log. (team_id, seq) is the primary key and the pull index."""

    __tablename__ = "op"
    __table_args__ = (
        UniqueConstraint("team_id", "device_id", "device_seq", name="uq_op_device_seq"),
        Index("ix_op_team_record", "team_id", "record_id"),
    )

    team_id: str = Field(foreign_key="team.id", primary_key=True, max_length=32)
    seq: int = Field(primary_key=True)
    op_id: str = Field(max_length=32, unique=True)
    device_id: str = Field(foreign_key="device.id", max_length=32)
    device_seq: int
    record_id: str = Field(max_length=32)
    key_epoch: int
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    size: int
    received_at: float
    batch_id: int | None = None  # the signed push it came in


class Batch(ServerTable, table=True):
    """A signed push: the device's signature over its ops' digests (kept for pullers to check)."""

    __tablename__ = "batch"
    __table_args__ = (Index("ix_batch_team_pos", "team_id", "pos"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(foreign_key="team.id", max_length=32)
    device_id: str = Field(foreign_key="device.id", max_length=32)
    sig: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    digests: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    at: float
    # 1.2: its place in the log, and the device's statement (range, entries, signature)
    pos: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    entries: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    sig2: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class CheckpointRow(ServerTable, table=True):
    """A coordinator's sealed checkpoint of the team's state up to `seq`: opaque here."""

    __tablename__ = "checkpoint"
    __table_args__ = (Index("ix_checkpoint_team", "team_id", "seq"),)

    id: str = Field(primary_key=True, max_length=32)
    team_id: str = Field(foreign_key="team.id", max_length=32)
    seq: int
    epoch: int
    parts: int
    manifest: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    size: int
    created_at: float
    complete: bool = False


class CheckpointPartRow(ServerTable, table=True):
    __tablename__ = "checkpoint_part"

    checkpoint_id: str = Field(foreign_key="checkpoint.id", primary_key=True, max_length=32)
    n: int = Field(primary_key=True)
    blob: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class RosterRow(ServerTable, table=True):
    """The coordinator's signed statement of one device (admitted, its keys, revoked): opaque here."""

    __tablename__ = "roster"

    team_id: str = Field(foreign_key="team.id", primary_key=True, max_length=32)
    device_id: str = Field(foreign_key="device.id", primary_key=True, max_length=32)
    entry: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    updated_at: float


class Purge(ServerTable, table=True):
    """An erased record id, with its place in the team's log."""

    __tablename__ = "purge"
    __table_args__ = (Index("ix_purge_team_record", "team_id", "record_id"),)

    team_id: str = Field(foreign_key="team.id", primary_key=True, max_length=32)
    seq: int = Field(primary_key=True)
    record_id: str = Field(max_length=32)
    at: float
    sig: bytes | None = None  # the coordinator's signature of the erasure, opaque here


class JoinFailure(ServerTable, table=True):
    """A failed code lookup (join or recover), kept for the throttle window only. `address` is
    the client's IPv4 address, or its IPv6 /64 network."""

    __tablename__ = "join_failure"
    __table_args__ = (Index("ix_join_failure_address_at", "address", "at"), Index("ix_join_failure_at", "at"))

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(max_length=64)
    at: float
