"""Sync under faults, as a Hypothesis state machine: three devices, one in-process server.

Each example starts from an enrolled team: a founding coordinator that joined with the operator's
code, two workers that joined with codes from `SyncEngine.invite` and were admitted by the
coordinator's sync, and four persons the coordinator created and every device pulled. That
enrollment runs for real once per module (`enrolled_team`) into a template (the server's SQLite
file and the three device directories, closed cleanly); each example works on a fresh byte copy,
on tmpfs when there is one. The server app and its TestClient portal (`tests/asgi_adapter.py`)
are made once per module; between examples the app's engine is disposed and its file replaced.
Devices push 2 ops per request and pull 3 per page, so batching and paging happen in short runs.

Rules: persons created (in bursts), edited (reviewed fields such as alias, status and consent
too) and deleted on any device; two devices editing one reviewed field concurrently; open
conflicts resolved; a person erased by the coordinator (a purge it signs: its ops leave the
server, every device that pulls the purge, and the outboxes; later edits of it are dropped); a
sync on any device under a fault plan (request lost, answer lost after the server committed,
request delivered twice; devices 0 and 1 never retry, so a lost message surfaces as `Offline`,
device 2 retries once); a sync during which the app dies: in the apply transaction of the n-th
pulled page (before it, after the rows, at the cursor), in the n-th push acknowledgement, or at
the k-th writing SQL statement wherever it falls; a save during which the app dies; restarts
(the restarted app must show exactly what it showed before); once, a quiet round in the middle
of a run.

Checked after every step: the server holds each op id once and each (device, device_seq) once,
each in a push with its device's signed statement (protocol 1.2); every op a device wrote is
either still in its outbox (a contiguous tail of its writes, but for writes of erased persons,
holding nothing it recorded as acknowledged) or on the server under the same op id (or it was a
write of an erased person); the server holds no op a device did not write; no op was set aside;
cursors never move back; no device was told of a change that did not arrive (`missing_ops`) or
of a revoked device's rewritten history (`history_differs`): an honest server withholds nothing,
lost answers, retries and erasures included. After a successful sync the device's sealed records
equal the merge of the server's whole log (erased persons left out). After a quiet round (each
device syncs twice without faults; also at the end of every example): outboxes empty, cursors at
the log's end, every device's records equal to the merge of the log and to an independent
last-writer-wins model of it (so no acknowledged write is lost, none resurrected), and the same
open conflicts everywhere.

A second machine (`HostileSyncMachine`, `test_sync_holds_against_a_hostile_server`) runs the same
rules against a hostile server, on a team that also revoked a fourth device: forged keys, forged
purges, forged roster entries, ops relayed in another device's name or from the revoked device,
ops and whole pushes withheld, old pull pages replayed and answers reordered; see its docstring
for what each must (not) do.

`OUTREACH_STATEFUL_EXAMPLES` overrides the number of examples (default 200),
`OUTREACH_HOSTILE_EXAMPLES` that of the hostile machine (default 50); `pytest -s` prints what the
examples exercised (faults fired, kills reached, attacks, conflicts at convergence).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import pytest
import requests
from asgi_adapter import ASGIAdapter, Delivery, Fault, FaultyAdapter, asgi_session
from hypothesis import HealthCheck, settings
from hypothesis import note as hypothesis_note
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from models.domain.clock import HLC, hlc_ms
from models.domain.merge import Op, RecordState, apply_op, new_state
from models.domain.tables import REVIEWED_FIELDS
from models.domain.vocab import Consent, HomelessCategory, Need, RecordType, Status
from models.storage.vault import KdfParams, Vault
from models.workspace import Workspace, decode_op, encode_op
from sync.client import SyncClient
from sync.engine import SyncEngine
from sync.errors import KeyRefused, Offline, StaleEpoch, SyncError
from sync.protocol import DeviceStatus, EnrollmentCode, Role, b64e, batch_message, op_digest, unpack_entries
from sync.server import Database, ServerSettings, create_app, crud
from sync.server.keys import load_server_key

PASSPHRASE = "stateful sync 42"
BASE_URL = "http://127.0.0.1:8700"  # loopback: SyncClient allows plain http; the adapter serves it
N_DEVICES = 3  # device 0 is the coordinator
RETRIES = (0, 0, 1)  # client retries per device: faults surface as Offline on 0 and 1, device 2 retries
PUSH_OPS = 2  # small batches and pages, so that batching and paging happen in short runs
PULL_LIMIT = 3
EXAMPLES = int(os.environ.get("OUTREACH_STATEFUL_EXAMPLES", "200"))
HOSTILE_EXAMPLES = int(os.environ.get("OUTREACH_HOSTILE_EXAMPLES", "50"))
PERSON = RecordType.PERSON
REVIEWED = REVIEWED_FIELDS[PERSON]
SEED_PERSONS: list[dict[str, Any]] = [
    {"alias": "Aksel", "birth_year": 1961, "category": HomelessCategory.STREET.value},
    {"alias": "Bent", "status": Status.HOUSED.value, "consent": Consent.VERBAL.value},
    {"alias": "Carla", "description": "red coat", "needs": [Need.DEBT.value]},
    {"alias": "Dorte"},
]


STATS: Counter[str] = Counter()  # what the examples exercised; printed at the end (pytest -s)


def event(what: str) -> None:
    STATS[what] += 1


def note(text: str) -> None:
    """Shown with a failing example; outside a Hypothesis test (a script driving the machine), dropped."""
    with contextlib.suppress(InvalidArgument):
        hypothesis_note(text)


class Killed(BaseException):
    """The app dies here (a BaseException: no `except Exception` of the code under test sees it)."""


class KillSwitch:
    """Stands in for a store's `sqlite3.Connection`: its `at`-th writing statement (counting from 0;
    BEGIN, INSERT, DELETE, UPDATE, COMMIT...; dying before a read is dying before the next write)
    raises `Killed` instead of running, once; everything else passes through. So the app dies at an
    arbitrary point: in a transaction (the store's `atomic` rolls back, as SQLite would on the next
    open), at its COMMIT, or between two transactions."""

    def __init__(self, conn: sqlite3.Connection, at: int) -> None:
        self._conn = conn
        self._left = at
        self.fired: str | None = None  # the statement it died at

    def _tick(self, sql: str) -> None:
        if self.fired is None and not sql.lstrip().upper().startswith("SELECT"):
            if self._left == 0:
                self.fired = " ".join(sql.split())[:60]
                raise Killed(self.fired)
            self._left -= 1

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._tick(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._tick(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@contextlib.contextmanager
def kill_switch(ws: Workspace, at: int) -> Iterator[KillSwitch]:
    store = ws.store
    switch = KillSwitch(store.conn, at)
    store.conn = switch  # type: ignore[assignment]
    try:
        yield switch
    finally:
        store.conn = switch._conn


# ------------------------------------------------------------------------------------ the team


@dataclass
class Team:
    """The template of an enrolled team, and the module's one server app working on a copy."""

    root: Path
    template: Path
    work: Path
    db: Database
    adapter: ASGIAdapter
    device_ids: list[str]
    team_id: str
    person_ids: list[str]  # the seed persons, on every device
    gone: Revoked | None = None  # the template's revoked device, if it has one

    @property
    def server_db(self) -> Path:
        return self.work / "server.db"

    def device_dir(self, index: int) -> Path:
        return self.work / f"device{index}"

    def reset(self) -> None:
        """Put a fresh copy of the template in place: the server's database and every device."""
        self.db.dispose()  # closes the pooled connections; the next request opens the new file
        for path in self.work.glob("server.db*"):
            path.unlink()
        for path in self.template.glob("server.db*"):
            shutil.copyfile(path, self.work / path.name)
        for i in range(N_DEVICES):
            shutil.rmtree(self.device_dir(i), ignore_errors=True)
            shutil.copytree(self.template / f"device{i}", self.device_dir(i))
        if self.gone is not None:
            shutil.rmtree(self.work / "gone", ignore_errors=True)
            shutil.copytree(self.template / "gone", self.work / "gone")


@dataclass(frozen=True)
class Revoked:
    """A fourth device that joined, wrote, was revoked by the coordinator (a new epoch for the
    others), and kept its data: what a stolen phone holds."""

    device_id: str
    cutoff: int  # the last of its device sequences that counts
    roster_entry: bytes  # its roster entry from before the revocation (genuine, no cut-off)


