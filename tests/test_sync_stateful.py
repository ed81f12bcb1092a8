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
conflicts resolved; a sync on any device under a fault plan (request lost, answer lost after the
server committed, request delivered twice; devices 0 and 1 never retry, so a lost message
surfaces as `Offline`, device 2 retries once); a sync during which the app dies: in the apply
transaction of the n-th pulled page (before it, after the rows, at the cursor), in the n-th push
acknowledgement, or at the k-th writing SQL statement wherever it falls; a save during which the
app dies; restarts (the restarted app must show exactly what it showed before); once, a quiet
round in the middle of a run.

Checked after every step: the server holds each op id once and each (device, device_seq) once;
every op a device wrote is either still in its outbox (a contiguous tail of its writes, holding
nothing it recorded as acknowledged) or on the server under the same op id; the server holds no
op a device did not write; no op was set aside; cursors never move back. After a successful sync
the device's sealed records equal the merge of the server's whole log. After a quiet round (each
device syncs twice without faults; also at the end of every example): outboxes empty, cursors at
the log's end, every device's records equal to the merge of the log and to an independent
last-writer-wins model of it (so no acknowledged write is lost, none resurrected), and the same
open conflicts everywhere.

`OUTREACH_STATEFUL_EXAMPLES` overrides the number of examples (default 200); `pytest -s` prints
what the examples exercised (faults fired, kills reached, conflicts at convergence).
"""

from __future__ import annotations

import contextlib
import functools
import os
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

from models.clock import HLC, hlc_ms
from models.merge import Op, RecordState, apply_op, new_state
from models.tables import REVIEWED_FIELDS
from models.vocab import Consent, HomelessCategory, Need, RecordType, Status
from models.workspace import Workspace, decode_op
from sync.client import SyncClient
from sync.engine import SyncEngine
from sync.errors import Offline
from sync.protocol import DeviceStatus, EnrollmentCode, Role
from sync.server import Database, ServerSettings, create_app, crud

PASSPHRASE = "stateful sync 42"
BASE_URL = "http://127.0.0.1:8700"  # loopback: SyncClient allows plain http; the adapter serves it
N_DEVICES = 3  # device 0 is the coordinator
RETRIES = (0, 0, 1)  # client retries per device: faults surface as Offline on 0 and 1, device 2 retries
PUSH_OPS = 2  # small batches and pages, so that batching and paging happen in short runs
PULL_LIMIT = 3
EXAMPLES = int(os.environ.get("OUTREACH_STATEFUL_EXAMPLES", "200"))
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


def _scratch_root() -> Path:
    """tmpfs when there is one: both stores fsync every commit (synchronous=FULL)."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="outreach-stateful-", dir=base))


def _enroll_template(template: Path) -> tuple[list[str], str, list[str]]:
    """Found a team and enroll two workers through the real protocol, add the seed persons on the
    coordinator and sync them everywhere, then close everything."""
    server_settings = ServerSettings(db_url=f"sqlite:///{template / 'server.db'}")
    db = Database.from_settings(server_settings)
    adapter = ASGIAdapter(create_app(server_settings, database=db))
    code = EnrollmentCode.generate()
    with db.transaction(write=True) as session:  # what `outreach-server team create` does
        team = crud.create_team(session, name="Stateful", lookup=code.lookup, ttl_seconds=3600, now=time.time())
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
        codes = [engines[0].invite() for _ in range(N_DEVICES - 1)]
        for engine, invite in zip(engines[1:], codes, strict=True):
            joined = engine.join(BASE_URL, invite)
            assert joined.status == DeviceStatus.PENDING and joined.role == Role.WORKER
            assert engine.sync().pending
        assert engines[0].sync().admitted == N_DEVICES - 1
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
        device_ids = [ws.device_id for ws in workspaces]
        for ws in workspaces:
            assert sorted(ws.index.records[PERSON]) == sorted(person_ids)
    finally:
        for ws in workspaces:
            ws.close()
        adapter.shutdown()
        db.dispose()  # the last connection closes: SQLite checkpoints and removes the WAL
    return device_ids, team.id, person_ids


