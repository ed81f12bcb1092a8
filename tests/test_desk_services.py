"""The coordinator's desk behind the screens (`Services.desk`), without a browser: devices against a
real `outreach-server` process (invite with its QR code, a pending device admitted when the list is
fetched, each with the fingerprint its own screen shows, revoke with the revoked device wiping
itself), erasure that reaches a second device, the overview's rows, conflicts resolved by keeping a
side or writing a value, duplicates merged, retention, access-request files, exports that Danish
Excel reads and that say where they go, the aggregate report, the national count, and bad input
refused with the field named."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from serverproc import ServerProcess, create_team
from test_ui_services import PIN, run

from app.services import AppConfig, Problem, Services, explain
from app.services.problems import FingerprintMismatch
from models.errors import InvalidInput, StoreError
from models.usecases.exports import DanishExcel
from models.workspace import Workspace
from sync.engine import SyncEngine
from sync.errors import DeviceRevoked

WORKER_PASS = "worker passphrase 1"


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Services]:
    """A coordinator's session on a device of its own (no team: the desk's local parts)."""
    s = Services(AppConfig(data_dir=tmp_path / "coordinator", fast_kdf=True))
    run(s.create_workspace(PIN, "Kim"))
    yield s
    run(s.close())


@pytest.fixture
def team(tmp_path: Path) -> Iterator[tuple[Services, ServerProcess]]:
    """A coordinator's session that founded a team on a real server process."""
    (tmp_path / "server").mkdir()
    with ServerProcess(workdir=tmp_path / "server") as server:
        code = create_team(server.db_url, "Vesterbro")
        s = Services(AppConfig(data_dir=tmp_path / "coordinator", fast_kdf=True))
        run(s.create_workspace(PIN, "Kim"))
        run(s.join(server.url, code))
        try:
            yield s, server
        finally:
            run(s.close())


def _worker(tmp_path: Path, name: str, url: str, code: str) -> tuple[Workspace, SyncEngine]:
    ws = Workspace(tmp_path / name, fast_kdf=True)
    ws.init(WORKER_PASS, worker_name=name)
    eng = SyncEngine(ws)
    eng.join(url, code, device_name=name)
    return ws, eng


# ================================================================================== devices
def test_invite_admit_revoke_and_the_revoked_device_wipes(team: tuple[Services, ServerProcess], tmp_path: Path) -> None:
    s, server = team
    invite = run(s.desk.invite())
    assert invite.qr_png.startswith(b"\x89PNG") and invite.code.count("-") >= 1
    ws, eng = _worker(tmp_path, "ali", server.url, invite.code)
    assert eng.sync().pending  # no key yet: the coordinator has not looked

    view = run(s.desk.devices())  # fetching the list checks the proof and lets the device in
    assert view.admitted == 1
    ali = next(d for d in view.devices if d.name == "ali")
    assert ali.status == "active" and not ali.this_device
    assert ali.fingerprint == ws.fingerprint()  # the figure the joining phone shows on its own screen
    me = next(d for d in view.devices if d.this_device)
    assert me.role == "coordinator" and me.fingerprint == s.ws.fingerprint()
    assert view.recovery_here and view.current_epoch == 1

    s.ws.add_person({"alias": "Lange Peter"})
    run(s.sync.refresh())
    s.engine.sync()
    eng.sync()
    assert [p.alias for p in ws.persons()] == ["Lange Peter"]  # the admitted device reads the team's data

    with pytest.raises(InvalidInput):
        run(s.desk.revoke(s.ws.device_id))  # not itself
    report = run(s.desk.revoke(ali.device_id))
    assert report.epoch == 2 and report.keyed == (s.ws.device_id,)  # exactly who got the new key
    view = run(s.desk.devices())
    assert next(d for d in view.devices if d.device_id == ali.device_id).status == "revoked"
    assert view.current_epoch == 2
    with pytest.raises(DeviceRevoked):
        eng.sync()
    assert not ws.exists()  # wiped
    # the audit says who was revoked and how many devices got the new key (this one: ali was the other)
    assert any(e.detail == f"device revoked: {ali.device_id}; new key for 1 devices" for e in s.ws.audit_events())


