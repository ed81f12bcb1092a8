"""The sealed index snapshot: written at lock, used at unlock only while no row changed since,
never trusted when it fails its check, and dropped by an erasure."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import damage_on_disk

from models.domain.vocab import RecordType
from models.workspace import Workspace
from models.workspace.loading import Loading

PASS = "passphrase-1"


def _records(ws: Workspace) -> dict[RecordType, dict[str, dict[str, object]]]:
    return {t: {k: dict(v) for k, v in ws.index.records[t].items()} for t in RecordType}


def _fresh(tmp_path: Path) -> Workspace:
    ws = Workspace(tmp_path / "dev", fast_kdf=True)
    ws.init(PASS)
    place = ws.add_place({"name": "Halmtorvet"})
    p = ws.add_person({"alias": "Søren", "usual_place": place.id})
    ws.add_contact({"at": "2026-11-20T21:00", "person_id": p.id, "place_id": place.id, "note": "kaffe"})
    ws.add_follow_up({"due": "2026-12-01", "person_id": p.id})
    return ws


def _unlock(tmp_path: Path, *, snapshot: bool) -> Workspace:
    ws = Workspace(tmp_path / "dev", fast_kdf=True)
    if not snapshot:
        ws._loading.load_snapshot = lambda: False  # type: ignore[method-assign]
    ws.unlock(PASS)
    return ws


def test_snapshot_load_equals_full_load(tmp_path: Path) -> None:
    ws = _fresh(tmp_path)
    ws.close()
    with_snapshot = _unlock(tmp_path, snapshot=True)
    assert with_snapshot._snapshot_gen == with_snapshot.store.gen() > 0
    full = _unlock(tmp_path, snapshot=False)
    assert _records(with_snapshot) == _records(full)
    assert with_snapshot._types == full._types
    assert [p.id for p in with_snapshot.search("soeren").persons] == [p.id for p in full.search("soeren").persons]


def test_a_change_after_the_snapshot_makes_it_stale(tmp_path: Path) -> None:
    ws = _fresh(tmp_path)
    ws.close()
    ws = _unlock(tmp_path, snapshot=True)
    pid = ws.persons()[0].id
    ws.edit_person(pid, {"alias": "Bjørn"})
    assert ws.store.snapshot()[0] != ws.store.gen()  # type: ignore[index]
    ws._forget()  # a crash: no new snapshot written
    again = _unlock(tmp_path, snapshot=True)
    assert again.get_person(pid).alias == "Bjørn"
    assert again.search("bjorn").persons[0].id == pid and not again.search("soeren").persons
    assert again._snapshot_gen != again.store.gen()  # the snapshot, and the one row changed since
    assert again.store.dirty() == [(pid, "person")]


def test_a_tampered_snapshot_is_not_used(tmp_path: Path) -> None:
    ws = _fresh(tmp_path)
    expected = _records(ws)
    ws.close()
    damage_on_disk(tmp_path / "dev" / "outreach.db", "snapshot")
    ws = _unlock(tmp_path, snapshot=True)
    assert ws._snapshot_gen == -1
    assert _records(ws) == expected


def test_erasure_drops_the_snapshot(tmp_path: Path) -> None:
    ws = _fresh(tmp_path)
    pid = ws.persons()[0].id
    ws.lock()
    ws.unlock(PASS)
    assert ws.store.snapshot() is not None
    ws.erase_local(ws.person_record_ids(pid))
    assert ws.store.snapshot() is None
    ws.close()
    ws = _unlock(tmp_path, snapshot=True)
    assert pid not in ws.index.records[RecordType.PERSON]


def _derived(ws: Workspace) -> dict[str, object]:
    d = ws.index.dump_derived()
    d["contacts_of"] = {k: v for k, v in d["contacts_of"].items() if v}  # an emptied set is no link
    return d


def test_the_snapshot_keeps_the_folded_texts_and_the_order(tmp_path: Path) -> None:
    ws = _fresh(tmp_path)
    pid = ws.persons()[0].id
    ws.add_contact({"at": "2026-11-19T08:00", "person_id": pid, "note": "sovepose ved Åen"})
    ws.edit_person(pid, {"alias": "Bjørn"})  # changed since the text index was built: still dirty
    ws.close()
    with_snapshot = _unlock(tmp_path, snapshot=True)
    assert with_snapshot._snapshot_gen > 0
    full = _unlock(tmp_path, snapshot=False)
    assert _derived(with_snapshot) == _derived(full)
    for query in ("bjoern", "bjorn", "aaen", "kaffe", "Halmtorvet"):
        assert with_snapshot.search(query) == full.search(query), query
    assert [c.id for c in with_snapshot.contacts(limit=5)] == [c.id for c in full.contacts(limit=5)]
    assert with_snapshot.last_contact_at(pid) == full.last_contact_at(pid)


def test_a_snapshot_of_another_format_is_not_used(tmp_path: Path) -> None:
    ws = _fresh(tmp_path)
    expected = _records(ws)
    ws._loading.FORMAT = 1  # type: ignore[misc]  # as an older version wrote it
    ws.close()
    ws = _unlock(tmp_path, snapshot=True)
    assert ws._snapshot_gen == -1
    assert _records(ws) == expected
    assert ws.search("soeren").persons


def test_a_snapshot_in_many_parts_loads_what_a_full_load_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Loading, "CHUNK", 2)  # every type in parts of two records
    ws = _fresh(tmp_path)
    for i in range(7):
        ws.add_contact({"at": f"2026-11-2{i}T21:00", "note": f"kontakt {i}"})
    ws.close()
    with_snapshot = _unlock(tmp_path, snapshot=True)
    assert with_snapshot._snapshot_gen == with_snapshot.store.gen()  # loaded from the snapshot
    full = _unlock(tmp_path, snapshot=False)
    assert _records(with_snapshot) == _records(full) and len(_records(full)[RecordType.CONTACT]) == 8
    assert with_snapshot.search("kontakt 5") == full.search("kontakt 5")


def test_a_snapshot_written_whole_by_an_older_version_is_not_used(tmp_path: Path) -> None:
    ws = _fresh(tmp_path)
    expected = _records(ws)
    ws.close()
    ws = _unlock(tmp_path, snapshot=True)
    gen, epoch, _ = ws.store.snapshot()  # type: ignore[misc]
    old = ws._vault().seal_row("snapshot", "index", epoch, {"v": 2, "g": gen, "t": {}, "r": {}, "d": {}})
    with ws.store.atomic():
        ws.store.put_snapshot(gen, epoch, old)
    ws._forget()
    again = _unlock(tmp_path, snapshot=True)
    assert again._snapshot_gen == -1 and _records(again) == expected  # a full load


def _equal_to_full_load(tmp_path: Path, ws: Workspace) -> None:
    full = _unlock(tmp_path, snapshot=False)
    assert _records(ws) == _records(full)
    assert ws._types == full._types
    for query in ("soeren", "halmtorvet", "kaffe", "Vega", "te"):
        assert ws.search(query) == full.search(query), query
    assert [c.id for c in ws.contacts(limit=10)] == [c.id for c in full.contacts(limit=10)]


def test_after_a_kill_the_snapshot_and_the_rows_changed_since_are_what_a_full_load_gives(tmp_path: Path) -> None:
    ws = _fresh(tmp_path)
    ws.close()
    ws = _unlock(tmp_path, snapshot=True)
    place = ws.places()[0]
    person = ws.persons()[0]
    ws.edit_place(place.id, {"name": "Vega"})  # the person's texts hold the place's name
    new = ws.add_person({"alias": "Ny", "usual_place": place.id})
    ws.add_contact({"at": "2026-11-30T22:00", "person_id": new.id, "note": "te og tæppe"})
    ws.add_follow_up({"due": "2026-12-03", "person_id": person.id})
    ws._forget()  # killed: no lock, no new snapshot
    again = _unlock(tmp_path, snapshot=True)
    assert again._snapshot_gen >= 0 and again._snapshot_gen != again.store.gen()  # snapshot + dirty rows
    assert again.search("vega").persons and {p.alias for p in again.search("vega").persons} == {"Søren", "Ny"}
    _equal_to_full_load(tmp_path, again)


def test_a_lock_leaves_a_few_changed_rows_to_the_next_unlock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Loading, "DIRTY_MAX", 3)
    ws = _fresh(tmp_path)
    ws.close()
    ws = _unlock(tmp_path, snapshot=True)
    blob = ws.store.snapshot()
    ws.add_contact({"at": "2026-11-30T22:00", "note": "kaffe igen"})
    ws.lock()  # one row (and its audit, if any) behind: not sealed again
    assert ws.store.snapshot() == blob and 0 < ws.store.dirty_count() <= 3
    ws = _unlock(tmp_path, snapshot=True)
    _equal_to_full_load(tmp_path, ws)
    for i in range(4):
        ws.add_contact({"at": f"2026-11-2{i}T22:00", "note": f"mere {i}"})
    ws.lock()  # now too far behind: sealed again, nothing dirty
    assert ws.store.snapshot() != blob and ws.store.dirty_count() == 0
    ws = _unlock(tmp_path, snapshot=True)
    assert ws._snapshot_gen == ws.store.gen()
    _equal_to_full_load(tmp_path, ws)


def test_a_damaged_row_changed_since_the_snapshot_is_reported(tmp_path: Path) -> None:
    ws = _fresh(tmp_path)
    ws.close()
    ws = _unlock(tmp_path, snapshot=True)
    pid = ws.persons()[0].id
    ws.edit_person(pid, {"description": "grøn jakke"})
    ws._forget()
    damage_on_disk(tmp_path / "dev" / "outreach.db", "person", pid)
    again = _unlock(tmp_path, snapshot=True)
    assert [d.record_id for d in again.damaged] == [pid]
    assert pid not in {p.id for p in again.persons()}


def test_too_much_changed_since_the_snapshot_means_a_full_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Loading, "REFRESH_MAX", 2)
    ws = _fresh(tmp_path)
    ws.close()
    ws = _unlock(tmp_path, snapshot=True)
    for i in range(3):
        ws.add_contact({"at": f"2026-11-2{i}T22:00", "note": f"mere {i}"})
    ws._forget()  # killed with three rows changed since the snapshot
    again = _unlock(tmp_path, snapshot=True)
    assert again._snapshot_gen == -1  # opened every row
    _equal_to_full_load(tmp_path, again)


def test_the_row_check_waits_while_the_user_is_busy_and_stops_at_a_lock(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from models.errors import VaultLocked

    monkeypatch.setattr(Loading, "BUSY_WAIT", 0.0)
    ws = _fresh(tmp_path)
    pid = ws.persons()[0].id
    ws._forget()
    damage_on_disk(tmp_path / "dev" / "outreach.db", "person", pid)
    ws = _unlock(tmp_path, snapshot=True)
    asked = []

    def busy_three_times() -> bool:
        asked.append(1)
        return len(asked) <= 3

    assert [d.record_id for d in ws.find_damaged(pause=1e-6, every=1, busy=busy_three_times)] == [pid]
    assert len(asked) >= 4  # it waited, then went on

    ws.close()
    again = _unlock(tmp_path, snapshot=True)

    def locked_meanwhile() -> bool:
        again.lock()
        return True

    with pytest.raises(VaultLocked):
        again.find_damaged(pause=1e-6, every=1, busy=locked_meanwhile)


def test_the_snapshot_works_after_joining_a_team(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Joining replaces the device's own key with the team's: the snapshot sealed under the old
    one must not be the one the next unlocks try (it failed on every command of a joined worker)."""
    import os

    ws = _fresh(tmp_path)
    ws.close()
    ws = _unlock(tmp_path, snapshot=True)
    before = _records(ws)
    ws.adopt_team_keys({1: os.urandom(32), 2: os.urandom(32)}, 2)
    ws.close()
    for _ in range(2):
        with caplog.at_level("WARNING"):
            again = _unlock(tmp_path, snapshot=True)
        assert "snapshot could not be used" not in caplog.text
        assert again._snapshot_gen == again.store.gen() > 0  # loaded from the snapshot
        assert _records(again) == before
        again.close()
