"""The wire protocol between an Outreach device and the central server: one module for both ends.

It owns the versioned request and response schemas, the stable error codes and the small encoding
helpers (base64 for sealed bytes, the enrollment code format). It must never hold keys, open sealed
payloads or import anything from the client or the server: both import it, never each other.
The human-readable specification is `sync/PROTOCOL.md`; a test keeps the two in step.

Every request carries the header ``Outreach-Protocol: <major>.<minor>``. A server answers an unknown
major version with 400 and the error code ``unsupported_protocol`` listing what it supports.
Errors always have the body ``{"error": {"code": ..., "message": ..., "detail": ...}}``.

One module by design, though it is longer than 500 lines: it is the contract of the wire, and both
ends must import exactly the same one (evolu's `Protocol.ts` is the model). Split in two, each end
could come to import only its half and the halves drift apart; kept whole, a reader holds the
protocol in one file beside `PROTOCOL.md`, in the order of that page (versions and limits, errors,
roles, encodings and the enrollment code, then the messages of each route: enrolment, devices and
keys, push and its signed statement, pull, purge, roster, checkpoints).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Literal, NotRequired

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator, with_config
from typing_extensions import TypedDict

__all__ = [
    "PROTOCOL_HEADER",
    "PROTOCOL_VERSION",
    "SUPPORTED_MAJORS",
    "MAX_BODY_BYTES",
    "MAX_PUSH_OPS",
    "MAX_PUSH_BYTES",
    "MAX_PULL_LIMIT",
    "MAX_WAIT_SECONDS",
    "MAX_PAYLOAD_BYTES",
    "MAX_INT",
    "B64_PATTERN",
    "NONCE_PATTERN",
    "new_nonce",
    "ErrorCode",
    "ErrorBody",
    "ErrorResponse",
    "Role",
    "DeviceStatus",
    "EnrollmentCode",
    "enrollment_proof_ok",
    "b64e",
    "b64d",
    "parse_protocol_header",
    "HealthResponse",
    "JoinRequest",
    "JoinResponse",
    "RecoverRequest",
    "RecoverResponse",
    "InviteRequest",
    "InviteResponse",
    "DevicePublic",
    "DeviceList",
    "WrappedKey",
    "DeviceKey",
    "KeysUpload",
    "KeysResponse",
    "RecoveryUpload",
    "MeResponse",
    "OpIn",
    "PushRequest",
    "encode_push",
    "PUSH_REQUEST",
    "encode_pull",
    "PushResponse",
    "OpOut",
    "PurgeOut",
    "PullResponse",
    "PurgeRequest",
    "PurgeResponse",
    "RevokeResponse",
    "BatchOut",
    "RosterEntryOut",
    "RosterResponse",
    "RosterUpload",
    "SigningKeyAnnounce",
    "CheckpointIn",
    "CheckpointPartIn",
    "CheckpointPartResponse",
    "CheckpointOut",
    "CheckpointList",
    "MAX_CHECKPOINT_PART_BYTES",
    "MAX_CHECKPOINT_PARTS",
    "op_digest",
    "batch_message",
    "statement_message",
    "pack_entries",
    "unpack_entries",
    "Entry",
    "ENTRY_BYTES",
    "DIGEST_BYTES",
]

PROTOCOL_HEADER = "Outreach-Protocol"
PROTOCOL_VERSION = "1.3"
SUPPORTED_MAJORS = (1,)

MAX_BODY_BYTES = 2 * 1024 * 1024  # a push of 256 KB sealed payloads, base64 and JSON, fits well
MAX_PUSH_OPS = 500
MAX_PUSH_BYTES = 256 * 1024  # sum of sealed payload bytes in one push
MAX_PULL_LIMIT = 5000
MAX_WAIT_SECONDS = 30.0
MAX_PAYLOAD_BYTES = 64 * 1024  # one sealed op
# The largest integer on the wire: a signed 64-bit one, what both server databases store (BIGINT).
# Every integer field and query parameter is bounded by it, so a bigger one is a 422, not a fault.
MAX_INT = 2**63 - 1


class ErrorCode(StrEnum):
    """Stable error codes. Clients switch on these, never on messages."""

    UNSUPPORTED_PROTOCOL = "unsupported_protocol"  # 400
    MALFORMED = "malformed"  # 422: body or query failed validation; detail names the field
    TOO_LARGE = "too_large"  # 413
    UNAUTHENTICATED = "unauthenticated"  # 401: no or unknown token
    DEVICE_REVOKED = "device_revoked"  # 403: wipe local data
    DEVICE_PENDING = "device_pending"  # 403: the coordinator has not let this device in yet
    FORBIDDEN = "forbidden"  # 403: the role may not do this
    NOT_FOUND = "not_found"  # 404
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405: the path exists; the `Allow` header lists its methods
    CODE_INVALID = "code_invalid"  # 400: unknown, used or expired enrollment code
    THROTTLED = "throttled"  # 429: too many failed code lookups; detail.retry_after seconds, detail.scope, Retry-After
    STALE_EPOCH = "stale_epoch"  # 409: ops sealed under an old key epoch; detail.current_epoch
    UNKNOWN_EPOCH = "unknown_epoch"  # 409: an epoch the team never had
    CONFLICT = "conflict"  # 409: e.g. device id taken, epoch already uploaded
    INTERNAL = "internal"  # 500
    UNAVAILABLE = "unavailable"  # 503: the server cannot reach its database for now; Retry-After


class ErrorBody(BaseModel):
    code: ErrorCode
    message: str
    detail: dict[str, object] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorBody


class Role(StrEnum):
    COORDINATOR = "coordinator"
    WORKER = "worker"


class DeviceStatus(StrEnum):
    PENDING = "pending"  # joined with a code; waits for the coordinator to check its proof
    ACTIVE = "active"  # has a wrapped team key
    REVOKED = "revoked"
    REJECTED = "rejected"  # the coordinator found its proof invalid


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64e(data: bytes) -> str:
    """URL-safe base64 without padding: the encoding of every byte string on the wire.
    (`base64.urlsafe_b64encode` without its layers: a pull page encodes a thousand.)"""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_PAD = ("", "", "==", "=")


def b64d(text: str) -> bytes:
    """Inverse of `b64e`; raises ValueError on anything that is not such base64. (What
    `base64.urlsafe_b64decode` does, without its layers: a pull decodes a thousand per page.)"""
    if not isinstance(text, str):
        raise ValueError("expected a base64 string")
    try:
        return binascii.a2b_base64((text + _PAD[len(text) % 4]).encode("ascii").translate(_FROM_URLSAFE))
    except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError; non-ASCII text too
        raise ValueError("not valid base64") from exc


def parse_protocol_header(value: str | None) -> tuple[int, int] | None:
    """``"1.0"`` -> ``(1, 0)``; None when absent or unreadable."""
    if not value:
        return None
    major, _, minor = value.strip().partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return None


_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud over a phone


class EnrollmentCode:
    """A one-time code ``LOOKUP-SECRET``. The lookup half is sent to the server; the secret half is
    never sent: it keys the joining device's proof ``HMAC-SHA256(secret, public key | device id)``
    (`enrollment_proof_ok`). The server knows the secret of the operator's founding code only (its
    CLI made it) and checks that proof; a coordinator's device checks the proofs of its invites.

    The lookup is 8 characters (~39 bits, guessing is throttled server-side); the secret is
    26 characters (~128 bits). Both are upper case without look-alike characters; parsing is
    forgiving about case, spaces and dashes inside the secret.
    """

    LOOKUP_LEN = 8
    SECRET_LEN = 26

    def __init__(self, lookup: str, secret: str) -> None:
        self.lookup = lookup
        self.secret = secret

    @classmethod
    def generate(cls) -> EnrollmentCode:
        pick = lambda n: "".join(secrets.choice(_CODE_ALPHABET) for _ in range(n))  # noqa: E731
        return cls(pick(cls.LOOKUP_LEN), pick(cls.SECRET_LEN))

    @classmethod
    def parse(cls, text: str) -> EnrollmentCode:
        cleaned = "".join(text.split()).upper()
        lookup, sep, rest = cleaned.partition("-")
        secret = rest.replace("-", "")
        if (
            not sep
            or len(lookup) != cls.LOOKUP_LEN
            or len(secret) != cls.SECRET_LEN
            or any(c not in _CODE_ALPHABET for c in lookup + secret)
        ):
            raise ValueError("not an enrollment code (expected XXXXXXXX-XXXXXX-XXXXXX-...)")
        return cls(lookup, secret)

    def __str__(self) -> str:
        s = self.secret
        groups = [s[i : i + 6] for i in range(0, len(s), 6)]
        return "-".join([self.lookup, *groups])

    @property
    def secret_bytes(self) -> bytes:
        return self.secret.encode("ascii")


def enrollment_proof_ok(
    secret: bytes, public_key: bytes, signing_key: bytes | None, device_id: str, proof: bytes
) -> bool:
    """Whether `proof` is a joining device's ``HMAC-SHA256(secret, public key ‖ signing key ‖ device
    id)`` (no signing key from a 1.0 device), as `models.storage.vault.make_proof` makes it. The server
    checks it for the founding code only, whose secret its own CLI made; a coordinator's device
    checks the others."""
    message = public_key + (signing_key or b"") + device_id.encode("ascii")
    return hmac.compare_digest(hmac.new(secret, message, hashlib.sha256).digest(), proof)


# ---------------------------------------------------------------------------------------------
# Schemas. `extra="forbid"` so that a misspelled field is a 422 naming it, not silently ignored.

_HEX_ID = re.compile(r"[0-9a-f]{32}")
_Id = Annotated[str, Field(min_length=32, max_length=32, pattern=r"^[0-9a-f]{32}$")]  # uuid4().hex
# `b64e` output: URL-safe base64 without padding. Only whole groups of 4 and a last group of 2 or 3
# characters: a last group of 1 is no base64 (`b64d` refuses it), so the schema refuses it too.
B64_PATTERN = r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$"
_B64 = Annotated[str, Field(min_length=2, max_length=MAX_PAYLOAD_BYTES * 2, pattern=B64_PATTERN)]
# Fixed sizes: 43 characters are 32 bytes, 86 are 64 (a length the pattern states, so that a
# generator of the schema need not filter for it).
_Key32 = Annotated[str, Field(min_length=43, max_length=43, pattern=r"^[A-Za-z0-9_-]{43}$")]  # a 32-byte key
_Sig64 = Annotated[str, Field(min_length=86, max_length=86, pattern=r"^[A-Za-z0-9_-]{86}$")]  # a signature
_Count = Annotated[int, Field(ge=0, le=MAX_INT)]  # a sequence, cursor, count or id
_Positive = Annotated[int, Field(ge=1, le=MAX_INT)]  # a key epoch or a device sequence: both start at 1
# 1.3: a pull's nonce (16 random bytes, `b64e`), which the page echoes (`PullResponse.nonce`)
NONCE_PATTERN = r"^[A-Za-z0-9_-]{22}$"
_NONCE = re.compile(NONCE_PATTERN)
_Nonce = Annotated[str, Field(min_length=22, max_length=22, pattern=NONCE_PATTERN)]


def new_nonce() -> str:
    """A fresh nonce for one pull request (`PullResponse.nonce`)."""
    return b64e(secrets.token_bytes(16))


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthResponse(_Msg):
    status: Literal["ok"] = "ok"
    protocol: str = PROTOCOL_VERSION
    supported_majors: list[_Count] = Field(default_factory=lambda: list(SUPPORTED_MAJORS))
    database: str


class JoinRequest(_Msg):
    lookup: Annotated[str, Field(min_length=1, max_length=64)]
    device_id: _Id
    device_name: Annotated[str, Field(min_length=1, max_length=80)]
    public_key: _Key32  # raw X25519 public key, 32 bytes
    # HMAC-SHA256(secret half of the code, public key | signing key (1.1, when sent) | device id)
    proof: _B64
    signing_key: _Key32 | None = None  # 1.1: the device's Ed25519 verification key, 32 bytes


class JoinResponse(_Msg):
    token: str
    team_id: _Id
    team_name: str
    device_id: _Id
    role: Role
    status: DeviceStatus
    # True when this device is the team's first coordinator: it creates the team key itself.
    founding: bool


class RecoverRequest(_Msg):
    recovery_lookup: _B64  # derived from the recovery code; the code itself never leaves the device
    device_id: _Id
    device_name: Annotated[str, Field(min_length=1, max_length=80)]
    public_key: _Key32


class RecoverResponse(_Msg):
    token: str
    team_id: _Id
    team_name: str
    device_id: _Id
    role: Role
    # Team keys wrapped under the recovery key, by epoch.
    recovery_keys: list[WrappedKey]


class InviteRequest(_Msg):
    lookup: Annotated[str, Field(min_length=8, max_length=8)]
    role: Role = Role.WORKER
    expires_in_seconds: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 24 * 3600


class InviteResponse(_Msg):
    lookup: str
    role: Role
    expires_at: float


class DevicePublic(_Msg):
    device_id: _Id
    name: str
    role: Role
    status: DeviceStatus
    public_key: _Key32  # raw X25519 public key, 32 bytes: a list that says otherwise breaks the protocol
    proof: str
    invite_lookup: str | None
    joined_at: float
    last_seen: float | None
    key_epoch: _Positive | None  # the newest epoch wrapped for it
    signing_key: str | None = None  # 1.1: its Ed25519 key, from its join (proof covers it) or its announce
    announce: str | None = None  # 1.1: a device of the previous version's announce of its signing key


class DeviceList(_Msg):
    devices: list[DevicePublic]
    current_epoch: _Positive
    invites_pending: _Count


class WrappedKey(_Msg):
    """A team key epoch wrapped for a device (`device_id`), or under the recovery key in the
    recovery messages (no `device_id` there). `/v1/keys` takes only the first: `DeviceKey`."""

    epoch: _Positive
    device_id: _Id | None = None
    wrapped: _B64


class DeviceKey(_Msg):
    """`WrappedKey` as `/v1/keys` takes it: `device_id` required. A `WrappedKey` that names its
    device validates as one (``from_attributes``), so `KeysUpload` takes either."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    epoch: _Positive
    device_id: _Id
    wrapped: _B64


