"""Who did what: the audit log answers "who changed what, and who looked a person up" (GDPR art.
15, the data protection officer's review). Events are ordinary sealed, synced records, so they hold
ids, kinds and field names, never a value. A look-up is logged once per shown person per
`LOOKUP_QUIET` seconds on a device: typing a search does not log every keystroke again.

It must never put a personal value (a field's content, a search text) into an event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ..domain.tables import AuditEventCreate, AuditEventPublic
from ..domain.vocab import AuditAction, RecordType
from .session import Session
from .settings import Settings
from .writes import Writer

__all__ = ["Audit"]


class Audit:
    LOOKUP_QUIET = 600.0
    LOOKUP_IDS = 100  # person ids in one look-up event
    AUDITED = (RecordType.PERSON, RecordType.CONTACT, RecordType.FOLLOWUP)

    def __init__(self, session: Session, writer: Writer, settings: Settings, *, audit_writes: bool) -> None:
        self._s = session
        self._w = writer
        self._settings = settings
        self.audited = audit_writes  # creates, edits and deletes write their audit event (`unaudited`)
        self._looked_up: dict[str, float] = {}  # person id -> when a look-up of it was last logged

    def audit_write(self, action: AuditAction, rtype: RecordType, rid: str,
                    fields: dict[str, Any] | None = None) -> None:
        if not self.audited or rtype not in self.AUDITED:
            return
        detail = ("fields: " + ", ".join(sorted(fields)))[:400] if fields else None
        self.audit(action, rtype, rid, detail=detail)

    @contextmanager
    def unaudited(self) -> Iterator[None]:
        """Writes that a single audit event of the caller's describes (a merge, a conflict's
        resolution, an import, the demo data) write no event each."""
        before, self.audited = self.audited, False
        try:
            yield
        finally:
            self.audited = before

    def log_lookup(self, person_ids: Iterable[str], how: str) -> int:
        """Log that these persons were shown (a search, a list, a person opened): one event for
        all of them, leaving out those logged in the last `LOOKUP_QUIET` seconds. `how` is a
        short kind ("search", "list", "show"), never the search text. Returns how many were
        logged."""
        now = self._s.now()
        fresh = [pid for pid in dict.fromkeys(person_ids)
                 if now - self._looked_up.get(pid, float("-inf")) >= self.LOOKUP_QUIET]
        if not fresh:
            return 0
        w = self._w
        for start in range(0, len(fresh), self.LOOKUP_IDS):
            part = fresh[start:start + self.LOOKUP_IDS]
            event = AuditEventCreate(
                at=datetime.now().replace(microsecond=0), actor=self._settings.worker_name() or "?",
                device_id=self._s.device_id, action=AuditAction.READ, target_type=RecordType.PERSON,
                target_id=part[0] if len(part) == 1 else None, target_ids=part if len(part) > 1 else [],
                detail=f"{how[:40]}: {len(part)} shown",
            )
            with w.transaction():
                w.write(RecordType.AUDIT, w.new_id(), event.model_dump(mode="json"))
        self._looked_up.update(dict.fromkeys(fresh, now))
        return len(fresh)

    def audit(self, action: AuditAction, target_type: RecordType | None = None, target_id: str | None = None,
              detail: str | None = None) -> None:
        event = AuditEventCreate(
            at=datetime.now().replace(microsecond=0), actor=self._settings.worker_name() or "?",
            device_id=self._s.device_id, action=action, target_type=target_type, target_id=target_id, detail=detail,
        )
        w = self._w
        with w.transaction():
            w.write(RecordType.AUDIT, w.new_id(), event.model_dump(mode="json"))

    def audit_events(self) -> list[AuditEventPublic]:
        self._s.unlocked_vault()
        table = self._s.index.records[RecordType.AUDIT]
        # newest first; within one second (`at` has no finer grain) by the write's clock
        ordered = sorted(table.values(), key=lambda v: v.get("created_hlc") or 0, reverse=True)
        return sorted((AuditEventPublic.model_validate(v) for v in ordered), key=lambda e: e.at, reverse=True)
