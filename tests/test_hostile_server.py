"""The threat model of docs/SECURITY.md as tests: a hostile server learns nothing and destroys nothing.

Each test runs a real `outreach-server` process on loopback (SQLite) with a coordinator and a
worker enrolled through the real code, then plays the attacker: it edits the server's database
between syncs, as whoever controls the server can (it knows every public key and every row, no
team key). Each asserts three things: the device refuses, the user is told in words, and nothing
was lost. After every attack no canary string is in any server file.

    1 team-key substitution         test_a_new_epoch_the_coordinator_did_not_sign_is_refused
                                    test_the_server_cannot_let_a_pending_device_in_with_its_own_key
    2 overwrite of a held key       test_a_second_key_for_a_held_epoch_is_refused_and_nothing_is_lost
    3 forged purges                 test_a_forged_purge_erases_nothing
                                    test_an_unsigned_purge_counts_only_where_the_previous_version_left_it
                                    test_a_signed_erasure_sets_unsynced_edits_aside_with_a_reason
    4 revoked and forged writers    test_a_revoked_devices_writes_after_its_cutoff_count_nowhere
                                    test_the_servers_word_alone_wipes_nothing
                                    test_an_op_in_another_devices_name_is_refused
      future stamps                 test_an_op_stamped_far_in_the_future_waits_for_its_time
    5 audit forgery (team device)   test_audit_events_are_append_only_and_attributable
    6 role, fingerprints, invites   test_a_worker_invite_does_not_become_a_coordinator
                                    test_the_coordinator_sees_the_fingerprint_the_device_shows
                                    test_a_coordinator_can_compare_fingerprints_before_admitting
                                    test_invite_secrets_expire
    7 omission                      test_a_withheld_op_is_named_by_its_devices_statement
                                    test_a_withheld_push_leaves_a_hole_that_is_named
                                    test_an_erased_change_is_not_taken_for_a_withheld_one
      a revoked device's history    test_a_revoked_devices_history_is_the_one_its_coordinator_signed
      a replayed page               test_a_replayed_pull_page_does_not_make_a_device_send_again
    migration from 1f0389c          test_a_team_of_the_previous_version_moves_to_signed_authority
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock
from serverproc import ServerProcess, create_team

from models.domain.clock import HLC
from models.domain.merge import Op
from models.domain.vocab import AuditAction, RecordType
from models.storage.vault import KdfParams, SealError, Vault
from models.workspace import Workspace, encode_op
from sync import protocol as p
from sync.engine import SyncEngine
from sync.errors import SyncError

pytestmark = pytest.mark.e2e

PASS = "hostile server 1"
FIXTURE = Path(__file__).parent / "fixtures" / "legacy_team"


class Attacker:
    """Whoever controls the server: its database, not one team key."""

    def __init__(self, server: ServerProcess) -> None:
        self.path = server.db_url.split("///", 1)[1]
        self.vault = Vault("0" * 32)
        self.vault.create("the attacker's own", KdfParams.default(fast=True))

    @contextlib.contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def team(self) -> tuple[str, int, int]:
        with self.db() as db:
            team_id, epoch, next_seq = db.execute("SELECT id, current_epoch, next_seq FROM team").fetchone()
        return team_id, epoch, next_seq

    def forge_key(self, epoch: int, device_ids: list[str], *, raise_epoch: bool = False) -> bytes:
        """A team key of the attacker's, wrapped for each device's public key as the server
        knows it, stored as the device's key of `epoch`."""
        team_id, current, _ = self.team()
        key, _ = self.vault.new_team_key(epoch)
        with self.db() as db:
            for device_id in device_ids:
                (public_key,) = db.execute("SELECT public_key FROM device WHERE id=?", (device_id,)).fetchone()
                blob = self.vault.wrap_for_device(team_id, epoch, device_id, public_key)
                db.execute("DELETE FROM wrapped_key WHERE epoch=? AND device_id=?", (epoch, device_id))
                db.execute("INSERT INTO wrapped_key (team_id, epoch, device_id, blob, created_at) VALUES (?,?,?,?,0)",
                           (team_id, epoch, device_id, blob))
            if raise_epoch and epoch > current:
                db.execute("UPDATE team SET current_epoch=?", (epoch,))
        return key

    def read_with(self, epoch: int, key: bytes) -> list[Any]:
        """Every stored op the attacker's key of `epoch` opens."""
        self.vault.add_team_key(epoch, key)
        opened = []
        with self.db() as db:
            rows = db.execute("SELECT op_id, device_id, device_seq, record_id, key_epoch, payload FROM op").fetchall()
        for op_id, device_id, seq, rid, e, payload in rows:
            if e != epoch:
                continue
            with contextlib.suppress(SealError):
                opened.append(self.vault.open_op(rid, e, device_id, seq, op_id, payload))
        return opened

    def relay(self, device_id: str, seq: int, op_id: str, record_id: str, epoch: int, payload: bytes,
              batch: tuple[bytes, bytes] | None = None) -> None:
        """Put an op into the team's log as if `device_id` had pushed it (with a signed batch of
        (signature, digests) when given)."""
        team_id, _, next_seq = self.team()
        with self.db() as db:
            batch_id = None
            if batch is not None:
                batch_id = db.execute("INSERT INTO batch (team_id, device_id, sig, digests, at) VALUES (?,?,?,?,0)",
                                      (team_id, device_id, *batch)).lastrowid
            # the server's own rows are the server's to rewrite: an op taking a used sequence moves to the end
            db.execute("DELETE FROM op WHERE device_id=? AND device_seq=?", (device_id, seq))
            db.execute("INSERT INTO op (team_id, seq, op_id, device_id, device_seq, record_id, key_epoch, payload, "
                       "size, received_at, batch_id) VALUES (?,?,?,?,?,?,?,?,?,0,?)",
                       (team_id, next_seq, op_id, device_id, seq, record_id, epoch, payload, len(payload), batch_id))
            db.execute("UPDATE team SET next_seq=?", (next_seq + 1,))

    def withhold(self, device_id: str, seqs: list[int]) -> None:
        """Drop ops of `device_id` from the log, as a server that keeps them from the others would."""
        with self.db() as db:
            db.executemany("DELETE FROM op WHERE device_id=? AND device_seq=?", [(device_id, s) for s in seqs])

    def batches(self, device_id: str) -> list[tuple[int, int, int]]:
        """(batch id, first, last) of the device's signed statements, in log order."""
        with self.db() as db:
            return db.execute("SELECT id, first_seq, last_seq FROM batch WHERE device_id=? AND sig2 IS NOT NULL "
                              "ORDER BY pos", (device_id,)).fetchall()

    def withhold_push(self, batch_id: int) -> None:
        """Drop a whole push: its statement and its ops."""
        with self.db() as db:
            db.execute("DELETE FROM op WHERE batch_id=?", (batch_id,))
            db.execute("DELETE FROM batch WHERE id=?", (batch_id,))

    def relay_statement(self, signer: Vault, device_id: str, first: int,
                        ops: list[tuple[int, str, str, int, bytes]]) -> None:
        """Put a push into the log as if `device_id` had made it, signed with `signer`'s device key
        (a revoked device's own, colluding): ops as (seq, op id, record id, epoch, payload)."""
        team_id, _, next_seq = self.team()
        digests = [p.op_digest(op[4]) for op in ops]
        entries = p.pack_entries((op[0], op[2], d) for op, d in zip(ops, digests, strict=True))
        last = max(op[0] for op in ops)
        sig = signer.sign_as_device(p.batch_message(team_id, device_id, b"".join(digests)))
        sig2 = signer.sign_as_device(p.statement_message(team_id, device_id, first, last, entries))
        with self.db() as db:
            batch_id = db.execute(
                "INSERT INTO batch (team_id, device_id, sig, digests, at, pos, first_seq, last_seq, entries, sig2) "
                "VALUES (?,?,?,?,0,?,?,?,?,?)",
                (team_id, device_id, sig, b"".join(digests), next_seq, first, last, entries, sig2)).lastrowid
            for n, (seq, op_id, rid, epoch, payload) in enumerate(ops):
                db.execute("DELETE FROM op WHERE device_id=? AND device_seq=?", (device_id, seq))
                db.execute("INSERT INTO op (team_id, seq, op_id, device_id, device_seq, record_id, key_epoch, "
                           "payload, size, received_at, batch_id) VALUES (?,?,?,?,?,?,?,?,?,0,?)",
                           (team_id, next_seq + n, op_id, device_id, seq, rid, epoch, payload, len(payload), batch_id))
            db.execute("UPDATE team SET next_seq=?", (next_seq + len(ops),))

    def forge_purge(self, record_ids: list[str]) -> None:
        _, _, next_seq = self.team()
        with self.db() as db:
            for n, rid in enumerate(record_ids):
                db.execute("INSERT INTO purge (team_id, seq, record_id, at) SELECT id, ?, ?, 0 FROM team",
                           (next_seq + n, rid))
            db.execute("UPDATE team SET next_seq=?", (next_seq + len(record_ids),))