_DeviceKeys = Annotated[list[DeviceKey], Field(max_length=1000)]
_DEVICE_KEYS = TypeAdapter(_DeviceKeys)


def _each_names_its_device(keys: object) -> object:
    # The schema (`json_schema_input_type`) is `DeviceKey`'s; this makes validation say the same,
    # naming the field (`keys.3.device_id`). The keys stay `WrappedKey`s for the callers.
    _DEVICE_KEYS.validate_python(keys)
    return keys


class KeysUpload(_Msg):
    """The coordinator wraps a team key epoch for devices. A new epoch (current + 1) is started
    by uploading it; an existing epoch may be wrapped for more (newly verified) devices."""

    epoch: _Positive
    keys: Annotated[
        list[WrappedKey],
        Field(max_length=1000),
        BeforeValidator(_each_names_its_device, json_schema_input_type=_DeviceKeys),
    ]
    reject: Annotated[list[_Id], Field(max_length=1000)] = Field(default_factory=list)  # proof failed


class KeysResponse(_Msg):
    current_epoch: _Positive
    keys: list[WrappedKey]  # the calling device's wrapped keys, every epoch


class RecoveryUpload(_Msg):
    recovery_lookup: _B64
    keys: Annotated[list[WrappedKey], Field(max_length=1000)]  # under the recovery key: no device_id