def test_erasure_reaches_the_other_device(team: tuple[Services, ServerProcess], tmp_path: Path) -> None:
    s, server = team
    ws, eng = _worker(tmp_path, "ali", server.url, run(s.desk.invite()).code)
    run(s.desk.devices())
    eng.sync()
    pid = ws.add_person({"alias": "Store Søren"}).id
    ws.add_contact({"person_id": pid, "at": datetime.now().isoformat(), "note": "Talte om bolig"})
    ws.add_person({"alias": "Lange Peter"})
    eng.sync()
    s.engine.sync()
    preview = run(s.desk.erasure_preview(pid))
    assert (preview.alias, preview.contacts, preview.follow_ups, preview.records) == ("Store Søren", 1, 0, 2)
    assert run(s.desk.erase(pid)) == 2
    assert sorted(p.alias for p in s.ws.persons()) == ["Lange Peter"]
    eng.sync()  # the purge reaches the other device with its next pull
    assert sorted(p.alias for p in ws.persons()) == ["Lange Peter"]
    s.engine.sync()  # the erasure record (no personal data) goes out like any record
    eng.sync()
    assert sorted(p.alias for p in ws.persons()) == ["Lange Peter"]
    assert ws.contacts() == []
    assert any(e.action.value == "erase" and e.target_id == pid for e in ws.audit_events())


def test_offline_devices_and_erase_are_words_not_crashes(team: tuple[Services, ServerProcess]) -> None:
    s, server = team
    pid = s.ws.add_person({"alias": "Ny"}).id
    server.stop()
    from sync.errors import SyncError

    with pytest.raises(SyncError):
        run(s.desk.devices())
    with pytest.raises(SyncError):
        run(s.desk.erase(pid))
    assert [p.id for p in s.ws.persons()] == [pid]  # nothing erased here when the server did not


def test_compare_fingerprints_before_a_device_is_let_in(team: tuple[Services, ServerProcess],
                                                         tmp_path: Path) -> None:
    s, server = team
    assert not run(s.desk.devices()).confirms_devices  # off unless the coordinator turns it on
    run(s.desk.set_confirms_devices(True))
    ws, eng = _worker(tmp_path, "ali", server.url, run(s.desk.invite()).code)

    view = run(s.desk.devices())  # its proof is checked, but it waits for the comparison
    assert view.confirms_devices and view.admitted == 0
    ali = next(d for d in view.devices if d.name == "ali")
    assert ali.status == "pending" and ali.awaiting_confirmation
    assert not any(d.awaiting_confirmation for d in view.devices if d is not ali)
    assert eng.sync().pending
    assert s.engine.sync().admitted == 0  # nor does a coordinator's sync let it in

    for typed, field in [("", "fingerprint"), ("   ", "fingerprint"), ("not hex!", "fingerprint"),
                         ("1A2B 3C4D", "fingerprint")]:  # too short: a slip, not another key
        with pytest.raises(InvalidInput) as bad:
            run(s.desk.confirm_device(ali.device_id, typed))
        assert bad.value.field == field
        assert explain(bad.value) == Problem("errors.invalid_fingerprint", {"field": "fingerprint"}, "fingerprint")
    with pytest.raises(InvalidInput) as bad:
        run(s.desk.confirm_device("f" * 32, ws.fingerprint()))
    assert explain(bad.value).key == "errors.invalid_device_waiting"

    with pytest.raises(FingerprintMismatch) as differ:  # another key than the phone in the hand
        run(s.desk.confirm_device(ali.device_id, s.ws.fingerprint()))
    assert explain(differ.value) == Problem("errors.fingerprint_mismatch", {}, "fingerprint")
    view = run(s.desk.devices())
    assert next(d for d in view.devices if d.device_id == ali.device_id).awaiting_confirmation  # not let in
    assert eng.sync().pending

    typed = ws.fingerprint().replace(" ", "").lower()  # as a person types it: case and spaces ignored
    view = run(s.desk.confirm_device(ali.device_id, typed))
    assert view.admitted == 1 and view.confirms_devices
    ali = next(d for d in view.devices if d.device_id == ali.device_id)
    assert ali.status == "active" and not ali.awaiting_confirmation
    s.ws.add_person({"alias": "Lange Peter"})
    s.engine.sync()
    assert not eng.sync().pending
    assert [p.alias for p in ws.persons()] == ["Lange Peter"]  # it has the team's key
    with pytest.raises(InvalidInput):
        run(s.desk.confirm_device(ali.device_id, ws.fingerprint()))  # no longer waiting
    details = [e.detail for e in s.ws.audit_events()]
    assert "compare fingerprints before a device is let in: on" in details
    assert f"device fingerprint compared: {ali.device_id}" in details

    run(s.desk.set_confirms_devices(False))  # off again: a proof that checks is enough
    ws2, eng2 = _worker(tmp_path, "bo", server.url, run(s.desk.invite()).code)
    view = run(s.desk.devices())
    assert not view.confirms_devices and view.admitted == 1
    assert next(d for d in view.devices if d.name == "bo").status == "active"
    assert "compare fingerprints before a device is let in: off" in [e.detail for e in s.ws.audit_events()]


