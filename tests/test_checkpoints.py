"""Checkpoints (issue 17): a new device takes the team's state from a coordinator's sealed
checkpoint and pulls only the log after it; a server that swaps, truncates, forges or rolls back
a checkpoint is caught and the device replays the log instead; an erased record never reaches a
new device by a checkpoint; a first sync cut in the middle resumes from the parts it has.

Real parts: an `outreach-server` process on loopback (SQLite), devices enrolled through the real
code, the attacker editing the server's database between syncs as in test_hostile_server.py.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serverproc import ServerProcess, create_team

from models.storage.vault import KdfParams, SealError, Vault, open_statement
from models.workspace import Workspace
from sync import protocol as p
from sync.client import SyncClient
from sync.engine import SyncEngine
from sync.errors import Offline

pytestmark = pytest.mark.e2e

PASS = "checkpoint test 1"


@dataclass
class Team:
    server: ServerProcess
    coord: Workspace
    ceng: SyncEngine
    tmp: Path
    opened: list[tuple[SyncEngine, Workspace]]

    def device(self, name: str) -> tuple[Workspace, SyncEngine]:
        ws = Workspace(self.tmp / name, fast_kdf=True)
        ws.init(PASS, worker_name=name)
        engine = SyncEngine(ws)
        self.opened.append((engine, ws))
        return ws, engine

    def join(self, name: str) -> tuple[Workspace, SyncEngine]:
        ws, engine = self.device(name)
        engine.join(self.server.url, self.ceng.invite())
        self.ceng.sync()
        return ws, engine

    @contextlib.contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.server.db_url.split("///", 1)[1], timeout=10)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def checkpoints(self) -> list[tuple[str, int, int]]:
        with self.db() as db:
            return db.execute("SELECT id, seq, parts FROM checkpoint WHERE complete ORDER BY seq").fetchall()


@contextlib.contextmanager
def _team(tmp: Path, part_bytes: int = 2000) -> Iterator[Team]:
    """A server process and a coordinator's device in a new team (small parts: a few rows a part,
    so that there are parts to swap, cut and count)."""
    (tmp / "server").mkdir()
    with ServerProcess(workdir=tmp / "server") as server:
        coord = Workspace(tmp / "coord", fast_kdf=True)
        coord.init(PASS, worker_name="Kim")
        ceng = SyncEngine(coord)
        ceng.CHECKPOINT_PART_BYTES = part_bytes
        ceng.join(server.url, create_team(server.db_url, "Vesterbro"))
        t = Team(server, coord, ceng, tmp, [(ceng, coord)])
        try:
            yield t
        finally:
            for engine, ws in reversed(t.opened):
                engine.close()
                ws.close()


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    with _team(tmp_path) as t:
        yield t


@contextlib.contextmanager
def _cut(where: Callable[[int, list[int]], bool]) -> Iterator[list[int]]:
    """Checkpoint parts fetched meanwhile (their numbers, yielded), the transfer cut (Offline)
    at the first part `where(n, fetched so far)` says."""
    fetched: list[int] = []
    real = SyncClient.checkpoint_part

    def fetch(self: SyncClient, checkpoint_id: str, n: int) -> bytes:
        if where(n, fetched):
            raise Offline("cut")
        fetched.append(n)
        return real(self, checkpoint_id, n)

    SyncClient.checkpoint_part = fetch  # type: ignore[method-assign]
    try:
        yield fetched
    finally:
        SyncClient.checkpoint_part = real  # type: ignore[method-assign]


def _seed(ws: Workspace, persons: int = 6, contacts: int = 4) -> list[str]:
    ids = []
    for n in range(persons):
        person = ws.add_person({"alias": f"Person {n}", "description": f"described {n}"})
        ids.append(person.id)
        for k in range(contacts):
            ws.add_contact({"at": f"2026-11-{1 + k:02d}T10:00:00", "person_id": person.id, "note": f"note {n}.{k}"})
    return ids


def _state(ws: Workspace) -> tuple[list[tuple[str, str | None]], list[tuple[str | None, str | None]]]:
    persons = sorted((x.alias, x.description) for x in ws.persons())
    contacts = sorted((c.person_id, c.note) for c in ws.contacts(limit=10_000))
    return persons, contacts


def test_a_new_device_takes_a_checkpoint_and_then_the_log_after_it(team: Team) -> None:
    _seed(team.coord)
    team.ceng.sync()
    made = team.ceng.make_checkpoint(force=True)
    assert made is not None and made.parts >= 2 and team.checkpoints() == [(made.checkpoint_id, made.seq, made.parts)]
    assert team.ceng.make_checkpoint(force=True) is None  # nothing new since
    # the log moves on after the checkpoint
    late = team.coord.add_person({"alias": "After the checkpoint"})
    team.coord.edit_person(team.coord.persons()[-1].id, {"description": "edited after"})
    team.ceng.sync()
    new, neng = team.join("new")
    opened: list[bool] = []
    real_load = new._loading.load

    def load() -> None:
        opened.append(new.history_pending())
        real_load()

    new._loading.load = load  # type: ignore[method-assign]
    report = neng.sync()
    # the index was loaded twice: from the first tier's records (usable), then from every row
    assert opened == [True, False]
    assert report.from_checkpoint >= 6 * 5  # persons and contacts came as rows, not ops
    assert report.pulled < report.from_checkpoint  # only the tail was replayed
    assert _state(new) == _state(team.coord)
    assert any(x.id == late.id for x in new.persons())
    # the coordinator's pushes after the checkpoint account from where its own ops in it end: no
    # sequence of it is taken for withheld (the checkpoint says how far each device's ops go)
    assert [n.detail for n in new.notices() if n.kind == "missing_ops"] == []
    # the same as a device that replays the whole log
    replay, reng = team.join("replay")
    reng._bootstrap = lambda progress=None: 0  # type: ignore[method-assign]
    reng.sync()
    assert _state(replay) == _state(new)
    # the new device works on from there: its edit reaches the others
    new.edit_person(late.id, {"description": "from the new device"})
    neng.sync()
    team.ceng.sync()
    assert [x.description for x in team.coord.persons() if x.id == late.id] == ["from the new device"]
    # and it unlocks again from its own rows
    new.lock()
    new.store.drop_snapshot()
    new.unlock(PASS)
    assert new.damaged == [] and _state(new) == _state(team.coord)


def test_only_a_coordinator_writes_checkpoints_and_only_when_caught_up(team: Team) -> None:
    worker, weng = team.join("worker")
    weng.sync()
    with pytest.raises(Exception, match="coordinator"):
        weng.make_checkpoint(force=True)
    _seed(team.coord, persons=2, contacts=1)
    team.ceng.sync()
    team.coord.add_person({"alias": "Not sent yet"})  # in the rows, not in the log
    assert team.ceng.make_checkpoint(force=True) is None
    team.ceng.sync()
    assert team.ceng.make_checkpoint(force=True) is not None
    # the server takes no checkpoint from a worker, whatever it sends
    client = SyncClient(team.server.url, token=(worker.secret("token") or b"").decode())
    with pytest.raises(Exception, match="coordinator"):
        client.put_checkpoint(p.CheckpointIn(id="a" * 32, seq=1, epoch=1, parts=1, manifest="AAAA"))
    client.close()


def test_an_erasure_drops_every_checkpoint_that_holds_the_record(team: Team) -> None:
    ids = _seed(team.coord, persons=3, contacts=2)
    team.ceng.sync()
    assert team.ceng.make_checkpoint(force=True) is not None
    assert team.ceng.erase_person(ids[0]) >= 1
    assert team.checkpoints() == []  # the server dropped it with the erasure
    client = SyncClient(team.server.url, token=(team.coord.secret("token") or b"").decode())
    assert client.checkpoints().checkpoints == []  # and lists none: a device joining now replays the log
    client.close()
    # the coordinator's next sync writes a fresh one by itself, without the erased person
    made = team.ceng.sync().checkpoint
    assert made is not None and team.checkpoints() == [(made.checkpoint_id, made.seq, made.parts)]
    fresh, feng = team.join("fresh")
    assert feng.sync().from_checkpoint > 0
    assert "Person 0" not in [x.alias for x in fresh.persons()]
    assert ids[0] in fresh.erased_ids()  # a late op of it is dropped here too
    assert _state(fresh) == _state(team.coord)


@pytest.mark.parametrize("attack", ["flipped byte", "flipped byte in the older history", "swapped parts", "truncated",
                                    "forged manifest"])
def test_a_checkpoint_the_server_changed_is_refused_and_the_log_replayed(team: Team, attack: str) -> None:
    _seed(team.coord)
    team.ceng.sync()
    made = team.ceng.make_checkpoint(force=True)
    assert made is not None and made.parts >= 3
    cid = made.checkpoint_id
    with team.db() as db:
        if attack.startswith("flipped byte"):
            n = made.parts if attack.endswith("history") else 2  # the first tier's index, or a part after it
            (blob,) = db.execute("SELECT blob FROM checkpoint_part WHERE checkpoint_id=? AND n=?", (cid, n)).fetchone()
            blob = bytearray(blob)
            blob[len(blob) // 2] ^= 1
            db.execute("UPDATE checkpoint_part SET blob=? WHERE checkpoint_id=? AND n=?", (bytes(blob), cid, n))
        elif attack == "swapped parts":
            db.execute("UPDATE checkpoint_part SET n=-1 WHERE checkpoint_id=? AND n=2", (cid,))
            db.execute("UPDATE checkpoint_part SET n=2 WHERE checkpoint_id=? AND n=3", (cid,))
            db.execute("UPDATE checkpoint_part SET n=3 WHERE checkpoint_id=? AND n=-1", (cid,))
        elif attack == "truncated":
            db.execute("DELETE FROM checkpoint_part WHERE checkpoint_id=? AND n=?", (cid, made.parts))
            db.execute("UPDATE checkpoint SET parts=? WHERE id=?", (made.parts - 1, cid))
        else:
            attacker = Vault("0" * 32)
            attacker.create("the attacker's own", KdfParams.default(fast=True))
            attacker.set_authority(b"\x07" * 32)
            (manifest,) = db.execute("SELECT manifest FROM checkpoint WHERE id=?", (cid,)).fetchone()
            body = open_statement(team.ceng.authority_vk() or b"", "checkpoint", bytes(manifest))
            db.execute("UPDATE checkpoint SET manifest=? WHERE id=?", (attacker.sign_statement("checkpoint", body), cid))
    new, neng = team.join("new")
    report = neng.sync()
    assert report.from_checkpoint == 0
    assert [n.kind for n in new.notices()] == ["checkpoint_refused"]
    assert _state(new) == _state(team.coord)  # nothing lost: the log replayed
    assert not (new.data_dir / "checkpoint" / cid).exists()


def _tier(team: Team, checkpoint_id: str) -> int:
    """The last part of a checkpoint's first tier, as its signed manifest says."""
    with team.db() as db:
        (manifest,) = db.execute("SELECT manifest FROM checkpoint WHERE id=?", (checkpoint_id,)).fetchone()
    return int(open_statement(team.ceng.authority_vk() or b"", "checkpoint", bytes(manifest))["tier"])


