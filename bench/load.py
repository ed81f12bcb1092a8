"""The server under many devices: N simulated devices, each a thread with its own keep-alive
`requests` session, speaking the sync protocol to a real `outreach-server` on loopback.

Enrollment is the real flow over HTTP: teams are created in the server's database with the server's
own `crud` (what `outreach-server team create` does, without a process per team), the first device
of each team joins with the operator's code (coordinator), invites the others (`POST /v1/invites`),
they join with an HMAC proof of their X25519 public key (`POST /v1/join`), the coordinator checks
each proof and uploads the team key wrapped for each (ephemeral X25519 + HKDF + AES-GCM,
`POST /v1/keys`). The devices then run cycles: push a small batch (1 to 5 ops of random bytes as
big as real sealed ops), pull everything new since their cursor, wait a think time. Every request's
latency and outcome is recorded; requests started in the warm-up are left out.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from models.storage.vault import make_proof, verify_proof
from sync.protocol import PROTOCOL_HEADER, PROTOCOL_VERSION, EnrollmentCode, b64d, b64e

from .procs import cpu_seconds, create_team_db
from .stats import percentile

__all__ = ["RawDevice", "LoadResult", "enroll", "run_load", "run_longpoll", "wake_latencies", "tree_cpu_seconds"]


class ProtocolError(Exception):
    pass


class RawDevice:
    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.session = requests.Session()
        self.key = X25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.id = uuid.uuid4().hex
        self.token: str | None = None
        self.seq = 0
        self.cursor = 0
        self.records = [uuid.uuid4().hex for _ in range(30)]

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None,
             timeout: float = 30.0) -> tuple[int, Any]:
        headers = {PROTOCOL_HEADER: PROTOCOL_VERSION, "Accept-Encoding": "gzip"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
            if len(data) > 1024:  # as the real client does
                data = gzip.compress(data, 5)
                headers["Content-Encoding"] = "gzip"
        resp = self.session.request(method, self.url + path, data=data, params=params, headers=headers,
                                    timeout=timeout)
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        return resp.status_code, answer

    def must(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        if status != 200:
            raise ProtocolError(f"{method} {path}: HTTP {status} {answer}")
        return answer

    def join(self, code: EnrollmentCode) -> dict[str, Any]:
        answer = self.must("POST", "/v1/join", {
            "lookup": code.lookup, "device_id": self.id, "device_name": self.name,
            "public_key": b64e(self.public), "proof": b64e(make_proof(code.secret_bytes, self.public, self.id)),
        })
        self.token = answer["token"]
        return answer  # type: ignore[no-any-return]


def _wrap(team_id: str, epoch: int, device_id: str, public_key: bytes, team_key: bytes) -> bytes:
    recipient = X25519PublicKey.from_public_bytes(public_key)
    eph = X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    info = f"outreach/v1/wrap|{team_id}|{epoch}|{device_id}|".encode() + eph_pub + public_key
    kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(eph.exchange(recipient))
    nonce = os.urandom(12)
    return eph_pub + b"\x01" + nonce + AESGCM(kek).encrypt(nonce, team_key, f"{team_id}|{epoch}".encode())


def enroll(url: str, db_url: str, devices: int, team_size: int) -> list[list[RawDevice]]:
    """Teams of `team_size` active devices (the last team may be smaller), `devices` in all."""
    sizes = [min(team_size, devices - start) for start in range(0, devices, team_size)]
    codes = create_team_db(db_url, [f"Bench load {i + 1}" for i in range(len(sizes))])
    teams = []
    for t, (size, code_text) in enumerate(zip(sizes, codes, strict=True)):
        coord = RawDevice(url, f"load {t}-0")
        joined = coord.join(EnrollmentCode.parse(code_text))
        team_id = joined["team_id"]
        team_key = os.urandom(32)
        members = [coord]
        secrets: dict[str, bytes] = {}
        for i in range(1, size):
            invite = EnrollmentCode.generate()
            coord.must("POST", "/v1/invites", {"lookup": invite.lookup, "role": "worker"})
            secrets[invite.lookup] = invite.secret_bytes
            worker = RawDevice(url, f"load {t}-{i}")
            worker.join(invite)
            members.append(worker)
        listing = coord.must("GET", "/v1/devices")
        keys = [{"epoch": 1, "device_id": coord.id,
                 "wrapped": b64e(_wrap(team_id, 1, coord.id, coord.public, team_key))}]
        for dev in listing["devices"]:
            if dev["status"] != "pending":
                continue
            pk = b64d(dev["public_key"])
            if not verify_proof(secrets[dev["invite_lookup"]], pk, dev["device_id"], b64d(dev["proof"])):
                raise ProtocolError("a proof did not verify")
            keys.append({"epoch": 1, "device_id": dev["device_id"],
                         "wrapped": b64e(_wrap(team_id, 1, dev["device_id"], pk, team_key))})
        coord.must("POST", "/v1/keys", {"epoch": 1, "keys": keys})
        teams.append(members)
    return teams


@dataclass
class LoadResult:
    devices: int
    team_size: int
    think: float
    seconds: float
    requests: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # kind -> seconds
    ops_pushed: int = 0
    ops_pulled: int = 0
    server_cpu: float = 0.0  # share of one core
    client_cpu: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def all(self) -> list[float]:
        return [x for v in self.latencies.values() for x in v]

    def p(self, q: float, kind: str | None = None) -> float:
        return percentile(self.latencies.get(kind, []) if kind else self.all(), q)


def run_load(teams: list[list[RawDevice]], *, seconds: float, think: float, payload_sizes: list[int],
             server_pid: int, warmup: float = 2.0, seed: int = 1) -> LoadResult:
    devices = [d for team in teams for d in team]
    result = LoadResult(len(devices), max(len(t) for t in teams), think, seconds - warmup)
    lock = threading.Lock()
    begin = time.monotonic() + 0.2
    measure_from = begin + warmup
    end = begin + seconds
    sizes = payload_sizes or [300]
    for dev in devices:  # open each keep-alive connection before the clock starts
        try:
            dev.call("GET", "/v1/me")
        except requests.ConnectionError:  # a kept-alive connection the server closed meanwhile
            dev.call("GET", "/v1/me")

    def record(kind: str, started: float, elapsed: float, error: str | None) -> None:
        if started < measure_from:
            return
        with lock:
            result.requests += 1
            result.latencies.setdefault(kind, []).append(elapsed)
            if error:
                result.errors += 1
                result.error_kinds[error] = result.error_kinds.get(error, 0) + 1

    def timed(dev: RawDevice, kind: str, method: str, path: str, body: Any = None,
              params: dict[str, Any] | None = None) -> Any:
        started = time.monotonic()
        t0 = time.perf_counter()
        try:
            status, answer = dev.call(method, path, body, params)
            error = None if status == 200 else f"{kind} HTTP {status}"
        except requests.RequestException as exc:
            status, answer, error = 0, None, f"{kind} {type(exc).__name__}"
        record(kind, started, time.perf_counter() - t0, error)
        return answer if status == 200 else None

    def device_loop(dev: RawDevice, rng: random.Random) -> None:
        time.sleep(max(0.0, begin - time.monotonic()) + rng.uniform(0, max(think, 0.05)))
        while time.monotonic() < end:
            ops = []
            for _ in range(rng.randint(1, 5)):
                dev.seq += 1
                ops.append({"op_id": uuid.uuid4().hex, "device_seq": dev.seq, "record_id": rng.choice(dev.records),
                            "key_epoch": 1, "payload": b64e(os.urandom(rng.choice(sizes)))})
            answer = timed(dev, "push", "POST", "/v1/push", {"ops": ops})
            if answer is None:
                dev.seq -= len(ops)  # resend the same seqs next time
            elif time.monotonic() >= measure_from:
                with lock:
                    result.ops_pushed += len(ops)
            for _ in range(10):  # page on while the server says `more`
                page = timed(dev, "pull", "GET", "/v1/pull", params={"since": dev.cursor, "limit": 1000})
                if page is None:
                    break
                dev.cursor = page["next"]
                with lock:
                    result.ops_pulled += len(page["ops"])
                if not page["more"]:
                    break
            if think > 0:
                time.sleep(think * rng.uniform(0.5, 1.5))

    threads = [threading.Thread(target=device_loop, args=(d, random.Random(seed * 100003 + i)), daemon=True)
               for i, d in enumerate(devices)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, measure_from - time.monotonic()))
    cpu_server_m = tree_cpu_seconds(server_pid)
    cpu_client_m = time.process_time()
    time.sleep(max(0.0, end - time.monotonic()))
    cpu_server1 = tree_cpu_seconds(server_pid)
    cpu_client1 = time.process_time()
    for t in threads:
        t.join(timeout=60)
    result.server_cpu = (cpu_server1 - cpu_server_m) / result.seconds
    result.client_cpu = (cpu_client1 - cpu_client_m) / result.seconds
    for dev in devices:
        dev.session.close()
    return result


@dataclass
class LongPollResult:
    waiting: int
    seconds: float
    server_cpu: float
    probe: list[float]
    errors: int


def run_longpoll(teams: list[list[RawDevice]], *, seconds: float, server_pid: int) -> LongPollResult:
    """Every device but one holds a long-poll (`wait` just over `seconds`), as online apps would;
    the one left (a probe) pushes one op every 0.5 s and times it. What does waiting cost the
    server, and what does it do to the latency of the others' requests?"""
    devices = [d for team in teams for d in team]
    probe, waiters = devices[0], devices[1:]
    end = time.monotonic() + seconds
    errors = 0
    lock = threading.Lock()

    def wait_loop(dev: RawDevice) -> None:
        nonlocal errors
        while time.monotonic() < end - 0.5:
            left = max(1.0, end - time.monotonic() + 1.0)
            try:
                status, page = dev.call("GET", "/v1/pull", params={"since": dev.cursor, "limit": 1000,
                                                                   "wait": round(left, 1)}, timeout=left + 30)
            except requests.RequestException:
                status, page = 0, None
            if status != 200:
                with lock:
                    errors += 1
                return
            dev.cursor = page["next"]

    threads = [threading.Thread(target=wait_loop, args=(d,), daemon=True) for d in waiters]
    for t in threads:
        t.start()
    time.sleep(1.0)  # let them all arrive and start waiting
    cpu0, t0 = cpu_seconds(server_pid), time.monotonic()
    lat: list[float] = []
    while time.monotonic() < end - 0.6:
        probe.seq += 1
        op = {"op_id": uuid.uuid4().hex, "device_seq": probe.seq, "record_id": probe.records[0], "key_epoch": 1,
              "payload": b64e(os.urandom(300))}
        start = time.perf_counter()
        status, _ = probe.call("POST", "/v1/push", {"ops": [op]})
        lat.append(time.perf_counter() - start)
        if status != 200:
            errors += 1
        time.sleep(0.5)
    cpu = (cpu_seconds(server_pid) - cpu0) / max(0.1, time.monotonic() - t0)
    for t in threads:
        t.join(timeout=seconds + 40)
    return LongPollResult(len(waiters), seconds, cpu, lat, errors)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its children (a server with `--workers`: the workers do the
    work, the parent only watches them), Linux /proc; 0 when unknown."""
    total = cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(tree_cpu_seconds(int(child)) for child in children)


def wake_latencies(poller: RawDevice, poll_url: str, pusher: RawDevice, push_url: str, *,
                   rounds: int) -> tuple[list[float], int]:
    """A long-poll through `poll_url`, then a push of one op through `push_url`: seconds from the
    push's start to the long-poll's answer, `rounds` times; and how many rounds went wrong. Two
    server processes on one database: the wake-up crosses processes (PostgreSQL LISTEN/NOTIFY);
    one URL twice: the in-process figure beside it."""
    poll_session, push_session = requests.Session(), requests.Session()
    headers = {PROTOCOL_HEADER: PROTOCOL_VERSION, "Accept-Encoding": "gzip"}
    latencies: list[float] = []
    errors = 0
    try:
        cursor = poll_session.get(poll_url + "/v1/pull", params={"since": 0, "limit": 5000},
                                  headers={**headers, "Authorization": f"Bearer {poller.token}"}, timeout=30).json()
        since = cursor["next"]
        while cursor["more"]:
            cursor = poll_session.get(poll_url + "/v1/pull", params={"since": since, "limit": 5000},
                                      headers={**headers, "Authorization": f"Bearer {poller.token}"}, timeout=30).json()
            since = cursor["next"]
        for _ in range(rounds):
            answered: dict[str, Any] = {}

            def poll(since: int = since, answered: dict[str, Any] = answered) -> None:
                response = poll_session.get(poll_url + "/v1/pull", params={"since": since, "wait": 10},
                                            headers={**headers, "Authorization": f"Bearer {poller.token}"},
                                            timeout=40)
                answered["at"] = time.perf_counter()
                answered["page"] = response.json() if response.status_code == 200 else None

            thread = threading.Thread(target=poll)
            thread.start()
            time.sleep(0.15)  # the long-poll reads the empty log and waits (a bench, not a test)
            pusher.seq += 1
            op = {"op_id": uuid.uuid4().hex, "device_seq": pusher.seq, "record_id": pusher.records[0],
                  "key_epoch": 1, "payload": b64e(os.urandom(300))}
            started = time.perf_counter()
            pushed = push_session.post(push_url + "/v1/push", json={"ops": [op]},
                                       headers={**headers, "Authorization": f"Bearer {pusher.token}"}, timeout=30)
            thread.join(timeout=40)
            page = answered.get("page")
            if pushed.status_code != 200 or not page or not page["ops"]:
                errors += 1
                if pushed.status_code != 200:
                    pusher.seq -= 1  # that sequence number is free again
                continue
            latencies.append(answered["at"] - started)
            since = page["next"]
    finally:
        poll_session.close()
        push_session.close()
    return latencies, errors
