"""The machine's limits, measured in the same run as the figures so that a ratio holds on a noisy
machine:

- SQLite insert: the same number of plaintext rows (the records' JSON, unsealed) into a fresh file
  with the store's pragmas (WAL, synchronous=FULL), in one transaction: rows/s.
- SQLite commit: one small row per transaction with the same pragmas (the fsync a save must pay).
- HTTP transfer: the same sequence of requests and body sizes as a push or a pull, replayed against
  a bare uvicorn app that does no processing (`bench.blobserver`), with the same client library
  (`requests`, keep-alive): seconds.
- HTTP round trip: a tiny GET against the same blob server.
- HTTP capacity: tiny GETs from as many threads as simulated devices, closed loop: requests/s.

And two design floors (not machine limits: the least work this design asks for, in a tight loop):
- pull floor: per op, open (AES-GCM, zlib, json) and re-seal as a row (json, zlib, AES-GCM), one
  insert each in one transaction: what a device must do per pulled op whatever the code around it.
- push floor: the server's storage of the same ops in a table shaped like its `op` table (two
  random-keyed indexes), one transaction per push batch, with plain sqlite3.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import requests

from .stats import percentile
from .wire import Exchange

__all__ = ["sqlite_insert", "sqlite_commit", "http_replay", "http_rtt", "http_capacity", "pull_floor", "push_floor"]


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS plain (id TEXT PRIMARY KEY, epoch INTEGER NOT NULL, body BLOB NOT NULL)")
    return conn


def sqlite_insert(rows: Sequence[bytes], workdir: Path) -> float:
    """Seconds to insert `rows` (plaintext bodies, with a 32-hex id each) in one transaction."""
    path = workdir / f"limit-insert-{os.getpid()}-{time.monotonic_ns()}.db"
    conn = _connect(path)
    data = [(os.urandom(16).hex(), 1, body) for body in rows]
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO plain (id, epoch, body) VALUES (?, ?, ?)", data)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return elapsed


def sqlite_commit(count: int, body: bytes, workdir: Path) -> list[float]:
    """Seconds of each of `count` one-row write transactions (BEGIN IMMEDIATE ... COMMIT)."""
    path = workdir / f"limit-commit-{os.getpid()}-{time.monotonic_ns()}.db"
    conn = _connect(path)
    # steady state, as in a device's store: a WAL file already grown and restarted, so that a commit
    # overwrites blocks (fdatasync, no file growth) instead of extending the file
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO plain (id, epoch, body) VALUES (?, ?, ?)",
                     ((os.urandom(16).hex(), 1, body) for _ in range(max(2000, count * 20))))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(RESTART)")
    times = []
    for _ in range(count):
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO plain (id, epoch, body) VALUES (?, ?, ?)", (os.urandom(16).hex(), 1, body))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - start)
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return times


def http_replay(url: str, exchanges: Sequence[Exchange]) -> float:
    """Seconds to replay the body sizes of `exchanges` (POST: upload that many bytes; GET: download
    that many) against the blob server, one after the other on one keep-alive session."""
    session = requests.Session()
    session.get(url + "/health").raise_for_status()
    blob = os.urandom(max([e.body_up for e in exchanges] + [1]))
    start = time.perf_counter()
    for e in exchanges:
        if e.method == "POST":
            session.post(url + "/sink", data=blob[: e.body_up]).raise_for_status()
        else:
            resp = session.get(url + "/blob", params={"n": e.body_down})
            resp.raise_for_status()
            assert len(resp.content) == e.body_down
    elapsed = time.perf_counter() - start
    session.close()
    return elapsed


def http_rtt(url: str, count: int = 200) -> list[float]:
    session = requests.Session()
    session.get(url + "/health").raise_for_status()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        session.get(url + "/blob", params={"n": 200}).raise_for_status()
        times.append(time.perf_counter() - start)
    session.close()
    return times


def http_capacity(url: str, threads: int, seconds: float) -> tuple[float, float]:
    """Closed loop from `threads` threads (one keep-alive session each): (requests/s, p99 seconds)."""
    stop = time.monotonic() + seconds
    counts: list[list[float]] = [[] for _ in range(threads)]

    def run(i: int) -> None:
        session = requests.Session()
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                session.get(url + "/blob", params={"n": 200}, timeout=10).raise_for_status()
            except requests.RequestException:
                continue
            counts[i].append(time.perf_counter() - t)
        session.close()

    start = time.monotonic()
    pool = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - start
    lat = [x for c in counts for x in c]
    return len(lat) / elapsed, percentile(lat, 99)


# ---------------------------------------------------------------------------------------------
# Design floors: the least work the design itself asks for, done in a tight loop with the same
# libraries, so that a figure's distance to its floor is the code's overhead, not the design's.


def pull_floor(bodies: Sequence[bytes], workdir: Path) -> float:
    """Seconds for the per-op work an initial pull cannot avoid, over `bodies` (the ops' plaintext
    JSON): AES-GCM open + zlib inflate + json.loads of the op; json.dumps + zlib deflate (level 6,
    as the vault) + AES-GCM seal of the row; one SQLite insert per op, all in one transaction."""
    import json
    import zlib

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    sealed = []
    for i, body in enumerate(bodies):
        nonce = os.urandom(12)
        ad = f"op|{i}".encode()
        sealed.append((nonce, ad, aead.encrypt(nonce, b"\x01" + zlib.compress(body, 6), ad)))
    path = workdir / f"floor-pull-{os.getpid()}-{time.monotonic_ns()}.db"
    conn = _connect(path)
    start = time.perf_counter()
    rows = []
    for i, (nonce, ad, blob) in enumerate(sealed):
        obj = json.loads(zlib.decompress(aead.decrypt(nonce, blob, ad)[1:]))
        packed = b"\x01" + zlib.compress(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode(), 6)
        n2 = os.urandom(12)
        rows.append((str(i), 1, b"\x01" + n2 + aead.encrypt(n2, packed, b"row|" + ad)))
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO plain (id, epoch, body) VALUES (?, ?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return elapsed


_OP_TABLE = """CREATE TABLE op (
    team_id VARCHAR(32) NOT NULL, seq INTEGER NOT NULL, op_id VARCHAR(32) NOT NULL UNIQUE,
    device_id VARCHAR(32) NOT NULL, device_seq INTEGER NOT NULL, record_id VARCHAR(32) NOT NULL,
    key_epoch INTEGER NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL, received_at REAL NOT NULL,
    PRIMARY KEY (team_id, seq), CONSTRAINT uq_op_device_seq UNIQUE (team_id, device_id, device_seq))"""


def push_floor(sizes: Sequence[int], batch: int, workdir: Path) -> float:
    """Seconds for the server-side storage a push cannot avoid on this schema: the ops (op and
    record ids as devices make them, a random per-device prefix and a counter; payloads of
    `sizes`) into a table shaped like the server's `op` table (its unique keys and its record
    index), `batch` ops per transaction, WAL + synchronous=FULL, with plain sqlite3 (no ORM, no
    HTTP)."""
    import uuid

    path = workdir / f"floor-push-{os.getpid()}-{time.monotonic_ns()}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(_OP_TABLE)
    conn.execute("CREATE INDEX ix_op_team_record ON op (team_id, record_id)")
    team, device = uuid.uuid4().hex, uuid.uuid4().hex
    payload = os.urandom(max(sizes) if sizes else 300)
    op_prefix, record_prefix = uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
    rows = [(team, i + 1, f"{op_prefix}{i + 1:016x}", device, i + 1, f"{record_prefix}{i + 1:016x}", 1,
             payload[:size], size, 0.0)
            for i, size in enumerate(sizes)]
    start = time.perf_counter()
    for lo in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO op VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows[lo:lo + batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return elapsed