def test_a_new_device_is_usable_after_the_first_tier_and_says_older_history_is_on_its_way(team: Team) -> None:
    ids = _seed(team.coord, persons=4, contacts=3)  # contacts of November: older than 30 days
    recent = team.coord.add_contact({"at": datetime.now().replace(microsecond=0).isoformat(), "person_id": ids[0],
                                     "note": "today"})
    team.ceng.sync()
    made = team.ceng.make_checkpoint(force=True)
    assert made is not None
    tier = _tier(team, made.checkpoint_id)
    assert 1 < tier < made.parts
    new, neng = team.join("new")
    with _cut(lambda n, _fetched: n > tier), pytest.raises(Offline):  # cut after the first tier
        neng.sync()
    # usable: every person, the recent contact; the older ones are on their way, and it says so
    assert sorted(x.alias for x in new.persons()) == [f"Person {n}" for n in range(4)]
    assert [c.id for c in new.contacts(limit=100)] == [recent.id]
    assert new.history_pending() and new.sync_value("cursor", "0") == "0"
    worker_edit = new.add_contact({"at": datetime.now().replace(microsecond=0).isoformat(), "person_id": ids[1],
                                   "note": "written before the rest came"})
    neng.sync()
    assert not new.history_pending()
    assert _state(new) == _state(team.coord) or any(c.id == worker_edit.id for c in new.contacts(limit=100))
    team.ceng.sync()
    assert _state(new) == _state(team.coord)