class MeResponse(_Msg):
    device_id: _Id
    team_id: _Id
    team_name: str
    role: Role
    status: DeviceStatus
    current_epoch: _Positive


class OpIn(_Msg):
    op_id: _Id
    device_seq: _Positive
    record_id: _Id
    key_epoch: _Positive
    payload: _B64


class PushRequest(_Msg):
    ops: Annotated[list[OpIn], Field(min_length=1, max_length=MAX_PUSH_OPS)]
    # 1.1: the pushing device's Ed25519 signature of `batch_message` over the ops' `op_digest`s
    sig: _Sig64 | None = None
    # 1.2: the first of the device's sequence this push accounts for (`statement_message`), and
    # the device's signature of that statement
    first: _Positive | None = None
    sig2: _Sig64 | None = None


@with_config(ConfigDict(extra="forbid"))
class OpInDict(TypedDict):
    """`OpIn` as a dict: the same fields and checks."""

    op_id: _Id
    device_seq: _Positive
    record_id: _Id
    key_epoch: _Positive
    payload: _B64


@with_config(ConfigDict(extra="forbid"))
class PushRequestDict(TypedDict):
    ops: Annotated[list[OpInDict], Field(min_length=1, max_length=MAX_PUSH_OPS)]
    sig: NotRequired[_Sig64 | None]
    first: NotRequired[_Positive | None]
    sig2: NotRequired[_Sig64 | None]