@contextlib.contextmanager
def enrolled_team() -> Iterator[Team]:
    """Enroll the template team and serve a working copy of it; everything is removed after."""
    root = _scratch_root()
    template, work = root / "template", root / "work"
    template.mkdir()
    work.mkdir()
    try:
        device_ids, team_id, person_ids = _enroll_template(template)
        server_settings = ServerSettings(db_url=f"sqlite:///{work / 'server.db'}")
        shutil.copyfile(template / "server.db", work / "server.db")
        db = Database.from_settings(server_settings)
        adapter = ASGIAdapter(create_app(server_settings, database=db))
        try:
            yield Team(root, template, work, db, adapter, device_ids, team_id, person_ids)
        finally:
            adapter.shutdown()
            db.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def team() -> Iterator[Team]:
    with enrolled_team() as made:
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


# ------------------------------------------------------------------------------ the machine


@dataclass
class Device:
    index: int
    path: Path
    device_id: str
    faults: FaultyAdapter
    ws: Workspace = field(init=False)
    engine: SyncEngine = field(init=False)
    written: dict[int, str] = field(default_factory=dict)  # device_seq -> op id: every local write
    acked: int = 0  # the highest device_seq this device recorded as acknowledged (`Workspace.ack`)
    cursor: int = 0  # the last cursor seen on disk


