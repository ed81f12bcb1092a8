"""What a device knows of every other device's sequence, to tell a withheld op from an erased one.

A device's signed statement of a push (protocol 1.2, `protocol.statement_message`) names the range
of its own sequence it accounts for, `first..last`, and each op of the push as (sequence, record
id, digest): a sequence in the range that no op names is one the device says it never sent (an
edit it set aside, say). A puller keeps, per device, what the statements it verified cover, which
sequences it received, and the named ops it has not received yet. Once it is caught up with the
log, every sequence between the first and the last one covered is accounted for, or the server
withheld it:
- a hole: sequences no statement covers (a whole push withheld, statement and ops);
- a missing op: named by a statement, neither received nor erased by a signed purge of its record.

It also keeps, per device, a running SHA-256 over the device's statements in log order (the
`history`): a coordinator that revokes the device signs its count and hash with the cut-off, so
that a device syncing later can tell whether the server showed it the same history (docs/SECURITY.md).

Pure state: no store, no network. `SyncEngine` keeps it (JSON, in the pulled page's transaction).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["Gaps", "DeviceGaps", "Missing", "Statement"]

Ranges = list[list[int]]  # sorted, disjoint, non-adjacent [first, last] ranges


def _add(ranges: Ranges, first: int, last: int) -> Ranges:
    """`ranges` with [first, last] added (merged with what it touches or adjoins)."""
    if first > last:
        return ranges
    out: Ranges = []
    placed = False
    for a, b in ranges:
        if b + 1 < first:
            out.append([a, b])
        elif last + 1 < a:
            if not placed:
                out.append([first, last])
                placed = True
            out.append([a, b])
        else:
            first, last = min(first, a), max(last, b)
    if not placed:
        out.append([first, last])
    out.sort()
    return out


def _holds(ranges: Ranges, seq: int) -> bool:
    return any(a <= seq <= b for a, b in ranges)


def _holes(ranges: Ranges) -> list[tuple[int, int]]:
    return [(ranges[i][1] + 1, ranges[i + 1][0] - 1) for i in range(len(ranges) - 1)]


def _without(first: int, last: int, ranges: Ranges) -> list[tuple[int, int]]:
    """[first, last] less every range of `ranges`."""
    out = []
    for a, b in ranges:
        if b < first or a > last:
            continue
        if a > first:
            out.append((first, a - 1))
        first = b + 1
        if first > last:
            return out
    out.append((first, last))
    return out


@dataclass(frozen=True)
class Statement:
    """A device's verified statement of one push, as far as gap finding needs it."""

    pos: int  # its place in the log
    device_id: str
    first: int
    last: int
    entries: tuple[tuple[int, str], ...]  # (sequence, record id) of each op it names
    sig: bytes  # the device's signature (what the history hashes)


@dataclass
class DeviceGaps:
    covered: Ranges = field(default_factory=list)
    have: Ranges = field(default_factory=list)
    pending: dict[int, str] = field(default_factory=dict)  # named, not received: sequence -> record id
    count: int = 0  # statements in its history
    history: str = ""  # hex SHA-256 chain over their signatures, in log order
    pos: int = 0  # the log position of the last statement counted

    def to_json(self) -> dict[str, object]:
        return {"c": self.covered, "h": self.have, "p": {str(k): v for k, v in self.pending.items()},
                "n": self.count, "x": self.history, "pos": self.pos}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> DeviceGaps:
        pending = d.get("p") or {}
        assert isinstance(pending, dict)
        return cls([list(r) for r in d.get("c") or []], [list(r) for r in d.get("h") or []],  # type: ignore[attr-defined]
                   {int(k): str(v) for k, v in pending.items()}, int(d.get("n") or 0),  # type: ignore[call-overload]
                   str(d.get("x") or ""), int(d.get("pos") or 0))  # type: ignore[call-overload]


@dataclass(frozen=True)
class Missing:
    """What a device is owed of another device's sequence, once caught up."""

    device_id: str
    holes: tuple[tuple[int, int], ...]
    ops: tuple[tuple[int, str], ...]  # (sequence, record id)

    @property
    def count(self) -> int:
        return sum(b - a + 1 for a, b in self.holes) + len(self.ops)

    def describe(self) -> str:
        """Sequences only (ids and numbers: notices are not sealed)."""
        parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in self.holes]
        parts += [str(seq) for seq, _rid in self.ops]
        return ", ".join(sorted(parts, key=lambda s: int(s.split("-")[0])))