# The server checks a push with this: `PushRequest`'s schema, validated into dicts (a model per op
# cost 2.3 ms of a 500-op push, dicts 1.35 ms). A test keeps the two schemas the same.
PUSH_REQUEST = TypeAdapter(PushRequestDict)


DIGEST_BYTES = 16  # SHA-256, truncated: 128-bit second-preimage resistance, as strong as the signature


def op_digest(payload: bytes) -> bytes:
    """What a device's batch signature covers of one op: its sealed payload's SHA-256, first 16
    bytes. The op's place (team, device, sequence, op id, record, epoch) needs no hashing here:
    the payload's AES-GCM associated data binds it, so an op moved to another place does not open,
    and a batch names its device. The same function on both ends of the wire."""
    return hashlib.sha256(payload).digest()[:DIGEST_BYTES]


def batch_message(team_id: str, device_id: str, digests: bytes) -> bytes:
    """The message a device signs for a push: its ops' digests, in order."""
    return f"outreach/v2/batch\n{team_id}|{device_id}|".encode("ascii") + digests


ENTRY_BYTES = 8 + 16 + DIGEST_BYTES  # sequence (big-endian), record id (16 bytes of its hex), digest
Entry = tuple[int, str, bytes]  # (device sequence, record id, op digest)


def pack_entries(entries: Iterable[Entry]) -> bytes:
    """Ops as a statement names them, in order of sequence."""
    return b"".join(seq.to_bytes(8, "big") + bytes.fromhex(rid) + digest
                    for seq, rid, digest in sorted(entries, key=lambda e: e[0]))


