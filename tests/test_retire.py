"""Retire or revoke as lost (issue 14): a device still in hand hands over everything it holds
before it leaves; a lost one is revoked at once and the coordinator is told since when its work
is lost. On the enrolled team of the sync state machine (a coordinator, two workers, one
in-process server)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import datetime

import pytest
from test_late_data import devices, server_records
from test_sync_stateful import Team, enrolled_team

from models.domain.vocab import RecordType
from sync.errors import DeviceRetired


@pytest.fixture(scope="module")
def team() -> Iterator[Team]:
    with enrolled_team() as made:
        yield made


def test_a_retired_device_hands_everything_over_then_leaves(team: Team) -> None:
    with devices(team) as opened:
        (coordinator, engine), (worker, worker_engine), (other, other_engine) = opened
        worker_engine.ROSTER_EVERY = 0
        gone = worker.device_id
        # written offline, never synced: what a plain revoke would lose
        contact = worker.add_contact({"at": datetime(2026, 11, 30, 8), "person_id": team.person_ids[0],
                                      "note": "handed over"}).id
        engine.retire(gone)
        assert engine.retiring() == [gone]
        engine.sync()  # nothing handed over yet: the device stays
        assert engine.retiring() == [gone]
        with pytest.raises(DeviceRetired):
            worker_engine.sync()
        assert not any(worker.data_dir.iterdir()), "the retired device kept data"
        assert contact in server_records(team)
        report = engine.sync()
        assert report.retired == 1 and engine.retiring() == []
        assert engine.roster()[gone].cutoff is not None  # revoked, with its signed cut-off
        other_engine.sync()
        for ws in (coordinator, other):
            assert ws.index.records[RecordType.CONTACT][contact]["note"] == "handed over"
        assert coordinator.epoch == other.epoch == 2  # a new key: the retired device held the old one
        statuses = {d.device_id: d.status.value for d in engine.devices().devices}
        assert statuses[gone] == "revoked"


def test_a_retire_request_the_coordinator_did_not_sign_clears_nothing(team: Team) -> None:
    with devices(team) as opened:
        _coordinator, (worker, worker_engine) = opened[0], opened[1]
        worker_engine.ROSTER_EVERY = 0
        contact = worker.add_contact({"at": datetime(2026, 11, 30, 8), "person_id": team.person_ids[0]}).id
        with contextlib.closing(sqlite3.connect(team.server_db)) as conn, conn:  # the server forges one
            conn.execute("UPDATE roster SET entry=? WHERE device_id=?",
                         (b'\x02' + bytes(64) + b'{"retire": true}', worker.device_id))
        worker_engine.sync()
        assert worker.index.records[RecordType.CONTACT][contact]
        assert "roster_refused" in {n.kind for n in worker.notices()}


def test_revoking_a_lost_device_says_since_when_its_work_is_lost(team: Team) -> None:
    with devices(team) as opened:
        (_coordinator, engine), (worker, worker_engine) = opened[0], opened[1]
        worker.add_contact({"at": datetime(2026, 11, 30, 8), "person_id": team.person_ids[0]})
        worker_engine.sync()
        worker.add_contact({"at": datetime(2026, 11, 30, 9), "person_id": team.person_ids[0]})  # never synced
        engine.sync()
        last_seen, seen = engine.loss_preview(worker.device_id)
        assert last_seen is not None and seen == int(worker.store.meta("device_seq", "0") or 0) - 1
