"""Pull: the team's log after this device's cursor, checked, stored still sealed, then folded.

It owns the pull pipeline (the next pages fetched while this one is stored; each page lands in the
inbox with its cursor in one local transaction, so a run cut anywhere resumes at the last stored
page), what a page's ops and purges must show before they count (their device's signature and
statement, the roster's cut-offs, the authority's signature on a purge), the gaps a withholding
server leaves (`sync.gaps`), and folding the inbox into the rows. It must never store an op or
apply a purge that failed its check (those become notices), nor move the cursor backwards.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from models.storage.vault import verify_purge, verify_signature
from models.workspace import RemoteOp
from sync import protocol as p
from sync.engine.context import EngineContext
from sync.engine.keys import Keys
from sync.engine.reports import Progress
from sync.engine.roster import Roster
from sync.errors import Offline
from sync.gaps import Gaps, Statement

__all__ = ["Pull"]

log = logging.getLogger("outreach.sync.engine")


class Pull:
    """The log, pulled and checked; the inbox, folded."""

    def __init__(self, ctx: EngineContext, roster: Roster, keys: Keys) -> None:
        self.ctx = ctx
        self.roster = roster
        self.keys = keys
        self.roster_tried: set[str] = set()  # devices the server's roster was read for in this pull
        # the server's word on what it holds of this device: from the last page of this pull that
        # echoed its request's nonce (a fresh answer to this device), else None
        self.held_through: int | None = None

    def pull(self, progress: Progress | None = None, *, wait: float = 0.0,
             fold: bool = True) -> tuple[int, int, int, int]:
        """Pull every page after the stored cursor, then fold what came. The next pages are fetched
        while this one is stored; each page lands in the inbox, still sealed, with its cursor in
        one local transaction, so a run cut anywhere resumes at the last stored page and the
        device needs the network only as long as the transfer takes. `fold=False` leaves the
        folding to `fold()`. (pulled, applied, set aside, purged)"""
        ctx = self.ctx
        client = ctx.client()
        cursor = int(ctx.ws.sync_value("cursor", "0") or 0)
        pulled = purged = 0
        self.held_through = None
        limit = ctx.pull_limit
        self.roster_tried = set()
        checked: dict[int, frozenset[tuple[str, bytes]]] = {}  # batches of this pull: id -> digests its device signed
        gaps = Gaps.from_json(ctx.ws.sync_value("gaps"), since=cursor) if ctx.authority_vk() is not None else None

        def fetch(pool: ThreadPoolExecutor, since: int, wait: float = 0.0) -> tuple[int, str, Future[bytes]]:
            nonce = p.new_nonce()
            return since, nonce, pool.submit(client.pull_body, since, limit, wait, nonce)

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="outreach-pull") as pool:
            # (since, nonce, page) requests in flight, oldest first. A page's `since` is the last one's
            # `next`, known only once it is read; while a full page of `limit` entries is being
            # stored, the one after the next is asked for on the guess that the log has no gap
            # there (a purge leaves one). A guessed page is used only if its `since` turns out to
            # be the cursor it was meant to follow; else it is dropped and asked for again.
            # Each request has a nonce of its own, which a 1.3 server echoes (`fetch`).
            ahead: deque[tuple[int, str, Future[bytes]]] = deque([fetch(pool, cursor, wait)])
            while True:
                since, nonce, request = ahead.popleft()
                page = client.parse_pull(request.result())  # here: the fetching threads do I/O only
                if page.nonce == nonce and page.held_through is not None:
                    # Only a page that answers this request speaks of what the server holds of this
                    # device now: an old page replayed (this device's own from before its later
                    # pushes, or another device's, of that device's sequence) would make it send
                    # acknowledged ops again and say the server lost them. A 1.2 server echoes
                    # nothing: its word is not taken (as a 1.1 server's, which gives none).
                    self.held_through = page.held_through
                if page.next < cursor:
                    raise Offline("The server's cursor went backwards; not applied.")
                if page.more:
                    while ahead and ahead[0][0] != page.next:  # a wrong guess
                        ahead.popleft()[2].cancel()
                    if not ahead:
                        ahead.append(fetch(pool, page.next))
                    if len(ahead) == 1 and page.next - since == limit:
                        ahead.append(fetch(pool, page.next + limit))
                if page.current_epoch > max(ctx.ws.vault.epochs if ctx.ws.vault else [0]):
                    self.keys.refresh()
                ops = [RemoteOp(o.op_id, o.device_id, o.device_seq, o.record_id, o.key_epoch, p.b64d(o.payload))
                       for o in page.ops]
                accepted, refused = self.check_purges(page.purges, since, page.next)
                ops, refused_ops = self.check_ops(page, ops, checked, since, gaps)
                values: dict[str, str | int] = {}
                if gaps is not None:
                    gaps.purged(accepted)
                    values["gaps"] = gaps.to_json()
                # other devices' ops (this device's own come back too, and are dropped)
                pulled += ctx.ws.receive(ops, purges=accepted, refused_purges=refused, refused_ops=refused_ops,
                                          cursor=("cursor", page.next), values=values)
                cursor = page.next
                purged += len(page.purges)
                if progress:
                    progress("pull", pulled, 0)
                if not page.more:
                    for _, _, extra in ahead:
                        extra.cancel()
                    break
        if gaps is not None:
            self.report_missing(gaps)
        applied, set_aside = self.fold(progress) if fold else (0, 0)
        return pulled, applied, set_aside, purged

    def report_missing(self, gaps: Gaps) -> None:
        """Caught up with the log: every other device's sequence that its statements cover is in,
        or erased by a signed purge, or the server withheld it. Each device's withheld changes
        become a notice (ids and sequences only), as does a revoked device's history that is not
        the one its coordinator signed."""
        ctx = self.ctx
        erased, roster = ctx.ws.erased_ids(), self.roster.roster()

        def from_start(device_id: str) -> bool:  # it signed from its first op: its sequence is owed from 1
            entry = roster.get(device_id)
            return entry is not None and entry.sign_vk is not None and entry.unsigned_through == 0

        for missing in gaps.missing(erased.__contains__, from_start):
            log.warning("device %s: %d changes did not arrive (%s)", missing.device_id, missing.count,
                        missing.describe())
            ctx.ws.add_notice("missing_ops", None, missing.device_id,
                               f"{missing.count} changes of this device did not arrive: {missing.describe()}")
        for device_id, entry in self.roster.roster().items():
            seen = gaps.history(device_id)
            if entry.history is None or seen is None or device_id == ctx.ws.device_id:
                continue
            if seen != entry.history:
                ctx.ws.add_notice("history_differs", None, device_id,
                                   f"the server showed {seen[0]} pushes of this device, not the {entry.history[0]} "
                                   "its coordinator signed at its revocation, or other ones")

    def check_ops(self, page: p.PullResponse, ops: list[RemoteOp], checked: dict[int, frozenset[tuple[str, bytes]]],
                   since: int = 0, gaps: Gaps | None = None) -> tuple[list[RemoteOp], list[tuple[RemoteOp, str, str]]]:
        """The ops of a page that their device wrote, as far as this device can tell, and the
        others with (notice kind, reason). An op counts when its device's signed push holds its
        digest, or when its device does not sign yet (the previous version) or its sequence is
        from before it signed; never after the device's revocation cut-off, and never from a
        device the coordinator did not admit. A team without signed authority takes every op."""
        ctx = self.ctx
        if ctx.authority_vk() is None or not (ops or page.batches):
            return ops, []
        team, me = ctx.team_id(), ctx.ws.device_id
        digest_of = [p.op_digest(op.payload) for op in ops]
        by_batch: dict[int, list[p.Entry]] = {}
        for op, out, digest in zip(ops, page.ops, digest_of, strict=True):
            if out.batch is not None and out.seq > since:
                by_batch.setdefault(out.batch, []).append((op.device_seq, op.record_id, digest))
        roster, cutoffs = self.roster.roster(), ctx.cutoffs()
        # a device not heard of, or one that signs now: its entry is new or changed (once per
        # device and pull, so that a device admitted during a long pull is known all the same)
        wanted = {o.device_id for o in ops if o.device_id != me and o.device_id not in roster} | {
            b.device_id for b in page.batches if (e := roster.get(b.device_id)) is not None and e.sign_vk is None}
        if wanted - self.roster_tried:
            roster = self.roster.refresh()
            self.roster_tried |= wanted
        beyond: set[int] = set()  # batches of a revoked device after the history its coordinator signed
        for batch in sorted(page.batches, key=lambda b: (b.pos is None, b.pos or 0)):
            entry = roster.get(batch.device_id)
            if entry is not None and entry.sign_vk is not None and batch.sig2 is not None:
                statement = self._statement(team, entry.sign_vk, batch, by_batch.get(batch.id, []))
                if statement is not None:
                    checked[batch.id] = checked.get(batch.id, frozenset()) | frozenset(
                        (batch.device_id, d) for _seq, _rid, d in statement[1])
                    if gaps is not None and batch.device_id != me:
                        limit = entry.history[0] if entry.history is not None and gaps.since == 0 else None
                        if gaps.statement(statement[0], seen=ctx.seen, limit=limit) < 0:
                            beyond.add(batch.id)
                    continue
            try:
                digests, sig = p.b64d(batch.digests), p.b64d(batch.sig)
            except ValueError:
                continue
            size = p.DIGEST_BYTES
            if (entry is not None and entry.sign_vk is not None and len(digests) % size == 0
                    and verify_signature(entry.sign_vk, p.batch_message(team, batch.device_id, digests), sig)):
                # what a batch of this id is known to hold: only what its device signed (a bogus
                # batch under the same id adds nothing and hides nothing)
                checked[batch.id] = checked.get(batch.id, frozenset()) | frozenset(
                    (batch.device_id, digests[i:i + size]) for i in range(0, len(digests), size))
        accepted: list[RemoteOp] = []
        refused: list[tuple[RemoteOp, str, str]] = []
        seen: dict[str, int] = {}
        for op, out, digest in zip(ops, page.ops, digest_of, strict=True):
            if out.seq <= since:
                continue  # not after the cursor asked for: a replay of what this device has stored
            if op.device_id == me:
                accepted.append(op)  # our own, back from the server: dropped by `receive`
                continue
            entry = roster.get(op.device_id)
            cutoff = cutoffs.get(op.device_id, entry.cutoff if entry else None)
            if cutoff is not None and op.device_id not in seen:
                seen[op.device_id] = ctx.seen(op.device_id)
            if entry is None:
                refused.append((op, "unknown_device", "an op from a device the coordinator did not admit"))
            elif out.batch is not None and out.batch in beyond:
                refused.append((op, "revoked_write", "an op of a revoked device, outside the history its "
                                "coordinator signed"))
            elif cutoff is not None and op.device_seq > cutoff:
                refused.append((op, "revoked_write", "an op of a revoked device, after its cut-off"))
            elif cutoff is not None and op.device_seq <= seen[op.device_id]:
                # a revoked device's sequence this device already had: written again after the fact
                refused.append((op, "revoked_write", "an op of a revoked device, under a sequence it used before"))
            elif entry.sign_vk is None or op.device_seq <= entry.unsigned_through or (
                    op.device_id, digest) in checked.get(out.batch if out.batch is not None else -1, ()):
                accepted.append(op)
                if cutoff is not None:
                    seen[op.device_id] = max(seen[op.device_id], op.device_seq)
            else:
                refused.append((op, "unsigned_op", "an op its device did not sign"))
        if gaps is not None:
            received: dict[str, list[int]] = {}
            for op in accepted:
                if op.device_id != me:
                    received.setdefault(op.device_id, []).append(op.device_seq)
            for device_id, seqs in received.items():
                gaps.received(device_id, seqs, ctx.seen)
        return accepted, refused

    @staticmethod
    def _statement(team: str, sign_vk: bytes, batch: p.BatchOut,
                   on_page: list[p.Entry]) -> tuple[Statement, list[p.Entry]] | None:
        """A batch's statement as its device signed it, from the page's ops of the batch and the
        entries the server says are not on the page; None when it does not verify (the server
        left out or changed something, or the device did not sign it)."""
        if batch.pos is None or batch.first is None or batch.last is None or batch.sig2 is None:
            return None
        try:
            sig = p.b64d(batch.sig2)
            entries = p.unpack_entries(p.b64d(batch.absent or "")) + on_page
            message = p.statement_message(team, batch.device_id, batch.first, batch.last, p.pack_entries(entries))
        except ValueError:
            return None
        if not verify_signature(sign_vk, message, sig):
            return None
        return Statement(batch.pos, batch.device_id, batch.first, batch.last,
                         tuple((seq, rid) for seq, rid, _d in entries), sig), entries

    def check_purges(self, purges: list[p.PurgeOut], since: int, upto: int) -> tuple[list[str], list[str]]:
        """The record ids of a page's purges that the team's authority signed, and the others.
        Unsigned purges up to the position the coordinator signed as the previous version's are
        taken when they are where the page says it is (after `since`, up to `upto`): a device
        past that position takes none; a team that has no authority yet takes every purge, as
        the previous version did."""
        ctx = self.ctx
        vk = ctx.authority_vk()
        if not purges or vk is None:
            return [x.record_id for x in purges], []
        team, legacy_through = ctx.team_id(), ctx.purges_unsigned_through()
        accepted: list[str] = []
        refused: list[str] = []
        for x in purges:
            if x.sig is None:
                ok = since < x.seq <= min(upto, legacy_through)
            else:
                try:
                    ok = verify_purge(vk, team, x.record_id, p.b64d(x.sig))
                except ValueError:
                    ok = False
            (accepted if ok else refused).append(x.record_id)
        return accepted, refused

    def fold(self, progress: Progress | None = None) -> tuple[int, int]:
        """Fold every pulled op waiting in the inbox into the rows, a transaction at a time (the
        UI may save between two). Local work only: also done offline, for what a run that was cut
        short left behind. Ops set aside for a stamp in the future whose time has come go first
        back in the inbox. (applied, set aside)"""
        ctx = self.ctx
        ctx.ws.requeue_due()
        total = ctx.ws.inbox_count()
        done = applied = set_aside = 0
        while total:
            result = ctx.ws.fold()
            if not result.ops:
                break
            done += result.ops
            applied += result.applied
            set_aside += len(result.set_aside)
            if progress:
                progress("fold", done, max(total, done))
        return applied, set_aside
