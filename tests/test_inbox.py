"""Pulled pages are stored sealed in the inbox with their cursor, and folded into the rows after:
nothing pulled is visible before it is folded, everything is after, a purge reaches ops still in
the inbox, a bad op is set aside without holding up the rest, and the inbox survives a restart
and is folded on the next sync even when the server cannot be reached."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSPHRASE
from serverproc import ServerProcess, create_team

from models.workspace import RemoteOp, Workspace
from sync.engine import SyncEngine
from sync.errors import Offline

MakeTeam = Callable[..., list[Workspace]]
RemoteOps = Callable[..., list[RemoteOp]]
PASS = "inbox passphrase 1"


def _aliases(ws: Workspace) -> list[str]:
    return sorted(p.alias for p in ws.persons())


def test_received_ops_wait_sealed_until_folded_in_batches(make_team: MakeTeam, remote_ops: RemoteOps) -> None:
    a, b = make_team(2)
    for i in range(5):
        a.add_person({"alias": f"Person {i}"})
    ops = remote_ops(a)
    assert b.receive(ops, cursor=("cursor", 5)) == 5
    assert b.store.sync_state("cursor") == "5" and b.inbox_count() == 5
    assert _aliases(b) == [] and b.search("Person").persons == []  # stored, not yet folded
    stored = b.store.inbox_batch(10)
    assert [row[6] for row in stored] == [op.payload for op in ops]  # as they came: sealed

    first = b.fold(max_ops=2)
    assert (first.ops, first.applied) == (2, 2) and b.inbox_count() == 3
    assert _aliases(b) == ["Person 0", "Person 1"]
    rest = b.fold()
    assert (rest.ops, rest.applied) == (3, 3) and b.inbox_count() == 0
    assert _aliases(b) == [f"Person {i}" for i in range(5)]
    assert b.search("Person 3").persons[0].alias == "Person 3"
    assert b.fold().ops == 0  # nothing left
    assert b.outbox_count() == 0  # what was pulled is not sent again


def test_our_own_ops_coming_back_are_not_stored(make_team: MakeTeam, remote_ops: RemoteOps) -> None:
    a, _ = make_team(2)
    a.add_person({"alias": "Mine"})
    assert a.receive(remote_ops(a)) == 0 and a.inbox_count() == 0


def test_a_purge_drops_the_records_ops_still_in_the_inbox(make_team: MakeTeam, remote_ops: RemoteOps) -> None:
    a, b = make_team(2)
    gone = a.add_person({"alias": "Erase me"}).id
    a.add_contact({"person_id": gone, "at": "2026-11-30T21:00:00", "note": "a note"})
    a.add_person({"alias": "Keep me"})
    b.receive(remote_ops(a), cursor=("cursor", 3))
    assert b.inbox_count() == 3
    contact_id = next(op.record_id for op in remote_ops(a) if op.record_id != gone and op.device_seq == 2)
    b.receive([], purges=[gone, contact_id], cursor=("cursor", 5))
    assert b.inbox_count() == 1  # the erased records' ciphertext is gone before it was ever opened
    b.fold()
    assert _aliases(b) == ["Keep me"] and b.contacts() == []


def test_a_bad_op_in_the_inbox_is_set_aside_and_the_rest_folds(make_team: MakeTeam, remote_ops: RemoteOps) -> None:
    a, b = make_team(2)
    for alias in ("One", "Two", "Three"):
        a.add_person({"alias": alias})
    ops = remote_ops(a)
    damaged = ops[1]._replace(payload=ops[1].payload[:-1] + bytes([ops[1].payload[-1] ^ 1]))
    b.receive([ops[0], damaged, ops[2]])
    result = b.fold()
    assert result.applied == 2 and [op_id for op_id, _ in result.set_aside] == [damaged.op_id]
    assert _aliases(b) == ["One", "Three"] and b.inbox_count() == 0
    assert [row[0] for row in b.store.set_aside_rows()] == [damaged.op_id]


def test_the_inbox_survives_a_restart(make_team: MakeTeam, remote_ops: RemoteOps,
                                      make_workspace: Callable[..., Workspace]) -> None:
    a, b = make_team(2)
    a.add_person({"alias": "Across a restart"})
    b.receive(remote_ops(a), cursor=("cursor", 1))
    b.close()  # the app is closed before folding
    again = make_workspace("device1", init=False)
    again.unlock(PASSPHRASE)
    assert again.inbox_count() == 1 and _aliases(again) == []
    again.fold()
    assert _aliases(again) == ["Across a restart"]


@dataclass
class TwoDevices:
    server: ServerProcess
    coord: Workspace
    ceng: SyncEngine
    worker: Workspace
    weng: SyncEngine
    pushed: dict[int, str]  # the coordinator's ops as pushed: device seq -> record id


@contextmanager
def _two_devices(tmp_path: Path, team: str, persons: int) -> Iterator[TwoDevices]:
    """A real server; a coordinator who added `persons` persons and pushed them; a worker let in
    with the team's keys, who has pulled nothing yet and asks for pages of 7."""
    (tmp_path / "server").mkdir()
    with ServerProcess(workdir=tmp_path / "server") as server:
        coord = Workspace(tmp_path / "coord", fast_kdf=True)
        coord.init(PASS, worker_name="Kim")
        ceng = SyncEngine(coord)
        ceng.join(server.url, create_team(server.db_url, team))
        for i in range(persons):
            coord.add_person({"alias": f"Team person {i:02d}"})
        pushed = {seq: rid for seq, _op, rid, _e, _p in coord.store.outbox_all()}
        worker = Workspace(tmp_path / "worker", fast_kdf=True)
        worker.init(PASS, worker_name="Ali")
        weng = SyncEngine(worker)
        weng.join(server.url, ceng.invite())
        ceng.sync()  # pushes, and lets the worker in
        weng.pull_limit = 7  # several pages
        try:
            yield TwoDevices(server, coord, ceng, worker, weng, pushed)
        finally:
            for engine, ws in ((weng, worker), (ceng, coord)):
                engine.close()
                ws.close()


