"""This device's own ops on their way to the server: batches to push, acknowledgements (the ops
the server stored are dropped), ops the server will never take (set aside, still applied here),
and the ops sent again when the server lost them (restored from an older backup).

It never opens an op except to re-seal it under the current key epoch, and never drops an op the
server has not acknowledged.
"""

from __future__ import annotations

import logging

from ..domain.tables import SEALED_TABLES
from ..domain.vocab import RecordType
from .session import Session

__all__ = ["Outbox"]

log = logging.getLogger("outreach.workspace")


class Outbox:
    def __init__(self, session: Session) -> None:
        self._s = session

    def outbox_batch(self, max_ops: int, max_bytes: int, after_seq: int = 0) -> list[tuple[int, str, str, int, bytes]]:
        return self._s.store.outbox_batch(max_ops, max_bytes, after_seq)

    def outbox_count(self) -> int:
        return self._s.store.outbox_count()

    def pending_changes(self) -> int:
        """The worker's own changes waiting to be sent: the queue without the audit log's
        events (a person looked up is logged, but it is not a change to count)."""
        return self._s.store.outbox_count(without=SEALED_TABLES[RecordType.AUDIT])

    def set_aside_outgoing(self, device_seq: int, error: str) -> None:
        """An op of ours that the server will never take: keep it aside with the error (it stays
        applied here) so that the rest of the queue goes on."""
        s = self._s
        store = s.store
        with store.atomic():
            for seq, op_id, rid, epoch, payload in store.outbox_all():
                if seq == device_seq:
                    store.set_aside((op_id, rid, s.device_id, seq, epoch, payload, error, s.now()))
                    store.drop_outbox_seq(seq)
                    return

    def set_aside_ops(self) -> list[tuple[str, str, str]]:
        """(op id, record id, error) of every op set aside, oldest first."""
        return [(r[0], r[1], r[6]) for r in self._s.store.set_aside_rows()]

    def ack(self, through_seq: int) -> None:
        """Drop the ops the server has stored, and note how far: the next push accounts for this
        device's sequence from there (`pushed_through`). Not worth an fsync: should a power cut
        undo it, those ops are pushed again and acknowledged as duplicates."""
        store = self._s.store
        with store.atomic(durable=False):
            store.ack_outbox(through_seq)
            if through_seq > self.pushed_through():
                store.set_sync_state("pushed_through", through_seq)

    def resend_lost(self, held_through: int) -> tuple[int, int]:
        """The server holds this device's sequence only up to `held_through`, below what it
        acknowledged (it was restored from an older backup): queue the acknowledged ops after it
        again, as they were (same ids, same sequence numbers), and account for the sequence from
        there. Returns (ops queued again, sequences lost for good: acknowledged longer ago than
        `Store.SENT_KEEP`, or before this version kept them)."""
        s = self._s
        store = s.store
        with store.atomic():
            acked = self.pushed_through()
            if held_through >= acked:
                return 0, 0
            n, low = store.resend(held_through)
            store.set_sync_state("pushed_through", held_through)
            vault, epoch = s.unlocked_vault(), s.epoch
            for seq, op_id, rid, e, payload in store.outbox_all():
                if e < epoch:  # sent before a key rotation: the server takes the current epoch only
                    body = vault.open_op(rid, e, vault.device_id, seq, op_id, payload)
                    store.replace_outbox_payload(seq, epoch, vault.seal_op(rid, epoch, vault.device_id, seq, op_id,
                                                                          body))
        lost = (low or acked + 1) - held_through - 1
        log.warning("the server lost changes %d-%d of this device: %d sent again, %d gone for good",
                    held_through + 1, acked, n, lost)
        return n, lost

    def pushed_through(self) -> int:
        """The highest sequence of this device the server acknowledged (0: none yet)."""
        return int(self._s.store.sync_state("pushed_through", "0") or 0)