# ================================================================================= overview
def test_overview_rows_follow_the_data_and_the_goal(desk: Services) -> None:
    ws = desk.ws
    today = date.today()
    a = ws.add_person({"alias": "A", "category": "street"}).id
    ws.add_person({"alias": "B", "category": "shelter"})
    c = ws.add_person({"alias": "C", "category": "street"}).id
    ws.edit_person(c, {"status": "housed", "status_date": today.isoformat()})
    for i in range(3):  # one person, three contacts: met once
        ws.add_contact({"person_id": a, "at": (datetime.now() - timedelta(minutes=i)).isoformat(),
                        "workers": ["Kim"]})
    view = run(desk.desk.overview(period="12m"))
    ov = view.overview
    assert ov.persons_known == 3 and ov.by_status["active"] == 2 and ov.by_status["housed"] == 1
    assert ov.by_category["street"] == 1 and ov.by_category["shelter"] == 1
    assert ov.met_this_week == 1 and ov.housed_this_year == 1
    assert ov.goal.current == 2 and ov.goal.target == 100 and ov.goal.baseline == 169
    assert view.workers == ["kim"]
    assert set(view.series) == {"contacts", "persons_met", "housed", "homeless"}
    assert view.series["contacts"].totals[-1] == 3 and view.series["persons_met"].totals[-1] == 1
    assert view.series["contacts"].by_category["street"][-1] == 3
    assert len(view.series["homeless"].months) == 12

    run(desk.desk.set_goal(1, 50))
    g = run(desk.desk.overview(period="this_year", worker="KIM")).overview.goal
    assert (g.target, g.baseline, g.current) == (1, 50, 1)  # Kim's persons: A only
    with pytest.raises(InvalidInput):
        run(desk.desk.set_goal(-1))
    with pytest.raises(InvalidInput):
        run(desk.desk.overview(period="forever"))


# =================================================================================== review
def test_conflicts_kept_or_written_and_duplicates_merged(tmp_path: Path, make_team, remote_ops, passphrase) -> None:  # type: ignore[no-untyped-def]
    a, b = make_team(2)
    p = a.add_person({"alias": "Lange Peter"})
    q = a.add_person({"alias": "Maja"})
    b.apply_remote(remote_ops(a))
    a.edit_person(p.id, {"status": "housed"})
    b.edit_person(p.id, {"status": "deceased"})
    a.edit_person(q.id, {"nationality": "Dansk"})
    b.edit_person(q.id, {"nationality": "Polsk"})
    a.apply_remote(remote_ops(b))
    dup = a.add_person({"alias": "Store Søren", "birth_year": 1970})
    a.add_contact({"person_id": dup.id, "at": datetime.now().isoformat()})
    keep = a.add_person({"alias": "Store Soeren", "birth_year": 1970})
    a.close()

    s = Services(AppConfig(data_dir=tmp_path / "device0", fast_kdf=True))
    try:
        run(s.unlock(passphrase))
        conflicts = run(s.desk.conflicts())
        by_field = {c.item.field: c for c in conflicts}
        assert set(by_field) >= {"status"}
        status = by_field["status"]
        assert {status.item.value_a, status.item.value_b} == {"housed", "deceased"}
        assert status.item.label == "Lange Peter"
        with pytest.raises(InvalidInput):
            run(s.desk.resolve(status, keep="c"))
        with pytest.raises(InvalidInput):
            run(s.desk.resolve(status, value="  "))
        run(s.desk.resolve(status, keep="a"))
        assert s.ws.get_person(p.id).status.value == status.item.value_a
        if "nationality" in by_field:
            run(s.desk.resolve(by_field["nationality"], value="Svensk"))
            assert s.ws.get_person(q.id).nationality == "Svensk"
        assert run(s.desk.conflicts()) == []

        dups = run(s.desk.duplicates())
        pair = next(d for d in dups if {d.a.id, d.b.id} == {dup.id, keep.id})
        assert "same_birth_year" in pair.reasons
        res = run(s.desk.merge(keep_id=keep.id, drop_id=dup.id))
        assert res.contacts == 1
        assert [c.person_id for c in s.ws.contacts()] == [keep.id]
        assert all(x.id != dup.id for x in s.ws.persons())
        assert any(e.action.value == "merge" for e in s.ws.audit_events())
    finally:
        run(s.close())