def test_a_device_takes_no_checkpoint_older_than_one_it_took(team: Team) -> None:
    _seed(team.coord, persons=2, contacts=1)
    team.ceng.sync()
    made = team.ceng.make_checkpoint(force=True)
    assert made is not None
    new, neng = team.device("new")
    neng.join(team.server.url, team.ceng.invite())
    team.ceng.sync()
    new.set_sync_values(checkpoint_floor=made.seq + 1)  # it took a newer one before (a wipe kept this)
    assert neng.sync().from_checkpoint == 0
    assert [n.kind for n in new.notices()] == ["checkpoint_refused"]
    assert _state(new) == _state(team.coord)


def test_a_first_sync_cut_in_the_middle_resumes_from_the_parts_it_has(team: Team) -> None:
    _seed(team.coord, persons=8, contacts=6)
    team.ceng.sync()
    made = team.ceng.make_checkpoint(force=True)
    assert made is not None and made.parts >= 3
    tier = _tier(team, made.checkpoint_id)
    assert made.parts >= tier + 2
    new, neng = team.join("new")
    # cut in the first tier: nothing taken
    with _cut(lambda _n, fetched: len(fetched) == tier - 1), pytest.raises(Offline):
        neng.sync()
    assert new.persons() == [] and new.sync_value("cursor", "0") == "0" and not new.history_pending()
    # cut in the older history: the first tier taken whole, the rest not at all, no log yet
    with _cut(lambda n, _fetched: n == tier + 2) as fetched, pytest.raises(Offline):
        neng.sync()
    assert fetched == list(range(tier, tier + 2))  # the parts it had were not fetched again
    assert new.history_pending() and new.sync_value("cursor", "0") == "0"
    recent = [c.id for c in new.contacts(limit=100)]  # the last 30 days' contacts only
    assert len(new.persons()) == 8 and 0 < len(recent) < len(team.coord.contacts(limit=100))
    with _cut(lambda _n, _fetched: False) as again:
        assert neng.sync().from_checkpoint > 0
    assert again == list(range(tier + 2, made.parts + 1))
    assert not new.history_pending() and _state(new) == _state(team.coord)