def test_what_a_cut_sync_left_in_the_inbox_is_folded_offline(tmp_path: Path) -> None:
    """A worker's app is killed right after the transfer (pages stored, not folded); it restarts
    where there is no signal. The next sync attempt folds the inbox before it finds out it is
    offline: the team's records are on screen without the server."""
    with _two_devices(tmp_path, "Nørrebro", 30) as team:
        worker, weng = team.worker, team.weng
        assert weng.refresh_keys()
        pulled, applied, _, _ = weng.pull(fold=False)
        assert pulled == 30 and applied == 0 and worker.inbox_count() == 30 and _aliases(worker) == []
        team.server.stop()
        with pytest.raises(Offline):
            weng.sync()
        assert worker.inbox_count() == 0
        assert _aliases(worker) == sorted(f"Team person {i:02d}" for i in range(30))


def test_a_gap_in_the_log_makes_the_guessed_page_wrong_and_nothing_is_lost(tmp_path: Path) -> None:
    """Pages are asked for ahead on the guess that the log has no gap; a purge leaves one. The
    wrong guess must be dropped and the right page fetched: every op that is left arrives once."""
    with _two_devices(tmp_path, "Amager", 30) as team:
        worker, weng = team.worker, team.weng
        first = min(team.pushed)
        gone = [team.pushed[first + k] for k in (8, 9, 10)]  # the team log's seqs 9-11 (after the device ops before)
        team.ceng.client().purge(gone)
        assert weng.refresh_keys()
        seen: list[int] = []
        real = weng.client().pull_body

        def spy(since: int, limit: int = 1000, wait: float = 0.0, nonce: str | None = None) -> bytes:
            seen.append(since)
            return real(since, limit, wait, nonce)

        used = [0]
        parse = weng.client().parse_pull

        def parse_spy(body: bytes) -> Any:
            page = parse(body)
            used.append(page.next)
            return page

        client = weng.client()
        client.pull_body = spy  # type: ignore[method-assign]
        client.parse_pull = parse_spy  # type: ignore[method-assign]
        _pulled, _applied, set_aside, purged = weng.pull()
        assert set_aside == 0 and purged == 3
        assert _aliases(worker) == sorted(p.alias for p in team.coord.persons() if p.id not in gone)
        assert len(_aliases(worker)) == 27
        assert set(seen) - set(used), "no page was asked for on a guess that the gap made wrong"