@dataclass(frozen=True)
class ServerOp:
    seq: int
    op_id: str
    device_id: str
    device_seq: int
    record_id: str
    key_epoch: int
    payload: bytes


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
# (fault, requests it may hit, matching requests let through first); pushes are fewer than pulls
FAULT_PLAN = st.lists(
    st.tuples(st.sampled_from(list(Fault)), st.sampled_from(["/v1/push", "/v1/push", "/v1/pull", None]),
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
        for dev in self.devices:
            self._open(dev)
            dev.cursor = int(dev.ws.sync_value("cursor", "0") or 0)
            dev.written = {o.device_seq: o.op_id for o in seeded if o.device_id == dev.device_id}
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
        fired = [x for x in dev.faults.log[start:] if x.fault is not None]
        note(f"device {dev.index} sync {'ok' if ok else 'offline'}; faults fired: "
             f"{[(x.fault.value, x.method, x.path) for x in fired if x.fault]}")
        for x in fired:
            event(f"fault fired: {x.fault.value if x.fault else None} {x.method} {x.path}")
        drops = [x for x in fired if x.fault in (Fault.DROP_REQUEST, Fault.DROP_RESPONSE)]
        if not drops:
            assert ok, "a sync without lost messages must succeed"
        if RETRIES[dev.index] == 0:
            # A page asked for ahead, on the guess that the log has no gap, is not needed when the
            # guess was wrong or the log ended before it: losing it loses nothing. Every other
            # lost message must surface.
            needed = _pages_used(dev.faults.log[start:], cursor_before) if ok else set()
            lost = [x for x in drops if not (x.path == "/v1/pull" and _since(x) not in needed)] if ok else drops
            assert ok == (not lost), "without retries, a lost message surfaces as Offline"
        if ok:
            self._check_caught_up(dev)
            assert dev.ws.sync_value("last_error") == ""
        else:
            assert dev.ws.sync_value("last_error"), "a failed sync leaves its reason for the status chip"
        return ok

    def _check_caught_up(self, dev: Device) -> None:
        """After a successful sync: nothing queued, the cursor at the log's end, and the device's
        records exactly the merge of every op on the server."""
        ops = self.server_ops()
        assert dev.ws.outbox_count() == 0, "a successful sync pushes the whole outbox"
        assert int(dev.ws.sync_value("cursor", "0") or 0) == (ops[-1].seq if ops else 0)
        expected = {rid: state.to_json() for rid, state in self._merged(ops).items()}
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
        assert left == [(seq, op_id) for seq, op_id in outbox_before if seq > dev.acked]
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
            left = [(seq, op_id) for seq, op_id, _r, _e, _p in dev.ws.store.outbox_all()]
            assert left == before[len(before) - len(left):], "the outbox lost ops from its middle"
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
        last_seq = ops[-1].seq if ops else 0
        for dev in self.devices:
            ws = dev.ws
            stored = {o.device_seq: o.op_id for o in ops if o.device_id == dev.device_id}
            outbox = {seq: op_id for seq, op_id, _r, _e, _p in ws.store.outbox_all()}
            for seq, op_id in outbox.items():
                assert dev.written.get(seq) == op_id, f"device {dev.index}: outbox op {seq} was never written"
            first_queued = min(outbox, default=max(dev.written, default=0) + 1)
            assert set(outbox) == {s for s in dev.written if s >= first_queued}, (
                f"device {dev.index}: the outbox is not the tail of its writes")
            assert first_queued > dev.acked, f"device {dev.index}: an acknowledged op is still queued"
            for seq, op_id in dev.written.items():
                if seq not in outbox:
                    assert stored.get(seq) == op_id, (
                        f"device {dev.index}: op {seq} left the outbox but the server does not hold it")
            for seq, op_id in stored.items():
                assert dev.written.get(seq) == op_id, f"device {dev.index}: the server holds an op it never wrote"
            cursor = int(ws.sync_value("cursor", "0") or 0)
            assert dev.cursor <= cursor <= last_seq, f"device {dev.index}: cursor {dev.cursor} -> {cursor}"
            dev.cursor = cursor
            assert not ws.store.set_aside_rows(), f"device {dev.index}: ops set aside"
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
        written = {(dev.device_id, seq): op_id for dev in self.devices for seq, op_id in dev.written.items()}
        assert {(o.device_id, o.device_seq): o.op_id for o in ops} == written, (
            "after a quiet round the server holds every write, each once, and nothing else")
        # the merge rules over every op: every device holds exactly these states
        expected_states = {rid: s.to_json() for rid, s in self._merged(ops).items()}
        # an independent last-writer-wins model: per field the value of the greatest stamp, and a
        # record with any delete is gone. Every acknowledged write is there unless superseded.
        best: dict[str, dict[str, tuple[Any, tuple[int, str]]]] = {}
        stamps: dict[str, list[tuple[int, str]]] = {}
        deleted: set[str] = set()
        for sop in ops:
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
            if rid not in deleted
        }
        expected_conflicts = sorted(
            (PERSON.value, rid, c.field)
            for rid, s in self._merged(ops).items()
            for c in {c.field: c for c in s.conflicts()}.values()
        )
        views = []
        for dev in self.devices:
            assert dev.ws.outbox_count() == 0
            assert int(dev.ws.sync_value("cursor", "0") or 0) == (ops[-1].seq if ops else 0)
            assert self._states_on(dev) == expected_states, f"device {dev.index} diverged from the merge"
            assert dev.ws.index.records[PERSON] == model, f"device {dev.index}: persons differ from the LWW model"
            assert sorted(dev.ws.store.conflicts()) == expected_conflicts, f"device {dev.index}: open conflicts"
            views.append(sorted(dev.ws.conflicts(), key=repr))
        assert views[0] == views[1] == views[2], "devices show different open conflicts"
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


def test_sync_converges_under_faults(team: Team) -> None:
    STATS.clear()
    started = time.perf_counter()
    run_state_machine_as_test(
        lambda: SyncMachine(team),  # type: ignore[arg-type,return-value]  # a factory is accepted
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    print(f"\n{STATS['examples']} examples in {time.perf_counter() - started:.1f} s; exercised:")
    for what, count in sorted(STATS.items()):
        print(f"  {count:6d}  {what}")