def test_a_revoked_device_cannot_open_a_checkpoint_made_after_its_revocation(team: Team) -> None:
    gone, geng = team.join("gone")
    geng.sync()
    _seed(team.coord, persons=2, contacts=1)
    team.ceng.sync()
    before = team.ceng.make_checkpoint(force=True)
    assert before is not None
    epoch = team.ceng.revoke(gone.device_id)
    made = team.ceng.sync().checkpoint  # a new key epoch: a checkpoint under it, without being asked
    assert made is not None and made.checkpoint_id != before.checkpoint_id
    with team.db() as db:
        (blob,) = db.execute("SELECT blob FROM checkpoint_part WHERE checkpoint_id=? AND n=1",
                             (made.checkpoint_id,)).fetchone()
    team_id = team.coord.setting("team_id") or ""
    assert gone.vault is not None and epoch not in gone.vault.epochs
    with pytest.raises(SealError):
        gone.vault.open_checkpoint_part(team_id, made.checkpoint_id, made.seq, 1, epoch, bytes(blob))
    assert team.coord.vault is not None
    assert team.coord.vault.open_checkpoint_part(team_id, made.checkpoint_id, made.seq, 1, epoch, bytes(blob))
    # and a device that joins after the rotation takes it
    new, neng = team.join("new")
    assert neng.sync().from_checkpoint > 0
    assert _state(new) == _state(team.coord)


