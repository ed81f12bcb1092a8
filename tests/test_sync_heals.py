"""Sync that heals itself and never lies (issue 16): the app's scheduler against a real server
process that stops and starts again. Within seconds of the server going away the chip says "not
connected" (not "synced"); changes saved meanwhile wait; when the server is back they go by
themselves, without a tap or an unlock; retries back off to at most a minute apart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from serverproc import ServerProcess, create_team
from test_ui_services import PIN, run

from app.services import AppConfig, Services, SyncScheduler
from app.state import chip_model


async def _until(what: Callable[[], bool], timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {why}")
        await asyncio.sleep(0.05)


def test_the_chip_tells_a_server_gone_and_the_app_syncs_when_it_is_back(tmp_path: Path) -> None:
    (tmp_path / "server").mkdir()
    with ServerProcess(workdir=tmp_path / "server") as server:
        code = create_team(server.db_url, "Vesterbro")
        s = Services(AppConfig(data_dir=tmp_path / "device", fast_kdf=True, sync_debounce=0.1, sync_interval=3600,
                               sync_retry=0.3, sync_watch=0.3))

        async def scenario() -> None:
            await s.create_workspace(PIN, "Kim")
            await s.join(server.url, code)
            s.sync.start()
            await s.sync.run_now()
            assert chip_model(s.sync.view).key == "sync.synced_now"

            server.stop()
            await _until(lambda: chip_model(s.sync.view).tone == "offline", 5, "the chip says not connected")
            s.ws.add_person({"alias": "Søren"})
            await _until(lambda: s.sync.view.pending_ops == 1 and chip_model(s.sync.view).key == "sync.offline_waiting",
                         5, "the change waits, counted, not connected")
            assert s.sync._failures >= 1 and s.sync.retry_delay() <= SyncScheduler.RETRY_MAX

            server.start()  # nobody taps, nobody unlocks
            await _until(lambda: s.sync.view.pending_ops == 0 and chip_model(s.sync.view).tone == "ok", 15,
                         "the change went by itself once the server was back")
            s.sync.stop()
            await s.close()

        run(scenario())


def test_retries_back_off_to_a_minute() -> None:
    scheduler = SyncScheduler.__new__(SyncScheduler)
    scheduler.retry, scheduler._failures = 5.0, 0
    delays = []
    for _ in range(7):
        scheduler._failures += 1
        delays.append(scheduler.retry_delay())
    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]


def test_a_first_sync_shows_the_first_tier_at_once_and_says_older_history_is_coming(tmp_path: Path) -> None:
    """Issue 17: the app is usable after a checkpoint's first tier (its screens are refreshed
    then, not at the end), and the chip says, until it is in, that older history is on its way."""
    from datetime import datetime

    from models.workspace import Workspace
    from sync.client import SyncClient
    from sync.engine import SyncEngine
    from sync.errors import Offline

    (tmp_path / "server").mkdir()
    with ServerProcess(workdir=tmp_path / "server") as server:
        coord = Workspace(tmp_path / "coord", fast_kdf=True)
        coord.init("coordinator 1", worker_name="Kim")
        ceng = SyncEngine(coord)
        ceng.CHECKPOINT_PART_BYTES = 1500
        ceng.join(server.url, create_team(server.db_url, "Vesterbro"))
        person = coord.add_person({"alias": "Søren"})
        for day in range(1, 6):  # older than 30 days: the older history
            coord.add_contact({"at": f"2026-01-0{day}T20:00:00", "person_id": person.id, "note": f"winter {day}"})
        coord.add_contact({"at": datetime.now().replace(microsecond=0).isoformat(), "person_id": person.id})
        ceng.sync()
        made = ceng.make_checkpoint(force=True)
        assert made is not None
        code = ceng.invite()
        s = Services(AppConfig(data_dir=tmp_path / "device", fast_kdf=True, sync_debounce=0.1, sync_interval=3600,
                               sync_retry=3600, sync_watch=3600))
        shown: list[int] = []
        real = SyncClient.checkpoint_part

        def first_tier_only(self: SyncClient, checkpoint_id: str, n: int) -> bytes:
            if s.ws.history_pending():  # the first tier is in: the link goes before the rest comes
                raise Offline("cut after the first tier")
            return real(self, checkpoint_id, n)

        async def scenario() -> None:
            await s.create_workspace(PIN, "Ali")
            await s.join(server.url, code)
            ceng.admit_pending()
            s.sync.data_listeners.append(lambda: shown.append(len(s.ws.persons())))
            SyncClient.checkpoint_part = first_tier_only  # type: ignore[method-assign]
            try:
                await s.sync.run_now()
            finally:
                SyncClient.checkpoint_part = real  # type: ignore[method-assign]
            assert shown and shown[0] == 1  # the screens were told while the sync went on
            assert s.sync.view.history_pending and len(s.ws.contacts(limit=100)) == 1
            await s.sync.run_now()
            assert not s.sync.view.history_pending and len(s.ws.contacts(limit=100)) == 6
            assert chip_model(s.sync.view).tone == "ok"
            await s.close()

        run(scenario())
        ceng.close()
        coord.close()