# ========================================================================== data protection
def test_retention_keep_access_files_and_audit(desk: Services, tmp_path: Path) -> None:
    ws = desk.ws
    old = ws.add_person({"alias": "Gammel"}).id
    ws.add_contact({"person_id": old, "at": (datetime.now() - timedelta(days=800)).isoformat()})
    recent = ws.add_person({"alias": "Ny"}).id
    ws.add_contact({"person_id": recent, "at": datetime.now().isoformat(), "note": "kaffe"})
    assert [r.alias for r in run(desk.desk.retention(24))] == ["Gammel"]
    with pytest.raises(InvalidInput):
        run(desk.desk.keep(old, "  "))
    run(desk.desk.keep(old, "Sag i gang"))
    assert run(desk.desk.retention(24)) == []
    assert ws.get_person(old).retention_note == "Sag i gang"
    with pytest.raises(InvalidInput):
        run(desk.desk.retention(0))

    text = run(desk.desk.access_text(recent))
    assert "Ny" in text and "kaffe" in text
    out = tmp_path / "out"
    html_path, json_path = run(desk.desk.access_files(recent, str(out)))
    assert html_path.parent == out.resolve() and (html_path.stat().st_mode & 0o077) == 0
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    assert "kaffe" in json.dumps(doc, ensure_ascii=False)
    for bad in ("", "relative/dir", str(ws.data_dir / "x"), str(html_path)):
        with pytest.raises(InvalidInput):
            run(desk.desk.access_files(recent, bad))

    rows, actors = run(desk.desk.audit(person_id=recent))
    # created (the person, their contact), shown once, saved once: newest first
    assert [r.action for r in rows] == ["export", "export", "create", "create"]
    assert all((r.detail or "").startswith("access request") for r in rows[:2])
    assert all(r.target_id == recent and r.target_alias == "Ny" for r in rows[:2])
    assert actors == ["Kim"]
    exports_only, _ = run(desk.desk.audit(action="export"))
    assert exports_only and all(r.action == "export" for r in exports_only)
    assert run(desk.desk.audit(actor="nobody"))[0] == []
    with pytest.raises(InvalidInput):
        run(desk.desk.audit(action="dance"))