def _scratch_root() -> Path:
    """tmpfs when there is one: both stores fsync every commit (synchronous=FULL)."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="outreach-stateful-", dir=base))


def _enroll_template(template: Path, *, revoked: bool = False) -> tuple[list[str], str, list[str], Revoked | None]:
    """Found a team and enroll two workers through the real protocol, add the seed persons on the
    coordinator and sync them everywhere, then close everything. With `revoked`, a third worker
    joins too, adds a person, syncs, and is revoked by the coordinator; the others sync into the
    new epoch (its person stays on every device)."""
    server_settings = ServerSettings(db_url=f"sqlite:///{template / 'server.db'}")
    db = Database.from_settings(server_settings)
    adapter = ASGIAdapter(create_app(server_settings, database=db))
    code = EnrollmentCode.generate()
    with db.transaction(write=True) as session:  # what `outreach-server team create` does
        team = crud.create_team(session, name="Stateful", lookup=code.lookup, secret=code.secret,
                                key=load_server_key(server_settings), ttl_seconds=3600, now=time.time())
    http = asgi_session(adapter)
    workspaces: list[Workspace] = []
    try:
        engines = []
        for i in range(N_DEVICES):
            ws = Workspace(template / f"device{i}", fast_kdf=True)
            ws.init(PASSPHRASE, worker_name=f"worker {i}")
            workspaces.append(ws)
            engines.append(SyncEngine(ws, session=http))
        founded = engines[0].join(BASE_URL, str(code), device_name="coordinator")
        assert founded.founding and founded.role == Role.COORDINATOR and founded.status == DeviceStatus.ACTIVE
        if revoked:
            gone = Workspace(template / "gone", fast_kdf=True)
            gone.init(PASSPHRASE, worker_name="gone")
            workspaces.append(gone)
            engines.append(SyncEngine(gone, session=http))
        codes = [engines[0].invite() for _ in engines[1:]]
        for engine, invite in zip(engines[1:], codes, strict=True):
            joined = engine.join(BASE_URL, invite)
            assert joined.status == DeviceStatus.PENDING and joined.role == Role.WORKER
            assert engine.sync().pending
        assert engines[0].sync().admitted == len(engines) - 1
        for engine in engines[1:]:
            assert not engine.sync().pending
        # records every device already holds: edits, deletes and conflicts need no warm-up
        person_ids = [workspaces[0].add_person(fields).id for fields in SEED_PERSONS]
        for engine in engines:
            engine.sync()
        key = workspaces[0].vault.team_key(1)  # type: ignore[union-attr]
        for ws in workspaces:
            assert ws.setting("device_status") == DeviceStatus.ACTIVE.value
            assert ws.setting("team_id") == team.id
            assert ws.vault is not None and ws.vault.team_key(1) == key
        left: Revoked | None = None
        if revoked:
            gone, gone_engine = workspaces[-1], engines[-1]
            person_ids.append(gone.add_person({"alias": "Gone's"}).id)
            gone_engine.sync()
            with contextlib.closing(sqlite3.connect(template / "server.db")) as conn:
                (entry,) = conn.execute("SELECT entry FROM roster WHERE device_id=?", (gone.device_id,)).fetchone()
            assert engines[0].revoke(gone.device_id) == 2
            left = Revoked(gone.device_id, int(workspaces[0].sync_value(f"seen:{gone.device_id}", "0") or 0), entry)
            assert left.cutoff == int(gone.store.meta("device_seq", "0") or 0)
            gone_engine.close()
            gone.close()  # it never syncs again (the server would tell it to wipe itself)
            del workspaces[-1], engines[-1]
            for engine in engines * 2:
                engine.sync()
            key = workspaces[0].vault.team_key(2)  # type: ignore[union-attr]
            for ws in workspaces:
                assert ws.epoch == 2 and ws.vault is not None and ws.vault.team_key(2) == key
        device_ids = [ws.device_id for ws in workspaces]
        for ws in workspaces:
            assert sorted(ws.index.records[PERSON]) == sorted(person_ids)
    finally:
        for ws in workspaces:
            ws.close()
        adapter.shutdown()
        db.dispose()  # the last connection closes: SQLite checkpoints and removes the WAL
    return device_ids, team.id, person_ids, left


@contextlib.contextmanager
def enrolled_team(*, revoked: bool = False) -> Iterator[Team]:
    """Enroll the template team and serve a working copy of it; everything is removed after."""
    root = _scratch_root()
    template, work = root / "template", root / "work"
    template.mkdir()
    work.mkdir()
    try:
        device_ids, team_id, person_ids, gone = _enroll_template(template, revoked=revoked)
        server_settings = ServerSettings(db_url=f"sqlite:///{work / 'server.db'}")
        shutil.copyfile(template / "server.db", work / "server.db")
        db = Database.from_settings(server_settings)
        adapter = ASGIAdapter(create_app(server_settings, database=db))
        try:
            yield Team(root, template, work, db, adapter, device_ids, team_id, person_ids, gone)
        finally:
            adapter.shutdown()
            db.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def team() -> Iterator[Team]:
    with enrolled_team() as made:
        yield made


@pytest.fixture(scope="module")
def team_after_a_revocation() -> Iterator[Team]:
    with enrolled_team(revoked=True) as made:
        yield made


def _since(delivery: Delivery) -> int:
    return int(parse_qs(delivery.query).get("since", ["0"])[0])


def _pages_used(log: list[Delivery], cursor: int) -> set[int]:
    """The `since` of every pull page a successful sync run stored: the chain of answered pages
    from the cursor it started at, each page's `next` the following one's `since`."""
    answers = {_since(x): x.response.json() for x in log
               if x.path == "/v1/pull" and x.status == 200 and x.response is not None}
    used: set[int] = set()
    while cursor in answers and cursor not in used:
        used.add(cursor)
        page = answers[cursor]
        if not page["more"]:
            break
        cursor = page["next"]
    return used


MISSING = re.compile(r"(\d+) changes of this device did not arrive: (\d+(?:-\d+)?(?:, \d+(?:-\d+)?)*)")


def named_sequences(detail: str) -> set[int]:
    """The sequences a `missing_ops` notice names ("N changes of this device did not arrive: a-b,
    c"), checked against its count."""
    matched = MISSING.fullmatch(detail)
    assert matched, f"a missing_ops notice that does not read as one: {detail!r}"
    seqs: set[int] = set()
    for part in matched[2].split(", "):
        a, _, b = part.partition("-")
        seqs |= set(range(int(a), int(b or a) + 1))
    assert len(seqs) == int(matched[1]), f"a missing_ops notice whose count is not what it names: {detail!r}"
    return seqs


# ------------------------------------------------------------------------------ the machine


@dataclass(frozen=True)
class ServerOp:
    seq: int
    op_id: str
    device_id: str
    device_seq: int
    record_id: str
    key_epoch: int
    payload: bytes


@dataclass
class Device:
    index: int
    path: Path
    device_id: str
    faults: FaultyAdapter
    ws: Workspace = field(init=False)
    engine: SyncEngine = field(init=False)
    written: dict[int, str] = field(default_factory=dict)  # device_seq -> op id: every local write
    sealed: dict[int, ServerOp] = field(default_factory=dict)  # device_seq -> that write as pushed (seq 0)
    acked: int = 0  # the highest device_seq this device recorded as acknowledged (`Workspace.ack`)
    cursor: int = 0  # the last cursor seen on disk


F = TypeVar("F", bound=Callable[..., Any])


def step(fn: F) -> F:
    """A rule: counted, and the machine marked busy while it runs (teardown skips the final quiet
    round after a failed step, so that the failure reported is the step's own)."""

    @functools.wraps(fn)
    def run(self: SyncMachine, *args: Any, **kwargs: Any) -> Any:
        self.busy = True
        self.steps += 1
        result = fn(self, *args, **kwargs)
        self.busy = False
        return result

    return run  # type: ignore[return-value]


DEVICE = st.integers(0, N_DEVICES - 1)
PICK = st.integers(0, 30)
ALIASES = st.sampled_from(["Aksel", "Bent", "Carla", "Dorte"])
PERSON_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "alias": ALIASES,
        "status": st.sampled_from([s.value for s in Status]),
        "consent": st.sampled_from([c.value for c in Consent]),
        "birth_year": st.sampled_from([None, 1961, 1984]),
        "category": st.sampled_from([None, HomelessCategory.STREET.value, HomelessCategory.SHELTER.value]),
        "description": st.sampled_from([None, "red coat", "grey dog"]),
        "needs": st.sampled_from([[], [Need.INCOME.value], [Need.DEBT.value, Need.LEGAL.value]]),
    },
)
REVIEWED_CHOICES: dict[str, list[Any]] = {  # reviewed fields and values two devices may disagree on
    "alias": ["Aksel", "Bent", "Carla", "Dorte"],
    "status": [s.value for s in Status],
    "consent": [c.value for c in Consent],
    "birth_year": [None, 1961, 1984],
}
NETWORK_FAULTS = [Fault.DROP_REQUEST, Fault.DROP_RESPONSE, Fault.DUPLICATE]
# (fault, requests it may hit, matching requests let through first); pushes are fewer than pulls
FAULT_PLAN = st.lists(
    st.tuples(st.sampled_from(NETWORK_FAULTS), st.sampled_from(["/v1/push", "/v1/push", "/v1/pull", None]),
              st.integers(0, 1)),
    max_size=3,
)


