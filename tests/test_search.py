"""Text search: `models.domain.index.fold` and `TextIndex` (case, accents, Danish spelling, AND of words,
the incremental index and its rebuild), and `Workspace.search` over persons, contacts and places."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.domain.index import TextIndex, fold, query_forms
from models.domain.vocab import RecordType
from models.workspace import RemoteOp, Workspace

MakeWorkspace = Callable[..., Workspace]
Data = Callable[..., dict[str, Any]]


def matches(text: str, query: str) -> bool:
    idx = TextIndex()
    idx.load([("r", text)])
    return idx.search(query.split(), 10) == ["r"]


# ------------------------------------------------------------------------------ folding
@pytest.mark.parametrize("text, query", [
    ("Søren", "soeren"), ("Søren", "søren"), ("Søren", "SOREN"), ("Søren", "SØREN"), ("Søren", "soren"),
    ("Soeren", "Søren"), ("Soren", "søren"),
    ("Åse", "aase"), ("Åse", "ase"), ("Åse", "åse"), ("Åse", "ÅSE"), ("Aase", "Åse"),
    ("Ærø", "aeroe"), ("Ærø", "ærø"), ("Ærø", "AERO"), ("Aeroe", "Ærø"),
    ("José Müller", "jose"), ("José Müller", "JOSÉ"), ("José Müller", "mueller"), ("José Müller", "muller"),
    ("Straße", "strasse"), ("Łukasz", "lukasz"), ("Nørrebroparken", "nørrebro"),
    ("LANGE Peter", "lange peter"), ("  sover   ved\tbroen ", "sover ved"),
])
def test_case_accents_and_danish_spelling(text: str, query: str) -> None:
    assert matches(text, query)


@pytest.mark.parametrize("text, query", [
    ("Søren", "særen"), ("Åse", "ose"), ("Ærø", "aro"), ("Søren", "sorensen"), ("Jens", "jens peter"),
])
def test_what_does_not_match(text: str, query: str) -> None:
    assert not matches(text, query)


def test_fold_keeps_both_forms_apart_and_on_one_line() -> None:
    danish, plain = fold("Søren  Åse\nÆrø").split("\x1e")
    assert danish == "soeren aase aeroe" and plain == "soren ase aero"
    assert query_forms("Søren") == ["soeren", "soren"]
    assert query_forms("   ") == []
    # a match never spans the two forms, nor two records
    assert not matches("ab", "bab") and not matches("ab", "ba")
    idx = TextIndex()
    idx.load([("1", "foo"), ("2", "bar")])
    assert idx.search(["oob"], 10) == [] and idx.search(["oo"], 10) == ["1"]


def test_multi_word_is_and_in_any_order() -> None:
    idx = TextIndex()
    idx.load([("1", "Lange Peter grøn jakke"), ("2", "Lille Peter rød hue"), ("3", "Lange Jens grøn hue")])
    assert sorted(idx.search(["peter"], 10)) == ["1", "2"]
    assert idx.search(["peter", "lange"], 10) == ["1"]
    assert idx.search(["GRØN", "hue"], 10) == ["3"]
    assert sorted(idx.search(["grøn"], 10)) == ["1", "3"]
    assert idx.search(["peter", "lange", "hue"], 10) == []
    assert idx.search([], 10) == [] and idx.search(["  "], 10) == []


def test_limit_is_respected() -> None:
    idx = TextIndex()
    idx.load([(str(i), f"Demo person {i}") for i in range(100)])
    assert len(idx.search(["demo"], 7)) == 7
    for i in range(10):
        idx.set(f"new{i}", f"Demo new {i}")
    assert len(idx.search(["demo"], 7)) == 7


def test_and_search_finds_a_match_behind_many_first_word_hits() -> None:
    """A common first word must not crowd out the one record that has every word."""
    idx = TextIndex()
    idx.load([(str(i), f"anders sover ved station {i}") for i in range(1000)] + [("x", "anders jensen")])
    assert idx.search(["anders", "jensen"], 50) == ["x"]
    assert idx.search(["jensen", "anders"], 50) == ["x"]


def test_a_limited_search_is_not_starved_by_changed_records() -> None:
    """Records removed or changed since the last rebuild are still in the long string; they must
    not use up the candidates of a limited search."""
    idx = TextIndex()
    idx.load([(str(i), f"demo person {i}") for i in range(300)])
    for i in range(200):
        idx.remove(str(i)) if i % 2 else idx.set(str(i), f"renamed {i}")
    found = idx.search(["demo"], 5)
    assert len(found) == 5 and all(int(rid) >= 200 for rid in found)
    assert sorted(idx.search(["demo"], 1000), key=int) == [str(i) for i in range(200, 300)]


# -------------------------------------------------------------------- incremental index
def test_changes_past_the_rebuild_threshold_keep_results_right() -> None:
    idx = TextIndex()
    idx.load([("keep", "Åse fra Ærø"), ("old", "Søren gammel")])
    n = TextIndex.REBUILD_AT + 50
    for i in range(n):
        idx.set(f"p{i}", f"person {i} {'søren' if i % 97 == 0 else 'bent'}")
        if i == TextIndex.REBUILD_AT // 2:
            idx.remove("old")
            idx.set("keep", "Åse fra Ærø, nu Fanø")
            assert idx.search(["søren"], 10_000).count("old") == 0
    expected = {f"p{i}" for i in range(n) if i % 97 == 0}
    assert set(idx.search(["soeren"], 10_000)) == expected
    assert idx.search(["fanø", "ase"], 10) == ["keep"]
    assert idx.search(["gammel"], 10) == []
    assert len(idx) == n + 1
    # and after some more changes on top of the rebuilt string
    idx.remove("p0")
    idx.set("p1", "Søren igen")
    assert set(idx.search(["soren"], 10_000)) == (expected - {"p0"}) | {"p1"}


def _reference(texts: dict[str, str], words: list[str]) -> set[str]:
    return {rid for rid, text in texts.items() if all(any(f in fold(text) for f in query_forms(w)) for w in words)}


_WORDS = ["Søren", "soeren", "Åse", "aase", "Ærø", "bent", "grøn", "jakke", "hue", "Peter"]
_change = st.tuples(st.sampled_from([f"r{i}" for i in range(12)]),
                    st.none() | st.lists(st.sampled_from(_WORDS), min_size=1, max_size=4).map(" ".join))


@given(initial=st.lists(_change, max_size=8), changes=st.lists(_change, max_size=40),
       rebuild_at=st.integers(1, 6), query=st.lists(st.sampled_from(_WORDS), min_size=1, max_size=2))
@settings(max_examples=300, deadline=None)
def test_text_index_agrees_with_a_plain_scan(initial: list[tuple[str, str | None]],
                                            changes: list[tuple[str, str | None]], rebuild_at: int,
                                            query: list[str]) -> None:
    texts = {rid: text for rid, text in initial if text is not None}
    idx = TextIndex()
    idx.REBUILD_AT = rebuild_at
    idx.load(texts.items())
    for rid, text in changes:
        if text is None:
            idx.remove(rid)
            texts.pop(rid, None)
        else:
            idx.set(rid, text)
            texts[rid] = text
        found = idx.search(query, 1000)
        assert len(found) == len(set(found))
        assert set(found) == _reference(texts, query)
    assert len(idx) == len(texts)


# --------------------------------------------------------------------- Workspace.search
@pytest.fixture
def ws(make_workspace: MakeWorkspace) -> Workspace:
    return make_workspace()


def _ids(items: list[Any]) -> list[str]:
    return [x.id for x in items]


def test_workspace_search_danish_names(ws: Workspace, person_data: Data) -> None:
    soeren = ws.add_person(person_data(alias="Søren", full_name="Søren Kierkegaard")).id
    aase = ws.add_person(person_data(alias="Åse")).id
    aeroe = ws.add_person(person_data(alias="Bjørn", description="kommer fra Ærø")).id
    for q in ("soeren", "søren", "SOREN", "Søren", "kierkegaard"):
        assert _ids(ws.search(q).persons) == [soeren], q
    for q in ("aase", "ase", "Åse"):
        assert _ids(ws.search(q).persons) == [aase], q
    assert _ids(ws.search("aeroe").persons) == [aeroe]
    assert ws.search("karen").persons == []


def test_workspace_search_is_and_across_fields(ws: Workspace, person_data: Data) -> None:
    place = ws.add_place({"name": "Nørreport St.", "zone": "City"}).id
    both = ws.add_person(person_data(alias="Lange Peter", description="grøn jakke", usual_place=place)).id
    ws.add_person(person_data(alias="Lille Peter", description="rød hue"))
    ws.add_person(person_data(alias="Jens", description="grøn jakke"))
    assert _ids(ws.search("peter grøn").persons) == [both]
    assert _ids(ws.search("noerreport peter").persons) == [both]
    assert len(ws.search("peter").persons) == 2
    found = ws.search("nørreport")
    assert _ids(found.places) == [place] and _ids(found.persons) == [both]
    assert _ids(ws.search("city").places) == [place]


def test_contact_notes_lead_to_their_person(ws: Workspace, person_data: Data, contact_data: Data) -> None:
    pid = ws.add_person(person_data(alias="Bent")).id
    other = ws.add_person(person_data(alias="Åse")).id
    cid = ws.add_contact(contact_data(person_id=pid, note="Sover i opgangen på Istedgade")).id
    ws.add_contact(contact_data(person_id=other, note="fik kaffe"))
    anonymous = ws.add_contact(contact_data(note="ukendt mand, istedgade")).id
    found = ws.search("istedgade")
    assert _ids(found.persons) == [pid]
    assert sorted(_ids(found.contacts)) == sorted([cid, anonymous])
    assert _ids(ws.search("opgangen istedgade").contacts) == [cid]
    # an edited note moves the person in the results
    ws.edit_contact(cid, {"note": "flyttet til herberg"})
    assert ws.search("istedgade").persons == []
    assert _ids(ws.search("herberg").persons) == [pid]


def test_deleted_records_vanish_from_results(ws: Workspace, person_data: Data, contact_data: Data) -> None:
    place = ws.add_place({"name": "Halmtorvet"}).id
    gone = ws.add_person(person_data(alias="Ib", description="rød cykel")).id
    stays = ws.add_person(person_data(alias="Ole", description="rød hue", usual_place=place)).id
    cid = ws.add_contact(contact_data(person_id=stays, note="spurgte efter cykel")).id
    assert sorted(_ids(ws.search("cykel").persons)) == sorted([gone, stays])
    ws.delete_record(RecordType.PERSON, gone)
    assert _ids(ws.search("cykel").persons) == [stays]  # through the contact note only
    assert _ids(ws.search("rød").persons) == [stays]
    ws.delete_record(RecordType.CONTACT, cid)
    assert ws.search("cykel").persons == [] and ws.search("cykel").contacts == []
    ws.delete_record(RecordType.PLACE, place)
    assert ws.search("halmtorvet").places == []
    assert ws.search("halmtorvet").persons == []  # nor does the person match by that place's name
    ws.lock()
    ws.unlock("correct horse battery")
    assert ws.search("cykel").persons == [] and _ids(ws.search("rød").persons) == [stays]


def test_a_renamed_place_finds_its_persons_by_the_new_name(ws: Workspace, person_data: Data,
                                                           passphrase: str) -> None:
    place = ws.add_place({"name": "Enghave Parken"}).id
    pid = ws.add_person(person_data(alias="Tove", usual_place=place)).id
    assert _ids(ws.search("enghave").persons) == [pid]
    ws.edit_place(place, {"name": "Sønder Boulevard"})
    live = (_ids(ws.search("sønder").persons), _ids(ws.search("enghave").persons))
    ws.lock()
    ws.unlock(passphrase)
    restarted = (_ids(ws.search("sønder").persons), _ids(ws.search("enghave").persons))
    assert live == restarted == ([pid], [])


def test_search_past_the_rebuild_threshold_in_a_workspace(ws: Workspace, person_data: Data,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           passphrase: str) -> None:
    monkeypatch.setattr(TextIndex, "REBUILD_AT", 4)
    ids = [ws.add_person(person_data(alias=f"Søren {i}")).id for i in range(15)]
    for i, pid in enumerate(ids):
        if i % 3 == 0:
            ws.edit_person(pid, {"alias": f"Åse {i}"})
        elif i % 3 == 1:
            ws.delete_record(RecordType.PERSON, pid)
    expect_soeren = {pid for i, pid in enumerate(ids) if i % 3 == 2}
    expect_aase = {pid for i, pid in enumerate(ids) if i % 3 == 0}
    assert set(_ids(ws.search("soeren").persons)) == expect_soeren
    assert set(_ids(ws.search("aase").persons)) == expect_aase
    ws.lock()
    ws.unlock(passphrase)
    assert set(_ids(ws.search("SOREN").persons)) == expect_soeren
    assert set(_ids(ws.search("ase").persons)) == expect_aase


def test_remote_changes_and_purges_reach_the_search(make_team: Callable[..., list[Workspace]],
                                                    remote_ops: Callable[..., list[RemoteOp]],
                                                    person_data: Data, contact_data: Data) -> None:
    a, b = make_team(2)
    pid = a.add_person(person_data(alias="Åse")).id
    a.add_contact(contact_data(person_id=pid, note="ved Ærø-færgen"))
    b.apply_remote(remote_ops(a))
    assert _ids(b.search("aeroe").persons) == [pid] and _ids(b.search("aase").persons) == [pid]
    seen = len(a.store.outbox_all())
    a.edit_person(pid, {"alias": "Søren"})
    b.apply_remote(remote_ops(a, after_seq=seen))
    assert b.search("aase").persons == [] and _ids(b.search("soeren").persons) == [pid]
    b.apply_remote([], purges=[pid])
    assert b.search("soeren").persons == [] and b.search("aeroe").persons == []


def test_search_needs_an_unlocked_workspace(ws: Workspace) -> None:
    from models.errors import VaultLocked

    ws.lock()
    with pytest.raises(VaultLocked):
        ws.search("x")


def test_the_person_met_last_is_found_among_many_namesakes(make_workspace: MakeWorkspace, passphrase: str) -> None:
    """A short list of a common name holds the most recently met, whatever order the records
    were made in, and the same list comes back after the device is locked and unlocked."""
    ws = make_workspace("namesakes")
    ids = [ws.add_person({"alias": f"Peter {n}"}).id for n in range(40)]
    for day, pid in enumerate(ids[:30]):  # met long ago, in creation order
        ws.add_contact({"person_id": pid, "at": f"2025-01-{day % 28 + 1:02d}T12:00:00"})
    ws.add_contact({"person_id": ids[37], "at": "2026-11-30T21:00:00"})  # met last night
    found = [p.id for p in ws.search("peter", limit=8).persons]
    assert found[0] == ids[37] and len(found) == 8
    ws.close()
    again = make_workspace("namesakes", init=False)
    again.unlock(passphrase)
    assert [p.id for p in again.search("peter", limit=8).persons] == found