@dataclass
class Team:
    server: ServerProcess
    attacker: Attacker
    coord: Workspace
    ceng: SyncEngine
    worker: Workspace
    weng: SyncEngine
    tmp: Path

    def device(self, name: str, **kwargs: Any) -> tuple[Workspace, SyncEngine]:
        ws = Workspace(self.tmp / name, fast_kdf=True, **kwargs)
        ws.init(PASS, worker_name=name)
        return ws, SyncEngine(ws)

    def assert_no_canary(self, canary: str) -> None:
        needles = [canary.encode(), canary.lower().encode()]
        for path in self.server.workdir.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(n in data for n in needles), f"canary in {path.name}"


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    (tmp_path / "server").mkdir()
    with ServerProcess(workdir=tmp_path / "server") as server:
        coord = Workspace(tmp_path / "coord", fast_kdf=True)
        coord.init(PASS, worker_name="Kim")
        ceng = SyncEngine(coord)
        ceng.join(server.url, create_team(server.db_url, "Vesterbro"))
        worker = Workspace(tmp_path / "worker", fast_kdf=True)
        worker.init(PASS, worker_name="Ali")
        weng = SyncEngine(worker)
        weng.join(server.url, ceng.invite())
        ceng.sync()
        weng.sync()
        assert worker.setting("device_status") == "active"
        t = Team(server, Attacker(server), coord, ceng, worker, weng, tmp_path)
        # a canary on every device, synced before the attack: after it, in no server file or log
        canary = "Kanariefugl-" + uuid.uuid4().hex[:10]
        coord.add_person({"alias": canary, "description": canary})
        ceng.sync()
        weng.sync()
        try:
            yield t
        finally:
            for engine, ws in ((weng, worker), (ceng, coord)):
                engine.close()
                ws.close()
        server.stop()
        t.assert_no_canary(canary)