def unpack_entries(blob: bytes) -> list[Entry]:
    """`pack_entries` undone; ValueError when `blob` is not whole entries."""
    if len(blob) % ENTRY_BYTES:
        raise ValueError("statement entries: not whole entries")
    return [(int.from_bytes(blob[i:i + 8], "big"), blob[i + 8:i + 24].hex(), blob[i + 24:i + ENTRY_BYTES])
            for i in range(0, len(blob), ENTRY_BYTES)]


def statement_message(team_id: str, device_id: str, first: int, last: int, entries: bytes) -> bytes:
    """The message a device signs for a push from protocol 1.2 on: the range of its own sequence
    the push accounts for, `first..last`, and each op it holds as (sequence, record id, digest)
    (`pack_entries`, in order of sequence). A sequence in the range that no entry names is one the
    device says it never sent; a puller can thus tell a withheld op from an erased one."""
    return f"outreach/v3/statement\n{team_id}|{device_id}|{first:d}|{last:d}|".encode("ascii") + entries


def encode_push(ops: Sequence[tuple[int, str, str, int, bytes]], sig: bytes | None = None,
                first: int | None = None, sig2: bytes | None = None) -> bytes:
    """The JSON of `PushRequest` for ops given as (device_seq, op_id, record_id, key_epoch, sealed
    payload), byte for byte what `PushRequest(...).model_dump_json()` gives, without building a
    model per op (a push is up to 500 ops; the models cost more than the rest of the encoding).
    The payload is `b64e` output and the ids are checked to be hex ids: nothing needs escaping.
    The server validates every field as usual."""
    for _, op_id, rid, _, _ in ops:
        if not (_HEX_ID.fullmatch(op_id) and _HEX_ID.fullmatch(rid)):
            raise ValueError("op and record ids must be 32 lowercase hex digits")
    parts = [
        f'{{"op_id":"{op_id}","device_seq":{seq:d},"record_id":"{rid}","key_epoch":{epoch:d},'
        f'"payload":"{b64e(payload)}"}}'
        for seq, op_id, rid, epoch, payload in ops
    ]
    signed = f'"{b64e(sig)}"' if sig is not None else "null"
    stated = (f',"first":{first:d},"sig2":"{b64e(sig2)}"' if first is not None and sig2 is not None
              else ',"first":null,"sig2":null')
    return ('{"ops":[' + ",".join(parts) + '],"sig":' + signed + stated + "}").encode("ascii")


