"""The coordinator's review and data-protection tools, over an unlocked workspace: open conflicts
and their resolution (`conflicts`), duplicate persons (suggested, scored and explained; merged as
ordinary synced changes: `duplicates`), the retention review (persons not met for a long time:
erase, or keep with a reason: here), the access request of GDPR art. 15 and the audit log with its
filters (`access`). This module is the one door to all of them: it re-exports the others' names,
so a caller imports `review` alone.

Every change it makes goes through the workspace's writes, so it is sealed, queued and synced like
any other, and each is audited. It never erases anything itself (erasure is a purge on the server:
the UI calls the sync engine's `erase_person`), never prints or logs personal data, and keeps the
texts the UI shows as stable keys (`duplicate.<reason>`) for the UI to translate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from ..domain.vocab import AuditAction, RecordType
from ..errors import InvalidInput
from . import access as _access
from .access import (
    AccessReport,
    AccessRequest,
    access_html,
    access_json,
    access_report,
    access_request,
    access_text,
    audit_actors,
    audit_log,
)
from .conflicts import ConflictItem, conflicts, resolve_conflict
from .duplicates import (
    REASONS,
    DuplicateSuggestion,
    MergeResult,
    dismiss_duplicate,
    duplicate_suggestions,
    merge_persons,
)
from .reports import add_months, facts, to_date

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = [
    "ConflictItem",
    "conflicts",
    "resolve_conflict",
    "DuplicateSuggestion",
    "duplicate_suggestions",
    "dismiss_duplicate",
    "MergeResult",
    "merge_persons",
    "RetentionItem",
    "DEFAULT_RETENTION_MONTHS",
    "RETENTION_KEEP",
    "retention_review",
    "keep_person",
    "ErasurePreview",
    "erasure_preview",
    "AccessReport",
    "AccessRequest",
    "access_report",
    "access_request",
    "access_json",
    "access_text",
    "access_html",
    "audit_log",
    "audit_actors",
    "TEXT_KEYS",
]

DEFAULT_RETENTION_MONTHS = 24
RETENTION_KEEP = "retention: keep"  # the audit detail of a keep decision


# ================================================================================= retention
@dataclass(frozen=True)
class RetentionItem:
    person_id: str
    alias: str
    last_contact: date | None  # last meeting (kind not `not_found`); None: never met
    since: date  # the last meeting, else the day the person was first registered
    kept_on: date | None  # the last 'keep' decision
    reason: str | None  # its reason (the person's retention note)


def _keep_decisions(ws: Workspace) -> dict[str, date]:
    out: dict[str, date] = {}
    for values in ws.index.records[RecordType.AUDIT].values():
        if (values.get("detail") == RETENTION_KEEP and values.get("action") == AuditAction.CHANGE.value
                and values.get("target_id")):
            day = to_date(values.get("at"))
            if day and day > out.get(values["target_id"], date.min):
                out[values["target_id"]] = day
    return out


def retention_review(ws: Workspace, *, months: int = DEFAULT_RETENTION_MONTHS, today: date | None = None,
                     include_kept: bool = False) -> list[RetentionItem]:
    """Persons not met for `months` months or more (never met: counted from when they were
    registered), oldest first. A person kept with a reason less than `months` months ago is left
    out unless `include_kept`; after that the decision is due again."""
    if not 1 <= months <= 600:
        raise InvalidInput("months", "between 1 and 600")
    today = today or date.today()
    cutoff = add_months(today, -months)
    f = facts(ws)
    met: dict[str, date] = {}
    for c in f.contacts:
        if c.met and c.person_id:
            met[c.person_id] = max(met.get(c.person_id, c.day), c.day)
    kept = _keep_decisions(ws)
    out = []
    for pid, p in f.persons.items():
        since = met.get(pid) or f.first_seen.get(pid)
        if since is None or since > cutoff:
            continue
        kept_on = kept.get(pid)
        if kept_on is not None and kept_on > cutoff and not include_kept:
            continue
        out.append(RetentionItem(person_id=pid, alias=str(p.get("alias") or ""), last_contact=met.get(pid),
                                 since=since, kept_on=kept_on, reason=p.get("retention_note")))
    out.sort(key=lambda i: (i.since, i.alias.casefold(), i.person_id))
    return out


def keep_person(ws: Workspace, person_id: str, *, reason: str) -> None:
    """Keep a person past the retention time: the reason goes into the person's sealed
    `retention_note` (synced), and an audit event (action change, detail 'retention: keep',
    no reason in it) dates the decision."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason", "say why the person's data is kept")
    with ws.store.atomic():
        ws.edit_person(person_id, {"retention_note": reason})
        ws.audit(AuditAction.CHANGE, RecordType.PERSON, person_id, detail=RETENTION_KEEP)


@dataclass(frozen=True)
class ErasurePreview:
    """What an erasure (art. 17) takes away, for the confirmation: counts only. An erasure record
    without personal data stays; audit events stay (they hold no personal data)."""

    person_id: str
    alias: str
    contacts: int
    follow_ups: int
    records: int  # all of them, the person included


def erasure_preview(ws: Workspace, person_id: str) -> ErasurePreview:
    alias = ws.get_person(person_id).alias
    ids = ws.person_record_ids(person_id)
    fus = sum(1 for i in ids if i in ws.index.records[RecordType.FOLLOWUP])
    contacts = sum(1 for i in ids if i in ws.index.records[RecordType.CONTACT])
    return ErasurePreview(person_id=person_id, alias=alias, contacts=contacts, follow_ups=fus, records=len(ids))


# Every key the review's screens ask `translate` for besides the vocabularies' `<name>.<value>`: the
# access document's (field labels reuse `export.<field>`) and the duplicate reasons' keys.
TEXT_KEYS: tuple[str, ...] = tuple(sorted({*_access.TEXT_KEYS, *(f"duplicate.{r}" for r in REASONS)}))