def _aliases(ws: Workspace) -> list[str]:
    return sorted(person.alias for person in ws.persons() if not person.alias.startswith("Kanariefugl-"))


def _reopen(ws: Workspace) -> None:
    """Lock and unlock reading every row (no snapshot): a row a wrong key sealed would not open."""
    ws.lock()
    ws.store.drop_snapshot()
    ws.unlock(PASS)
    assert ws.damaged == []


# ----------------------------------------------------------------------------- 1: keys
def test_a_new_epoch_the_coordinator_did_not_sign_is_refused(team: Team) -> None:
    canary = "Kanarie" + uuid.uuid4().hex[:10]
    _, epoch, _ = team.attacker.team()
    evil = team.attacker.forge_key(epoch + 1, [team.coord.device_id, team.worker.device_id], raise_epoch=True)
    team.worker.add_person({"alias": canary, "description": canary})
    team.coord.add_person({"alias": canary + "K"})
    for engine in (team.weng, team.ceng):
        with pytest.raises(SyncError) as refused:
            engine.sync()
        assert "coordinator did not sign" in str(refused.value)
    for ws in (team.worker, team.coord):
        assert ws.epoch == epoch and ws.outbox_count() == 1  # kept, under the team's own key
        assert ws.notices() and ws.notices()[-1].kind == "key_refused"
    assert team.attacker.read_with(epoch + 1, evil) == []
    team.assert_no_canary(canary)


def test_the_server_cannot_let_a_pending_device_in_with_its_own_key(team: Team) -> None:
    canary = "Kanarie" + uuid.uuid4().hex[:10]
    newcomer, neng = team.device("newcomer")
    newcomer.add_person({"alias": canary})  # written before joining
    neng.join(team.server.url, team.ceng.invite())
    _, epoch, _ = team.attacker.team()
    evil = team.attacker.forge_key(epoch, [newcomer.device_id])
    with team.attacker.db() as db:
        db.execute("UPDATE device SET status='active' WHERE id=?", (newcomer.device_id,))
    with pytest.raises(SyncError):
        neng.sync()
    assert newcomer.setting("device_status") != "active"
    assert _aliases(newcomer) == [canary] and newcomer.outbox_count() == 1
    assert team.attacker.read_with(epoch, evil) == []
    team.assert_no_canary(canary)
    neng.close()
    newcomer.close()


def test_a_second_key_for_a_held_epoch_is_refused_and_nothing_is_lost(team: Team) -> None:
    team.worker.add_person({"alias": "Held under epoch 1"})
    team.weng.sync()
    gone, geng = team.device("gone")
    geng.join(team.server.url, team.ceng.invite())
    team.ceng.sync()
    new_epoch = team.ceng.revoke(gone.device_id)  # a real new epoch, signed by the coordinator
    team.attacker.forge_key(1, [team.worker.device_id])  # and a different key for epoch 1
    with pytest.raises(SyncError) as refused:
        team.weng.sync()
    assert "already has" in str(refused.value)
    assert team.worker.notices()[-1].kind == "key_refused"
    _reopen(team.worker)
    assert "Held under epoch 1" in _aliases(team.worker)
    assert team.worker.epoch == 1 < new_epoch  # nothing adopted from an answer that held a forgery
    geng.close()
    gone.close()


