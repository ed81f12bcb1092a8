"""Every change of a record, the one way: opened from its sealed row, changed through the merge
rules, sealed again and written with its outbox op in one transaction, then shown in the index.
It owns the transaction that keeps the index true on a rollback, new record ids and op ids.

It never validates input (the record parts do, against the domain's families) and never decides
whether a remote op may be applied (that is `remote`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ..domain.clock import hlc_ms
from ..domain.merge import ZERO, Op, RecordState, apply_op, new_state
from ..domain.tables import REVIEWED_FIELDS
from ..domain.vocab import RecordType
from ..errors import NotFound, TamperedRecord
from ..storage.vault import SealError
from .session import Session
from .values import encode_op

__all__ = ["Writer", "REQUIRED", "EMPTY"]

# a record without these is not shown (yet): e.g. an edit whose creating op was set aside
REQUIRED: dict[RecordType, tuple[str, ...]] = {
    RecordType.PERSON: ("alias",), RecordType.CONTACT: ("at",), RecordType.PLACE: ("name",),
    RecordType.FOLLOWUP: ("due",), RecordType.AUDIT: ("at", "action"),
}
EMPTY: frozenset[str] = frozenset()


class Writer:
    def __init__(self, session: Session) -> None:
        self._s = session
        self.touched: set[tuple[RecordType, str]] | None = None  # written in the open transaction

    def open_state(self, rtype: RecordType, rid: str, epoch: int, blob: bytes) -> RecordState:
        try:
            return RecordState.from_json(self._s.unlocked_vault().open_row(rtype.value, rid, epoch, blob))
        except (SealError, KeyError, IndexError, TypeError, ValueError):
            raise TamperedRecord(rtype.value, rid) from None

    def state(self, rtype: RecordType, rid: str) -> RecordState | None:
        row = self._s.store.get_row(rtype, rid)
        return self.open_state(rtype, rid, row[0], row[1]) if row else None

    @staticmethod
    def plain(rid: str, state: RecordState) -> dict[str, Any]:
        """The values a screen needs; times as epoch milliseconds (pydantic reads them as UTC)."""
        values = state.plain()
        values["id"] = rid
        values["created_at"] = hlc_ms(state.created[0]) if state.created else None
        values["created_hlc"] = state.created[0] if state.created else 0  # orders writes within a millisecond
        values["updated_at"] = hlc_ms(state.updated[0]) if state.updated != ZERO else None
        return values

    def write(self, rtype: RecordType, rid: str, fields: dict[str, Any], *, delete: bool = False,
              must_exist: bool = False) -> dict[str, Any] | None:
        s = self._s
        vault = s.unlocked_vault()
        store = s.store
        reviewed = REVIEWED_FIELDS.get(rtype, EMPTY)
        with self.transaction():
            assert self.touched is not None
            self.touched.add((rtype, rid))
            state = self.state(rtype, rid)
            if state is None:
                if must_exist:
                    raise NotFound(rtype.value, rid)
                state = new_state(rtype.value)
            elif state.deleted is not None:
                raise NotFound(rtype.value, rid)
            hlc = s.clock.now()
            device_id = vault.device_id
            bases = {f: state.stamp_of(f) for f in fields if f in reviewed}
            op = Op(rtype.value, rid, device_id, hlc, fields, bases, delete)
            apply_op(state, op, reviewed)
            seq = int(store.meta("device_seq", "0") or 0) + 1
            op_id = self.op_prefix() + f"{seq:016x}"
            epoch = s.epoch
            payload = vault.seal_op(rid, epoch, device_id, seq, op_id, encode_op(op))
            store.put_rows(rtype, [(rid, epoch, vault.seal_row(rtype.value, rid, epoch, state.to_json()))])
            store.append_outbox([(seq, op_id, rid, epoch, payload)])
            store.set_meta("device_seq", seq)
            store.set_meta("hlc", s.clock.last)
            if reviewed:
                store.set_conflicts(rtype, rid, sorted({c.field for c in state.conflicts()}))
        self.index_put(rtype, rid, state)
        for hook in s.on_change:
            hook()
        return None if state.deleted else self.plain(rid, state)

    def op_prefix(self) -> str:
        """Op ids are a random per-device prefix and the device sequence: unique, and in order
        per device, so the server's index takes them at its end instead of on a random page
        (measured: about 2.5x the insert rate of uuid4). They say nothing the server does not
        already see (device and sequence)."""
        return self._device_prefix("op_prefix")

    def _device_prefix(self, key: str) -> str:
        """A random 16-hex-digit prefix made once per device and kept in meta under `key`."""
        store = self._s.store
        prefix = store.meta(key)
        if prefix is None:
            prefix = uuid.uuid4().hex[:16]
            store.set_meta(key, prefix)
        return prefix

    def new_id(self) -> str:
        """A new record's id: a random per-device prefix and a per-device counter, 32 hex digits
        like a uuid4's. In order per device, so the server's (team, record) index and this file's
        tables take new records at their end instead of on a random page (uuid4 record ids made
        that index the costliest part of storing a push: 2.6-3.0 s vs 1.2-1.5 s without it for
        101,018 ops). They tell the server nothing it does not see already: which device wrote
        a record's first op, and in what order. Call it inside the record's transaction."""
        store = self._s.store
        prefix = self._device_prefix("record_prefix")
        n = int(store.meta("record_seq", "0") or 0) + 1
        store.set_meta("record_seq", n)
        return prefix + f"{n:016x}"

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A store transaction that also keeps the in-memory index true: when the outermost one
        rolls back, every record written inside it is read back from the file into the index."""
        outer = self.touched is None
        if outer:
            self.touched = set()
        try:
            with self._s.store.atomic():
                yield
        except BaseException:
            if outer and self.touched:
                self.reindex(self.touched)
            raise
        finally:
            if outer:
                self.touched = None

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Many changes in one transaction (one fsync): a contact with its new person and place,
        imports, the demo generator."""
        s = self._s
        hooks, s.on_change = s.on_change, []
        try:
            with self.transaction():
                yield
        finally:
            s.on_change = hooks
        for hook in s.on_change:
            hook()

    def reindex(self, records: Iterable[tuple[RecordType, str]]) -> None:
        for rtype, rid in records:
            state = self.state(rtype, rid)
            self.index_put(rtype, rid, state)

    def index_put(self, rtype: RecordType, rid: str, state: RecordState | None) -> None:
        """Show a record on the screens, unless it is gone or incomplete (its creating op may have
        been set aside: an edit alone does not make a person)."""
        s = self._s
        s.types[rid] = rtype
        if state is None or state.deleted is not None:
            s.index.put(rtype, rid, None)
            return
        values = self.plain(rid, state)
        if any(values.get(f) is None for f in REQUIRED[rtype]):
            s.index.put(rtype, rid, None)
        else:
            s.index.put(rtype, rid, values)

    def unindex(self, record_ids: Iterable[str]) -> None:
        """Take erased records off the screens, whatever their type."""
        index = self._s.index
        for rid in record_ids:
            for rtype in RecordType:
                if rid in index.records[rtype]:
                    index.put(rtype, rid, None)
