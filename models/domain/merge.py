"""The merge rules, pure: how a record's state absorbs an op, local or remote. No I/O, no keys.

A record's state keeps, per field, the value and the stamp `(HLC, device id)` of the write that
set it; the greatest stamp wins, so applying the same set of ops in any order, any number of times,
gives the same state. A delete is a tombstone and absorbing: once a record is deleted, its values
are dropped and no later (or earlier-arriving) write brings it back.

Reviewed fields also keep their write history: each write's stamp, its base (the stamp of the value
the writing device saw when it edited) and its value. Two writes A and B from different devices
conflict when neither saw the other (A.base < B.stamp and B.base < A.stamp) and their values
differ; the conflict is open until a write W whose base covers both (W.base >= max(A, B)), which is
what a device that has seen both writes produces when someone resolves it. The rule is a function
of the set of writes, hence order-independent too. (With per-field bases rather than vector clocks,
a third device that saw only the winner and edits the field also closes the conflict: the losing
value was then overwritten by someone who never saw it. We accept that; it is documented here.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stamp", "ZERO", "FieldWrite", "Op", "RecordState", "Conflict", "apply_op", "new_state", "plain_of"]

Stamp = tuple[int, str]  # (HLC, device id)
ZERO: Stamp = (0, "")


@dataclass(frozen=True)
class FieldWrite:
    stamp: Stamp
    base: Stamp
    value: Any


@dataclass(frozen=True)
class Op:
    """One change of one record: the decrypted content of an outbox op."""

    record_type: str
    record_id: str
    device_id: str
    hlc: int
    fields: dict[str, Any]
    bases: dict[str, Stamp]  # for reviewed fields: the stamp the device saw; missing means ZERO
    delete: bool = False

    @property
    def stamp(self) -> Stamp:
        return (self.hlc, self.device_id)


@dataclass(frozen=True)
class Conflict:
    field: str
    a: FieldWrite
    b: FieldWrite  # a.stamp < b.stamp: b is the value shown meanwhile (if nothing newer)


@dataclass
class RecordState:
    record_type: str
    values: dict[str, tuple[Any, Stamp]] = field(default_factory=dict)
    history: dict[str, list[FieldWrite]] = field(default_factory=dict)
    deleted: Stamp | None = None
    created: Stamp | None = None  # the smallest stamp seen: when the record was first written

    # ----------------------------------------------------------------------------- views
    def plain(self) -> dict[str, Any]:
        return {name: value for name, (value, _) in self.values.items()}

    def stamp_of(self, name: str) -> Stamp:
        entry = self.values.get(name)
        return entry[1] if entry else ZERO

    @property
    def updated(self) -> Stamp:
        stamps = [s for _, s in self.values.values()]
        if self.deleted:
            stamps.append(self.deleted)
        return max(stamps, default=ZERO)

    def conflicts(self) -> list[Conflict]:
        """Open conflicts, by field, oldest pair first."""
        found: list[Conflict] = []
        for name, writes in self.history.items():
            for i, a in enumerate(writes):
                for b in writes[i + 1 :]:
                    lo, hi = (a, b) if a.stamp < b.stamp else (b, a)
                    if lo.stamp[1] == hi.stamp[1] or lo.value == hi.value:
                        continue
                    if lo.base >= hi.stamp or hi.base >= lo.stamp:
                        continue  # one saw the other
                    if any(w.base >= hi.stamp for w in writes):
                        continue  # resolved by a write that saw both
                    found.append(Conflict(name, lo, hi))
        found.sort(key=lambda c: (c.field, c.a.stamp, c.b.stamp))
        return found

    # ------------------------------------------------------------------------ encoding
    # Stamps are kept once in a table and referenced by index: most records have one or two, and
    # every field repeating a 32-character device id would double what is sealed and opened.
    def to_json(self) -> dict[str, Any]:
        used = {st for _, st in self.values.values()} | {w.stamp for ws in self.history.values() for w in ws}
        used |= {st for st in (self.deleted, self.created) if st}
        table = {st: i for i, st in enumerate(sorted(used))}  # canonical: same state, same encoding
        ref = table.__getitem__
        values = {k: [self.values[k][0], ref(self.values[k][1])] for k in sorted(self.values)}
        history = {k: [[ref(w.stamp), w.base[0], w.base[1], w.value] for w in self.history[k]]
                   for k in sorted(self.history)}
        deleted = ref(self.deleted) if self.deleted else None
        created = ref(self.created) if self.created else None
        return {"t": self.record_type, "s": [list(st) for st in table], "v": values, "h": history,
                "d": deleted, "c": created}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordState:
        stamps: list[Stamp] = [(int(st[0]), str(st[1])) for st in data["s"]]
        return cls(
            record_type=data["t"],
            values={k: (e[0], stamps[e[1]]) for k, e in data["v"].items()},
            history={k: [FieldWrite(stamps[w[0]], (w[1], w[2]), w[3]) for w in ws] for k, ws in data["h"].items()},
            deleted=stamps[data["d"]] if data["d"] is not None else None,
            created=stamps[data["c"]] if data["c"] is not None else None,
        )


def plain_of(data: dict[str, Any]) -> tuple[dict[str, Any], int, int] | None:
    """The values of an encoded state, its created and updated HLC, without building the state:
    what loading needs. None for a tombstone."""
    if data["d"] is not None:
        return None
    stamps = data["s"]
    created = stamps[data["c"]][0] if data["c"] is not None else 0
    updated = max((st[0] for st in stamps), default=0)
    return {k: e[0] for k, e in data["v"].items()}, created, updated


def new_state(record_type: str) -> RecordState:
    return RecordState(record_type=record_type)


def apply_op(state: RecordState, op: Op, reviewed: frozenset[str] = frozenset()) -> bool:
    """Absorb `op` into `state` in place. Returns True when anything changed.

    The caller checks that `op.record_type` matches the state's type before calling.
    """
    stamp = op.stamp
    changed = False
    if state.created is None or stamp < state.created:
        state.created = stamp
        changed = True
    if op.delete:
        if state.deleted is None or stamp > state.deleted:
            state.deleted = stamp
            changed = True
        if state.values or state.history:
            state.values.clear()
            state.history.clear()
            changed = True
        return changed
    if state.deleted is not None:
        return changed  # tombstones stay dead
    for name, value in op.fields.items():
        current = state.values.get(name)
        if current is None or stamp > current[1]:
            state.values[name] = (value, stamp)
            changed = True
        if name in reviewed:
            writes = state.history.setdefault(name, [])
            if all(w.stamp != stamp for w in writes):
                writes.append(FieldWrite(stamp, op.bases.get(name, ZERO), value))
                writes.sort(key=lambda w: w.stamp)
                changed = True
    return changed