# --------------------------------------------------------------------------- 3: purges
def test_a_forged_purge_erases_nothing(team: Team) -> None:
    kept = team.coord.add_person({"alias": "Must stay"})
    team.ceng.sync()
    team.weng.sync()
    team.worker.edit_person(kept.id, {"description": "not sent yet"})
    team.attacker.forge_purge([kept.id])
    team.weng.sync()
    team.ceng.sync()
    for ws in (team.worker, team.coord):
        assert "Must stay" in _aliases(ws)
        assert any(n.kind == "purge_refused" and n.record_id == kept.id for n in ws.notices())
    # the server may drop what it is sent (it can always withhold); the worker's device keeps it
    assert team.worker.get_person(kept.id).description == "not sent yet"


def test_an_unsigned_purge_counts_only_where_the_previous_version_left_it(team: Team) -> None:
    """After a team's move, unsigned purges up to the signed position are the previous version's:
    taken only inside the page that holds them, never by a device already past them."""
    weng = team.weng
    team.worker.set_secret("purges_unsigned_through", b"5")
    rid = "ab" * 16
    old = [p.PurgeOut(seq=3, record_id=rid)]
    assert weng._check_purges(old, 2, 8) == ([rid], [])  # noqa: SLF001 (a first sync's page)
    assert weng._check_purges(old, 4, 8) == ([], [rid])  # noqa: SLF001 (claims a place before the cursor)
    assert weng._check_purges([p.PurgeOut(seq=6, record_id=rid)], 4, 8) == ([], [rid])  # noqa: SLF001
    assert weng._check_purges([p.PurgeOut(seq=3, record_id=rid, sig=p.b64e(bytes(64)))], 2, 8) == (  # noqa: SLF001
        [], [rid])


def test_a_signed_erasure_sets_unsynced_edits_aside_with_a_reason(team: Team) -> None:
    person = team.coord.add_person({"alias": "Erased later"})
    team.ceng.sync()
    team.weng.sync()
    team.worker.edit_person(person.id, {"description": "written offline"})
    assert team.ceng.erase_person(person.id) == 1
    team.weng.sync()
    assert "Erased later" not in _aliases(team.worker)
    notices = [n for n in team.worker.notices() if n.kind == "erased_edit"]
    assert [n.record_id for n in notices] == [person.id]
    assert team.worker.outbox_count() == 0
    assert "written offline" not in json.dumps([n.detail for n in team.worker.notices()])


# ------------------------------------------------------------- 4: revoked and forged writers
def _op_as(ws: Workspace, device_id: str, seq: int, alias: str) -> tuple[str, str, int, bytes]:
    """A new person's creating op sealed with `ws`'s team key in the name of `device_id`:
    what any holder of a team key can make. (op id, record id, epoch, payload)"""
    op_id, rid, epoch = uuid.uuid4().hex, uuid.uuid4().hex, ws.epoch
    body = encode_op(Op("person", rid, device_id, ws.clock.now(), {"alias": alias}, {}, False))
    assert ws.vault is not None
    return op_id, rid, epoch, ws.vault.seal_op(rid, epoch, device_id, seq, op_id, body)


def test_a_revoked_devices_writes_after_its_cutoff_count_nowhere(team: Team) -> None:
    gone, geng = team.device("gone")
    geng.join(team.server.url, team.ceng.invite())
    team.ceng.sync()
    geng.sync()
    gone.add_person({"alias": "Written before the revocation"})
    geng.sync()
    team.weng.sync()
    seen = int(gone.store.meta("device_seq", "0") or 0)
    team.ceng.revoke(gone.device_id)
    # still holding the old key, it writes on, signs its own push, and the server relays it; or it
    # writes again under a sequence number it used before the cut-off
    for n, signed in ((1, False), (2, True), (0, True)):
        op_id, rid, epoch, payload = _op_as(gone, gone.device_id, seen + n, f"After revocation {n}")
        batch = None
        if signed:
            team_id = gone.setting("team_id") or ""
            digests = p.op_digest(payload)
            assert gone.vault is not None
            batch = (gone.vault.sign_as_device(p.batch_message(team_id, gone.device_id, digests)), digests)
        team.attacker.relay(gone.device_id, seen + n, op_id, rid, epoch, payload, batch)
    team.weng.sync()
    team.ceng.sync()
    for ws in (team.worker, team.coord):
        assert "Written before the revocation" in _aliases(ws)
        assert not any(a.startswith("After revocation") for a in _aliases(ws))
        assert sum(n.kind == "revoked_write" for n in ws.notices()) == 3
    geng.close()
    gone.close()