class PushResponse(_Msg):
    # Every op of the request is now stored (or was already, or its record was purged).
    acked_through: _Count  # the highest device_seq of the request
    accepted: _Count  # newly stored
    duplicates: _Count
    purged: _Count  # dropped because the record id was erased
    last_seq: _Count  # the team log's sequence after this push
    purged_records: list[_Id] = Field(default_factory=list)  # 1.1: the erased record ids of those ops


class OpOut(_Msg):
    seq: _Count
    op_id: _Id
    device_id: _Id
    device_seq: _Positive
    record_id: _Id
    key_epoch: _Positive
    payload: str
    batch: _Count | None = None  # 1.1: the signed push it came in (`PullResponse.batches`)


class BatchOut(_Msg):
    """A signed push, as far as a puller needs it to check its ops: the pushing device, its
    signature and the digests of every op it held, in order (`DIGEST_BYTES` each). From 1.2 also
    its statement (`statement_message`): its place in the log, the range, the signature, and the
    entries of its ops that are not on this page (`pack_entries`: held earlier, erased, or on
    another page); the puller has the others from the page's ops."""

    id: _Count
    device_id: _Id
    sig: str
    digests: str
    pos: _Count | None = None
    first: _Positive | None = None
    last: _Positive | None = None
    sig2: str | None = None
    absent: str | None = None


class PurgeOut(_Msg):
    seq: _Count
    record_id: _Id  # erased: drop every local copy and every later op of it
    sig: str | None = None  # the coordinator's signature of the erasure (1.1); devices ignore a purge without one


class PullResponse(_Msg):
    ops: list[OpOut]
    purges: list[PurgeOut] = Field(default_factory=list)
    next: _Count  # the cursor to send as `since` next time
    more: bool
    current_epoch: _Positive
    batches: list[BatchOut] = Field(default_factory=list)  # 1.1: the signed pushes the page's ops came in
    # 1.2: the highest sequence of the pulling device the server holds (its ops, and what its signed
    # statements covered): lower than what the server acknowledged to it means the server lost ops
    # (a restore from an older backup), which the device sends again
    held_through: _Count | None = None
    # 1.3: the request's `nonce`, echoed: this page answers that request, and its `held_through`
    # is the server's word now on the device that sent it (a device takes it from no other page)
    nonce: _Nonce | None = None


def encode_pull(ops: Iterable[tuple[int, str, str, int, str, int, bytes] | tuple[int, str, str, int, str, int, bytes,
                                                                                     int | None]],
                purges: Iterable[tuple[int, str] | tuple[int, str, bytes | None]],
                next_: int, more: bool, current_epoch: int,
                batches: Iterable[tuple[int, str, bytes, bytes]
                                  | tuple[int, str, bytes, bytes, int | None, int | None, int | None, bytes | None,
                                          bytes | None]] = (),
                held_through: int | None = None, nonce: str | None = None) -> bytes:
    """The JSON of `PullResponse` for ops given as (seq, op id, device id, device seq, record id,
    key epoch, sealed payload) and purges as (seq, record id[, signature]): byte for byte what
    `PullResponse(...).model_dump_json()` gives, without a model per op. The server's own log
    rows: ids were checked to be hex when pushed, payloads are `b64e` output; `nonce` is checked
    here (it comes from the request)."""
    if nonce is not None and not _NONCE.fullmatch(nonce):
        raise ValueError("not a nonce")
    op_parts = [
        f'{{"seq":{op[0]:d},"op_id":"{op[1]}","device_id":"{op[2]}","device_seq":{op[3]:d},"record_id":"{op[4]}",'
        f'"key_epoch":{op[5]:d},"payload":"{b64e(op[6])}","batch":'
        + (f"{op[7]:d}" if len(op) > 7 and op[7] is not None else "null") + "}"  # type: ignore[misc]
        for op in ops
    ]
    batch_parts = [f'{{"id":{b[0]:d},"device_id":"{b[1]}","sig":"{b64e(b[2])}","digests":"{b64e(b[3])}",'
                   + ",".join(f'"{name}":' + _json_opt(b[i] if len(b) > i else None)  # type: ignore[misc,arg-type]
                              for i, name in enumerate(("pos", "first", "last", "sig2", "absent"), 4)) + "}"
                   for b in batches]
    purge_parts = [
        f'{{"seq":{purge[0]:d},"record_id":"{purge[1]}","sig":'
        + (f'"{b64e(purge[2])}"' if len(purge) > 2 and purge[2] is not None else "null") + "}"  # type: ignore[misc]
        for purge in purges
    ]
    echo = "null" if nonce is None else f'"{nonce}"'
    return (f'{{"ops":[{",".join(op_parts)}],"purges":[{",".join(purge_parts)}],"next":{next_:d},'
            f'"more":{"true" if more else "false"},"current_epoch":{current_epoch:d},'
            f'"batches":[{",".join(batch_parts)}],"held_through":{_json_opt(held_through)},'
            f'"nonce":{echo}}}').encode("ascii")


