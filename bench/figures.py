"""The device figures, on real parts: devices are real `Workspace`s (SQLite files in a temp dir, the
production KDF) with real `SyncEngine`s talking HTTP to a real `outreach-server` process.

The data set is generated once per run: device A fills itself through the service layer
(`models.usecases.demo.populate`, every record sealed and queued like a real one) and pushes its outbox;
device B joins with an invite (the real enrollment flow: code, proof, admission by A) and pulls
everything. That generation cost is reported on its own (`generate.*`).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from models.errors import NotFound
from models.storage.vault import KdfParams
from models.usecases.demo import DemoGenerator, populate
from models.workspace import Workspace
from sync.engine import SyncEngine

from .procs import REPO_ROOT, create_team_cli, server_process
from .profiling import Profiles
from .shaper import Shaper
from .stats import Results, percentile
from .wire import CountingSession, Exchange

__all__ = ["Device", "DeviceRun", "PASS"]

PASS = "correct horse 42"  # the benchmark's passphrase; the KDF parameters are the production ones


class Device:
    """One device: a data dir, its workspace and its sync engine on a byte-counting session."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.session = CountingSession()
        # the production KDF parameters, and what the app asks of a passphrase without a keystore
        self.ws = Workspace(path, guard_offline=True)
        self.engine = SyncEngine(self.ws, session=self.session)

    def reopen(self) -> None:
        """A new workspace object on the same files (locked), and a new engine for it."""
        self.engine.close()
        self.ws.close()
        self.session = CountingSession()
        self.ws = Workspace(self.path, guard_offline=True)
        self.engine = SyncEngine(self.ws, session=self.session)


