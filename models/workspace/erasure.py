"""Erasure on this device: records erased here (their ids only are kept), and the holds on an
erased person's contacts and follow-ups that a device did not know when the coordinator erased
them (written offline, or pulled later). Those must not live on: they are dropped wherever they
arrive, whichever came first, the record or the erasure, and listed for the coordinator's device
to purge on the server in turn (`late_erased`).

It never keeps a value of an erased record, and never erases on its own account: an erasure is the
coordinator's signed decision (checked by the sync engine before it gets here).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from ..domain.merge import RecordState
from ..domain.vocab import RecordType
from .session import Session
from .writes import Writer

__all__ = ["Erasure"]


class Erasure:
    LATE = "late_erased"

    def __init__(self, session: Session, writer: Writer) -> None:
        self._s = session
        self._w = writer

    def erase_local(self, record_ids: Iterable[str]) -> None:
        ids = list(record_ids)
        store = self._s.store
        with store.atomic():
            store.mark_erased(ids, self._s.now())
        self._w.unindex(ids)

    def erased_ids(self) -> set[str]:
        """Ids of the records erased here (their ids only are kept)."""
        return self._s.store.erased_ids()

    def erased_reference(self, rtype: RecordType, state: RecordState, erased: set[str]) -> str | None:
        """The erased person a contact or follow-up names (itself, or through a merge), if any."""
        if rtype not in (RecordType.CONTACT, RecordType.FOLLOWUP) or state.deleted is not None:
            return None
        entry = state.values.get("person_id")
        pid = entry[0] if entry else None
        seen: set[str] = set()
        merged = self._s.index.merged
        while isinstance(pid, str) and pid not in seen:
            if pid in erased:
                return pid
            seen.add(pid)
            pid = merged.get(pid)
        return None

    def dependents(self, person_ids: list[str]) -> dict[str, str]:
        """Contacts and follow-ups on the screens that name one of these persons (record id ->
        person id): what an erasure of them takes along."""
        if not person_ids:
            return {}
        index = self._s.index
        wanted = set(person_ids)
        out = {cid: pid for pid in person_ids for cid in index.contacts_of.get(pid, ())}
        for fid, fu in index.records[RecordType.FOLLOWUP].items():
            if fu.get("person_id") in wanted:
                out[fid] = str(fu["person_id"])
        return out

    def erase_late(self, late: dict[str, str], now: float) -> None:
        """Erase records of erased persons here and list them for a purge on the server (in the
        caller's transaction)."""
        if not late:
            return
        s = self._s
        store = s.store
        store.mark_erased(list(late), now)
        pending = json.loads(store.sync_state(self.LATE, "{}") or "{}")
        pending.update(late)
        store.set_sync_state(self.LATE, json.dumps(pending, sort_keys=True))
        for rid in late:
            s.types.pop(rid, None)
            store.add_notice(now, "erased_late", rid, None,
                             "a record of an erased person arrived after the erasure and was removed")

    def late_erased(self) -> dict[str, str]:
        """Records removed here because they belong to an erased person (record id -> person id),
        not yet purged on the server: the coordinator's device purges them (`forget_late_erased`
        after)."""
        return dict(json.loads(self._s.store.sync_state(self.LATE, "{}") or "{}"))

    def forget_late_erased(self, record_ids: Iterable[str]) -> None:
        done = set(record_ids)
        store = self._s.store
        with store.atomic():
            pending = {r: p for r, p in self.late_erased().items() if r not in done}
            store.set_sync_state(self.LATE, json.dumps(pending, sort_keys=True))
