"""Who changed what, and who looked a person up (issue 14): creating, editing and deleting a
person, contact or follow-up writes an audit event with the field names (never a value); a search
or a list that shows persons is one look-up event naming them; the access report (GDPR art. 15)
and the audit filters find both; and none of it counts as the worker's pending changes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from models.domain.vocab import AuditAction, RecordType
from models.usecases.review import access_request, audit_log, merge_persons
from models.workspace import Workspace


def _events(ws: Workspace) -> list[tuple[str, str | None, str | None]]:
    return [(e.action.value, e.target_id, e.detail) for e in audit_log(ws)][::-1]  # oldest first


def test_creates_edits_and_deletes_are_audited_without_values(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(audit_writes=True)
    pid = ws.add_person({"alias": "Søren"}).id
    ws.edit_person(pid, {"alias": "Søren B", "birth_year": 1970})
    cid = ws.add_contact({"at": datetime(2026, 11, 2, 9), "person_id": pid, "note": "kaffe", "follow_up": "2026-12-01"}).id
    ws.edit_contact(cid, {"note": "kaffe og mad"})
    fid = ws.follow_ups(person_id=pid)[0].id
    ws.edit_follow_up(fid, {"done": True})
    ws.delete_record(RecordType.CONTACT, cid)
    assert _events(ws) == [
        ("create", pid, None), ("change", pid, "fields: alias, birth_year"), ("create", cid, None),
        ("change", cid, "fields: note"), ("change", fid, "fields: done"), ("delete", cid, None),
    ]
    assert all("Søren" not in str(e) and "kaffe" not in str(e) for e in _events(ws))
    assert [e.action for e in audit_log(ws, action="create")] == [AuditAction.CREATE] * 2
    # the person's access report says who made and changed what about them
    report = access_request(ws, pid)
    assert {(e["action"], e["target_id"]) for e in report.audit_events} >= {
        ("create", pid), ("change", pid), ("change", fid)}


def test_a_merge_is_one_event(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(audit_writes=True)
    keep, drop = ws.add_person({"alias": "Bent"}).id, ws.add_person({"alias": "Bent H"}).id
    ws.add_contact({"at": datetime(2026, 11, 2, 9), "person_id": drop})
    before = len(_events(ws))
    merge_persons(ws, keep_id=keep, drop_id=drop)
    assert [a for a, _t, _d in _events(ws)[before:]] == ["merge"]


def test_searches_and_lists_are_logged_as_look_ups_once_in_a_while(make_workspace: Callable[..., Workspace],
                                                                    clock: Any) -> None:
    ws = make_workspace(now=clock)
    ids = [ws.add_person({"alias": f"P{i}"}).id for i in range(3)]
    assert ws.log_lookup(ids[:2], "search") == 2
    assert ws.log_lookup(ids, "list") == 1  # the two just logged are not logged again at once
    clock.advance(ws.LOOKUP_QUIET)
    assert ws.log_lookup(ids[:1], "search") == 1
    reads = [e for e in audit_log(ws) if e.action is AuditAction.READ]
    assert [(e.detail, e.target_id, list(e.target_ids)) for e in reads][::-1] == [
        ("search: 2 shown", None, ids[:2]), ("list: 1 shown", ids[2], []), ("search: 1 shown", ids[0], [])]
    # the access report and the audit filter of each person find the look-ups that showed them
    assert len([e for e in access_request(ws, ids[1]).audit_events if e["action"] == "read"]) == 1
    assert [e.detail for e in audit_log(ws, person_id=ids[0], action="read")] == ["search: 1 shown", "search: 2 shown"]
    assert "P0" not in str(reads)


def test_the_audit_log_is_not_the_workers_pending_changes(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace(audit_writes=True)
    pid = ws.add_person({"alias": "A"}).id
    ws.log_lookup([pid], "show")
    assert ws.outbox_count() == 3  # the person, its create event, the look-up
    assert ws.pending_changes() == 1