# ------------------------------------------------------------------ checkpoint + tail == replay
ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, 1), st.integers(1, 3)),  # device, records
    st.tuples(st.just("edit"), st.integers(0, 1), st.integers(0, 50)),  # device, which person
    st.tuples(st.just("erase"), st.just(0), st.integers(0, 50)),  # the coordinator erases a person
    st.tuples(st.just("rotate"), st.just(0), st.just(0)),  # a device joins and is revoked: a new key epoch
    st.tuples(st.just("checkpoint"), st.just(0), st.just(0)),
    st.tuples(st.just("sync"), st.integers(0, 1), st.just(0)),
), min_size=3, max_size=12)


@settings(max_examples=int(os.environ.get("OUTREACH_CHECKPOINT_EXAMPLES", "8")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(actions=ACTIONS, cut=st.integers(0, 6))
def test_a_checkpoint_and_the_log_after_it_equal_the_whole_log(tmp_path_factory: pytest.TempPathFactory,
                                                                  actions: list[tuple[str, int, int]],
                                                                  cut: int) -> None:
    """Whatever the team did (writes, edits and erasures on two devices, key rotations, checkpoints
    at any point, syncs in any order), a device that joins through the newest checkpoint, its first
    sync cut after any part and resumed, ends where a device that replays the whole log does."""
    with _team(tmp_path_factory.mktemp("prop"), part_bytes=1500) as t:
        coord, ceng = t.coord, t.ceng
        worker, weng = t.join("worker")
        weng.sync()
        devices = [(coord, ceng), (worker, weng)]
        written = 0
        for kind, who, n in actions:
            ws, engine = devices[who]
            persons = [x.id for x in ws.persons()]
            if kind == "write":
                for _ in range(n):
                    person = ws.add_person({"alias": f"P{written}"})
                    ws.add_contact({"at": "2026-11-30T10:00:00", "person_id": person.id, "note": f"n{written}"})
                    written += 1
            elif kind == "edit" and persons:
                ws.edit_person(persons[n % len(persons)], {"description": f"edit {n}"})
            elif kind == "erase" and persons:
                ceng.sync()
                ceng.erase_person(persons[n % len(persons)])
            elif kind == "rotate":
                gone, geng = t.join(f"gone{len(t.opened)}")
                geng.sync()
                ceng.revoke(gone.device_id)
            elif kind == "checkpoint":
                ceng.sync()
                ceng.make_checkpoint(force=True)
            else:
                engine.sync()
        for _ in range(2):
            for _ws, engine in devices:
                engine.sync()
        new, neng = t.join("new")
        with _cut(lambda _n, fetched: len(fetched) == cut), contextlib.suppress(Offline):
            neng.sync()
        neng.sync()
        replay, reng = t.join("replay")
        reng._bootstrap = lambda progress=None: 0  # type: ignore[method-assign]
        reng.sync()
        assert _state(new) == _state(replay) == _state(coord)
        assert new.erased_ids() >= coord.erased_ids()
        assert [n for n in new.notices() if n.kind == "checkpoint_refused"] == []