# ==================================================================================== files
def test_an_access_request_builds_its_report_once(desk: Services, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The dialog's document and the files saved from it are one report, gathered once (each use audited)."""
    import models.usecases.access as access

    ws = desk.ws
    pid = ws.add_person({"alias": "Ny"}).id
    ws.add_contact({"person_id": pid, "at": datetime.now().isoformat(), "note": "kaffe"})
    built: list[str] = []
    build = access.access_report

    def counted(ws: Workspace, person_id: str) -> access.AccessReport:
        built.append(person_id)
        return build(ws, person_id)

    monkeypatch.setattr(access, "access_report", counted)
    text = run(desk.desk.access_text(pid))
    html_path, json_path = run(desk.desk.access_files(pid, str(tmp_path / "out")))
    assert built == [pid]
    assert "kaffe" in text and "kaffe" in json_path.read_text(encoding="utf-8")
    assert "kaffe" in html_path.read_text(encoding="utf-8")
    assert len([e for e in ws.audit_events() if e.action.value == "export" and e.target_id == pid]) == 2


def test_exports_read_back_in_the_danish_dialect_and_say_where_they_go(desk: Services, tmp_path: Path) -> None:
    ws = desk.ws
    pid = ws.add_person({"alias": "Æblemand", "category": "street"}).id
    long_ago = (datetime.now() - timedelta(days=800)).replace(hour=21, minute=30, second=0, microsecond=0)
    ws.add_contact({"person_id": pid, "at": long_ago.isoformat(), "note": "Tæppe; varm suppe"})
    ws.add_contact({"person_id": pid, "at": datetime.now().isoformat()})
    plan = run(desk.desk.plan_export("contacts", str(tmp_path / "Dropbox" / "udtræk")))
    assert plan.rows == 2 and plan.synced_folder == "Dropbox" and not plan.exists
    assert not plan.path.exists()  # planning writes nothing
    done = run(desk.desk.export(plan))
    assert done.rows == 2
    raw = plan.path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), dialect=DanishExcel))
    assert len(table) == 3 and any("Tæppe; varm suppe" in cell for cell in table[1] + table[2])
    assert any(cell.startswith(long_ago.strftime("%d-%m-%Y")) for row in table[1:] for cell in row)
    assert run(desk.desk.plan_export("contacts", str(tmp_path / "Dropbox" / "udtræk"))).exists
    recent = run(desk.desk.plan_export("contacts", str(tmp_path / "x"), period="12m"))
    assert recent.rows == 1  # the contact of 800 days ago is outside the last 12 months
    assert sum(1 for e in ws.audit_events() if e.action.value == "export") == 1  # the plan is not audited
    for kind, folder, kwargs in (("secrets", str(tmp_path), {}), ("persons", str(ws.data_dir), {}),
                                 ("persons", str(tmp_path), {"period": "soon"}),
                                 ("count_forms", str(tmp_path), {"year": 2027, "week": 54})):
        with pytest.raises(InvalidInput):
            run(desk.desk.plan_export(kind, folder, **kwargs))

    csv_path, html_path = run(desk.desk.report_files(str(tmp_path / "rapport"), period="12m"))
    report = csv_path.read_bytes().decode("utf-8-sig")
    assert "Æblemand" not in report and "Tæppe" not in report  # no personal data
    assert "<html" in html_path.read_text(encoding="utf-8").lower()

    year, week = date.today().isocalendar()[:2]
    count = run(desk.desk.national_count(year, week))
    assert count.total == 1 and count.counts["street"] == 1  # two contacts, one person, counted once
    with pytest.raises(InvalidInput):
        run(desk.desk.national_count(1999, 6))


def test_the_desk_needs_an_unlocked_device(desk: Services) -> None:
    run(desk.lock())
    with pytest.raises(StoreError):
        run(desk.desk.overview())



def test_the_app_audits_saves_and_logs_searches_and_lists(desk: Services) -> None:
    ws = desk.ws
    pid = ws.add_person({"alias": "Søren"}).id
    assert [r.action for r in run(desk.desk.audit(person_id=pid))[0]] == ["create"]
    run(desk.search_persons("søren"))
    run(desk.persons())
    reads = [r for r in run(desk.desk.audit(person_id=pid, action="read"))[0]]
    assert [r.detail for r in reads] == ["search: 1 shown"]  # the list right after it is not logged again
    assert desk.engine.status().pending_ops == 1  # the person; its events are no pending changes


def test_a_contact_saved_in_the_app_records_the_devices_worker(desk: Services) -> None:
    """So that the overview's worker filter counts it (issue 14, item 8)."""
    from app.state import ContactDraft

    draft = ContactDraft()
    draft.new_person_alias = "Søren"
    cid = run(desk.save_contact(draft))
    assert desk.ws.get_contact(cid).workers == ["Kim"]


def test_the_desk_writes_a_checkpoint_a_new_device_starts_from(team: tuple[Services, ServerProcess],
                                                                tmp_path: Path) -> None:
    s, server = team
    for n in range(3):
        s.ws.add_person({"alias": f"Person {n}"})
    made = run(s.desk.checkpoint())
    assert made is not None and made.seq > 0
    assert run(s.desk.checkpoint()) is None  # nothing new since the last one
    invite = run(s.desk.invite())
    ws, eng = _worker(tmp_path, "new", server.url, invite.code)
    run(s.desk.devices())  # lets it in
    assert eng.sync().from_checkpoint >= 3
    assert sorted(p.alias for p in ws.persons()) == [f"Person {n}" for n in range(3)]
