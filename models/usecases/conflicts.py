"""Conflicts for the coordinator: the fields two devices changed without seeing each other, named
for the screen (which record, which devices), and their resolution: keeping one side or writing a
new value, as a normal synced, audited change whose base covers both writes.

It never decides a conflict by itself and never prints or logs the values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ..domain.vocab import AuditAction, RecordType
from ..errors import InvalidInput
from .formats import fmt_datetime

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = ["ConflictItem", "conflicts", "resolve_conflict"]

_UNSET: Any = object()


# ================================================================================= conflicts
@dataclass(frozen=True)
class ConflictItem:
    """One field two devices changed without seeing each other: `value_b` is shown meanwhile.
    `label` says which record it is (a person's alias, a contact's time): for the screen only."""

    record_type: RecordType
    record_id: str
    field: str
    label: str
    value_a: Any
    device_a: str
    device_a_name: str | None
    at_a: datetime
    value_b: Any
    device_b: str
    device_b_name: str | None
    at_b: datetime


def conflicts(ws: Workspace, *, device_names: Mapping[str, str] | None = None,
              record_ids: Iterable[str] | None = None) -> list[ConflictItem]:
    """Open conflicts, newest first; `device_names` (device id -> name, from the sync engine's
    device list) names the devices; `record_ids` keeps those of some records."""
    names = device_names or {}
    keep = set(record_ids) if record_ids is not None else None
    recs = ws.index.records
    out = []
    for c in ws.conflicts():
        if keep is not None and c.record_id not in keep:
            continue
        values = recs[c.record_type].get(c.record_id, {})
        if c.record_type is RecordType.PERSON:
            label = str(values.get("alias") or "")
        elif c.record_type is RecordType.CONTACT:
            label = fmt_datetime(values.get("at"))
        else:
            label = str(values.get("name") or values.get("due") or "")
        out.append(ConflictItem(
            record_type=c.record_type, record_id=c.record_id, field=c.field, label=label,
            value_a=c.value_a, device_a=c.device_a, device_a_name=names.get(c.device_a), at_a=c.at_a,
            value_b=c.value_b, device_b=c.device_b, device_b_name=names.get(c.device_b), at_b=c.at_b,
        ))
    out.sort(key=lambda i: max(i.at_a, i.at_b), reverse=True)
    return out


def resolve_conflict(ws: Workspace, item: ConflictItem, *, keep: Literal["a", "b"] | None = None,
                     value: Any = _UNSET) -> None:
    """Settle a conflict by keeping one side (`keep="a"` or `"b"`) or writing a new `value`:
    a normal, synced change whose base covers both writes. Audited (action change)."""
    if (keep is None) == (value is _UNSET):
        raise InvalidInput("resolution", "choose one of the two values or write a new one")
    if keep is not None and keep not in ("a", "b"):
        raise InvalidInput("resolution", "keep is 'a' or 'b'")
    chosen = value if keep is None else (item.value_a if keep == "a" else item.value_b)
    with ws.store.atomic(), ws.unaudited():
        ws.resolve_conflict(item.record_type, item.record_id, item.field, chosen)
        ws.audit(AuditAction.CHANGE, item.record_type, item.record_id, detail=f"conflict resolved: {item.field}")