class Gaps:
    """Per device: the statements' cover, the sequences received, the named ones still owed."""

    def __init__(self, devices: dict[str, DeviceGaps] | None = None, since: int = 0) -> None:
        self.devices = devices or {}
        self.since = since  # the log position this device began keeping count at (0: the whole log)

    def to_json(self) -> str:
        return json.dumps({"since": self.since, "d": {k: v.to_json() for k, v in self.devices.items()}},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | None, since: int = 0) -> Gaps:
        """The kept state, or a new one that begins counting at log position `since`."""
        if not raw:
            return cls({}, since)
        d = json.loads(raw)
        return cls({k: DeviceGaps.from_json(v) for k, v in (d.get("d") or {}).items()}, int(d.get("since") or 0))

    def device(self, device_id: str, seen: Callable[[str], int] = lambda _d: 0) -> DeviceGaps:
        """The state of `device_id`; one begun now counts what this device had of it (`seen`: the
        highest sequence received before counting began) as received."""
        state = self.devices.get(device_id)
        if state is None:
            state = self.devices[device_id] = DeviceGaps()
            highest = seen(device_id)
            if highest > 0:
                state.have = [[1, highest]]
        return state

    def statement(self, st: Statement, *, seen: Callable[[str], int] = lambda _d: 0,
                  limit: int | None = None) -> int:
        """Take a verified statement (an erased record's op it names is owed too, until a signed
        purge or `missing`'s look at the erased ids explains it). Returns its number in the
        device's history (1 for the first),
        0 when it was counted before (the same push, shown again on a later page), or -1, taking
        nothing, when the history already holds `limit` statements (a revoked device's, after
        the history its coordinator signed)."""
        state = self.device(st.device_id, seen)
        if limit is not None and st.pos > state.pos and state.count >= limit:
            return -1
        state.covered = _add(state.covered, st.first, st.last)
        for seq, rid in st.entries:
            if not _holds(state.have, seq):
                state.pending[seq] = rid
        if st.pos <= state.pos:
            return 0
        state.pos = st.pos
        state.count += 1
        state.history = hashlib.sha256(bytes.fromhex(state.history) + st.sig).hexdigest()
        return state.count

    def received(self, device_id: str, seqs: Iterable[int], seen: Callable[[str], int] = lambda _d: 0) -> None:
        state = self.device(device_id, seen)
        for seq in sorted(set(seqs)):
            state.have = _add(state.have, seq, seq)
            state.pending.pop(seq, None)

    def purged(self, record_ids: Iterable[str]) -> None:
        gone = set(record_ids)
        if not gone:
            return
        for state in self.devices.values():
            for seq in [s for s, rid in state.pending.items() if rid in gone]:
                del state.pending[seq]

    def missing(self, erased: Callable[[str], bool] = lambda _r: False,
                from_start: Callable[[str], bool] = lambda _d: False) -> list[Missing]:
        """What is owed, device by device: meaningful once this device is caught up with the log
        (the ops of every statement it holds are then in, or erased, or withheld). For a device
        that signed from its first op (`from_start`), its sequence is owed from 1: a withheld first
        push is a hole too (what this device received of it before it counted is in `have`)."""
        out = []
        for device_id, state in sorted(self.devices.items()):
            gaps = _holes(state.covered)
            if state.covered and state.covered[0][0] > 1 and from_start(device_id):
                gaps.insert(0, (1, state.covered[0][0] - 1))
            holes = tuple(part for a, b in gaps for part in _without(a, b, state.have))
            ops = tuple(sorted((seq, rid) for seq, rid in state.pending.items()
                               if not erased(rid) and not _holds(state.have, seq)))
            if holes or ops:
                out.append(Missing(device_id, holes, ops))
        return out

    def history(self, device_id: str) -> tuple[int, str] | None:
        """(statements, hash) of a device's history as this device saw it, when it saw the whole log."""
        state = self.devices.get(device_id)
        if self.since != 0:
            return None
        return (state.count, state.history) if state is not None else (0, "")