# ------------------------------------------------------------------------------ 7: omission
def _missing(ws: Workspace, device_id: str) -> list[str]:
    return [n.detail for n in ws.notices() if n.kind == "missing_ops" and n.device_id == device_id]


def test_a_withheld_op_is_named_by_its_devices_statement(team: Team) -> None:
    for n in range(3):
        team.worker.add_person({"alias": f"Person {n}"})
    team.weng.sync()
    with team.attacker.db() as db:
        seqs = sorted(s for s, in db.execute("SELECT device_seq FROM op WHERE device_id=?", (team.worker.device_id,)))
    team.attacker.withhold(team.worker.device_id, [seqs[-2]])
    team.ceng.sync()
    assert _missing(team.coord, team.worker.device_id) == [f"1 changes of this device did not arrive: {seqs[-2]}"]
    assert team.coord.notices()[-1].record_id is None  # ids and numbers only: the notice is not sealed
    # the worker lost nothing, and a device that joins later is told the same
    assert _aliases(team.worker) == ["Person 0", "Person 1", "Person 2"]
    late, leng = team.device("late")
    leng.join(team.server.url, team.ceng.invite())
    team.ceng.sync()
    leng.sync()
    assert len(_missing(late, team.worker.device_id)) == 1
    assert _missing(late, team.coord.device_id) == []
    leng.close()
    late.close()


def test_a_withheld_push_leaves_a_hole_that_is_named(team: Team) -> None:
    before = len(team.attacker.batches(team.worker.device_id))
    for n in range(3):  # three pushes
        team.worker.add_person({"alias": f"Push {n}"})
        team.weng.sync()
    pushes = team.attacker.batches(team.worker.device_id)[before:]
    assert len(pushes) == 3 and pushes[2][1] == pushes[1][2] + 1  # each accounts from where the last ended
    team.attacker.withhold_push(pushes[1][0])  # statement and ops: nothing of it left to show
    team.ceng.sync()
    first, last = pushes[1][1], pushes[1][2]
    span = str(first) if first == last else f"{first}-{last}"
    assert _missing(team.coord, team.worker.device_id) == [
        f"{last - first + 1} changes of this device did not arrive: {span}"]
    assert "Push 1" not in _aliases(team.coord) and "Push 2" in _aliases(team.coord)


def test_an_erased_change_is_not_taken_for_a_withheld_one(team: Team) -> None:
    person = team.coord.add_person({"alias": "Erased soon"})
    team.ceng.sync()
    team.weng.sync()
    team.worker.edit_person(person.id, {"description": "offline edit"})  # reaches the server after the erasure
    team.worker.add_person({"alias": "Kept"})
    assert team.ceng.erase_person(person.id) == 1
    team.weng.push()  # the server drops the edit of an erased record: the statement still names it
    team.weng.sync()
    team.worker.edit_person(team.worker.persons()[0].id, {"description": "later"})
    team.weng.sync()
    team.ceng.sync()
    late, leng = team.device("late")
    leng.join(team.server.url, team.ceng.invite())
    team.ceng.sync()
    leng.sync()
    for ws in (team.coord, late):
        assert "Kept" in _aliases(ws) and "Erased soon" not in _aliases(ws)
        assert [n for n in ws.notices() if n.kind == "missing_ops"] == []
    leng.close()
    late.close()


def _lost_on_server(ws: Workspace) -> list[str]:
    return [n.detail for n in ws.notices() if n.kind == "lost_on_server"]


