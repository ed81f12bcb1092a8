"""Late data, in every order of syncs (issue 14): an erased person's records never come back, and
records that arrive after a merge follow the merge.

Workers are offline for hours: a contact or a follow-up written for a person reaches the others
after the coordinator has erased that person, or merged them into another. Each example takes the
enrolled team of the sync state machine (a coordinator and two workers holding the same seed
persons, one in-process server; `tests/test_sync_stateful.py`), and Hypothesis draws a schedule:
writes on any device (while that device still shows the person), syncs of any device in any
order, and the coordinator's decision at any point of it. Then every device syncs until quiet.

Erasure: no record written for the erased person survives on any device (rows, screens, the
store's queue) or on the server, and the coordinator's audit says how many records went late for
each that the server had stored. Merge: every record written for the merged-away person ends on
the kept person, on every device, and none hangs on the merged-away one.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from asgi_adapter import asgi_session
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from test_sync_stateful import PASSPHRASE, Team, enrolled_team

from models.domain.vocab import AuditAction, RecordType
from models.usecases.review import merge_persons
from models.workspace import Workspace
from sync.engine import SyncEngine

N = 3  # devices: 0 is the coordinator
EXAMPLES = 30

WRITE = st.tuples(st.just("write"), st.integers(0, N - 1), st.sampled_from(["contact", "followup"]))
SYNC = st.tuples(st.just("sync"), st.integers(0, N - 1), st.just(""))
SCHEDULE = st.lists(st.one_of(WRITE, SYNC), max_size=10)


@pytest.fixture(scope="module")
def team() -> Iterator[Team]:
    with enrolled_team() as made:
        yield made


@contextlib.contextmanager
def devices(team: Team) -> Iterator[list[tuple[Workspace, SyncEngine]]]:
    team.reset()
    opened: list[tuple[Workspace, SyncEngine]] = []
    try:
        for i in range(N):
            ws = Workspace(team.device_dir(i), fast_kdf=True)
            ws.unlock(PASSPHRASE)
            opened.append((ws, SyncEngine(ws, session=asgi_session(team.adapter), push_ops=2, pull_limit=3)))
        yield opened
    finally:
        for ws, engine in opened:
            engine.close()
            ws.close()


def write(ws: Workspace, kind: str, person_id: str, n: int) -> str:
    if kind == "contact":
        return ws.add_contact({"at": datetime(2026, 11, 1, 9, 0) + timedelta(minutes=n), "person_id": person_id,
                               "note": f"late note {n}"}).id
    return ws.add_follow_up({"due": date(2026, 12, 1), "person_id": person_id, "note": f"call back {n}"}).id


def server_records(team: Team) -> set[str]:
    with contextlib.closing(sqlite3.connect(f"file:{team.server_db}?mode=ro", uri=True)) as conn:
        return {r[0] for r in conn.execute("SELECT record_id FROM op")}


def quiet(team: Team, opened: list[tuple[Workspace, SyncEngine]], written: dict[str, int], stored: set[str]) -> None:
    """Every device syncs until nothing moves: a late record may take a worker's push, the
    coordinator's pull and purge, and the workers' pull of that purge."""
    for _ in range(3):
        for _ws, engine in opened:
            engine.sync()
            stored |= server_records(team) & set(written)


def run(team: Team, opened: list[tuple[Workspace, SyncEngine]], steps: list[tuple[str, int, str]], at: int,
        person_id: str, decide: Any) -> tuple[dict[str, int], set[str]]:
    """Play the schedule with the coordinator's decision at `at`; returns the records written for
    the person (record id -> device) and those the server stored at some point."""
    written: dict[str, int] = {}
    stored: set[str] = set()
    schedule = [*steps[:at], ("decide", 0, ""), *steps[at:]]
    note(f"schedule: {schedule}")
    for n, (what, dev, kind) in enumerate(schedule):
        ws, engine = opened[dev]
        if what == "decide":
            decide()
        elif what == "write":
            if person_id in ws.index.records[RecordType.PERSON]:  # a worker writes for a person shown
                written[write(ws, kind, person_id, n)] = dev
        else:
            engine.sync()
        stored |= server_records(team) & set(written)
    return written, stored


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=SCHEDULE, at=st.integers(0, 10))
def test_an_erased_persons_late_records_never_come_back(team: Team, steps: list[tuple[str, int, str]],
                                                         at: int) -> None:
    with devices(team) as opened:
        coordinator, engine = opened[0]
        erased = team.person_ids[0]
        known: list[str] = []

        def erase() -> None:
            known.extend(coordinator.person_record_ids(erased))
            engine.erase_person(erased)

        written, stored = run(team, opened, steps, at, erased, erase)
        quiet(team, opened, written, stored)

        gone = set(written) | {erased}
        for ws, _engine in opened:
            for rtype in RecordType:
                assert not gone & set(ws.index.records[rtype]), "a record of the erased person is shown"
                for rid in gone:
                    assert ws.store.get_row(rtype, rid) is None, "a record of the erased person is stored"
            assert not gone & {r for _s, _o, r, _e, _p in ws.store.outbox_all()}
            assert not ws.late_erased()
            assert not any(c.get("person_id") == erased for c in ws.index.records[RecordType.CONTACT].values())
        assert not gone & server_records(team), "the server still holds a record of the erased person"
        late = stored - set(known)
        removed_late = sum(int(e.detail.split()[0]) for e in coordinator.audit_events()
                           if e.action is AuditAction.ERASE and e.target_id == erased
                           and (e.detail or "").endswith("removed late"))
        assert removed_late == len(late), "the erasure record does not say what went late"
        for rid, dev in written.items():  # the writer was told, whichever way its record went
            if rid in stored or dev == 0:
                continue
            kinds = {x.kind for x in opened[dev][0].notices() if x.record_id == rid}
            assert kinds & {"erased_edit", "erased_late"}, "the worker was not told its record went"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=SCHEDULE, at=st.integers(0, 10))
def test_records_that_arrive_after_a_merge_follow_it(team: Team, steps: list[tuple[str, int, str]], at: int) -> None:
    with devices(team) as opened:
        coordinator, _engine = opened[0]
        keep, drop = team.person_ids[1], team.person_ids[2]
        written, stored = run(team, opened, steps, at, drop,
                              lambda: merge_persons(coordinator, keep_id=keep, drop_id=drop))
        quiet(team, opened, written, stored)

        for ws, _engine2 in opened:
            index = ws.index
            assert drop not in index.records[RecordType.PERSON]
            assert not index.contacts_of.get(drop), "a contact hangs on the merged-away person"
            for rid in written:
                rtype = RecordType.CONTACT if rid in index.records[RecordType.CONTACT] else RecordType.FOLLOWUP
                assert index.records[rtype][rid]["person_id"] == keep, "a late record did not follow the merge"
            assert set(index.contacts_of.get(keep, ())) >= {r for r in written if r in index.records[RecordType.CONTACT]}
            assert not any(f.get("person_id") == drop for f in index.records[RecordType.FOLLOWUP].values())
        views = [{rid: ws.index.records[t].get(rid, {}).get("person_id") for t in (RecordType.CONTACT,
                  RecordType.FOLLOWUP) for rid in written if rid in ws.index.records[t]} for ws, _e in opened]
        assert views[0] == views[1] == views[2]
        # after a restart too: the redirect is read back from the store (snapshot and full load)
        for ws, _engine3 in opened:
            ws.lock()
            ws.unlock(PASSPHRASE)
            assert not ws.index.contacts_of.get(drop)
            for rid in written:
                assert (ws.index.records[RecordType.CONTACT].get(rid)
                        or ws.index.records[RecordType.FOLLOWUP][rid])["person_id"] == keep


def test_erasing_the_kept_person_takes_late_records_of_the_merged_away_one(team: Team) -> None:
    """A contact written offline for a person that was merged into another, which the coordinator
    then erased: it follows the merge, so the erasure takes it, on arrival, on every device."""
    with devices(team) as opened:
        (coordinator, engine), (worker, worker_engine) = opened[0], opened[1]
        keep, drop = team.person_ids[1], team.person_ids[2]
        contact = write(worker, "contact", drop, 1)  # offline: the worker has seen neither decision
        merge_persons(coordinator, keep_id=keep, drop_id=drop)
        engine.sync()
        assert drop in coordinator.person_record_ids(keep)  # the tombstone of the merged-away person goes too
        engine.erase_person(keep)
        quiet(team, opened, {contact: 1}, set())
        for ws, _e in opened:
            assert contact not in ws.index.records[RecordType.CONTACT]
            assert ws.store.get_row(RecordType.CONTACT, contact) is None
            assert ws.store.get_row(RecordType.PERSON, drop) is None
        assert contact not in server_records(team) and drop not in server_records(team)
        assert worker_engine.ws.notices()
