"""Other devices' ops: a pulled page is stored in the inbox as it came (sealed, with its purges
and cursor, in one transaction), then folded into the rows through the merge rules a batch at a
time. An op that cannot be opened or makes no sense is set aside with its error and the rest goes
on; an authentic op that must not be applied (stamped far in the future, an audit event changed or
written in another device's name) is set aside with a notice. The hot path of a first sync: no
extra call in the fold's loop.

It never applies an op it could not authenticate, never changes an audit event, and never opens
an op in `receive` (the device is done with the network as soon as its pages are stored).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..domain.clock import hlc_ms
from ..domain.merge import Op, RecordState, apply_op, new_state
from ..domain.tables import FAMILIES, REVIEWED_FIELDS
from ..domain.vocab import RecordType
from ..errors import StoreError, TamperedRecord
from ..storage.vault import SealError
from .erasure import Erasure
from .session import Session, no_gc
from .values import FUTURE, MAX_SKEW_MS, ApplyResult, RemoteOp, decode_op, validate
from .writes import EMPTY, Writer

__all__ = ["Remote"]


class Remote:
    FOLD_OPS = 1000  # pulled ops folded into the rows per transaction

    def __init__(self, session: Session, writer: Writer, erasure: Erasure) -> None:
        self._s = session
        self._w = writer
        self._erasure = erasure

    def receive(self, ops: Iterable[RemoteOp], *, purges: Iterable[str] = (), refused_purges: Iterable[str] = (),
                refused_ops: Iterable[tuple[RemoteOp, str, str]] = (),
                cursor: tuple[str, int] | None = None, values: dict[str, str | int] | None = None) -> int:
        """Store a pulled page in the inbox as it came (sealed), with the page's purges and its
        cursor, in one transaction. Nothing is opened here: the device is done with the network
        as soon as its pages are stored, and `fold` applies them. Returns the ops stored (our own
        come back from the server too and are dropped).

        Not worth an fsync: a power cut can only undo whole pages together with their cursor,
        and those pages are pulled again.

        `purges` are erasures the coordinator signed: queued edits of those records are set aside
        with a notice (their content goes: the erasure is the coordinator's decision); each of
        `refused_purges` (not signed) erases nothing and becomes a notice; each of `refused_ops`
        (op, notice kind, reason: not written by the device it names) is set aside and noted.
        The highest sequence seen of each device is kept (`seen:<device id>`)."""
        s = self._s
        vault = s.unlocked_vault()
        store = s.store
        me = vault.device_id
        rows = [o for o in ops if o.device_id != me]
        purge_ids = list(purges)
        late = self._erasure.dependents(purge_ids)
        now = s.now()
        with store.atomic(durable=False):
            for rid in refused_purges:
                store.add_notice(now, "purge_refused", rid, None, "an erasure the coordinator did not sign")
            if purge_ids:
                for seq, rid in store.outbox_records([*purge_ids, *late]):
                    store.add_notice(now, "erased_edit", rid, me,
                                     f"change {seq} of this device was not kept: the record was erased")
                store.mark_erased(purge_ids, now)  # also from the inbox
                self._erasure.erase_late(late, now)
            store.inbox_put(rows)
            for op, kind, reason in refused_ops:
                store.set_aside((op.op_id, op.record_id, op.device_id, op.device_seq, op.key_epoch, op.payload,
                                 reason, now))
                store.add_notice(now, kind, op.record_id, op.device_id, reason)
            highest: dict[str, int] = {}
            for op in rows:
                highest[op.device_id] = max(highest.get(op.device_id, 0), op.device_seq)
            for dev, seq in highest.items():
                if seq > int(store.sync_state(f"seen:{dev}", "0") or 0):
                    store.set_sync_state(f"seen:{dev}", seq)
            if cursor is not None:
                store.set_sync_state(cursor[0], cursor[1])
            for key, value in (values or {}).items():  # what goes with the cursor (`gaps`)
                store.set_sync_state(key, value)
        self._w.unindex([*purge_ids, *late])
        return len(rows)

    def inbox_count(self) -> int:
        """Pulled ops not yet folded into the rows."""
        return self._s.store.inbox_count()

    def fold(self, max_ops: int | None = None) -> ApplyResult:
        """Fold the oldest pulled ops (at most `max_ops`) into the rows through the merge, and
        drop them from the inbox, in one transaction. An op that cannot be opened or makes no
        sense is set aside with its error; the rest goes on. `ApplyResult.ops` is 0 when the
        inbox is empty."""
        s, w = self._s, self._w
        vault = s.unlocked_vault()
        store = s.store
        result = ApplyResult()
        with no_gc(), store.atomic():
            batch = store.inbox_batch(max_ops or self.FOLD_OPS)
            if not batch:
                return result
            result.ops = len(batch)
            erased = store.erased_ids()
            states: dict[str, tuple[RecordType, RecordState]] = {}
            types = s.types
            clock = s.clock
            state_of = w.state
            for _n, op_id, device_id, device_seq, record_id, key_epoch, payload in batch:
                rop = RemoteOp(op_id, device_id, device_seq, record_id, key_epoch, payload)
                if record_id in erased:
                    result.skipped += 1
                    continue
                try:
                    op = self._open_remote(rop)
                    rtype = RecordType(op.record_type)
                    if record_id in states:
                        have_type, state = states[record_id]
                    elif record_id in types:
                        have_type = types[record_id]
                        state = state_of(have_type, record_id) or new_state(have_type.value)
                    else:
                        have_type, state = rtype, new_state(rtype.value)
                    if have_type is not rtype:
                        raise TamperedRecord(rtype.value, record_id)
                except (StoreError, SealError, ValueError, KeyError, TypeError) as exc:
                    error = str(exc) if isinstance(exc, StoreError) else f"cannot apply op: {type(exc).__name__}"
                    store.set_aside((op_id, record_id, device_id, device_seq, key_epoch, payload, error, s.now()))
                    result.set_aside.append((op_id, error))
                    continue
                refusal = self._refusal(rtype, rop, op, record_id in states or record_id in types)
                if refusal is not None:
                    kind, error, detail = refusal
                    store.set_aside((op_id, record_id, device_id, device_seq, key_epoch, payload, error, s.now()))
                    store.add_notice(s.now(), kind, record_id, device_id, detail)
                    result.set_aside.append((op_id, error))
                    continue
                clock.observe(op.hlc)
                if apply_op(state, op, REVIEWED_FIELDS.get(rtype, EMPTY)):
                    result.applied += 1
                else:
                    result.skipped += 1
                states[record_id] = (rtype, state)
            erased_reference = self._erasure.erased_reference
            late = {rid: pid for rid, (rtype, state) in states.items()
                    if (pid := erased_reference(rtype, state, erased)) is not None}
            if late:  # records of an erased person that arrived after the erasure: they go too
                for rid in late:
                    del states[rid]
                result.erased_late = len(late)
                self._erasure.erase_late(late, s.now())
            epoch = s.epoch
            by_type: dict[RecordType, list[tuple[str, int, bytes]]] = {}
            for rid, (rtype, state) in states.items():
                by_type.setdefault(rtype, []).append((rid, epoch, vault.seal_row(rtype.value, rid, epoch, state.to_json())))
                if rtype in REVIEWED_FIELDS:
                    store.set_conflicts(rtype, rid, sorted({c.field for c in state.conflicts()}))
            for rtype, rows in by_type.items():
                store.put_rows(rtype, rows)
            store.set_meta("hlc", clock.last)
            store.inbox_drop_through(batch[-1][0])
        # places first: persons' texts include their usual place's name
        index_put = w.index_put
        for rid, (rtype, state) in sorted(states.items(), key=lambda kv: kv[1][0] is not RecordType.PLACE):
            index_put(rtype, rid, state)
        if late:
            w.unindex(late)
        return result

    def _refusal(self, rtype: RecordType, rop: RemoteOp, op: Op, exists: bool) -> tuple[str, str, str] | None:
        """Why an authentic op must not be applied, if it must not: (notice kind, set-aside error,
        notice detail). An op stamped far ahead of this device's clock would win every field for
        ever (it waits for its time instead); an audit event is written once, by the device it
        names, and never changed."""
        stamp_ms = hlc_ms(op.hlc)
        if stamp_ms > self._s.now() * 1000 + MAX_SKEW_MS:
            return ("future_op", f"{FUTURE}{stamp_ms}: stamped more than an hour ahead of this device's clock",
                    "stamped more than an hour ahead of this device's clock; applied when its time comes")
        if rtype is RecordType.AUDIT:
            if exists or op.delete:
                return "audit_refused", "an audit event cannot be changed", "an audit event cannot be changed"
            if op.fields.get("device_id") != rop.device_id:
                return ("audit_refused", "an audit event in another device's name",
                        "an audit event in another device's name")
        return None

    def requeue_due(self) -> int:
        """Put ops set aside for a stamp in the future whose time has come back in the inbox."""
        store = self._s.store
        now_ms = self._s.now() * 1000
        due = [op_id for op_id, error in store.set_aside_errors(FUTURE)
               if int(error[len(FUTURE):].split(":", 1)[0]) <= now_ms + MAX_SKEW_MS]
        if due:
            with store.atomic():
                store.requeue_set_aside(due)
        return len(due)

    def apply_remote(self, ops: Iterable[RemoteOp], *, purges: Iterable[str] = (),
                     cursor: tuple[str, int] | None = None) -> ApplyResult:
        """`receive` a page and `fold` the whole inbox: what a sync does, in one call. Our own ops
        coming back count as skipped."""
        ops = list(ops)
        total = ApplyResult(skipped=len(ops) - self.receive(ops, purges=purges, cursor=cursor))
        while (part := self.fold()).ops:
            total.ops += part.ops
            total.applied += part.applied
            total.skipped += part.skipped
            total.set_aside += part.set_aside
            total.erased_late += part.erased_late
        return total

    def _open_remote(self, rop: RemoteOp) -> Op:
        vault = self._s.unlocked_vault()
        try:
            data = vault.open_op(rop.record_id, rop.key_epoch, rop.device_id, rop.device_seq, rop.op_id, rop.payload)
        except SealError:
            raise TamperedRecord("op", rop.op_id) from None
        op = decode_op(data, rop.record_id, rop.device_id)
        create_cls, update_cls, _ = FAMILIES[RecordType(op.record_type)]
        if op.fields:
            validate(update_cls or create_cls, op.fields, remote=True)
        return op

