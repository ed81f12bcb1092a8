"""Erasure: a person's records purged on the server and on this device, with a signed purge each.

It owns the coordinator's erasure of a person (and of their contacts and follow-ups), and the late
purges: records of an erased person that reached this device after the erasure (a contact written
offline, a follow-up pulled later). Each purge is signed by the team's authority, so only a
coordinator's device sends one; a worker's device drops such records on arrival and forgets its
list. The audit record of an erasure holds counts, never personal data.
"""

from __future__ import annotations

from collections import Counter

from models.domain.vocab import AuditAction, RecordType
from sync.engine.authority import Authority
from sync.engine.context import EngineContext

__all__ = ["Erasure"]


class Erasure:
    """Erase a person; purge what came late."""

    PURGE_CHUNK = 5000  # record ids in one purge request

    def __init__(self, ctx: EngineContext, authority: Authority) -> None:
        self.ctx = ctx
        self.authority = authority

    def erase_person(self, person_id: str) -> int:
        """Coordinator: purge a person and their contacts and follow-ups on the server and here;
        leaves an audit record of the erasure that holds no personal data. Returns records erased."""
        ctx = self.ctx
        self.authority.ensure()
        ids = ctx.ws.person_record_ids(person_id)
        vault = ctx.ws.vault
        assert vault is not None
        team = ctx.team_id()
        ctx.client().purge(ids, [vault.sign_purge(team, rid) for rid in ids])
        ctx.ws.erase_local(ids)
        ctx.ws.audit(AuditAction.ERASE, RecordType.PERSON, person_id, detail=f"{len(ids)} records")
        ctx.ws.set_sync_values(checkpoint_due=1)  # the server dropped the checkpoints that held them
        return len(ids)

    def purge_late(self) -> int:
        """Purge on the server the records of erased persons that reached this device after the
        erasure (a contact written offline, a follow-up pulled later): every device dropped them
        on arrival; the coordinator's device signs their purge, and the erasure's audit record
        says how many went late. A worker's device cannot sign: it forgets its list (the
        coordinator's device meets the same records). Returns the records purged."""
        ctx = self.ctx
        ws = ctx.ws
        late = ws.late_erased()
        if not late:
            return 0
        vault = ws.vault
        if not ctx.is_coordinator or vault is None or not vault.can_sign:
            ws.forget_late_erased(late)
            return 0
        team = ctx.team_id()
        ids = sorted(late)
        for start in range(0, len(ids), self.PURGE_CHUNK):
            chunk = ids[start:start + self.PURGE_CHUNK]
            ctx.client().purge(chunk, [vault.sign_purge(team, rid) for rid in chunk])
        with ws.store.atomic():
            for person_id, n in sorted(Counter(late.values()).items()):
                ws.audit(AuditAction.ERASE, RecordType.PERSON, person_id, detail=f"{n} records removed late")
            ws.forget_late_erased(ids)
            ws.set_sync_values(checkpoint_due=1)
        return len(ids)