def test_a_replayed_pull_page_does_not_make_a_device_send_again(team: Team) -> None:
    """A pull page says how far the server holds the puller's sequence (`held_through`). A page
    replayed (the device's own from before its later pushes, or another device's) is not the
    server's word on what it holds now: the device sends nothing again and says nothing was lost.
    A server that really lost acknowledged ops (here: the last push taken out, as a restore from
    an older backup looks) still gets them again, with the notice."""
    last: dict[str, bytes] = {}
    replay: list[bytes] = []

    def recording(name: str, engine: SyncEngine) -> None:
        client = engine.client()
        real = client.pull_body

        def pull_body(*args: Any, **kwargs: Any) -> bytes:
            if name == "worker" and replay:
                return replay.pop()  # the answer to this request is an old page
            last[name] = real(*args, **kwargs)
            return last[name]

        client.pull_body = pull_body  # type: ignore[method-assign]

    recording("worker", team.weng)
    recording("coord", team.ceng)
    team.worker.add_person({"alias": "First"})
    team.weng.sync()
    own = last["worker"]  # the worker's own page, before its next pushes
    team.ceng.sync()
    other = last["coord"]  # the coordinator's page: of the coordinator's sequence
    for n, old in enumerate((own, other)):
        while team.worker.pushed_through() + team.worker.outbox_count() <= json.loads(old)["held_through"] + 2:
            team.worker.add_person({"alias": f"Round {n}"})
        team.worker.add_person({"alias": f"Round {n}"})
        replay.append(old)
        report = team.weng.sync()
        assert not replay and json.loads(old)["held_through"] < team.worker.pushed_through()
        assert report.resent == 0 and team.worker.outbox_count() == 0
        assert _lost_on_server(team.worker) == []
    report = team.weng.sync()  # honest again: nothing to send
    assert report.resent == 0 and report.pushed == 0 and _lost_on_server(team.worker) == []
    # the server loses the worker's last push (a restore from an older backup): sent again
    team.attacker.withhold_push(team.attacker.batches(team.worker.device_id)[-1][0])
    report = team.weng.sync()
    assert report.resent > 0 and len(_lost_on_server(team.worker)) == 1
    team.ceng.sync()
    assert _aliases(team.coord) == _aliases(team.worker)


def test_a_revoked_devices_history_is_the_one_its_coordinator_signed(team: Team) -> None:
    gone, geng = team.device("gone")
    geng.join(team.server.url, team.ceng.invite())
    team.ceng.sync()
    geng.sync()
    for n in range(2):
        gone.add_person({"alias": f"Before revocation {n}"})
        geng.sync()
    team.ceng.revoke(gone.device_id)
    assert gone.vault is not None
    seen = int(gone.store.meta("device_seq", "0") or 0)
    # the server, with the revoked device, puts another op in place of its last one:
    op_id, rid, epoch, payload = _op_as(gone, gone.device_id, seen, "Rewritten history")
    team.attacker.relay_statement(gone.vault, gone.device_id, seen, [(seen, op_id, rid, epoch, payload)])
    late, leng = team.device("late")
    leng.join(team.server.url, team.ceng.invite())
    team.ceng.sync()
    leng.sync()
    # a push after the history its coordinator signed counts nowhere, and the op it replaced is named
    assert "Rewritten history" not in _aliases(late) and "Before revocation 0" in _aliases(late)
    assert any(n.kind == "revoked_write" and n.device_id == gone.device_id for n in late.notices())
    assert _missing(late, gone.device_id) == [f"1 changes of this device did not arrive: {seen}"]
    assert [n for n in late.notices() if n.kind == "history_differs"] == []
    # or the server withholds a whole push the coordinator saw, and shows the forged one in its
    # place: the history is not the one signed
    pushes = team.attacker.batches(gone.device_id)
    assert len(pushes) == 3
    team.attacker.withhold_push(pushes[1][0])
    other, oeng = team.device("other")
    oeng.join(team.server.url, team.ceng.invite())
    team.ceng.sync()
    oeng.sync()
    assert [n.device_id for n in other.notices() if n.kind == "history_differs"] == [gone.device_id]
    for engine, ws in ((leng, late), (oeng, other), (geng, gone)):
        engine.close()
        ws.close()


def test_the_servers_word_alone_wipes_nothing(team: Team) -> None:
    unsynced = team.worker.add_person({"alias": "Not sent yet"})
    with team.attacker.db() as db:
        db.execute("UPDATE device SET status='revoked' WHERE id=?", (team.worker.device_id,))
    with pytest.raises(SyncError) as stopped:
        team.weng.sync()
    assert "nothing was erased" in str(stopped.value)
    assert team.worker.exists() and team.worker.get_person(unsynced.id).alias == "Not sent yet"
    assert team.worker.notices()[-1].kind == "revocation_unproven"
    with team.attacker.db() as db:  # the server relents: the record goes out after all
        db.execute("UPDATE device SET status='active' WHERE id=?", (team.worker.device_id,))
    team.weng.sync()
    team.ceng.sync()
    assert "Not sent yet" in _aliases(team.coord)
    # a real revocation, signed by the coordinator, still wipes the device
    team.ceng.revoke(team.worker.device_id)
    with pytest.raises(SyncError):
        team.weng.sync()
    assert not team.worker.exists()


