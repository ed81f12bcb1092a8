"""The verified device list is team state (issue 15): every coordinator, a second or a recovered
one too, keys a new epoch for every active device the signed roster vouches for; a revoke that
would leave an active device without the key refuses and names it. On the enrolled team of the
sync state machine (a coordinator, two workers, one in-process server)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from asgi_adapter import asgi_session
from test_late_data import devices
from test_sync_stateful import BASE_URL, PASSPHRASE, Team, enrolled_team

from models.workspace import Workspace
from sync.engine import SyncEngine, WouldStrand
from sync.protocol import Role


@pytest.fixture(scope="module")
def team() -> Iterator[Team]:
    with enrolled_team() as made:
        yield made


def _second_coordinator(team: Team, engine: SyncEngine) -> tuple[Workspace, SyncEngine]:
    shutil.rmtree(team.work / "second", ignore_errors=True)
    ws = Workspace(team.work / "second", fast_kdf=True)
    ws.init(PASSPHRASE, worker_name="second")
    second = SyncEngine(ws, session=asgi_session(team.adapter))
    second.join(BASE_URL, engine.invite(Role.COORDINATOR))
    engine.sync()  # admits it
    second.sync()
    assert second.is_coordinator and ws.vault is not None and ws.vault.can_sign
    return ws, second


def test_a_second_coordinators_revoke_keys_every_active_device(team: Team) -> None:
    with devices(team) as opened:
        (first, engine), (worker, worker_engine), (leaving, _leaving_engine) = opened
        ws, second = _second_coordinator(team, engine)
        try:
            assert not second._pinned()  # it admitted nobody: the roster is what vouches
            report = second.revoke_with_report(leaving.device_id)
            assert set(report.keyed) == {first.device_id, worker.device_id, ws.device_id}
            engine.sync()
            worker_engine.sync()
            for each in (first, worker, ws):
                assert each.epoch == report.epoch
            # and they keep working together under it
            pid = worker.add_person({"alias": "after"}).id
            worker_engine.sync()
            engine.sync()
            second.sync()
            assert first.get_person(pid).alias == ws.get_person(pid).alias == "after"
        finally:
            second.close()
            ws.close()


def test_a_revoke_that_would_strand_a_device_refuses_and_names_it(team: Team) -> None:
    with devices(team) as opened:
        (first, engine), (worker, _worker_engine), (leaving, _leaving_engine) = opened
        ws, second = _second_coordinator(team, engine)
        try:
            # a roster of the previous version: the entries name no key, so nobody vouches for the worker
            second._keep_roster({d: e.__class__(**{**e.__dict__, "pub": None}) for d, e in second.roster().items()})
            second.refresh_roster = second.roster  # type: ignore[method-assign]
            with pytest.raises(WouldStrand) as refused:
                second.revoke_with_report(leaving.device_id)
            assert worker.device_id in refused.value.devices and first.device_id in refused.value.devices
            statuses = {d.device_id: d.status.value for d in second.devices().devices}
            assert statuses[leaving.device_id] == "active"  # nothing was done
        finally:
            second.close()
            ws.close()


def test_the_first_coordinator_completes_a_roster_of_the_previous_version(team: Team) -> None:
    with devices(team) as opened:
        (_first, engine), (worker, _w), _ = opened
        engine._keep_roster({d: e.__class__(**{**e.__dict__, "pub": None}) for d, e in engine.roster().items()})
        assert engine.roster()[worker.device_id].pub is None
        engine.sync()
        assert engine.roster()[worker.device_id].pub == engine._pinned()[worker.device_id]
