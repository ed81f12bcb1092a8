"""The values the workspace hands out and takes in: remote ops as pulled and their sealed body's
codec, what a fold did, refusals noted for the user, conflicts, search results, and the
validation of input against the domain's families. Plain data and pure functions: no store, no
key, no I/O, and never a personal value in an error."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError

from ..domain.merge import Op
from ..domain.tables import REMOTE, ContactPublic, PersonPublic, PlacePublic
from ..domain.vocab import RecordType
from ..errors import InvalidInput

__all__ = [
    "RemoteOp",
    "ApplyResult",
    "Notice",
    "ConflictView",
    "SearchResult",
    "validation_error",
    "validate",
    "encode_op",
    "decode_op",
    "ms_to_dt",
    "MAX_SKEW_MS",
    "FUTURE",
]

MAX_SKEW_MS = 3600 * 1000  # a remote op stamped further ahead of this device's clock waits for its time
FUTURE = "future:"  # the error prefix of such an op in the set-aside table: "future:<stamp ms>: ..."
M = TypeVar("M", bound=BaseModel)


def validation_error(exc: ValidationError) -> InvalidInput:
    """The first problem of a pydantic error, as InvalidInput naming the field (never the value)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "input"
    return InvalidInput(where, first["msg"])


def validate(model: type[M], data: Any, *, remote: bool = False) -> M:
    """`remote`: values another device wrote (an op pulled, or stored fields an edit keeps):
    checked against fixed bounds, not this device's clock (`tables.REMOTE`)."""
    made = model.__new__(model)
    try:
        # into an instance made here, as SQLModel's own model_validate does: without one, pydantic
        # calls SQLModel's __init__, which validates a second time and without the context
        model.__pydantic_validator__.validate_python(data, context=REMOTE if remote else None, self_instance=made)
        return made
    except ValidationError as exc:
        raise validation_error(exc) from None


class RemoteOp(NamedTuple):
    """An op as pulled from the server: metadata in the clear, payload sealed. A tuple in the
    inbox's column order: a page of them is inserted as it is."""

    op_id: str
    device_id: str
    device_seq: int
    record_id: str
    key_epoch: int
    payload: bytes


@dataclass
class ApplyResult:
    ops: int = 0  # taken from the inbox
    applied: int = 0
    skipped: int = 0  # own ops, erased records, no change
    set_aside: list[tuple[str, str]] = field(default_factory=list)  # (op id, error)
    erased_late: int = 0  # records of an erased person that arrived late, removed


@dataclass(frozen=True)
class Notice:
    """What this device refused or set aside for a security reason (docs/SECURITY.md). Kinds:
    `key_refused`, `purge_refused`, `erased_edit`, `audit_refused`, `future_op`."""

    at: datetime
    kind: str
    record_id: str | None
    device_id: str | None
    detail: str


@dataclass(frozen=True)
class ConflictView:
    record_type: RecordType
    record_id: str
    field: str
    value_a: Any
    device_a: str
    at_a: datetime
    value_b: Any  # the value shown meanwhile
    device_b: str
    at_b: datetime


@dataclass
class SearchResult:
    persons: list[PersonPublic]
    contacts: list[ContactPublic]
    places: list[PlacePublic]


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000).replace(microsecond=(ms % 1000) * 1000)


def encode_op(op: Op) -> dict[str, Any]:
    """The sealed body of an op: {type, changed fields, HLC, base HLC per reviewed field}."""
    body: dict[str, Any] = {"t": op.record_type, "f": op.fields, "c": op.hlc}
    if op.bases:
        body["b"] = {k: [s[0], s[1]] for k, s in op.bases.items()}
    if op.delete:
        body["d"] = True
    return body


def decode_op(body: dict[str, Any], record_id: str, device_id: str) -> Op:
    if not isinstance(body, dict) or not isinstance(body.get("f"), dict) or not isinstance(body.get("c"), int):
        raise ValueError("malformed op body")
    bases = {k: (int(v[0]), str(v[1])) for k, v in (body.get("b") or {}).items()}
    return Op(str(body["t"]), record_id, device_id, body["c"], body["f"], bases, bool(body.get("d")))