def test_an_op_in_another_devices_name_is_refused(team: Team) -> None:
    mole, meng = team.device("mole")  # a team device with the current key, gone bad
    meng.join(team.server.url, team.ceng.invite())
    team.ceng.sync()
    meng.sync()
    coord_seq = int(team.coord.store.meta("device_seq", "0") or 0)
    op_id, rid, epoch, payload = _op_as(mole, team.coord.device_id, coord_seq + 100, "In the coordinator's name")
    team.attacker.relay(team.coord.device_id, coord_seq + 100, op_id, rid, epoch, payload)
    # and one signed by the mole's own key but in the coordinator's name
    op2, rid2, epoch2, payload2 = _op_as(mole, team.coord.device_id, coord_seq + 101, "Signed by another")
    team_id = mole.setting("team_id") or ""
    digests = p.op_digest(payload2)
    assert mole.vault is not None
    sig = mole.vault.sign_as_device(p.batch_message(team_id, team.coord.device_id, digests))
    team.attacker.relay(team.coord.device_id, coord_seq + 101, op2, rid2, epoch2, payload2, (sig, digests))
    team.weng.sync()
    assert not {"In the coordinator's name", "Signed by another"} & set(_aliases(team.worker))
    assert {n.record_id for n in team.worker.notices() if n.kind == "unsigned_op"} == {rid, rid2}
    # the mole's own writes still count
    mole.add_person({"alias": "The mole's own"})
    meng.sync()
    team.weng.sync()
    assert "The mole's own" in _aliases(team.worker)
    meng.close()
    mole.close()


# ------------------------------------------------------------------------------ 4: clock
def test_an_op_stamped_far_in_the_future_waits_for_its_time(team: Team) -> None:
    year = 365 * 86400
    team.worker.clock = HLC(team.worker.clock.last, wall_ms=lambda: int((time.time() + year) * 1000))
    early = team.worker.add_person({"alias": "From next year"})
    team.weng.sync()
    before = team.coord.clock.last
    team.ceng.sync()
    assert "From next year" not in _aliases(team.coord)
    assert team.coord.clock.last == before or team.coord.clock.last >> 16 < (time.time() + 3600) * 1000
    assert any(n.kind == "future_op" and n.record_id == early.id for n in team.coord.notices())
    # its time comes: applied then, nothing lost
    team.coord._now = lambda: time.time() + year + 60  # noqa: SLF001 (the workspace's injectable wall clock)
    team.ceng.sync()
    assert "From next year" in _aliases(team.coord)


# ------------------------------------------------------------------------------ 5: audit
def test_audit_events_are_append_only_and_attributable(team: Team) -> None:
    team.coord.audit(AuditAction.EXPORT, None, None, detail="contacts.csv")
    team.ceng.sync()
    team.weng.sync()
    (event,) = [e for e in team.worker.audit_events() if e.detail == "contacts.csv"]
    # a worker's device rewrites the coordinator's event, and writes one in the coordinator's name
    team.worker._write(RecordType.AUDIT, event.id, {"detail": "nothing happened"}, must_exist=True)  # noqa: SLF001
    team.worker._write(RecordType.AUDIT, team.worker._new_id(), {  # noqa: SLF001
        "at": "2026-12-01T10:00:00", "actor": "Kim", "device_id": team.coord.device_id, "action": "erase",
        "target_type": None, "target_id": None, "detail": "in another's name"})
    team.weng.sync()
    team.ceng.sync()
    details = [e.detail for e in team.coord.audit_events()]
    assert "contacts.csv" in details and "nothing happened" not in details and "in another's name" not in details
    assert {n.kind for n in team.coord.notices()} >= {"audit_refused"}


# ------------------------------------------------------------------- 6: role, fingerprints
def test_a_worker_invite_does_not_become_a_coordinator(team: Team) -> None:
    newcomer, neng = team.device("newcomer")
    code = team.ceng.invite(p.Role.WORKER)
    with team.attacker.db() as db:
        assert db.execute("UPDATE invite SET role='coordinator' WHERE used_at IS NULL").rowcount == 1
    neng.join(team.server.url, code)
    team.ceng.sync()
    neng.sync()
    assert newcomer.setting("device_status") == "active"
    assert newcomer.setting("role") == "worker"
    assert not neng.is_coordinator and not neng.can_sign()
    neng.close()
    newcomer.close()


def test_the_coordinator_sees_the_fingerprint_the_device_shows(team: Team) -> None:
    newcomer, neng = team.device("newcomer")
    shown = neng.join(team.server.url, team.ceng.invite()).fingerprint
    listing = team.ceng.devices()
    prints = team.ceng.fingerprints(listing)
    assert prints[newcomer.device_id] == shown == newcomer.fingerprint()
    assert prints[team.worker.device_id] == team.worker.fingerprint()
    neng.close()
    newcomer.close()


