"""Review and data protection (`models.usecases.review`): conflicts listed with both values and resolved as
synced changes; duplicate persons suggested (Danish-aware, scored, explained) and merged (contacts
and follow-ups re-pointed, fields completed, the dropped one tombstoned, audited, and the same on a
second device after sync); the retention review's 24-month boundary and keep decisions; the access
request holding every record of one person and nothing of another; the audit log's filters."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from models.domain.vocab import AuditAction, RecordType
from models.errors import InvalidInput, NotFound
from models.usecases.review import (
    RETENTION_KEEP,
    access_html,
    access_json,
    access_request,
    access_text,
    audit_actors,
    audit_log,
    conflicts,
    dismiss_duplicate,
    duplicate_suggestions,
    erasure_preview,
    keep_person,
    merge_persons,
    resolve_conflict,
    retention_review,
)
from models.workspace import RemoteOp, Workspace

MakeWorkspace = Callable[..., Workspace]
MakeTeam = Callable[..., list[Workspace]]
RemoteOps = Callable[..., list[RemoteOp]]


@pytest.fixture
def ws(make_workspace: MakeWorkspace) -> Workspace:
    return make_workspace(worker_name="Mette")


def person(ws: Workspace, alias: str, **fields: Any) -> str:
    return ws.add_person({"alias": alias, **fields}).id


def contact(ws: Workspace, person_id: str | None, at: str, **fields: Any) -> str:
    return ws.add_contact({"at": at, "person_id": person_id, **fields}).id


def pairs(ws: Workspace, **kw: Any) -> dict[frozenset[str], tuple[str, ...]]:
    return {frozenset((s.person_a, s.person_b)): s.reasons for s in duplicate_suggestions(ws, **kw)}


# ============================================================================ conflicts
def _conflicting_team(make_team: MakeTeam, remote_ops: RemoteOps) -> tuple[Workspace, Workspace, str]:
    a, b = make_team(2)
    pid = a.add_person({"alias": "Lange Peter", "category": "street"}).id
    b.apply_remote(remote_ops(a))
    na, nb = len(a.store.outbox_all()), len(b.store.outbox_all())
    a.edit_person(pid, {"status": "housed"})
    b.edit_person(pid, {"status": "closed"})
    a.apply_remote(remote_ops(b, after_seq=nb))
    b.apply_remote(remote_ops(a, after_seq=na))
    return a, b, pid


def test_conflicts_list_both_values_devices_and_times(make_team: MakeTeam, remote_ops: RemoteOps) -> None:
    a, b, pid = _conflicting_team(make_team, remote_ops)
    names = {a.device_id: "Mettes telefon", b.device_id: "Koordinator"}
    [item] = conflicts(b, device_names=names)
    assert (item.record_type, item.record_id, item.field, item.label) == (RecordType.PERSON, pid, "status",
                                                                          "Lange Peter")
    assert {item.value_a, item.value_b} == {"housed", "closed"}
    assert {item.device_a, item.device_b} == {a.device_id, b.device_id}
    assert {item.device_a_name, item.device_b_name} == {"Mettes telefon", "Koordinator"}
    assert item.at_a.year >= 2025 and item.at_b.year >= 2025
    assert b.get_person(pid).status.value == item.value_b  # the value shown meanwhile
    assert conflicts(b, record_ids=["0" * 32]) == []


def test_resolve_by_choosing_a_side_or_a_new_value_is_synced(make_team: MakeTeam, remote_ops: RemoteOps) -> None:
    a, b, pid = _conflicting_team(make_team, remote_ops)
    [item] = conflicts(b)
    with pytest.raises(InvalidInput):
        resolve_conflict(b, item)  # neither a side nor a value
    with pytest.raises(InvalidInput):
        resolve_conflict(b, item, keep="a", value="active")  # both
    nb = len(b.store.outbox_all())
    resolve_conflict(b, item, keep="a")
    assert conflicts(b) == [] and b.get_person(pid).status.value == item.value_a
    [event] = [e for e in b.audit_events() if e.action is AuditAction.CHANGE]
    assert event.target_id == pid and event.detail == "conflict resolved: status"
    a.apply_remote(remote_ops(b, after_seq=nb))
    assert conflicts(a) == [] and a.get_person(pid).status.value == item.value_a


def test_resolve_with_a_new_value(make_team: MakeTeam, remote_ops: RemoteOps) -> None:
    a, b, pid = _conflicting_team(make_team, remote_ops)
    [item] = conflicts(a)
    resolve_conflict(a, item, value="moved_away")
    assert conflicts(a) == [] and a.get_person(pid).status.value == "moved_away"
    with pytest.raises(InvalidInput):
        resolve_conflict(b, conflicts(b)[0], value="no such status")


# ============================================================================ duplicates
def test_duplicates_are_suggested_with_reasons(ws: Workspace) -> None:
    place = ws.add_place({"name": "Hovedbanegården"}).id
    peter = person(ws, "Lange Peter", birth_year=1971, description="rød hue, stor sort hund", usual_place=place)
    peter2 = person(ws, "lange  Petr", birth_year=1971, description="Sort hund og rød hue", usual_place=place)
    soren = person(ws, "Søren Å", birth_year=1960)
    soeren = person(ws, "Soeren Aa")  # Danish transcription: the same name
    mads = person(ws, "Mads", birth_year=1971)
    young = person(ws, "Lange Peter", birth_year=1990)  # same alias, twenty years apart: someone else
    cpr_a = person(ws, "Kim", cpr="0101801234")
    cpr_b = person(ws, "Bodil", cpr="010180-1234")  # same CPR: the same person whatever the alias
    cpr_c = person(ws, "Kim", cpr="0202802345")  # same alias, different CPR: never
    found = pairs(ws)
    assert found[frozenset((peter, peter2))] == (
        "similar_alias", "same_birth_year", "similar_description", "same_usual_place")
    assert found[frozenset((soren, soeren))] == ("same_alias",)
    assert found[frozenset((cpr_a, cpr_b))] == ("same_cpr",)
    assert frozenset((peter, young)) not in found and frozenset((peter2, young)) not in found
    assert frozenset((cpr_a, cpr_c)) not in found
    assert not any(mads in p for p in found)
    ranked = duplicate_suggestions(ws)
    assert ranked[0].score == 1.0 and {ranked[0].person_a, ranked[0].person_b} == {cpr_a, cpr_b}
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
    # dismissed pairs are not suggested again
    dismiss_duplicate(ws, soeren, soren)
    assert frozenset((soren, soeren)) not in pairs(ws) and frozenset((peter, peter2)) in pairs(ws)


def test_shared_places_of_contacts_count_for_a_duplicate(ws: Workspace) -> None:
    place = ws.add_place({"name": "Enghave Park"}).id
    a = person(ws, "Bette Jens")
    b = person(ws, "Jens")
    contact(ws, a, "2025-01-10T10:00:00", place_id=place)
    contact(ws, b, "2025-01-12T10:00:00", place_id=place)
    reasons = pairs(ws)[frozenset((a, b))]
    assert "shared_places" in reasons and "similar_alias" in reasons
    [s] = duplicate_suggestions(ws)
    alone = duplicate_suggestions(ws, min_score=s.score + 0.01)
    assert alone == []


# ============================================================================ merge
def test_merge_repoints_contacts_and_follow_ups_copies_fields_and_tombstones(
        make_team: MakeTeam, remote_ops: RemoteOps) -> None:
    a, other = make_team(2)
    keep = person(a, "Lange Peter", needs=["alcohol"], category="street")
    drop = person(a, "Lange Petr", full_name="Peter Hansen", birth_year=1971, needs=["drugs", "alcohol"],
                  consent="verbal", consent_date="2025-01-03", category="shelter", description="rød hue")
    bystander = person(a, "Mads")
    kept_contact = contact(a, keep, "2025-01-01T10:00:00")
    moved = [contact(a, drop, "2025-01-05T10:00:00", follow_up="2025-01-12"),
             contact(a, drop, "2025-01-06T10:00:00")]
    loose_fu = a.add_follow_up({"due": "2025-02-01", "person_id": drop, "note": "ring"}).id
    mads_contact = contact(a, bystander, "2025-01-07T10:00:00")
    other.apply_remote(remote_ops(a))
    seen = len(a.store.outbox_all())

    result = merge_persons(a, keep_id=keep, drop_id=drop)
    assert (result.contacts, result.follow_ups) == (2, 2)
    assert result.fields == ("birth_year", "consent", "consent_date", "consent_scope", "description", "full_name",
                             "needs")
    for ws in (a, other):
        if ws is other:
            other.apply_remote(remote_ops(a, after_seq=seen))
        merged = ws.get_person(keep)
        assert (merged.alias, merged.full_name, merged.birth_year) == ("Lange Peter", "Peter Hansen", 1971)
        assert [n.value for n in merged.needs] == ["alcohol", "drugs"]
        assert merged.category is not None and merged.category.value == "street"  # the kept one's value stays
        assert merged.consent.value == "verbal" and merged.description == "rød hue"
        with pytest.raises(NotFound):
            ws.get_person(drop)
        assert drop not in ws.index.records[RecordType.PERSON]
        state = ws._state(RecordType.PERSON, drop)
        assert state is not None and state.deleted is not None  # a tombstone, not a purge
        assert sorted(c.id for c in ws.contacts(person_id=keep)) == sorted([kept_contact, *moved])
        assert ws.contacts(person_id=drop) == []
        assert ws.get_contact(mads_contact).person_id == bystander
        fus = ws.follow_ups(person_id=keep)
        assert len(fus) == 2 and loose_fu in {f.id for f in fus}
        assert ws.follow_ups(person_id=drop) == []
        [event] = [e for e in ws.audit_events() if e.action is AuditAction.MERGE]
        assert event.target_id == keep and event.detail is not None
        assert event.detail.startswith(f"merged {drop}: 2 contacts, 2 follow-ups")
        assert "Petr" not in event.detail and "Hansen" not in event.detail


def test_merge_refuses_different_cpr_and_itself_and_changes_nothing(ws: Workspace) -> None:
    a = person(ws, "Kim", cpr="0101801234")
    b = person(ws, "Kim", cpr="0202802345")
    c = contact(ws, b, "2025-01-01T10:00:00")
    before = ws.outbox_count()
    with pytest.raises(InvalidInput):
        merge_persons(ws, keep_id=a, drop_id=b)
    with pytest.raises(InvalidInput):
        merge_persons(ws, keep_id=a, drop_id=a)
    with pytest.raises(NotFound):
        merge_persons(ws, keep_id=a, drop_id="f" * 32)
    assert ws.outbox_count() == before and ws.get_contact(c).person_id == b and ws.get_person(b).alias == "Kim"


def test_a_merge_that_fails_midway_leaves_file_and_index_as_they_were(ws: Workspace,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    keep = person(ws, "A")
    drop = person(ws, "B", birth_year=1970)
    c = contact(ws, drop, "2025-01-01T10:00:00")
    before = ws.outbox_count()

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(ws, "delete_record", boom)
    with pytest.raises(RuntimeError):
        merge_persons(ws, keep_id=keep, drop_id=drop)
    assert ws.outbox_count() == before
    assert ws.get_contact(c).person_id == drop and ws.get_person(keep).birth_year is None
    assert ws.contacts(person_id=drop)[0].id == c


# ============================================================================ retention
def test_retention_lists_persons_not_met_for_24_months_at_the_boundary(ws: Workspace) -> None:
    today = date(2025, 6, 15)  # 24 months back: 15 June 2023
    under = person(ws, "Under")
    contact(ws, under, "2023-06-16T10:00:00")  # a day under 24 months ago: not yet
    exactly = person(ws, "Exactly")
    contact(ws, exactly, "2023-06-15T23:00:00")
    over = person(ws, "Over")
    contact(ws, over, "2023-06-14T10:00:00")
    contact(ws, over, "2025-06-01T10:00:00", kind="not_found")  # looked for, not met: no contact
    recent = person(ws, "Recent")
    contact(ws, recent, "2025-06-01T10:00:00")
    person(ws, "Never met")  # registered today: not due
    items = retention_review(ws, today=today)
    assert [i.person_id for i in items] == [over, exactly]
    assert items[0].last_contact == date(2023, 6, 14) and items[0].alias == "Over"
    assert items[0].kept_on is None and items[0].reason is None
    assert [i.person_id for i in retention_review(ws, today=date(2025, 6, 16))] == [over, exactly, under]
    assert {i.person_id for i in retention_review(ws, today=today, months=12)} == {over, exactly, under}
    with pytest.raises(InvalidInput):
        retention_review(ws, months=0)


def test_keep_with_a_reason_is_stored_sealed_audited_and_hides_the_person(ws: Workspace) -> None:
    old = person(ws, "Gammel")
    contact(ws, old, "2020-01-01T10:00:00")
    other = person(ws, "Anden")
    contact(ws, other, "2020-01-02T10:00:00")
    today = date.today()
    assert {i.person_id for i in retention_review(ws, today=today)} == {old, other}
    with pytest.raises(InvalidInput):
        keep_person(ws, old, reason="  ")
    keep_person(ws, old, reason="Sag om bolig kører stadig")
    assert ws.get_person(old).retention_note == "Sag om bolig kører stadig"
    [event] = [e for e in ws.audit_events() if e.detail == RETENTION_KEEP]
    assert event.action is AuditAction.CHANGE and event.target_id == old
    assert [i.person_id for i in retention_review(ws, today=today)] == [other]
    [kept] = [i for i in retention_review(ws, today=today, include_kept=True) if i.person_id == old]
    assert kept.kept_on == today and kept.reason == "Sag om bolig kører stadig"
    # the decision is due again once it is as old as the retention time
    assert old in {i.person_id for i in retention_review(ws, today=date(today.year + 2, 12, 31))}


def test_erasure_preview_counts_what_goes(ws: Workspace) -> None:
    pid = person(ws, "A")
    contact(ws, pid, "2025-01-01T10:00:00", follow_up="2025-01-05")
    contact(ws, pid, "2025-01-02T10:00:00")
    contact(ws, person(ws, "B"), "2025-01-02T10:00:00")
    p = erasure_preview(ws, pid)
    assert (p.alias, p.contacts, p.follow_ups, p.records) == ("A", 2, 1, 4)


# ============================================================================ access request
def test_access_request_holds_every_record_of_the_person_and_nothing_of_another(
        make_team: MakeTeam, remote_ops: RemoteOps) -> None:
    a, b, pid = _conflicting_team(make_team, remote_ops)
    ws = b
    place = ws.add_place({"name": "Hovedbanegården"}).id
    ws.edit_person(pid, {"description": "OWNDESCRIPTION", "usual_place": place})
    mine = [contact(ws, pid, "2025-01-01T10:00:00", note="OWNNOTE1", follow_up="2025-01-09"),
            contact(ws, pid, "2025-01-02T10:00:00", note="OWNNOTE2", place_id=place)]
    my_fu = ws.add_follow_up({"due": "2025-03-01", "person_id": pid, "note": "OWNFOLLOW"}).id
    ws.audit(AuditAction.READ, RecordType.PERSON, pid)
    stranger = person(ws, "STRANGERALIAS", full_name="Stranger Name", description="STRANGERDESC")
    theirs = [contact(ws, stranger, "2025-01-01T11:00:00", note="STRANGERNOTE", follow_up="2025-01-10"),
              ws.add_follow_up({"due": "2025-03-02", "person_id": stranger, "note": "STRANGERFOLLOW"}).id]
    ws.audit(AuditAction.READ, RecordType.PERSON, stranger)
    contact(ws, None, "2025-01-01T12:00:00", note="ANONYMOUSNOTE")
    my_fus = {f.id for f in ws.follow_ups(person_id=pid)}
    assert my_fu in my_fus and len(my_fus) == 2

    report = access_request(ws, pid)
    assert report.person["id"] == pid and report.person["description"] == "OWNDESCRIPTION"
    assert [c["id"] for c in report.contacts] == mine
    assert {f["id"] for f in report.follow_ups} == my_fus
    assert len(report.audit_events) == 1 and report.audit_events[0]["action"] == "read"
    [conflict] = report.conflicts
    assert conflict["field"] == "status" and {conflict["value_a"], conflict["value_b"]} == {"housed", "closed"}
    assert set(report.places) == {place}

    doc = access_json(report)
    body = json.loads(doc)
    assert body["person_id"] == pid and len(body["contacts"]) == 2
    text = access_text(report)
    page = access_html(report)
    for out in (doc, text, page):
        for own in ("OWNDESCRIPTION", "OWNNOTE1", "OWNNOTE2", "OWNFOLLOW", "Lange Peter", "Hovedbanegården",
                    *mine, my_fu):
            assert own in out, own
        for foreign in ("STRANGER", "Stranger Name", "ANONYMOUSNOTE", stranger, *theirs):
            assert foreign not in out, foreign
    assert "01-01-2025 10:00" in text and "09-01-2025" in text
    # the access request is itself audited as an export (counts only)
    [event] = [e for e in ws.audit_events() if e.action is AuditAction.EXPORT]
    assert event.target_id == pid and event.detail == "access request: 6 records, 1 conflicts"
    with pytest.raises(NotFound):
        access_request(ws, "0" * 32)
    assert a  # the other device took part only in making the conflict


def test_access_request_follows_a_merge(ws: Workspace) -> None:
    keep = person(ws, "A")
    drop = person(ws, "B")
    ws.audit(AuditAction.READ, RecordType.PERSON, drop)
    merge_persons(ws, keep_id=keep, drop_id=drop)
    report = access_request(ws, keep)
    assert sorted(e["action"] for e in report.audit_events) == ["merge", "read"]


# ============================================================================ audit log
def test_audit_log_filters_by_person_worker_action_and_day(ws: Workspace) -> None:
    a = person(ws, "A")
    b = person(ws, "B")
    ca = contact(ws, a, "2025-01-01T10:00:00")
    ws.audit(AuditAction.READ, RecordType.PERSON, a)
    ws.audit(AuditAction.CHANGE, RecordType.CONTACT, ca, detail="note")
    ws.set_worker_name("Ole")
    ws.audit(AuditAction.READ, RecordType.PERSON, b)
    ws.audit(AuditAction.EXPORT, RecordType.PERSON, None, detail="csv persons: 2 rows")
    assert [e.action.value for e in audit_log(ws)] == ["export", "read", "change", "read"]  # newest first
    assert [(e.action.value, e.target_id) for e in audit_log(ws, person_id=a)] == [("change", ca), ("read", a)]
    assert [e.target_id for e in audit_log(ws, actor=" ole")] == [None, b]
    assert [e.target_id for e in audit_log(ws, action="read")] == [b, a]
    assert [e.target_id for e in audit_log(ws, action=AuditAction.READ, actor="Mette")] == [a]
    assert len(audit_log(ws, device_id=ws.device_id)) == 4 and audit_log(ws, device_id="other") == []
    today = date.today()
    assert len(audit_log(ws, start=today, end=today)) == 4
    assert audit_log(ws, end=date(2020, 1, 1)) == []
    assert len(audit_log(ws, limit=2)) == 2
    assert audit_actors(ws) == ["Mette", "Ole"]


def test_every_text_key_asked_for_is_listed_for_the_translations(ws: Workspace) -> None:
    from models.domain.vocab import VOCABULARIES
    from models.usecases.review import TEXT_KEYS

    asked: set[str] = set()

    def t(key: str) -> str:
        asked.add(key)
        return key

    place = ws.add_place({"name": "P"}).id
    pid = person(ws, "Lange Peter", birth_year=1971, usual_place=place, description="rød hue", cpr="0101801234",
                 needs=["alcohol"], consent="verbal")
    twin = person(ws, "Lange Petr", birth_year=1971, usual_place=place, description="rød hue")
    contact(ws, pid, "2025-01-01T10:00:00", place_id=place, services=["food"], follow_up="2025-01-02", lat=55.1,
            lon=12.2)
    ws.audit(AuditAction.READ, RecordType.PERSON, pid)
    report = access_request(ws, pid)
    access_text(report, translate=t)
    access_html(report, translate=t)
    vocab = {f"{name}.{member.value}" for name, enum in VOCABULARIES.items() for member in enum}
    assert sorted(asked - vocab - set(TEXT_KEYS)) == []
    reasons = {f"duplicate.{r}" for s in duplicate_suggestions(ws) for r in s.reasons}
    assert reasons and reasons <= set(TEXT_KEYS)
    assert twin


def test_the_fast_edit_distance_agrees_with_the_textbook_table() -> None:
    import random

    from models.usecases.duplicates import _edit_ratio

    def table(a: str, b: str) -> float:
        prev = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            cur = [i]
            for j, cb in enumerate(b, 1):
                cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
            prev = cur
        return 1.0 - prev[-1] / max(len(a), len(b), 1)

    rng = random.Random(169)
    for _ in range(3000):
        a = "".join(rng.choice("abeøå ") for _ in range(rng.randint(0, 14)))
        b = "".join(rng.choice("abeøå ") for _ in range(rng.randint(0, 14)))
        if a and b:
            assert _edit_ratio(a, b) == pytest.approx(table(a, b)), (a, b)
    assert _edit_ratio("lange peter", "lange petr") == pytest.approx(1 - 1 / 11)
    assert _edit_ratio("jonny", "johnny") == pytest.approx(1 - 1 / 6)