class SyncMachine(RuleBasedStateMachine):
    def __init__(self, team: Team) -> None:
        super().__init__()
        self.busy = True
        self.steps = 0  # rules run so far
        self.quiet_rounds = 0
        self.team = team
        team.reset()
        event("examples")
        self.person_ids: list[str] = list(team.person_ids)  # in creation order: picks stay reproducible
        self.erased: set[str] = set()  # persons the coordinator erased (a signed purge)
        self.erased_seen: set[tuple[int, int]] = set()  # (device, seq): its write of one, not on the server
        self.opened: dict[str, Op] = {}  # op id -> opened server op (cache)
        # One logical wall clock for all devices, a millisecond per reading: stamps follow the order
        # of the steps. (With the real clock two devices writing in the same millisecond are
        # ordered by device id, so whether a later edit saw the "latest" value, hence whether a
        # conflict exists, would depend on timing, and a failing example would not replay.)
        self.wall_ms = int(time.time() * 1000) + 60_000
        self.devices = [
            Device(i, team.device_dir(i), team.device_ids[i], FaultyAdapter(team.adapter)) for i in range(N_DEVICES)
        ]
        seeded = self.server_ops()
        ids = {dev.device_id for dev in self.devices}
        # ops of devices outside the machine (a revoked device's, from before its revocation)
        self.foreign = {(o.device_id, o.device_seq): o.op_id for o in seeded if o.device_id not in ids}
        for dev in self.devices:
            self._open(dev)
            dev.cursor = int(dev.ws.sync_value("cursor", "0") or 0)
            dev.written = {o.device_seq: o.op_id for o in seeded if o.device_id == dev.device_id}
            dev.sealed = {o.device_seq: o for o in seeded if o.device_id == dev.device_id}
            dev.acked = max(dev.written, default=0)
        self.busy = False

    # -------------------------------------------------------------------- plumbing
    def _tick_ms(self) -> int:
        self.wall_ms += 1
        return self.wall_ms

    def _open(self, dev: Device) -> None:
        ws = Workspace(dev.path, fast_kdf=True)
        ws.unlock(PASSPHRASE)
        assert ws.device_id == dev.device_id
        ws.clock = HLC(ws.clock.last, wall_ms=self._tick_ms)
        factory = functools.partial(SyncClient, retries=RETRIES[dev.index], backoff=0.0, sleep=lambda _s: None)
        engine = SyncEngine(ws, session=asgi_session(dev.faults), client_factory=factory,
                            push_ops=PUSH_OPS, pull_limit=PULL_LIMIT)
        ack = ws.ack

        def recording_ack(through_seq: int) -> None:
            ack(through_seq)  # returns only once committed
            dev.acked = max(dev.acked, through_seq)

        ws.ack = recording_ack  # type: ignore[method-assign]
        dev.ws, dev.engine = ws, engine

    def _close(self, dev: Device) -> None:
        dev.engine.close()
        dev.ws.close()

    def _restart(self, dev: Device, *, crash: bool = False) -> None:
        """The app stops and starts again: what it showed must be exactly what is on disk. A clean
        stop seals the index into a snapshot that the start may load; after a crash nothing more
        is written (the connection is dropped) and the start must rebuild from the rows."""
        shown = {rtype: dict(table) for rtype, table in dev.ws.index.records.items()}
        if crash:
            dev.engine.close()
            dev.ws.store.conn.close()
        else:
            self._close(dev)
        self._open(dev)
        assert dev.ws.index.records == shown, "the records on disk differ from those the app showed"

    def server_ops(self) -> list[ServerOp]:
        with contextlib.closing(sqlite3.connect(f"file:{self.team.server_db}?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "SELECT seq, op_id, device_id, device_seq, record_id, key_epoch, payload FROM op ORDER BY seq"
            ).fetchall()
        return [ServerOp(*row) for row in rows]

    def _log_end(self) -> tuple[int, int]:
        """Where a caught-up device's cursor may stand: from the log's last entry (op or purge) to
        the last sequence the server gave out (more, when entries at the end were removed)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.team.server_db}?mode=ro", uri=True)) as conn:
            last_op, last_purge, next_seq = conn.execute(
                "SELECT (SELECT max(seq) FROM op), (SELECT max(seq) FROM purge), (SELECT next_seq FROM team)"
            ).fetchone()
        return max(last_op or 0, last_purge or 0), next_seq - 1

    def _seen_by(self, dev: Device, ops: list[ServerOp], through: int | None = None) -> list[ServerOp]:
        """The ops whose merge a device must hold: every op it wrote (sent, queued, or dropped by
        the server) and the other devices' ops on the server up to `through` (all when None); of
        persons only (not the audit events of erasures), and none of an erased person (a device
        past the purge holds nothing of them)."""
        others = [o for o in ops if o.device_id != dev.device_id and (through is None or o.seq <= through)]
        return [o for o in others + [dev.sealed[seq] for seq in sorted(dev.sealed)]
                if o.record_id not in self.erased and self._open_op(o).record_type == PERSON.value]

    def _live(self, dev: Device, queued: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """Outbox entries (device seq, op id) but the writes of erased persons: those may leave the
        outbox unsent (the device knows the server would drop them)."""
        return [(seq, op_id) for seq, op_id in queued if dev.sealed[seq].record_id not in self.erased]

    def _withheld(self, dev: Device, seq: int) -> bool:
        """Whether the server may not hold this write of `dev` that left its outbox: a write of an
        erased person (the purge deleted it, or the server acknowledged it without storing it)."""
        if dev.sealed[seq].record_id not in self.erased:
            return False
        if (dev.index, seq) not in self.erased_seen:
            self.erased_seen.add((dev.index, seq))
            event("erased: a write of an erased person, not on the server")
        return True

    def _check_set_aside(self, dev: Device) -> None:
        """Every op the devices write is authentic: none is ever set aside."""
        assert not dev.ws.store.set_aside_rows(), f"device {dev.index}: ops set aside"

    def _unstated(self) -> set[str]:
        """The op ids on the server that came in no push with a signed statement."""
        with contextlib.closing(sqlite3.connect(f"file:{self.team.server_db}?mode=ro", uri=True)) as conn:
            return {op_id for op_id, in conn.execute(
                "SELECT op.op_id FROM op LEFT JOIN batch ON batch.id = op.batch_id WHERE batch.sig2 IS NULL")}

    def _may_miss(self, device_id: str) -> set[int]:
        """The sequences of `device_id` a device may be told did not arrive: an honest server
        withholds nothing (and nothing is erased here)."""
        return set()

    def _check_alarms(self, dev: Device) -> None:
        """No false alarm: every `missing_ops` notice names another device of the team and only
        sequences of it that the server withheld (`_may_miss`); no `history_differs` notice (no
        rule rewrites the history of a revoked device)."""
        names = {d.device_id: f"device {d.index}" for d in self.devices}
        for n in dev.ws.notices():
            assert n.kind != "history_differs", f"device {dev.index}: a false alarm: {n.kind} {n.device_id} {n.detail}"
            if n.kind != "missing_ops":
                continue
            assert n.device_id in names and n.device_id != dev.device_id, (
                f"device {dev.index}: missing ops of {names.get(n.device_id or '', n.device_id)}: {n.detail}")
            allowed = self._may_miss(n.device_id)
            assert named_sequences(n.detail) <= allowed, (
                f"device {dev.index}: a false alarm about {names[n.device_id]}: {n.detail!r}; "
                f"withheld: {sorted(allowed)}")

    def _open_op(self, sop: ServerOp) -> Op:
        op = self.opened.get(sop.op_id)
        if op is None:
            vault = self.devices[0].ws.vault
            assert vault is not None
            body = vault.open_op(sop.record_id, sop.key_epoch, sop.device_id, sop.device_seq, sop.op_id, sop.payload)
            op = self.opened[sop.op_id] = decode_op(body, sop.record_id, sop.device_id)
        return op

    def _merged(self, ops: list[ServerOp]) -> dict[str, RecordState]:
        """Every server op through the merge rules: the state each device must converge to."""
        states: dict[str, RecordState] = {}
        for sop in ops:
            op = self._open_op(sop)
            assert op.record_type == PERSON.value
            apply_op(states.setdefault(op.record_id, new_state(op.record_type)), op, REVIEWED)
        return states

    @staticmethod
    def _states_on(dev: Device) -> dict[str, dict[str, Any]]:
        ws = dev.ws
        return {rid: ws._state(PERSON, rid).to_json() for rid, _e, _b in ws.store.iter_rows(PERSON)}  # type: ignore[union-attr]

    def _recorded_write(self, dev: Device) -> None:
        """The one op a local change just queued: remember its sequence number and id."""
        last = max(dev.written, default=0)
        rows = dev.ws.store.conn.execute(
            "SELECT device_seq, op_id FROM outbox WHERE device_seq > ? ORDER BY device_seq", (last,)
        ).fetchall()
        assert [seq for seq, _ in rows] == [last + 1], f"one change, one op with the next seq: {rows}"
        dev.written[rows[0][0]] = rows[0][1]
        ((seq, op_id, rid, epoch, payload),) = [r for r in dev.ws.store.outbox_all() if r[0] == last + 1]
        dev.sealed[seq] = ServerOp(0, op_id, dev.device_id, seq, rid, epoch, payload)

    def _persons_on(self, dev: Device) -> list[str]:
        table = dev.ws.index.records[PERSON]
        return [pid for pid in self.person_ids if pid in table]

    def _with_persons(self, d: int) -> Device | None:
        having = [dev for dev in self.devices if self._persons_on(dev)]
        return having[d % len(having)] if having else None

    def _to_pull(self, dev: Device) -> bool:
        """Whether the log holds ops of other devices past this device's cursor."""
        with contextlib.closing(sqlite3.connect(f"file:{self.team.server_db}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT 1 FROM op WHERE seq > ? AND device_id != ? LIMIT 1",
                               (dev.cursor, dev.device_id)).fetchone()
        return row is not None

    def _run_sync(self, dev: Device, plan: list[tuple[Fault, str | None, int]]) -> bool:
        """One sync run under a fault plan. True when it succeeded, False when it was Offline."""
        for fault, path, skip in plan:
            dev.faults.schedule(fault, path=path, skip=skip)
        start = len(dev.faults.log)
        cursor_before = int(dev.ws.sync_value("cursor", "0") or 0)
        try:
            dev.engine.sync()
            ok = True
        except Offline:
            ok = False
        finally:
            dev.faults.clear()
        drops = self._faults_fired(dev, start, "ok" if ok else "offline")
        if not drops:
            assert ok, "a sync without lost messages must succeed"
        self._check_lost(dev, start, cursor_before, ok, drops)
        if ok:
            self._check_caught_up(dev)
            assert dev.ws.sync_value("last_error") == ""
        else:
            assert dev.ws.sync_value("last_error"), "a failed sync leaves its reason for the status chip"
        return ok

    def _faults_fired(self, dev: Device, start: int, outcome: str) -> list[Delivery]:
        """Note and count the faults that fired in a run since `start`; returns the lost messages."""
        fired = [x for x in dev.faults.log[start:] if x.fault is not None]
        note(f"device {dev.index} sync {outcome}; faults fired: "
             f"{[(x.fault.value, x.method, x.path) for x in fired if x.fault]}")
        for x in fired:
            event(f"fault fired: {x.fault.value if x.fault else None} {x.method} {x.path}")
        return [x for x in fired if x.fault in (Fault.DROP_REQUEST, Fault.DROP_RESPONSE)]

    def _check_lost(self, dev: Device, start: int, cursor_before: int, ok: bool, drops: list[Delivery]) -> None:
        if RETRIES[dev.index] == 0:
            # A page asked for ahead, on the guess that the log has no gap, is not needed when the
            # guess was wrong or the log ended before it: losing it loses nothing. Every other
            # lost message must surface.
            needed = _pages_used(dev.faults.log[start:], cursor_before) if ok else set()
            lost = [x for x in drops if not (x.path == "/v1/pull" and _since(x) not in needed)] if ok else drops
            assert ok == (not lost), "without retries, a lost message surfaces as Offline"

    def _check_caught_up(self, dev: Device) -> None:
        """After a successful sync: nothing queued, the cursor at the log's end, and the device's
        records exactly the merge of every op on the server (and of its own the server dropped)."""
        ops = self.server_ops()
        assert dev.ws.outbox_count() == 0, "a successful sync pushes the whole outbox"
        first, last = self._log_end()
        assert first <= int(dev.ws.sync_value("cursor", "0") or 0) <= last
        expected = {rid: state.to_json() for rid, state in self._merged(self._seen_by(dev, ops)).items()}
        assert self._states_on(dev) == expected, "a caught-up device holds the merge of the server's log"

    # ----------------------------------------------------------------------- rules
    @rule(d=DEVICE, people=st.lists(st.tuples(ALIASES, PERSON_FIELDS), min_size=1, max_size=3))
    @step
    def create_persons(self, d: int, people: list[tuple[str, dict[str, Any]]]) -> None:
        dev = self.devices[d]
        for alias, fields in people:
            person = dev.ws.add_person({**fields, "alias": alias})
            self.person_ids.append(person.id)
            self._recorded_write(dev)

    @precondition(lambda self: self.person_ids)
    @rule(d=DEVICE, pick=PICK, fields=PERSON_FIELDS)
    @step
    def edit_person(self, d: int, pick: int, fields: dict[str, Any]) -> None:
        dev = self._with_persons(d)
        if dev is None:
            return
        persons = self._persons_on(dev)
        pid = persons[pick % len(persons)]
        updated = dev.ws.edit_person(pid, fields)
        for name, value in fields.items():
            assert getattr(updated, name) == value, name
        if fields:  # an empty edit writes nothing
            self._recorded_write(dev)

    @precondition(lambda self: self.person_ids)
    @rule(d=DEVICE, pick=PICK)
    @step
    def delete_person(self, d: int, pick: int) -> None:
        dev = self._with_persons(d)
        if dev is None:
            return
        persons = self._persons_on(dev)
        pid = persons[pick % len(persons)]
        dev.ws.delete_record(PERSON, pid)
        self._recorded_write(dev)
        assert pid not in dev.ws.index.records[PERSON]

    @precondition(lambda self: self.person_ids)
    @rule(pick=PICK, name=st.sampled_from(sorted(REVIEWED_CHOICES)), first=DEVICE, shift=st.integers(1, 2),
          values=st.lists(st.integers(0, 3), min_size=2, max_size=2, unique=True))
    @step
    def concurrent_edit(self, pick: int, name: str, first: int, shift: int, values: list[int]) -> None:
        """Two devices change the same reviewed field of a person both hold, to different values,
        neither having seen the other's change: a conflict to review once both are synced."""
        a, b = self.devices[first], self.devices[(first + shift) % N_DEVICES]
        shared = [pid for pid in self._persons_on(a) if pid in b.ws.index.records[PERSON]]
        event(f"concurrent edit: {'made' if shared else 'no shared person'}")
        if not shared:
            return
        pid = shared[pick % len(shared)]
        choices = REVIEWED_CHOICES[name]
        for dev, v in ((a, values[0]), (b, values[1])):
            dev.ws.edit_person(pid, {name: choices[v % len(choices)]})
            self._recorded_write(dev)

    @precondition(lambda self: any(dev.ws.store.conflicts() for dev in self.devices))
    @rule(d=DEVICE, pick=PICK, choose_b=st.booleans())
    @step
    def resolve_conflict(self, d: int, pick: int, choose_b: bool) -> None:
        dev = self.devices[d]
        order = {pid: n for n, pid in enumerate(self.person_ids)}
        found = sorted(dev.ws.conflicts(), key=lambda c: (order[c.record_id], c.field, c.at_a, c.device_a))
        if not found:
            return
        c = found[pick % len(found)]
        dev.ws.resolve_conflict(c.record_type, c.record_id, c.field, c.value_b if choose_b else c.value_a)
        event("conflict resolved")
        self._recorded_write(dev)
        left = [(x.record_id, x.field) for x in dev.ws.conflicts()]
        assert (c.record_id, c.field) not in left, "a resolution closes the field's conflict here at once"

    @rule(d=DEVICE, plan=FAULT_PLAN)
    @step
    def sync(self, d: int, plan: list[tuple[Fault, str | None, int]]) -> None:
        self._run_sync(self.devices[d], plan)

    @precondition(lambda self: any(self._to_pull(dev) for dev in self.devices))
    @rule(d=DEVICE, point=st.sampled_from(["receive_start", "receive_cursor", "fold_rows"]), nth=st.integers(0, 1),
          plan=FAULT_PLAN)
    @step
    def sync_killed_in_pull(self, d: int, point: str, nth: int, plan: list[tuple[Fault, str | None, int]]) -> None:
        """The app dies while storing the n-th pulled page (before its transaction, or when the
        cursor is written) or while folding the n-th batch of the inbox into the rows (after the
        rows are written, before the commit)."""
        busy = [dev for dev in self.devices if self._to_pull(dev)]
        self._killed_sync(busy[d % len(busy)], point, nth, plan)

    @precondition(lambda self: any(dev.ws.outbox_count() for dev in self.devices))
    @rule(d=DEVICE, nth=st.integers(0, 1), plan=FAULT_PLAN)
    @step
    def sync_killed_in_push(self, d: int, nth: int, plan: list[tuple[Fault, str | None, int]]) -> None:
        """The app dies while recording the n-th push acknowledgement (after the outbox rows are
        deleted, before the commit): the server holds the batch, the device does not know."""
        busy = [dev for dev in self.devices if dev.ws.outbox_count()]
        self._killed_sync(busy[d % len(busy)], "ack", nth, plan)

    def _killed_sync(self, dev: Device, point: str, nth: int, plan: list[tuple[Fault, str | None, int]]) -> None:
        """A sync during which the app dies at `point`. The transaction must roll back; the app
        restarts from disk and the next sync picks up where this one stopped."""
        ws, store = dev.ws, dev.ws.store
        calls = {"receive": 0, "fold": 0, "ack": 0}
        armed = {"now": False}
        cursor_applied = [ws.sync_value("cursor", "0")]  # the cursor of the last page stored whole
        real_receive, real_fold, real_put_rows, real_set_state, real_ack = (
            ws.receive, ws.fold, store.put_rows, store.set_sync_state, store.ack_outbox)

        def receive(*args: Any, **kwargs: Any) -> Any:
            calls["receive"] += 1
            armed["now"] = point.startswith("receive") and calls["receive"] == nth + 1
            try:
                if armed["now"] and point == "receive_start":
                    raise Killed(point)
                result = real_receive(*args, **kwargs)
                cursor_applied.append(str(kwargs["cursor"][1]))
                return result
            finally:
                armed["now"] = False

        def fold(*args: Any, **kwargs: Any) -> Any:
            if ws.inbox_count():
                calls["fold"] += 1
                armed["now"] = point == "fold_rows" and calls["fold"] == nth + 1
            try:
                return real_fold(*args, **kwargs)
            finally:
                armed["now"] = False

        def put_rows(*args: Any, **kwargs: Any) -> None:
            real_put_rows(*args, **kwargs)
            if armed["now"] and point == "fold_rows":
                raise Killed(point)

        def set_sync_state(key: str, value: Any) -> None:
            real_set_state(key, value)
            if armed["now"] and point == "receive_cursor" and key == "cursor":
                raise Killed(point)

        def ack_outbox(through_seq: int) -> int:
            calls["ack"] += 1
            deleted = real_ack(through_seq)
            if point == "ack" and calls["ack"] == nth + 1:
                raise Killed(point)
            return deleted

        ws.receive = receive  # type: ignore[method-assign]
        ws.fold = fold  # type: ignore[method-assign]
        store.put_rows = put_rows  # type: ignore[method-assign]
        store.set_sync_state = set_sync_state  # type: ignore[method-assign]
        store.ack_outbox = ack_outbox  # type: ignore[method-assign]
        outbox_before = [(seq, op_id) for seq, op_id, _r, _e, _p in store.outbox_all()]
        try:
            self._run_sync(dev, plan)
            killed = False
        except Killed:
            killed = True
            dev.faults.clear()
        finally:
            del ws.receive, ws.fold, store.put_rows, store.set_sync_state, store.ack_outbox
        note(f"device {dev.index} sync killed at {point} #{nth}: {killed}")
        event(f"kill {point}: {'fired' if killed else 'not reached'}")
        if not killed:
            return
        # the killed transaction left nothing behind: the outbox lost only what was recorded as
        # acknowledged before, the cursor is that of the last page applied whole
        left = [(seq, op_id) for seq, op_id, _r, _e, _p in store.outbox_all()]
        kept = [(seq, op_id) for seq, op_id in outbox_before if seq > dev.acked]
        assert self._live(dev, left) == self._live(dev, kept)
        assert ws.sync_value("cursor", "0") == cursor_applied[-1]
        self._restart(dev, crash=True)

    @rule(d=DEVICE, at=st.integers(0, 8) | st.integers(0, 30), plan=FAULT_PLAN)  # early: the push phase
    @step
    def sync_killed_anywhere(self, d: int, at: int, plan: list[tuple[Fault, str | None, int]]) -> None:
        """The app dies at the `at`-th writing SQL statement of a sync run, wherever that is: on a
        device with something to push or pull when there is one (an idle sync writes only its
        status)."""
        busy = [dev for dev in self.devices if dev.ws.outbox_count() or self._to_pull(dev)]
        dev = busy[d % len(busy)] if busy else self.devices[d]
        before = [(seq, op_id) for seq, op_id, _r, _e, _p in dev.ws.store.outbox_all()]
        with kill_switch(dev.ws, at) as switch:
            try:
                self._run_sync(dev, plan)
            except Killed:
                dev.faults.clear()
        event(f"kill anywhere in sync: {'fired' if switch.fired else 'not reached'}")
        if switch.fired:
            note(f"device {dev.index} sync killed at statement {at}: {switch.fired}")
            left = self._live(dev, [(seq, op_id) for seq, op_id, _r, _e, _p in dev.ws.store.outbox_all()])
            live = self._live(dev, before)
            assert left == live[len(live) - len(left):], "the outbox lost ops from its middle"
            self._restart(dev, crash=True)

    @rule(d=DEVICE, at=st.integers(0, 9), alias=ALIASES, fields=PERSON_FIELDS)
    @step
    def create_killed(self, d: int, at: int, alias: str, fields: dict[str, Any]) -> None:
        """The app dies while saving a new person: the record and its op land together or not at all."""
        dev = self.devices[d]
        known = set(dev.ws.index.records[PERSON])
        seq_before = dev.ws.store.meta("device_seq")
        with kill_switch(dev.ws, at) as switch:
            try:
                person = dev.ws.add_person({**fields, "alias": alias})
            except Killed:
                pass
        event(f"kill in a write: {'fired' if switch.fired else 'not reached'}")
        if not switch.fired:
            self.person_ids.append(person.id)
            self._recorded_write(dev)
            return
        note(f"device {dev.index} write killed at statement {at}: {switch.fired}")
        assert set(dev.ws.index.records[PERSON]) == known, "a write that died shows a record"
        self._restart(dev, crash=True)  # and the file holds what was shown: no record, no op
        assert dev.ws.store.meta("device_seq") == seq_before
        assert max((r[0] for r in dev.ws.store.outbox_all()), default=0) <= max(dev.written, default=0)

    ERASES = True  # (the hostile machine checks that no device erases anything)

    @precondition(lambda self: self.ERASES and self._persons_on(self.devices[0]))
    @rule(pick=PICK, then=st.lists(DEVICE, unique=True, max_size=N_DEVICES))
    @step
    def erase(self, pick: int, then: list[int]) -> None:
        """The coordinator erases a person (`SyncEngine.erase_person`: a purge it signs): its ops
        leave the server and every device that pulls the purge, edits of it still to come are
        dropped by the server, and the erasure's audit event is the coordinator's next write."""
        dev = self.devices[0]
        persons = self._persons_on(dev)
        pid = persons[pick % len(persons)]
        assert dev.engine.erase_person(pid) == 1
        self.erased.add(pid)
        self._recorded_write(dev)
        assert pid not in dev.ws.index.records[PERSON]
        event("erased a person")
        for d in then:
            self._run_sync(self.devices[d], [])

    @rule(d=DEVICE, crash=st.booleans())
    @step
    def restart(self, d: int, crash: bool) -> None:
        self._restart(self.devices[d], crash=crash)

    @precondition(lambda self: self.steps >= 5 and not self.quiet_rounds)
    @rule()
    @step
    def quiet_round(self) -> None:
        """Once, late in a run: converge, check, and go on from the converged state."""
        self._quiet_round()

    # ------------------------------------------------------------------ invariants
    @invariant()
    def logs_agree(self) -> None:
        self.busy = True  # cleared only when every check passed
        ops = self.server_ops()
        assert len({o.op_id for o in ops}) == len(ops), "an op id stored twice"
        assert len({(o.device_id, o.device_seq) for o in ops}) == len(ops), "a device sequence stored twice"
        unstated = self._unstated()
        for o in ops:  # every device here pushes with protocol 1.2 (the template's revoked one too)
            assert o.op_id not in unstated, (
                f"op {o.device_seq} of {o.device_id} is on the server without its device's signed statement "
                "(PROTOCOL.md 1.2): no puller could tell if it were withheld")
        _, last_seq = self._log_end()
        for dev in self.devices:
            ws = dev.ws
            stored = {o.device_seq: o.op_id for o in ops if o.device_id == dev.device_id}
            outbox = {seq: op_id for seq, op_id, _r, _e, _p in ws.store.outbox_all()}
            for seq, op_id in outbox.items():
                assert dev.written.get(seq) == op_id, f"device {dev.index}: outbox op {seq} was never written"
            first_queued = min(outbox, default=max(dev.written, default=0) + 1)
            assert not self._live(dev, [(s, op_id) for s, op_id in dev.written.items()
                                        if s >= first_queued and s not in outbox]), (
                f"device {dev.index}: the outbox is not the tail of its writes (but for writes of erased persons)")
            assert first_queued > dev.acked, f"device {dev.index}: an acknowledged op is still queued"
            for seq, op_id in dev.written.items():
                if seq not in outbox and (seq in stored or not self._withheld(dev, seq)):
                    assert stored.get(seq) == op_id, (
                        f"device {dev.index}: op {seq} left the outbox but the server does not hold it")
            for seq, op_id in stored.items():
                assert dev.written.get(seq) == op_id, f"device {dev.index}: the server holds an op it never wrote"
            cursor = int(ws.sync_value("cursor", "0") or 0)
            assert dev.cursor <= cursor <= last_seq, f"device {dev.index}: cursor {dev.cursor} -> {cursor}"
            dev.cursor = cursor
            self._check_set_aside(dev)
            self._check_alarms(dev)
        self.busy = False

    # -------------------------------------------------------------- convergence
    def _quiet_round(self) -> None:
        self.quiet_rounds += 1
        for _ in range(2):
            for dev in self.devices:
                assert self._run_sync(dev, [])
        self._check_converged()

    def _check_converged(self) -> None:
        ops = self.server_ops()
        first, last = self._log_end()
        stored = {(o.device_id, o.device_seq): o.op_id for o in ops}
        withheld = {(dev.device_id, seq): dev.sealed[seq] for dev in self.devices for seq in dev.written
                    if (dev.device_id, seq) not in stored and self._withheld(dev, seq)}
        written = {(dev.device_id, seq): op_id for dev in self.devices for seq, op_id in dev.written.items()}
        written |= self.foreign
        assert stored == {k: v for k, v in written.items() if k not in withheld}, (
            "after a quiet round the server holds every write, each once, and nothing else "
            "(but for those it dropped itself)")
        views = []
        for dev in self.devices:
            seen = self._seen_by(dev, ops)
            merged = self._merged(seen)
            # the merge rules over every op the device must hold: it holds exactly these states
            expected_states = {rid: s.to_json() for rid, s in merged.items()}
            # an independent last-writer-wins model: per field the value of the greatest stamp, and
            # a record with any delete is gone. Every acknowledged write is there unless superseded.
            best: dict[str, dict[str, tuple[Any, tuple[int, str]]]] = {}
            stamps: dict[str, list[tuple[int, str]]] = {}
            deleted: set[str] = set()
            for sop in seen:
                op = self._open_op(sop)
                stamps.setdefault(op.record_id, []).append(op.stamp)
                if op.delete:
                    deleted.add(op.record_id)
                fields = best.setdefault(op.record_id, {})
                for name, value in op.fields.items():
                    if name not in fields or op.stamp > fields[name][1]:
                        fields[name] = (value, op.stamp)
            model = {
                rid: {name: value for name, (value, _s) in fields.items()}
                | {"id": rid, "created_at": hlc_ms(min(stamps[rid])[0]), "updated_at": hlc_ms(max(stamps[rid])[0]),
                   "created_hlc": min(stamps[rid])[0]}
                for rid, fields in best.items()
                # an edit alone (its person's creation withheld) makes no person (`Workspace._index_put`)
                if rid not in deleted and fields.get("alias", (None,))[0] is not None
            }
            expected_conflicts = sorted(
                (PERSON.value, rid, c.field)
                for rid, s in merged.items()
                for c in {c.field: c for c in s.conflicts()}.values()
            )
            assert dev.ws.outbox_count() == 0
            assert first <= int(dev.ws.sync_value("cursor", "0") or 0) <= last
            assert self._states_on(dev) == expected_states, f"device {dev.index} diverged from the merge"
            assert dev.ws.index.records[PERSON] == model, f"device {dev.index}: persons differ from the LWW model"
            assert sorted(dev.ws.store.conflicts()) == expected_conflicts, f"device {dev.index}: open conflicts"
            views.append(sorted(dev.ws.conflicts(), key=repr))
        # the same open conflicts everywhere, but on records the server withheld writes of
        apart = {sop.record_id for sop in withheld.values()}
        shown = [[c for c in view if c.record_id not in apart] for view in views]
        assert shown[0] == shown[1] == shown[2], "devices show different open conflicts"
        event(f"converged: open conflicts {min(len(views[0]), 3)}+")
        event(f"converged: ops on server {len(ops) // 10 * 10}+")
        event(f"converged: deleted records {min(len(deleted), 2)}+")

    def teardown(self) -> None:
        event(f"rules run: {self.steps}")
        try:
            if not self.busy:  # a failed step is the failure to report; skip the final round then
                self.busy = True
                self._quiet_round()
        finally:
            for dev in self.devices:
                with contextlib.suppress(Exception):
                    self._close(dev)


# ----------------------------------------------------------------------- the hostile server

GRANT_FORGERIES = ["unsigned", "other authority", "replayed grant"]
PURGE_FORGERIES = ["unsigned", "random signature", "short signature", "other authority"]
# the network faults, and answers whose lists come in reverse order; fewer on pushes
HOSTILE_PLAN = st.lists(
    st.tuples(st.sampled_from([*NETWORK_FAULTS, Fault.REORDER, Fault.REORDER]),
              st.sampled_from(["/v1/push", "/v1/pull", "/v1/pull", None]), st.integers(0, 1)),
    max_size=3,
)
REPLAYS = st.lists(st.tuples(st.integers(0, 1), PICK), min_size=1, max_size=2)  # (pulls let through first, which old page)
THEN = st.lists(DEVICE, unique=True, max_size=N_DEVICES)  # devices that sync right after an attack


@functools.cache
def attacker_vault() -> Vault:
    """The attacker's own keys: a device key, team keys of its making, a signing key of its own."""
    vault = Vault("0" * 32)
    vault.create("the attacker's own", KdfParams.default(fast=True))
    vault.new_authority()
    vault.new_signing_key()
    return vault


@dataclass(frozen=True)
class Relayed:
    """An op the server put into the log that no device of the team may take."""

    seq: int  # its place in the log
    device_id: str  # the device it names
    record_id: str
    kind: str  # the notice a device writes when it sets it aside


@dataclass(frozen=True)
class Withheld:
    """An op of a team device that the server took out of its log after acknowledging it."""

    op: ServerOp  # as the server held it (its place in the log: `op.seq`)
    batch_id: int | None  # the push it came in
    had: frozenset[int]  # the other devices that had pulled it before (their cursor was past its place)


@dataclass(frozen=True)
class DroppedStatement:
    """The signed statement of a push the server took out of its log, with the push's ops."""

    batch_id: int
    device_id: str
    first: int
    last: int
    seen: frozenset[int]  # the devices that had pulled past its place (they keep what it said)


@dataclass
class KeyForgery:
    """What the server changed in its key tables, to put back when it repents."""

    raised_from: int | None  # the team's current epoch before the server raised it; None: not raised
    rows: list[tuple[int, str, bytes | None]]  # (epoch, device id, the blob before; None: no row before)
    targets: set[str]  # the devices the server sent a key of its own making or a misplaced grant


class HostileSyncMachine(SyncMachine):
    """The same rules on a team that revoked a fourth device (which kept its data and its old key),
    and a server that attacks: between steps it edits its own database the way
    `tests/test_hostile_server.py`'s `Attacker` does, and it answers pulls with old pages or with
    their entries reordered.

    - forge key: for some devices, a team key of the attacker's wrapped for them (unsigned, or signed
      by an authority key of its own, or a genuine grant of another device or epoch), for the
      next epoch and/or in place of the key of the held epoch; the team's current epoch raised or
      not. A device that looks at its keys (the raised epoch makes every device look) refuses
      with `KeyRefused` and a `key_refused` notice, keeping its keys, epoch, role and records; a
      device not given a forged key pulls, but cannot push under the old epoch (`StaleEpoch`). The
      server repents (`repent_keys`, and before every quiet round): the rows are put back and
      syncing works again.
    - forge purge: a purge row without the coordinator's signature (none, random, too short, or
      the attacker's) for a record id in the log. No device erases anything; each one that pulled
      it has a `purge_refused` notice. Meanwhile the server (honest code on a tampered table)
      acknowledges and drops every push of that record: that is withholding, which a server can
      always do, so the model counts a write as withheld when the server holds no op of it, its
      record had a forged purge, and its device told the worker (`erased_edit`). The device that
      wrote it keeps it; the other devices never see it. `repent_purges` deletes the rows (the
      log keeps the gap).
    - relay revoked writes: the revoked device writes on under its old key, and the server puts
      those ops in the log, in a push signed by the device's own key or unsigned. Every device
      sets them aside with a `revoked_write` notice.
    - relay in another's name: a team device gone bad (it holds the current key) writes in the name
      of another device, of the revoked device, or of a device nobody admitted, signed by its own
      key or not: set aside (`unsigned_op`, `revoked_write`, `unknown_device`) by every device but
      the one named (which drops what looks like its own).
    - forge roster: the server lists a stranger as admitted by an authority key of its own, or the
      revoked device again without its cut-off (signed by that key, or its genuine entry from
      before the revocation, replayed), and relays an op of the stranger (which makes devices read
      the list). No device takes an entry the coordinator did not sign, or an older one; a forged
      entry is noted (`roster_refused`).
    - withhold (`withhold_op`, `withhold_push`): the server deletes from its log an op of a team
      device that the device recorded as acknowledged, or a whole push of it, statement and ops
      (`Attacker.withhold`, `Attacker.withhold_push`; it replays no old page that shows them),
      maybe one the device has just sent; never the writer's last push, whose statement says how
      far the server holds the writer's sequence (`held_through` on every pull page: the writer
      would send again what it lost). The model counts those writes as withheld, as the writes
      a forged purge made the server drop: the writer keeps them (nothing acknowledged is lost on
      it), a device that had pulled one keeps it, the others never see them. After each sync that
      reaches the log's end (not on a replayed page), the device was told (`missing_ops`, naming
      the writer device and the sequence) of every change of another device withheld from it that
      the writer's statements account for: each op taken out of a push whose statement stayed,
      each write a statement names that the server dropped, and each op of a push taken out whole
      that lies at or below the last sequence of the writer's statements it saw: a device that
      signs from its first op owes its sequence from 1, so its withheld first push is named too
      (`test_a_withheld_first_push_is_named`).
    - replay and reorder: a pull answered with an old page (one a device used before, starting at
      or before this device's cursor: an older start would leave a gap, which is withholding
      again), and answers whose lists (ops, purges, batches, keys) come in reverse order.

    Checked after every step, on top of the base invariants: no device holds a forged key, another
    epoch, authority, role, roster entry or cut-off; no device erased anything; every device that
    pulled past a forged purge, a forged roster entry or a relayed op was told, and set the op
    aside, and set aside nothing else; no false alarm: a `missing_ops` notice names another device
    of the team and only sequences of it that the server withheld (took out, or dropped for a
    forged purge; nothing is erased here), and no device has a `history_differs` notice (no rule
    rewrites the revoked device's history); and a device with nothing left to fold holds exactly
    the merge of what it wrote, of the other devices' ops up to its cursor and of the withheld ops
    it had pulled before (nothing applied twice wrongly, nothing skipped, nothing relayed). After a
    quiet round: the base convergence checks, but for writes the server withheld (they stay on the
    device that made them, and on those that had pulled them).

    Not rules here (each has its own test in tests/test_hostile_server.py): a revoked device's
    new op re-using one of its sequence numbers at or below its cut-off, and the server answering
    `device_revoked` without the coordinator's signed revocation (nothing is erased).
    """

    ERASES = False

    def __init__(self, team: Team) -> None:
        self.relayed: dict[str, Relayed] = {}  # op id -> an op the server relayed (before: `server_ops` reads it)
        super().__init__(team)
        self.busy = True
        assert team.gone is not None
        self.gone = team.gone
        self.gone_ws = Workspace(team.work / "gone", fast_kdf=True)
        self.gone_ws.unlock(PASSPHRASE)
        self.gone_ws.clock = HLC(self.gone_ws.clock.last, wall_ms=self._tick_ms)
        self.keyrings = [self._keyring(dev) for dev in self.devices]
        self.vk = self.devices[0].engine.authority_vk()
        assert self.vk is not None
        self.roles = [dev.ws.setting("role") for dev in self.devices]
        # the device entries each device keeps, and the coordinator's (a refresh may bring those)
        self.rosters = [dev.engine.roster() for dev in self.devices]
        assert self.rosters[0][self.gone.device_id].cutoff == self.gone.cutoff
        self.cutoffs = [dev.engine.cutoffs() for dev in self.devices]
        assert self.cutoffs == [{self.gone.device_id: self.gone.cutoff}] * N_DEVICES
        self.made = 0  # ids the attacker made
        # device id -> the log seq of the op relayed with its forged roster row (while the row is there)
        self.forged_rows: dict[str, int] = {}
        self.forged_keys: set[bytes] = set()  # every team key the attacker made
        self.key_forgery: KeyForgery | None = None
        self.forged_purges: dict[int, str] = {}  # log seq -> record id: forged purge rows now on the server
        self.purged_ever: set[str] = set()  # record ids that ever had one
        self.withheld_seen: set[tuple[int, int]] = set()
        self.pages: dict[tuple[int, bytes], requests.Response] = {}  # (since, body) -> a pull answer used
        self.withheld: dict[tuple[str, int], Withheld] = {}  # (device id, device seq) -> an op taken out
        self.dropped_statements: list[DroppedStatement] = []  # those of the pushes taken out whole
        self.dropped_ever: dict[str, set[int]] = {}  # device id -> sequences its statements named, never stored
        self.busy = False

    @staticmethod
    def _keyring(dev: Device) -> tuple[list[int], int, list[bytes]]:
        vault = dev.ws.vault
        assert vault is not None
        return vault.epochs, dev.ws.epoch, [vault.team_key(e) for e in vault.epochs]

    def server_ops(self) -> list[ServerOp]:
        """The ops of the team's devices: the relayed ones count nowhere."""
        return [o for o in super().server_ops() if o.op_id not in self.relayed]

    def _made_id(self, what: str) -> str:
        self.made += 1
        return hashlib.sha256(f"{what} {self.made}".encode()).hexdigest()[:32]

    def _relay(self, device_id: str, ops: list[tuple[int, str, str, int, bytes]], signer: Vault | None,
               kind: str) -> None:
        """Put ops (device seq, op id, record id, epoch, sealed) into the log in the name of
        `device_id`, as one push signed with `signer`'s device key (or unsigned)."""
        with self._server() as db:
            team_id, next_seq = db.execute("SELECT id, next_seq FROM team").fetchone()
            batch_id = None
            if signer is not None:
                digests = b"".join(op_digest(payload)
                                   for seq, op_id, rid, epoch, payload in ops)
                sig = signer.sign_as_device(batch_message(team_id, device_id, digests))
                batch_id = db.execute("INSERT INTO batch (team_id, device_id, sig, digests, at) VALUES (?, ?, ?, ?, 0)",
                                      (team_id, device_id, sig, digests)).lastrowid
            for n, (seq, op_id, rid, epoch, payload) in enumerate(ops):
                db.execute("INSERT INTO op (team_id, seq, op_id, device_id, device_seq, record_id, key_epoch, payload, "
                           "size, received_at, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                           (team_id, next_seq + n, op_id, device_id, seq, rid, epoch, payload, len(payload), batch_id))
                self.relayed[op_id] = Relayed(next_seq + n, device_id, rid, kind)
            db.execute("UPDATE team SET next_seq=?", (next_seq + len(ops),))
        note(f"relayed {len(ops)} ops in the name of {device_id} ({'signed' if signer else 'unsigned'}): {kind}")
        event(f"attack: relayed, {kind}, {'signed' if signer else 'unsigned'}")

    def _op_in_the_name_of(self, writer: Device, device_id: str, rid: str, alias: str) -> tuple[int, str, str, int, bytes]:
        """A change sealed under the writer's current key, naming another device: what any
        holder of the team key can make."""
        vault, epoch = writer.ws.vault, writer.ws.epoch
        assert vault is not None
        seq, op_id = 10_000 + self.made, self._made_id("op")  # far from the sequences devices use
        body = encode_op(Op(PERSON.value, rid, device_id, HLC(0, wall_ms=self._tick_ms).now(), {"alias": alias}, {}))
        return seq, op_id, rid, epoch, vault.seal_op(rid, epoch, device_id, seq, op_id, body)

    def _revoked_writes(self, changes: list[tuple[int | None, dict[str, Any]]], signed: bool) -> None:
        """The revoked device writes on (under its old key) and the server relays it."""
        ws = self.gone_ws
        after = int(ws.store.meta("device_seq", "0") or 0)
        for pick, fields in changes:
            persons = sorted(ws.index.records[PERSON])
            if pick is None or not persons:
                ws.add_person({**fields, "alias": fields.get("alias") or "Relayed"})
            else:
                ws.edit_person(persons[pick % len(persons)], fields or {"alias": "Relayed"})
        ops = [(seq, op_id, rid, epoch, payload) for seq, op_id, rid, epoch, payload in ws.store.outbox_all()
               if seq > after]
        assert ops and ops[0][0] > self.gone.cutoff
        self._relay(self.gone.device_id, ops, ws.vault if signed else None, "revoked_write")

    @contextlib.contextmanager
    def _server(self) -> Iterator[sqlite3.Connection]:
        """The server's database, as whoever controls the host edits it."""
        conn = sqlite3.connect(self.team.server_db, timeout=10)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    # ----------------------------------------------------------------------- the attacks
    @precondition(lambda self: self.key_forgery is None)
    @rule(victims=st.sets(DEVICE, min_size=1), how=st.sampled_from(GRANT_FORGERIES), new_epoch=st.booleans(),
          held=st.booleans(), raise_epoch=st.booleans(), then=THEN)
    @step
    def forge_key(self, victims: set[int], how: str, new_epoch: bool, held: bool, raise_epoch: bool,
                  then: list[int]) -> None:
        vault = attacker_vault()
        rows: list[tuple[int, str, bytes | None]] = []
        with self._server() as db:
            team_id, current = db.execute("SELECT id, current_epoch FROM team").fetchone()
            genuine = dict(db.execute("SELECT device_id, blob FROM wrapped_key WHERE epoch=? AND device_id IS NOT NULL",
                                      (current,)).fetchall())
            for epoch in ([current + 1] if new_epoch or not held else []) + ([current] if held else []):
                if how != "replayed grant":
                    key, _ = vault.new_team_key(epoch)
                    self.forged_keys.add(key)
                for d in sorted(victims):
                    device_id = self.devices[d].device_id
                    (public_key,) = db.execute("SELECT public_key FROM device WHERE id=?", (device_id,)).fetchone()
                    if how == "unsigned":
                        blob = vault.wrap_for_device(team_id, epoch, device_id, public_key)
                    elif how == "other authority":  # a coordinator's grant carries the attacker's signing key too
                        blob = vault.make_grant(team_id, epoch, device_id, public_key, role=self.roles[d] or "worker")
                    else:  # a genuine grant: another device's for the held epoch, its own of the held one for the next
                        blob = genuine[self.devices[(d + 1) % N_DEVICES].device_id if epoch == current else device_id]
                    before = db.execute("SELECT blob FROM wrapped_key WHERE epoch=? AND device_id=?",
                                        (epoch, device_id)).fetchone()
                    rows.append((epoch, device_id, before[0] if before else None))
                    if before:
                        db.execute("UPDATE wrapped_key SET blob=? WHERE epoch=? AND device_id=?", (blob, epoch, device_id))
                    else:
                        db.execute("INSERT INTO wrapped_key (team_id, epoch, device_id, blob, created_at) "
                                   "VALUES (?, ?, ?, ?, 0)", (team_id, epoch, device_id, blob))
            if raise_epoch:
                db.execute("UPDATE team SET current_epoch=?", (current + 1,))
        self.key_forgery = KeyForgery(current if raise_epoch else None, rows,
                                      {self.devices[d].device_id for d in victims})
        note(f"forged keys ({how}) for devices {sorted(victims)}, epochs {sorted({r[0] for r in rows})}, "
             f"current epoch {'raised' if raise_epoch else 'kept'}")
        event(f"attack: forged key, {how}, epoch {'raised' if raise_epoch else 'kept'}")
        for d in then:
            self._run_sync(self.devices[d], [])

    def _repent_keys(self) -> None:
        forgery = self.key_forgery
        assert forgery is not None
        with self._server() as db:
            for epoch, device_id, before in reversed(forgery.rows):
                if before is None:
                    db.execute("DELETE FROM wrapped_key WHERE epoch=? AND device_id=?", (epoch, device_id))
                else:
                    db.execute("UPDATE wrapped_key SET blob=? WHERE epoch=? AND device_id=?", (before, epoch, device_id))
            if forgery.raised_from is not None:
                db.execute("UPDATE team SET current_epoch=?", (forgery.raised_from,))
        self.key_forgery = None
        note("the server put its key rows back")

    @precondition(lambda self: self.key_forgery is not None)
    @rule(then=THEN)
    @step
    def repent_keys(self, then: list[int]) -> None:
        """The server puts back what it changed: syncing works again, with nothing lost meanwhile."""
        self._repent_keys()
        for d in then:
            assert self._run_sync(self.devices[d], []), "once the server repents, a sync without faults works"

    @rule(pick=PICK, how=st.sampled_from(PURGE_FORGERIES), then=THEN)
    @step
    def forge_purge(self, pick: int, how: str, then: list[int]) -> None:
        ops = self.server_ops()
        record_ids = list(dict.fromkeys(o.record_id for o in ops))  # in the order of the log
        rid = record_ids[pick % len(record_ids)]
        with self._server() as db:
            team_id, next_seq = db.execute("SELECT id, next_seq FROM team").fetchone()
            sig = {"unsigned": None, "random signature": hashlib.sha512(rid.encode()).digest(),
                   "short signature": b"\x01\x02\x03",
                   "other authority": attacker_vault().sign_purge(team_id, rid)}[how]
            db.execute("INSERT INTO purge (team_id, seq, record_id, at, sig) VALUES (?, ?, ?, 0, ?)",
                       (team_id, next_seq, rid, sig))
            db.execute("UPDATE team SET next_seq=?", (next_seq + 1,))
        self.forged_purges[next_seq] = rid
        self.purged_ever.add(rid)
        note(f"forged purge ({how}) of {rid} at {next_seq}")
        event(f"attack: forged purge, {how}")
        for d in then:
            self._run_sync(self.devices[d], [])

    @precondition(lambda self: self.forged_purges)
    @rule()
    @step
    def repent_purges(self) -> None:
        """The server deletes its purge rows (not the sequence numbers they took: the log keeps a
        gap, as after a real purge; giving a number out twice would hide an op from the devices
        already past it, which is withholding)."""
        with self._server() as db:
            db.executemany("DELETE FROM purge WHERE seq=?", [(seq,) for seq in self.forged_purges])
        self.forged_purges.clear()

    @rule(writer=DEVICE, fresh=st.none() | ALIASES, pick=PICK, then=THEN)
    @step
    def withhold_op(self, writer: int, fresh: str | None, pick: int, then: list[int]) -> None:
        """The server deletes from its log an op of a team device that the device recorded as
        acknowledged (`Attacker.withhold`); its push's statement stays."""
        self._withhold(writer, fresh, pick, False, then)

    @rule(writer=DEVICE, fresh=st.none() | ALIASES, pick=PICK, then=THEN)
    @step
    def withhold_push(self, writer: int, fresh: str | None, pick: int, then: list[int]) -> None:
        """The server deletes from its log a whole push of a team device that the device recorded
        as acknowledged: its statement and its ops (`Attacker.withhold_push`)."""
        self._withhold(writer, fresh, pick, True, then)

    def _withhold(self, writer: int, fresh: str | None, pick: int, whole: bool, then: list[int]) -> None:
        """Small picks take an op (a push) that another device has not pulled yet first, then one
        of `writer`'s, the newest first. With `fresh`, `writer` first adds a person of that alias
        and syncs (the server withholds what it was just sent)."""
        if fresh is not None:
            dev = self.devices[writer]
            self.person_ids.append(dev.ws.add_person({"alias": fresh}).id)
            self._recorded_write(dev)
            self._run_sync(dev, [])
        cursors = {d.index: int(d.ws.sync_value("cursor", "0") or 0) for d in self.devices}
        held = {(o.device_id, o.device_seq): o for o in self.server_ops()}
        by_id = {d.device_id: d for d in self.devices}

        def rank(device_id: str, place: int) -> tuple[bool, bool, int]:
            i = by_id[device_id].index
            return all(c >= place for d, c in cursors.items() if d != i), i != writer, -place

        with self._server() as db:
            if whole:
                def still_held(batch_id: int, device_id: str) -> int:
                    """How far the server would still hold the device's sequence without this push
                    (`continuity.held_through`: its ops and its statements' ranges)."""
                    ops, stated = db.execute(
                        "SELECT (SELECT max(device_seq) FROM op WHERE device_id=? AND batch_id IS NOT ?), "
                        "(SELECT max(last_seq) FROM batch WHERE device_id=? AND id != ?)",
                        (device_id, batch_id, device_id, batch_id)).fetchone()
                    return max(ops or 0, stated or 0)

                # not one that would show the writer the server lost what it acknowledged (a pull page
                # says how far the server holds the puller's sequence): the writer's last push stays
                pushes = sorted(
                    (row for row in db.execute("SELECT id, device_id, pos, first_seq, last_seq FROM batch "
                                               "WHERE sig2 IS NOT NULL").fetchall()
                     if row[1] in by_id and row[4] <= by_id[row[1]].acked
                     and still_held(row[0], row[1]) >= by_id[row[1]].acked),
                    key=lambda row: rank(row[1], row[2]))
                if not pushes:
                    event("attack: withheld, nothing to withhold")
                    return
                batch_id, device_id, pos, first, last = pushes[pick % len(pushes)]
                dev = by_id[device_id]
                seqs = [s for s, in db.execute("SELECT device_seq FROM op WHERE batch_id=?", (batch_id,))]
                db.execute("DELETE FROM op WHERE batch_id=?", (batch_id,))
                db.execute("DELETE FROM batch WHERE id=?", (batch_id,))
                self.dropped_statements.append(DroppedStatement(
                    batch_id, device_id, first, last, frozenset(i for i, c in cursors.items() if c >= pos)))
                batches = {batch_id}
                note(f"withheld device {dev.index}'s push at {pos} ({first}-{last}): ops {seqs}")
            else:
                ops = sorted((o for o in held.values()
                              if o.device_id in by_id and o.device_seq <= by_id[o.device_id].acked),
                             key=lambda o: rank(o.device_id, o.seq))
                if not ops:
                    event("attack: withheld, nothing to withhold")
                    return
                op = ops[pick % len(ops)]
                dev = by_id[op.device_id]
                seqs = [op.device_seq]
                (batch_id,) = db.execute("SELECT batch_id FROM op WHERE device_id=? AND device_seq=?",
                                         (dev.device_id, op.device_seq)).fetchone()
                db.execute("DELETE FROM op WHERE device_id=? AND device_seq=?", (dev.device_id, op.device_seq))
                batches = set()
                note(f"withheld device {dev.index}'s op {op.device_seq} at {op.seq}")
        owed = 0
        for seq in seqs:
            sop = held[(dev.device_id, seq)]
            had = frozenset(i for i, c in cursors.items() if c >= sop.seq and i != dev.index)
            self.withheld[(dev.device_id, seq)] = Withheld(sop, batch_id, had)
            owed += len(self.devices) - 1 - len(had)
        # an old page it replays later must not show them either (that would not be withholding)
        gone = {held[(dev.device_id, seq)].op_id for seq in seqs}
        for key in list(self.pages):
            page = json.loads(key[1])
            if gone & {o["op_id"] for o in page["ops"]} or batches & {b["id"] for b in page["batches"]}:
                del self.pages[key]
        event(f"attack: withheld {'a push' if whole else 'an op'}, {'owed to others' if owed else 'all had it'}")
        for d in then:
            self._run_sync(self.devices[d], [])

    @rule(d=DEVICE, plan=HOSTILE_PLAN, replays=REPLAYS)
    @step
    def hostile_sync(self, d: int, plan: list[tuple[Fault, str | None, int]], replays: list[tuple[int, int]]) -> None:
        self._run_sync(self.devices[d], plan, replays)

    @rule(changes=st.lists(st.tuples(st.none() | PICK, PERSON_FIELDS), min_size=1, max_size=3), signed=st.booleans(),
          then=THEN)
    @step
    def relay_revoked_writes(self, changes: list[tuple[int | None, dict[str, Any]]], signed: bool,
                             then: list[int]) -> None:
        self._revoked_writes(changes, signed)
        for d in then:
            self._run_sync(self.devices[d], [])

    @rule(writer=DEVICE, named=st.sampled_from(["another device", "the revoked device", "a stranger"]),
          signed=st.booleans(), pick=st.none() | PICK, alias=ALIASES, then=THEN)
    @step
    def relay_in_another_name(self, writer: int, named: str, signed: bool, pick: int | None, alias: str,
                              then: list[int]) -> None:
        dev = self.devices[writer]
        if named == "another device":
            device_id, kind = self.devices[(writer + 1) % N_DEVICES].device_id, "unsigned_op"
        elif named == "the revoked device":
            device_id, kind = self.gone.device_id, "revoked_write"
        else:
            device_id, kind = self._made_id("stranger"), "unknown_device"
        persons = self._persons_on(dev)
        rid = persons[pick % len(persons)] if pick is not None and persons else self._made_id("record")
        op = self._op_in_the_name_of(dev, device_id, rid, alias)
        self._relay(device_id, [op], dev.ws.vault if signed else None, kind)  # signed: with the writer's own key
        for d in then:
            self._run_sync(self.devices[d], [])

    @rule(how=st.sampled_from(["a stranger admitted", "the revoked device admitted again", "an old entry replayed"]),
          writer=DEVICE, then=THEN)
    @step
    def forge_roster(self, how: str, writer: int, then: list[int]) -> None:
        attacker = attacker_vault()
        stranger = self._made_id("stranger")
        gone = self.gone.device_id
        with self._server() as db:
            (team_id,) = db.execute("SELECT id FROM team").fetchone()

            def forged(device_id: str) -> bytes:
                return attacker.sign_statement("roster", {
                    "v": 2, "team": team_id, "device": device_id, "sign_vk": b64e(attacker.signing_vk), "role": "worker",
                    "unsigned_through": 0, "cutoff": None, "n": int(time.time() * 1000) + 10**9})

            rows = {"a stranger admitted": [(stranger, forged(stranger))],
                    "the revoked device admitted again": [(gone, forged(gone))],
                    "an old entry replayed": [(gone, self.gone.roster_entry)]}[how]
            for device_id, entry in rows:
                db.execute("INSERT OR REPLACE INTO roster (team_id, device_id, entry, updated_at) VALUES (?, ?, ?, 0)",
                           (team_id, device_id, entry))
                self.forged_rows.pop(device_id, None)  # a forgery replaced is read no more
        event(f"attack: forged roster, {how}")
        # an op of the stranger, signed with the attacker's key (the one its forged entry names):
        # devices that pull it read the roster
        op = self._op_in_the_name_of(self.devices[writer], stranger, self._made_id("record"), "Stranger")
        self._relay(stranger, [op], attacker, "unknown_device")
        if how != "an old entry replayed":
            self.forged_rows[rows[0][0]] = self.relayed[op[1]].seq
        if how != "a stranger admitted":  # and the revoked device writes on
            self._revoked_writes([(None, {})], signed=True)
        for d in then:
            self._run_sync(self.devices[d], [])

    # -------------------------------------------------------------------------- a sync run
    def _expected(self, dev: Device, queued: int) -> str:
        """How a sync run without faults ends on this device while the server forges keys."""
        forgery = self.key_forgery
        if forgery is None or forgery.raised_from is None:
            return "ok"  # nothing makes a device look at its keys
        if dev.device_id in forgery.targets:
            return "key refused"
        return "stale epoch" if queued else "ok"  # it pulls, but cannot push under the old epoch

    def _run_sync(self, dev: Device, plan: list[tuple[Fault, str | None, int]],
                  replays: list[tuple[int, int]] | None = None) -> bool:
        cursor_before = int(dev.ws.sync_value("cursor", "0") or 0)
        for fault, path, skip in plan:
            dev.faults.schedule(fault, path=path, skip=skip)
        old_pages = sorted((since, body) for since, body in self.pages if since <= cursor_before)
        for skip, pick in replays or []:
            if old_pages:
                dev.faults.schedule(Fault.REPLAY, path="/v1/pull", skip=skip,
                                    answer=self.pages[old_pages[pick % len(old_pages)]])
        start = len(dev.faults.log)
        queued = dev.ws.outbox_count()
        expected = self._expected(dev, queued)
        error: SyncError | None = None
        try:
            dev.engine.sync()
        except SyncError as exc:
            error = exc
        finally:
            dev.faults.clear()
        outcome = ("ok" if error is None else "key refused" if isinstance(error, KeyRefused)
                   else "stale epoch" if isinstance(error, StaleEpoch) else "offline" if isinstance(error, Offline)
                   else repr(error))
        drops = self._faults_fired(dev, start, outcome)
        log = dev.faults.log[start:]
        replayed = any(x.fault is Fault.REPLAY for x in log)
        for since in _pages_used(log, cursor_before):
            answer = [x.response for x in log if x.path == "/v1/pull" and x.status == 200 and _since(x) == since][-1]
            assert answer is not None
            self.pages[(since, answer.content)] = answer
        event(f"sync: {outcome}{' (replayed page)' if replayed else ''}")
        if self.key_forgery is None and not replayed:
            assert outcome in ("ok", "offline"), f"an honest server's sync ended: {outcome}"
            if not drops:
                assert outcome == "ok", "a sync without lost messages must succeed"
            self._check_lost(dev, start, cursor_before, outcome == "ok", drops)
        else:
            allowed = {expected}
            if drops or replayed:
                allowed.add("offline")  # a lost message, or an old page whose cursor is behind
            if replayed and queued == 0:
                allowed.add("ok")  # an old last page: the device stopped before the raised epoch
            if replayed and self.key_forgery is not None and dev.device_id in self.key_forgery.targets:
                allowed.add("key refused")  # an old page of a raised epoch made it look at its keys
            assert outcome in allowed, f"device {dev.index}: sync ended {outcome}, not {sorted(allowed)}"
        if outcome == "ok":
            assert dev.ws.sync_value("last_error") == ""
            if not replayed:
                self._check_caught_up(dev)
        else:
            assert dev.ws.sync_value("last_error") == str(error), "a failed sync leaves its reason for the status chip"
        if outcome == "key refused":
            assert any(n.kind == "key_refused" for n in dev.ws.notices()), "a refused key is noted for the user"
        return outcome == "ok"

    def _withheld(self, dev: Device, seq: int) -> bool:
        if (dev.device_id, seq) in self.withheld:
            return True
        sop = dev.sealed[seq]
        assert sop.record_id in self.purged_ever, (
            f"device {dev.index}: op {seq} was acknowledged, the server does not hold it, and its record was never purged")
        assert any(n.kind == "erased_edit" and n.record_id == sop.record_id and n.detail.startswith(f"change {seq} ")
                   for n in dev.ws.notices()), f"device {dev.index}: op {seq} was dropped by the server, and nobody was told"
        if (dev.index, seq) not in self.withheld_seen:
            self.withheld_seen.add((dev.index, seq))
            event("withheld: a write of a falsely purged record")
        return True

    def _seen_by(self, dev: Device, ops: list[ServerOp], through: int | None = None) -> list[ServerOp]:
        """And the withheld ops of other devices that this device had pulled before."""
        had = [w.op for w in self.withheld.values() if dev.index in w.had]
        return super()._seen_by(dev, ops, through) + had

    def _statements(self) -> dict[str, list[tuple[int, int, set[int]]]]:
        """The signed statements in the server's log: device id -> (first, last, sequences named)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.team.server_db}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT device_id, first_seq, last_seq, entries FROM batch WHERE sig2 IS NOT NULL "
                                "ORDER BY pos").fetchall()
        out: dict[str, list[tuple[int, int, set[int]]]] = {}
        for device_id, first, last, entries in rows:
            out.setdefault(device_id, []).append((first, last, {e[0] for e in unpack_entries(bytes(entries))}))
        return out

    def _note_dropped(self) -> dict[str, list[tuple[int, int, set[int]]]]:
        """Remember every sequence a statement in the log names that the server does not hold: the
        server withheld it (dropped as a write of a falsely purged record, or taken out)."""
        statements = self._statements()
        stored = {(o.device_id, o.device_seq) for o in SyncMachine.server_ops(self)}
        for device_id, pushes in statements.items():
            for _first, _last, named in pushes:
                self.dropped_ever.setdefault(device_id, set()).update(
                    seq for seq in named if (device_id, seq) not in stored)
        return statements

    def _may_miss(self, device_id: str) -> set[int]:
        """What the server withheld of the device: the ops it took out (`_withhold`), and those it
        dropped as writes of a falsely purged record (its statement names them)."""
        return {seq for (d, seq) in self.withheld if d == device_id} | self.dropped_ever.get(device_id, set())

    def _check_alarms(self, dev: Device) -> None:
        self._note_dropped()
        super()._check_alarms(dev)

    def _check_caught_up(self, dev: Device) -> None:
        super()._check_caught_up(dev)
        self._check_told(dev)

    def _check_told(self, dev: Device) -> None:
        """A device caught up with the log was told (`missing_ops`, naming the writer device and the
        sequence) of every change of another device that the server withheld from it:
        - every op `_withhold` took out of a push whose statement is still in the log, unless this
          device had pulled it before;
        - every sequence a statement in the log names that the server never stored (a write of a
          falsely purged record, dropped);
        - every op `_withhold` took out with its whole push that this device had not pulled, when
          it lies at or below the last sequence that the writer's statements this device saw
          account for (those in the log, and those taken out after it had pulled them): every
          device of the team signs from its first op, so its sequence is owed from 1 and a
          withheld *first* push is named too (`test_a_withheld_first_push_is_named`)."""
        statements = self._note_dropped()
        stored = {(o.device_id, o.device_seq) for o in SyncMachine.server_ops(self)}
        dropped = {x.batch_id for x in self.dropped_statements}
        told: dict[str | None, set[int]] = {}
        for n in dev.ws.notices():
            if n.kind == "missing_ops":
                told.setdefault(n.device_id, set()).update(named_sequences(n.detail))
        for other in self.devices:
            if other is dev:
                continue
            writer = other.device_id
            pushes = statements.get(writer, [])
            mine = {seq: w for (d, seq), w in self.withheld.items() if d == writer and dev.index not in w.had}
            owed = {
                "an op taken out of its push": {seq for seq, w in mine.items() if w.batch_id not in dropped},
                "a write dropped for a forged purge": {
                    seq for _first, _last, named in pushes for seq in named
                    if (writer, seq) not in stored and (writer, seq) not in self.withheld},
            }
            spans = [(first, last) for first, last, _named in pushes] + [
                (x.first, x.last) for x in self.dropped_statements if x.device_id == writer and dev.index in x.seen]
            if spans:
                high = max(last for _f, last in spans)
                owed["a push taken out whole"] = {seq for seq, w in mine.items()
                                                  if w.batch_id in dropped and seq <= high}
            for what, seqs in owed.items():
                missed = seqs - told.get(writer, set())
                assert not missed, (f"device {dev.index}: device {other.index}'s changes {sorted(missed)} were withheld "
                                    f"({what}), and it was not told (told: {sorted(told.get(writer, set()))})")
                if seqs:
                    event(f"told: {what}")

    def _check_set_aside(self, dev: Device) -> None:
        """Set aside: every relayed op this device pulled (but one naming this device: dropped as
        its own), each with its notice, and nothing else."""
        ws = dev.ws
        aside = {row[0] for row in ws.store.set_aside_rows()}
        assert aside <= self.relayed.keys(), f"device {dev.index}: an op of the team set aside"
        cursor = int(ws.sync_value("cursor", "0") or 0)
        notices = {(n.kind, n.record_id, n.device_id) for n in ws.notices()}
        for op_id, op in self.relayed.items():
            if op.seq <= cursor and op.device_id != dev.device_id:
                assert op_id in aside, f"device {dev.index}: a relayed op ({op.kind}) was not set aside"
                assert (op.kind, op.record_id, op.device_id) in notices, f"device {dev.index}: no {op.kind} notice"

    def _quiet_round(self) -> None:
        if self.key_forgery is not None:
            self._repent_keys()  # else nobody could sync
        super()._quiet_round()

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self.gone_ws.close()

    # -------------------------------------------------------------------------- invariants
    @invariant()
    def nothing_forged_is_taken(self) -> None:
        self.busy = True  # cleared only when every check passed
        ops = self.server_ops()
        for dev in self.devices:
            ws, vault = dev.ws, dev.ws.vault
            assert vault is not None
            assert self._keyring(dev) == self.keyrings[dev.index], f"device {dev.index}: its keys changed"
            assert not self.forged_keys & {vault.team_key(e) for e in vault.epochs}, f"device {dev.index}: forged key"
            assert dev.engine.authority_vk() == self.vk, f"device {dev.index}: another authority pinned"
            for device_id, entry in dev.engine.roster().items():
                assert entry in (self.rosters[dev.index].get(device_id), self.rosters[0].get(device_id)), (
                    f"device {dev.index}: a roster entry of {device_id} the coordinator did not sign")
            assert dev.engine.cutoffs() == self.cutoffs[dev.index], f"device {dev.index}: cut-offs changed"
            assert vault.can_sign == (dev.index == 0) and (not vault.can_sign or vault.authority_vk == self.vk)
            assert ws.setting("role") == self.roles[dev.index] and ws.setting("device_status") == "active"
            assert not ws.store.erased_ids(), f"device {dev.index} erased records"
            cursor = int(ws.sync_value("cursor", "0") or 0)
            told = {n.record_id for n in ws.notices() if n.kind == "purge_refused"}
            for seq, rid in self.forged_purges.items():
                assert seq > cursor or rid in told, f"device {dev.index} pulled the forged purge of {rid} silently"
            refused = {n.device_id for n in ws.notices() if n.kind == "roster_refused"}
            for device_id, seq in self.forged_rows.items():
                assert seq > cursor or device_id in refused, f"device {dev.index} read a forged roster entry silently"
            if not ws.inbox_count():
                expected = {rid: s.to_json() for rid, s in self._merged(self._seen_by(dev, ops, cursor)).items()}
                assert self._states_on(dev) == expected, (
                    f"device {dev.index}: its records are not the merge of its writes and the log up to its cursor")
        self.busy = False


def _run_machine(make: Callable[[], SyncMachine], examples: int, steps: int) -> None:
    STATS.clear()
    started = time.perf_counter()
    run_state_machine_as_test(
        make,  # type: ignore[arg-type]  # a factory is accepted
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    print(f"\n{STATS['examples']} examples in {time.perf_counter() - started:.1f} s; exercised:")
    for what, count in sorted(STATS.items()):
        print(f"  {count:6d}  {what}")


def test_sync_converges_under_faults(team: Team) -> None:
    _run_machine(lambda: SyncMachine(team), EXAMPLES, 15)


def test_sync_holds_against_a_hostile_server(team_after_a_revocation: Team) -> None:
    _run_machine(lambda: HostileSyncMachine(team_after_a_revocation), HOSTILE_EXAMPLES, 20)


def test_a_withheld_first_push_is_named(team_after_a_revocation: Team) -> None:
    """The machine's steps: device 1 (a worker that joined with this version, signing from its
    first sequence) writes and syncs three times, a push each; the server withholds the first push
    whole (statement and op), and the coordinator syncs. Sequence 1 of device 1 is neither received
    nor erased, and sequences 2 and 3 are accounted for: the coordinator should be told."""
    machine = HostileSyncMachine(team_after_a_revocation)
    try:
        for alias in ("Aksel", "Bent", "Carla"):
            machine.create_persons(1, [(alias, {})])
            machine.sync(1, [])
        machine.withhold_push(writer=1, fresh=None, pick=1, then=[0])  # not the last; not pulled, newest first
        assert machine.dropped_statements[-1].first == 1
        writer = machine.devices[1].device_id
        told = set().union(*(named_sequences(n.detail) for n in machine.devices[0].ws.notices()
                             if n.kind == "missing_ops" and n.device_id == writer))
        assert 1 in told, "device 1's withheld first push was not named"
    finally:
        machine.teardown()


def test_ops_the_server_lost_from_before_a_revocation_go_out_again(team_after_a_revocation: Team) -> None:
    """The server loses the coordinator's first push (its four persons, sealed under epoch 1, before
    the revocation that made epoch 2), as a restore from an older backup would: the coordinator's
    next sync sends them again, and its syncs go on working."""
    machine = HostileSyncMachine(team_after_a_revocation)
    try:
        dev = machine.devices[0]
        with machine._server() as db:
            ((batch_id,),) = db.execute("SELECT DISTINCT batch_id FROM op WHERE device_id=?", (dev.device_id,))
            db.execute("DELETE FROM op WHERE batch_id=?", (batch_id,))
            db.execute("DELETE FROM batch WHERE id=?", (batch_id,))
        assert dev.ws.epoch == 2
        for _ in range(2):
            dev.engine.sync()  # StaleEpoch, each time
        assert dev.ws.outbox_count() == 0
        assert [n.kind for n in dev.ws.notices()].count("lost_on_server") == 1  # sent again, and said so
    finally:
        machine.busy = True  # no final round: the server lost acknowledged ops, outside the model
        machine.teardown()


def test_a_replayed_page_makes_no_device_send_again(team_after_a_revocation: Team) -> None:
    """Found by the machine: device 0, all acknowledged, syncs; the server answers its pull with
    an old page (another device's, or its own from before later pushes), whose `held_through` is
    lower than what device 0 has acknowledged. It is not an answer to this request (1.3: the nonce):
    device 0 queues nothing again and says nothing was lost."""
    machine = HostileSyncMachine(team_after_a_revocation)
    try:
        machine.restart(crash=False, d=0)
        machine.create_persons(d=0, people=[("Aksel", {})])
        machine.create_persons(d=0, people=[("Aksel", {})])
        machine.sync_killed_anywhere(at=0, d=0, plan=[])
        machine.create_persons(d=0, people=[("Aksel", {})])
        machine.quiet_round()
        machine.hostile_sync(d=0, plan=[(Fault.DROP_REQUEST, "/v1/push", 0)], replays=[(0, 0)])
        machine.logs_agree()  # no acknowledged op queued again
        assert "lost_on_server" not in [n.kind for n in machine.devices[0].ws.notices()]
    finally:
        machine.teardown()


def test_a_replayed_page_does_not_undo_a_withheld_push(team_after_a_revocation: Team) -> None:
    """Found by the machine: the server withholds device 0's push (5-6) whole; device 0's next
    pull is answered with an old page whose `held_through` is lower than what it acknowledged. Had
    device 0 believed it, it would have sent the withheld push again, and the other devices would
    not be told of a hole the server made (here: device 2, in the quiet round)."""
    machine = HostileSyncMachine(team_after_a_revocation)
    try:
        machine.create_killed(alias="Aksel", at=0, d=0, fields={})
        machine.create_persons(d=0, people=[("Aksel", {})])
        machine.create_persons(d=0, people=[("Aksel", {"alias": "Aksel"})])
        machine.withhold_push(fresh="Aksel", pick=0, then=[], writer=0)
        machine.sync_killed_in_pull(d=0, nth=1, plan=[], point="receive_start")
        machine.hostile_sync(d=0, plan=[], replays=[(0, 0)])
        machine.quiet_round()  # every device caught up was told of the withheld push
    finally:
        machine.teardown()