def _json_opt(value: int | bytes | None) -> str:
    if value is None:
        return "null"
    return f'"{b64e(value)}"' if isinstance(value, bytes) else f"{value:d}"


class PurgeRequest(_Msg):
    record_ids: Annotated[list[_Id], Field(min_length=1, max_length=10000)]
    # 1.1: the coordinator's Ed25519 signature of each erasure, in the order of `record_ids`
    signatures: Annotated[list[_Sig64], Field(max_length=10000)] | None = None

    @model_validator(mode="after")
    def _one_signature_each(self) -> PurgeRequest:
        if self.signatures is not None and len(self.signatures) != len(self.record_ids):
            raise ValueError("signatures: one for each record id")
        return self


class PurgeResponse(_Msg):
    purged_ops: _Count
    last_seq: _Count


class RosterEntryOut(_Msg):
    device_id: _Id
    entry: _B64  # signed by the team's authority (docs/SECURITY.md); opaque to the server


class RosterResponse(_Msg):
    entries: list[RosterEntryOut]


class RosterUpload(_Msg):
    entries: Annotated[list[RosterEntryOut], Field(min_length=1, max_length=1000)]


# Checkpoints (1.2): the team's state up to a log position, sealed in parts by a coordinator and
# kept blind by the server, so that a new device need not replay the whole log (docs/SECURITY.md).
MAX_CHECKPOINT_PART_BYTES = 1_400_000  # one sealed part: its base64 fits a request body
MAX_CHECKPOINT_PARTS = 2_000
MAX_MANIFEST_BYTES = 256 * 1024  # the signed manifest: a hash and a size per part, and a few ids
_PartB64 = Annotated[str, Field(min_length=2, max_length=(MAX_CHECKPOINT_PART_BYTES + 2) // 3 * 4,
                                pattern=B64_PATTERN)]
_ManifestB64 = Annotated[str, Field(min_length=2, max_length=(MAX_MANIFEST_BYTES + 2) // 3 * 4, pattern=B64_PATTERN)]


class CheckpointIn(_Msg):
    """A coordinator's new checkpoint: its id, the log position it holds the team's state up to,
    the key epoch its parts are sealed under, how many parts follow, and the manifest (a statement
    the team's authority signed: every part's size and hash; opaque to the server)."""

    id: _Id
    seq: _Count
    epoch: _Positive
    parts: Annotated[int, Field(ge=1, le=MAX_CHECKPOINT_PARTS)]
    manifest: _ManifestB64


class CheckpointPartIn(_Msg):
    blob: _PartB64  # one sealed part, as it is


class CheckpointPartResponse(_Msg):
    complete: bool  # every part is stored: devices can use it


class CheckpointOut(_Msg):
    id: _Id
    seq: _Count
    epoch: _Positive
    parts: _Positive
    size: _Count  # bytes of all its sealed parts
    manifest: str


class CheckpointList(_Msg):
    checkpoints: list[CheckpointOut]  # complete ones, the newest first (the server keeps two)


class SigningKeyAnnounce(_Msg):
    """A device admitted by the previous version tells its coordinator its new signing key,
    authenticated under the current team key (`mac`), which the server does not hold."""

    signing_key: _Key32
    announce: Annotated[str, Field(min_length=1, max_length=4096)]  # opaque: the coordinator checks it


class RevokeResponse(_Msg):
    device_id: _Id
    status: DeviceStatus
    current_epoch: _Positive


RecoverResponse.model_rebuild()