def test_a_coordinator_can_compare_fingerprints_before_admitting(team: Team) -> None:
    team.ceng.set_confirms_devices(True)
    newcomer, neng = team.device("newcomer")
    shown = neng.join(team.server.url, team.ceng.invite()).fingerprint
    assert team.ceng.sync().admitted == 0
    assert team.ceng.awaiting_confirmation(team.ceng.devices()) == [newcomer.device_id]
    other = team.worker.fingerprint()
    with pytest.raises(SyncError, match="fingerprints differ"):
        team.ceng.confirm_device(newcomer.device_id, other)
    assert team.ceng.sync().admitted == 0
    team.ceng.confirm_device(newcomer.device_id, shown.lower())  # as read aloud: case and spaces do not matter
    assert team.ceng.sync().admitted == 1 and team.ceng.awaiting_confirmation(team.ceng.devices()) == []
    neng.sync()
    assert newcomer.setting("device_status") == "active"
    neng.close()
    newcomer.close()


def test_invite_secrets_expire(team: Team, clock: FakeClock) -> None:
    team.coord._now = clock  # noqa: SLF001
    team.ceng.invite(expires_in=3600)
    assert team.ceng.open_invites() == 1
    clock.advance(3601)
    team.ceng.sync()
    assert team.ceng.open_invites() == 0


# ---------------------------------------------------------------------------- migration
def _legacy(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    target = tmp_path / "legacy"
    shutil.copytree(FIXTURE, target)
    for path in target.rglob("*"):
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    return json.loads((target / "meta.json").read_text()), target


def test_a_team_of_the_previous_version_moves_to_signed_authority(tmp_path: Path) -> None:
    meta, root = _legacy(tmp_path)
    with ServerProcess(f"sqlite:///{root / 'server.db'}", workdir=root) as server:
        opened = {}
        for name in ("coord", "worker"):
            ws = Workspace(root / name)
            ws.unlock(meta["passphrase"])
            ws.set_settings(server_url=server.url)
            opened[name] = (ws, SyncEngine(ws))
        (coord, ceng), (worker, weng) = opened["coord"], opened["worker"]
        try:
            assert "Arbejders Anna" in _aliases(worker) and worker.outbox_count() == 1
            ceng.sync()  # the coordinator makes the authority key and grants every epoch again, signed
            # it counted every device's writes of the old history: a later revocation's cut-off keeps them
            assert int(coord.sync_value(f"seen:{meta['worker']}", "0") or 0) >= 1
            weng.sync()  # the worker pins it (bound by the newest team key it holds) and pushes
            ceng.sync()
            assert ceng.can_sign() and weng.authority_vk() == ceng.authority_vk() is not None
            weng.sync()  # the worker's announce of its signing key is confirmed by the next coordinator sync
            ceng.sync()
            weng.sync()
            entry = ceng.roster()[worker.device_id]
            assert entry.sign_vk is not None and entry.unsigned_through >= 2
            worker.add_person({"alias": "Signed now"})
            weng.sync()
            ceng.sync()
            assert "Signed now" in _aliases(coord)
            coord.delete_record(RecordType.PERSON, next(q.id for q in coord.persons() if q.alias == "Signed now"))
            ceng.sync()
            weng.sync()
            assert coord.get_person(meta["worker_person"]).description == "ikke sendt endnu"
            assert _aliases(coord) == _aliases(worker) == ["Arbejders Anna", "Gammel Gert"]
            # from now on the team is signed: a forged epoch is refused, a signed erasure works
            attacker = Attacker(server)
            _, epoch, _ = attacker.team()
            attacker.forge_key(epoch + 1, [worker.device_id], raise_epoch=True)
            with pytest.raises(SyncError):
                weng.sync()
            assert worker.epoch == epoch
            with attacker.db() as db:
                db.execute("UPDATE team SET current_epoch=?", (epoch,))
                db.execute("DELETE FROM wrapped_key WHERE epoch=?", (epoch + 1,))
            assert ceng.erase_person(meta["kept_person"]) == 2
            weng.sync()
            assert _aliases(worker) == ["Arbejders Anna"]
            # and a recovered coordinator signs with the same authority
            code = ceng.new_recovery_code()
            spare = Workspace(tmp_path / "spare", fast_kdf=True)
            spare.init(PASS)
            seng = SyncEngine(spare)
            seng.recover(server.url, code)
            assert seng.can_sign() and seng.authority_vk() == ceng.authority_vk()
            seng.close()
            spare.close()
        finally:
            for ws, engine in opened.values():
                engine.close()
                ws.close()
