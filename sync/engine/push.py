"""Push: this device's outbox to the server, in batches, each signed by this device.

It owns the push pipeline (one request in flight while a second thread encodes and compresses the
next batch, and answered batches leave the outbox in local commits) and what a push's answer means
here: a stale key epoch moves the queued ops to the new one, an op the server refuses is set
aside, a change of an erased record becomes a notice. It must never drop an op from the outbox
before the server acknowledged it, nor sign anything but this device's own ops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from sync import protocol as p
from sync.client import EncodedBody, SyncClient
from sync.engine.context import EngineContext
from sync.engine.keys import Keys
from sync.engine.reports import Progress
from sync.errors import Offline, Rejected, StaleEpoch

__all__ = ["Push"]

log = logging.getLogger("outreach.sync.engine")


class Push:
    """The outbox, pushed."""

    ACK_EVERY = 10  # answered batches dropped from the outbox in one local commit

    def __init__(self, ctx: EngineContext, keys: Keys) -> None:
        self.ctx = ctx
        self.keys = keys

    def push(self, progress: Progress | None = None) -> int:
        """Push the outbox in batches, one request in flight at a time. Meanwhile a second thread
        encodes and compresses the next batch (zlib lets go of the GIL) and this one drops
        answered batches from the outbox, so the device works while the server does. The local
        ack is taken every `ACK_EVERY` batches and when the push ends, in whatever way: ops the
        server has but the outbox still holds are only pushed again, as duplicates."""
        ctx = self.ctx
        ws = ctx.ws
        client = ctx.client()
        total = ws.outbox_count()
        done = 0
        stale_retries = 0
        acked = unflushed = 0

        def flush() -> None:
            nonlocal unflushed
            if unflushed:
                unflushed = 0
                ws.ack(acked)

        def start(body: Future[EncodedBody | p.PushRequest] | None) -> Future[p.PushResponse] | None:
            return sender.submit(lambda: client.push(body.result())) if body is not None else None

        vault = ws.vault
        signer = vault.sign_as_device if vault is not None and vault.has_signing_key else None
        team, me = ctx.team_id(), ws.device_id
        acked = ws.pushed_through()  # what this push accounts for starts after it

        def encode(ops: list[tuple[int, str, str, int, bytes]],
                   first: int) -> Future[EncodedBody | p.PushRequest] | None:
            return encoder.submit(_push_body, client, ops, team, me, signer, first) if ops else None

        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outreach-push") as sender, \
                    ThreadPoolExecutor(max_workers=1, thread_name_prefix="outreach-push-encode") as encoder:
                batch = ws.outbox_batch(ctx.push_ops, ctx.push_bytes)
                sending = start(encode(batch, acked + 1))
                while sending is not None:
                    following = ws.outbox_batch(ctx.push_ops, ctx.push_bytes, batch[-1][0])
                    body = encode(following, batch[-1][0] + 1)  # while the server stores this batch
                    try:
                        resp = sending.result()
                    except StaleEpoch:
                        stale_retries += 1
                        if stale_retries > 3:
                            raise
                        flush()
                        self.keys.refresh()  # moves the queued ops to the new epoch
                        batch = ws.outbox_batch(ctx.push_ops, ctx.push_bytes)
                        sending = start(encode(batch, acked + 1))
                        continue
                    except Rejected as exc:
                        bad = _bad_op_index(exc, len(batch))
                        if bad is None:
                            raise
                        log.warning("op %s refused by the server (%s); set aside", batch[bad][1], exc.code)
                        flush()
                        ws.set_aside_outgoing(batch[bad][0], f"refused by the server: {exc}")
                        batch = ws.outbox_batch(ctx.push_ops, ctx.push_bytes)
                        sending = start(encode(batch, acked + 1))
                        continue
                    if resp.acked_through < batch[-1][0]:
                        raise Offline("The server acknowledged less than was sent; will retry.")
                    if resp.purged_records:  # changes of erased records: the worker is told, not silent
                        erased = set(resp.purged_records)
                        for seq, _op_id, rid, _epoch, _payload in batch:
                            if rid in erased:
                                ws.add_notice("erased_edit", rid, ws.device_id,
                                              f"change {seq} of this device was not kept: the record was erased")
                    sending = start(body)
                    acked, unflushed = resp.acked_through, unflushed + 1
                    if unflushed >= self.ACK_EVERY:
                        flush()
                    done += len(batch)
                    if progress:
                        progress("push", done, total)
                    batch = following
        finally:
            flush()
        return done


def _push_body(client: SyncClient, ops: list[tuple[int, str, str, int, bytes]], team: str, device_id: str,
               signer: Callable[[bytes], bytes] | None, first: int = 1) -> EncodedBody | p.PushRequest:
    """The wire body of a push of our own outbox rows (no model per op: they are not re-validated
    on the way out), signed by this device: its signature covers every op's digest, so that no
    one else can write in its name, and its statement (`protocol.statement_message`) accounts for
    its sequence from `first` to the push's last op, so that a puller can tell a withheld op. (The
    first signature is for pullers of protocol 1.1.) Should an id not be one of ours, the ops go
    as models and the server names the bad op, which is then set aside."""
    sig = sig2 = None
    first = min(first, ops[0][0])
    if signer is not None:
        digests = [p.op_digest(payload) for _seq, _op_id, _rid, _epoch, payload in ops]
        sig = signer(p.batch_message(team, device_id, b"".join(digests)))
        try:
            entries = p.pack_entries((op[0], op[2], d) for op, d in zip(ops, digests, strict=True))
            sig2 = signer(p.statement_message(team, device_id, first, max(op[0] for op in ops), entries))
        except ValueError:  # an id not of ours: the server names it
            sig2 = None
    try:
        return client.encode(p.encode_push(ops, sig, first, sig2))
    except ValueError:
        return p.PushRequest.model_construct(ops=[
            p.OpIn.model_construct(op_id=op_id, device_seq=seq, record_id=rid, key_epoch=epoch, payload=p.b64e(payload))
            for seq, op_id, rid, epoch, payload in ops], sig=p.b64e(sig) if sig is not None else None,
            first=first if sig2 is not None else None, sig2=p.b64e(sig2) if sig2 is not None else None)


def _bad_op_index(exc: Rejected, size: int) -> int | None:
    """The index of the one op a 422/413 names (`ops.N...`), if it names one."""
    if exc.code not in (p.ErrorCode.MALFORMED, p.ErrorCode.TOO_LARGE):
        return None
    parts = str(exc.detail.get("field", "")).split(".")
    if len(parts) >= 2 and parts[0] == "ops" and parts[1].isdigit() and int(parts[1]) < size:
        return int(parts[1])
    return None