@dataclass
class DeviceRun:
    """Everything the device figures share within one run."""

    results: Results
    workdir: Path
    server_url: str
    server_pid: int
    profiles: Profiles
    persons: int
    contacts: int
    quick: bool
    a: Device | None = None
    b: Device | None = None
    sealed_sizes: list[int] = field(default_factory=list)
    push_log: list[Exchange] = field(default_factory=list)
    pull_log: list[Exchange] = field(default_factory=list)
    push_seconds: float = 0.0
    pull_seconds: float = 0.0
    fold_seconds: float = 0.0
    ops: int = 0
    rtt_limit: float | None = None  # ms: two tiny loopback requests (a push and a pull)
    save_limit: float | None = None  # ms: p95 of a one-row SQLite commit with the store's pragmas
    save_times: list[float] = field(default_factory=list)
    op_bodies: list[bytes] = field(default_factory=list)

    # ------------------------------------------------------------------ generation and push
    def generate(self, code: str) -> None:
        r = self.results
        a = self.a = Device(self.workdir / "device-a", "A")
        start = time.perf_counter()
        a.ws.init(PASS, worker_name="Bench A")
        init_s = time.perf_counter() - start
        a.engine.join(self.server_url, code, device_name="bench A")
        r.add("device.init", init_s * 1000, "ms", note="create a vault with the production KDF")
        with self.profiles.phase("generate"):
            start = time.perf_counter()
            made = populate(a.ws, persons=self.persons, contacts=self.contacts)
            gen_s = time.perf_counter() - start
        records = sum(made.values())
        r.add("generate.populate", gen_s, "s", note=f"{records} records through the service layer "
              "(populate, 5,000 per transaction)", records=records)
        r.add("generate.rate", records / gen_s, "records/s")
        outbox = a.ws.store.outbox_all()
        self.sealed_sizes = [len(row[4]) for row in outbox]
        self.ops = len(outbox)
        vault, me = a.ws.vault, a.ws.device_id
        assert vault is not None
        step = max(1, len(outbox) // 20000)  # a sample of the ops' plaintexts, for the pull floor
        self.op_bodies = [json.dumps(vault.open_op(rid, epoch, me, seq, op_id, payload), separators=(",", ":"),
                                     ensure_ascii=False).encode()
                          for seq, op_id, rid, epoch, payload in outbox[::step]]

    def push(self) -> None:
        a = self.a
        assert a is not None
        r = self.results
        a.session.reset()
        with self.profiles.phase("push", self.server_pid):
            start = time.perf_counter()
            pushed = a.engine.push()
            self.push_seconds = time.perf_counter() - start
        assert pushed == self.ops, (pushed, self.ops)
        self.push_log = list(a.session.log)
        n, up, down = a.session.totals()
        sealed = sum(self.sealed_sizes) / max(1, self.ops)
        r.add("push.rate", pushed / self.push_seconds, "ops/s", target=">= 20000",
              note=f"whole outbox, {n} requests", ops=pushed, seconds=self.push_seconds)
        r.add("push.wire_per_op", (up + down) / pushed, "B/op", note="request + response bytes per op",
              sealed_bytes_per_op=sealed)
        r.add("push.wire_vs_sealed", (up + down) / pushed / sealed, "x", target="<= 1.3",
              note=f"wire bytes / sealed payload bytes (sealed avg {sealed:.0f} B)")

    # ------------------------------------------------------------------ a fresh device pulls
    def join_b(self) -> None:
        a = self.a
        assert a is not None
        b = self.b = Device(self.workdir / "device-b", "B")
        b.ws.init(PASS, worker_name="Bench B")
        code = a.engine.invite()
        b.engine.join(self.server_url, code, device_name="bench B")
        admitted, _ = a.engine.admit_pending()
        assert admitted == 1
        assert b.engine.refresh_keys()

    def pull(self) -> None:
        """B pulls everything: the pages stored in its inbox with their cursor (the network part:
        from then on B may go offline), then folded into its rows (local work: from then on
        everything is searchable). Timed apart and together."""
        b = self.b
        assert b is not None
        r = self.results
        b.session.reset()
        with self.profiles.phase("pull", self.server_pid):
            start = time.perf_counter()
            pulled, _, _, _ = b.engine.pull(fold=False)
            self.pull_seconds = time.perf_counter() - start
        with self.profiles.phase("fold"):
            start = time.perf_counter()
            applied, set_aside = b.engine.fold()
            self.fold_seconds = time.perf_counter() - start
        assert set_aside == 0 and pulled >= self.ops and applied >= self.ops, (pulled, applied, set_aside)
        self.pull_log = list(b.session.log)
        n, up, down = b.session.totals()
        sealed = sum(self.sealed_sizes) / max(1, self.ops)
        r.add("pull.rate", pulled / self.pull_seconds, "ops/s", target=">= 20000",
              note=f"initial pull into a fresh device, {n} pages stored (sealed, with their cursor)",
              ops=pulled, seconds=self.pull_seconds)
        r.add("pull.fold_rate", pulled / self.fold_seconds, "ops/s",
              note="the pulled ops folded into the device's rows (open, merge, re-seal, index)",
              seconds=self.fold_seconds)
        r.add("pull.usable_rate", pulled / (self.pull_seconds + self.fold_seconds), "ops/s",
              note="pull + fold: from the first request to everything searchable on the device",
              seconds=self.pull_seconds + self.fold_seconds)
        r.add("pull.wire_per_op", (up + down) / pulled, "B/op", sealed_bytes_per_op=sealed)
        r.add("pull.wire_vs_sealed", (up + down) / pulled / sealed, "x", target="<= 1.3",
              note="gzip response: wire bytes / sealed payload bytes")
        self.first_sync(pulled / (self.pull_seconds + self.fold_seconds))

    def first_sync(self, replay_rate: float) -> None:
        """The same team's first sync through a checkpoint (issue 17): A (the coordinator) pulls
        to the log's head and writes a checkpoint; a new device C joins and syncs, from its first
        request to a usable device (every row stored, the index loaded). Beside the log replay
        of B in the same run (`pull.usable_rate`)."""
        a = self.a
        assert a is not None
        r = self.results
        a.engine.pull()
        start = time.perf_counter()
        made = a.engine.make_checkpoint(force=True)
        write_s = time.perf_counter() - start
        assert made is not None
        r.add("checkpoint.write", write_s, "s", note=f"the coordinator seals {made.parts} parts "
              f"({made.size / 1e6:.1f} MB) and uploads them", parts=made.parts, bytes=made.size)
        c = Device(self.workdir / "device-c", "C")
        c.ws.init(PASS, worker_name="Bench C")
        c.engine.join(self.server_url, a.engine.invite(), device_name="bench C")
        admitted, _ = a.engine.admit_pending()
        assert admitted == 1
        c.session.reset()
        with self.profiles.phase("first_sync", self.server_pid):
            usable_s, complete_s, report = _timed_first_sync(c.engine)
        live = sum(len(table) for table in c.ws.index.records.values())
        assert report.from_checkpoint >= live > 0, (report.from_checkpoint, live)
        n, up, down = c.session.totals()
        rate = live / usable_s
        r.add("first_sync.usable_rate", rate, "records/s", target=">= 20000",
              note=f"a new device through a checkpoint: first request to usable (the first tier: places, "
                   f"persons, follow-ups, the last 30 days of contacts), over {live} live records; "
                   f"{n} requests, {down / 1e6:.1f} MB down in all", records=live, seconds=usable_s)
        r.add("first_sync.complete_rate", live / complete_s, "records/s",
              note="the same first sync until the older history is in too", seconds=complete_s)
        r.add("first_sync.ratio_to_replay", rate / replay_rate, "x", target=">= 3",
              note="first_sync.usable_rate over pull.usable_rate of the same run (records per second of "
                   "live data against ops per second of the log: one op per record here)")
        c.engine.close()
        c.ws.close()
        self.first_sync_field()

    def first_sync_field(self) -> None:
        """A one-year team (300 persons, 15,000 contacts over the year, 1,200 follow-ups) on a
        server of its own: a new device's first sync through a checkpoint over a link shaped like
        3G (`bench/shaper.py`: 400 kbit/s, 300 ms round trip, 2 % loss), usable and complete; and
        the same live data written with three edits per record (a log three times as long): the
        usable time over loopback against the one-edit team's."""
        r = self.results
        scale = 0.1 if self.quick else 1.0
        persons, contacts, follow_ups = int(300 * scale), int(15_000 * scale), int(1_200 * scale)
        work = self.workdir / "field"
        work.mkdir(exist_ok=True)
        db_url = f"sqlite:///{work / 'field.db'}"
        with server_process(db_url, work) as server:
            url = f"http://127.0.0.1:{server.port}"
            usable: dict[int, float] = {}
            for edits in (1, 3):
                coord = Device(work / f"coord-{edits}", f"coordinator {edits}")
                coord.ws.init(PASS, worker_name="Bench coordinator")
                coord.engine.join(url, create_team_cli(db_url, f"Field {edits}"), device_name="coordinator")
                _one_year(coord.ws, persons, contacts, follow_ups, edits)
                coord.engine.sync()
                coord.engine.make_checkpoint(force=True)
                d = Device(work / f"new-{edits}", "new")
                d.ws.init(PASS, worker_name="Bench new")
                with Shaper(target=("127.0.0.1", server.port), rate_bps=400_000, rtt_ms=300, loss=0.02,
                            seed=17) as link:
                    d.engine.join(link.url_for(url), coord.engine.invite(), device_name="new")
                    coord.engine.admit_pending()
                    # the three-edit team's device is timed to usable only (its older history is the same)
                    usable_s, complete_s, report = _timed_first_sync(d.engine, until_usable=edits > 1)
                    assert report is None or report.from_checkpoint > 0
                usable[edits] = usable_s
                if edits == 1:
                    r.add("first_sync.3g.usable_s", usable_s, "s", target="<= 10",
                          note=f"one-year team ({persons} persons, {contacts} contacts, {follow_ups} "
                               "follow-ups) over 400 kbit/s, 300 ms RTT, 2 % loss: first request to usable")
                    r.add("first_sync.3g.complete_s", complete_s, "s", target="<= 180",
                          note="the same, until the older history is in and the log tail pulled")
                d.engine.close()
                d.ws.close()
                coord.engine.close()
                coord.ws.close()
        r.add("first_sync.history_ratio", usable[3] / usable[1], "x", target="<= 1.2",
              note="the one-year team's live data written with three edits per record (a log three times as "
                   "long), usable time over the one-edit team's, same 3G link", one_edit_s=usable[1],
              three_edits_s=usable[3])

    # ------------------------------------------------------------------ unlock and load
    def unlock(self, repeats: int) -> None:
        """Lock (as the app's auto-lock does, after the pull changed everything), then unlock and
        show the person list and the recent contacts, `repeats` times; then once more after the
        app was killed without locking (a phone's OS does that), so nothing cached at lock helps."""
        b = self.b
        assert b is not None
        r = self.results
        start = time.perf_counter()
        b.ws.lock()
        lock_s = time.perf_counter() - start
        times: list[float] = []
        kdf: list[float] = []
        count = 0
        params = None
        for i in range(repeats):
            b.reopen()
            params = KdfParams.from_json(b.ws.store.kdf_params() or "")
            start = time.perf_counter()
            params.derive(PASS)
            kdf.append(time.perf_counter() - start)
            with self.profiles.phase("unlock") if i == 0 else _nothing():
                times.append(self._timed_unlock(b))
            count = sum(len(table) for table in b.ws.index.records.values())
        assert params is not None
        r.add("unlock_load", percentile(times, 50), "s", target="<= 1.5",
              note=f"unlock (production KDF) + load the data set + person list + 50 recent contacts; median of "
                   f"{repeats}", runs=times, kdf_s=percentile(kdf, 50), params=params.algorithm, rows=count)
        r.add("unlock_load.kdf_only", percentile(kdf, 50), "s",
              note=f"{params.algorithm} m={params.memory_kib} KiB t={params.iterations} p={params.lanes}")
        r.add("lock", lock_s, "s", note="lock after the pull (what it leaves behind for the next unlock)")
        # killed without locking: a save, then the process ends at once
        b.engine.close()
        b.ws.close()
        script = ("import os, sys; from datetime import datetime; from pathlib import Path; "
                  "from models.workspace import Workspace; from models.usecases.demo import DemoGenerator; "
                  "ws = Workspace(Path(sys.argv[1])); ws.unlock(sys.argv[2]); "
                  "ws.add_contact(DemoGenerator(5).contact(datetime(2026, 1, 5, 21, 0), [], [])); os._exit(0)")
        subprocess.run([sys.executable, "-c", script, str(b.path), PASS], cwd=REPO_ROOT, check=True,
                       env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        b.reopen()
        with self.profiles.phase("unlock_after_kill"):
            after = self._timed_unlock(b)
        r.add("unlock_load.after_kill", after, "s", target="<= 1.5",
              note="the same, after the app was killed (no lock) right after a save")

    @staticmethod
    def _timed_unlock(b: Device) -> float:
        start = time.perf_counter()
        b.ws.unlock(PASS)
        persons = b.ws.persons()
        recent = b.ws.contacts(limit=50)
        elapsed = time.perf_counter() - start
        assert persons and recent
        return elapsed

    # ------------------------------------------------------------------ save one contact
    def save(self, count: int) -> None:
        a = self.a
        assert a is not None
        r = self.results
        persons = [p.id for p in a.ws.persons()]
        places = [p.id for p in a.ws.places()]
        gen = DemoGenerator(seed=4242)
        now = datetime.now().replace(second=0, microsecond=0)
        times: list[float] = []
        with self.profiles.phase("save"):
            for i in range(count + 5):
                data: dict[str, Any] = gen.contact(now - timedelta(minutes=i), persons, places)
                if i % 10 == 0:
                    data["follow_up"] = (now + timedelta(days=7)).date().isoformat()
                start = time.perf_counter()
                a.ws.add_contact(data)
                elapsed = time.perf_counter() - start
                if i >= 5:  # warm-up
                    times.append(elapsed)
        r.add("save.p50", percentile(times, 50) * 1000, "ms", note=f"add_contact on the full data set, n={count}")
        r.add("save.p95", percentile(times, 95) * 1000, "ms", target="<= 10", max_ms=max(times) * 1000,
              limit=self.save_limit, note="limit: p95 of a one-row SQLite commit (fsync)")
        self.save_times = times

    # ------------------------------------------------------------------ search
    def search(self, rounds: int) -> None:
        a = self.a
        assert a is not None
        r = self.results
        rng = random.Random(7)
        aliases = [p.alias for p in a.ws.persons()]
        queries: list[str] = []
        for alias in rng.sample(aliases, min(20, len(aliases))):
            words = alias.split()  # "Demo Lille Søren 17"
            queries += [words[2][:3], " ".join(words[1:3]), f"{words[2]} {words[3]}", alias[:7]]
        queries += ["sovepose", "varmestue", "bolig", "jobcenter", "kontanthjælp", "herberg", "grøn jakke",
                    "Hovedbanegården", "hovedbaneg", "Halmtorvet", "istedgade", "soeren", "bjørn", "Aase",
                    "Jensen", "Sørensen (demo)", "rød hue", "xyzzy", "Demo", "hund"]
        times: list[float] = []
        worst: dict[str, float] = {}
        with self.profiles.phase("search"):
            for _ in range(rounds):
                rng.shuffle(queries)
                for q in queries:
                    start = time.perf_counter()
                    a.ws.search(q)
                    elapsed = time.perf_counter() - start
                    times.append(elapsed)
                    worst[q] = max(worst.get(q, 0.0), elapsed)
        slowest = {q: round(t * 1000, 1) for q, t in sorted(worst.items(), key=lambda kv: -kv[1])[:5]}
        r.add("search.p50", percentile(times, 50) * 1000, "ms", note=f"{len(queries)} typical queries x {rounds}")
        r.add("search.p95", percentile(times, 95) * 1000, "ms", target="<= 20", max_ms=max(times) * 1000,
              queries=len(times), slowest_ms=slowest)

    # ------------------------------------------------------------------ round trip
    def round_trip(self, trials: int, wait: float = 10.0) -> None:
        """A saves a contact and pushes at once (a UI would debounce first: add its delay); B is
        online with a long-poll (`engine.pull(wait=...)`) as a running app would be, applies the
        page and finds the contact. Time from the save's start to B finding it."""
        a, b = self.a, self.b
        assert a is not None and b is not None
        r = self.results
        if not b.ws.unlocked:
            b.ws.unlock(PASS)
        persons = [p.id for p in a.ws.persons()]
        places = [p.id for p in a.ws.places()]
        gen = DemoGenerator(seed=99)
        want: dict[str, float] = {}
        seen: dict[str, float] = {}
        lock = threading.Lock()
        got = threading.Event()
        stop = threading.Event()
        errors: list[str] = []

        def follower() -> None:
            while not stop.is_set():
                try:
                    b.engine.pull(wait=wait)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    errors.append(type(exc).__name__)
                    time.sleep(0.1)
                with lock:
                    pending = [rid for rid in want if rid not in seen]
                for rid in pending:
                    try:
                        b.ws.get_contact(rid)
                    except NotFound:
                        continue
                    with lock:
                        seen[rid] = time.perf_counter()
                    got.set()

        thread = threading.Thread(target=follower, name="device-b-longpoll", daemon=True)
        thread.start()
        time.sleep(0.3)
        rtts: list[float] = []
        local: list[float] = []
        rng = random.Random(3)
        with self.profiles.phase("round_trip", self.server_pid):
            for i in range(trials):
                time.sleep(rng.uniform(0.05, 0.35))  # a random phase against the server's poll interval
                got.clear()
                start = time.perf_counter()
                contact = a.ws.add_contact(gen.contact(datetime.now().replace(second=0, microsecond=0),
                                                       persons, places))
                with lock:
                    want[contact.id] = start
                a.engine.push()
                local.append(time.perf_counter() - start)
                deadline = time.monotonic() + 15
                while contact.id not in seen and time.monotonic() < deadline:
                    got.wait(0.5)
                    got.clear()
                if contact.id in seen:
                    rtts.append(seen[contact.id] - start)
                else:
                    errors.append(f"trial {i}: not seen in 15 s")
        stop.set()
        a.ws.add_contact(gen.contact(datetime.now(), persons, places))  # wakes the long-poll
        a.engine.push()
        thread.join(timeout=wait + 5)
        rtt_limit = self.rtt_limit
        r.add("round_trip.p50", percentile(rtts, 50) * 1000, "ms",
              note=f"A save+push -> B long-poll (wait={wait:g} s) applies it, n={len(rtts)}",
              limit=rtt_limit, save_push_p50_ms=percentile(local, 50) * 1000)
        r.add("round_trip.p95", percentile(rtts, 95) * 1000, "ms", target="<= 1000", errors=errors,
              limit=rtt_limit)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class _Usable(Exception):
    pass


def _timed_first_sync(engine: SyncEngine, *, until_usable: bool = False) -> tuple[float, float, Any]:
    """A first sync: (seconds to usable, seconds to complete, the report). Usable is when the
    checkpoint's first tier is taken (or, without tiers, the end). `until_usable`: stop there
    (the report is then None)."""
    marks: dict[str, float] = {}
    start = time.perf_counter()

    def progress(phase: str, _done: int, _total: int) -> None:
        if phase == "usable" and phase not in marks:
            marks[phase] = time.perf_counter() - start
            if until_usable:
                raise _Usable()

    try:
        report = engine.sync(progress)
    except _Usable:
        return marks["usable"], marks["usable"], None
    complete = time.perf_counter() - start
    return marks.get("usable", complete), complete, report


def _one_year(ws: Workspace, persons: int, contacts: int, follow_ups: int, edits: int) -> None:
    """A team's year: places, persons, contacts over the last 365 days, follow-ups (a sixth of
    them open), each person and contact written `edits` times (the first write, then edits)."""
    gen = DemoGenerator(365)
    with ws.unaudited():
        with ws.bulk():
            place_ids = [ws.add_place(place).id for place in gen.places()]
            person_ids = [ws.add_person(gen.person(n + 1, place_ids)).id for n in range(persons)]
        contact_ids = []
        times = gen.contact_times(contacts, days=365)
        for start in range(0, contacts, 5000):
            with ws.bulk():
                contact_ids += [ws.add_contact(gen.contact(at, person_ids, place_ids)).id
                                for at in times[start:start + 5000]]
        with ws.bulk():
            today = datetime.now().date()
            for n in range(follow_ups):
                ws.add_follow_up({"due": today + timedelta(days=n % 60 - 50), "person_id": person_ids[n % len(person_ids)],
                                  "note": f"follow-up {n}", "done": n % 6 != 0})
        for round_ in range(edits - 1):
            with ws.bulk():
                for pid in person_ids:
                    ws.edit_person(pid, {"description": f"edited {round_}"})
            for start in range(0, len(contact_ids), 5000):
                with ws.bulk():
                    for cid in contact_ids[start:start + 5000]:
                        ws.edit_contact(cid, {"note": f"edited {round_}"})
