"""The local store: the only SQL on the client. One SQLite file per device, one write connection,
WAL with full fsync, explicit transactions (`atomic()`), schema by `migrations`.

The connection is shared by the app's threads (the screens' worker threads and the sync thread),
one at a time: every statement runs, and its rows are fetched, under the store's lock, which a
transaction holds from BEGIN to COMMIT. Two threads stepping one sqlite3 connection at once, or
one closing it while another steps it, can crash the interpreter (CPython's sqlite3 module keeps
per-connection state that the GIL does not guard while SQLite runs), and a read from outside a
transaction would see that transaction's uncommitted rows. A long read beside the app (the row
check after unlock) gets a connection of its own: `reader()`.

It owns rows of ids, key epochs and sealed blobs, the outbox, the inbox of pulled ops, the keyring, device meta and sync
state. It never sees a key or a plaintext personal value: callers hand it sealed bytes. Every local
change is written as its sealed row plus its outbox op inside one `atomic()` block by `workspace`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..domain.tables import SEALED_TABLES
from ..domain.vocab import RecordType
from ..errors import MigrationError
from .migrations import migrate

__all__ = ["Store", "StoreReader", "OutboxRow", "SetAsideRow", "InboxRow", "DB_NAME", "data_files"]

DB_NAME = "outreach.db"

OutboxRow = tuple[int, str, str, int, bytes]  # device_seq, op_id, record_id, key_epoch, payload
SetAsideRow = tuple[str, str, str, int, int, bytes, str, float]
InboxRow = tuple[str, str, int, str, int, bytes]  # op_id, device_id, device_seq, record_id, key_epoch, payload


def data_files(data_dir: Path) -> list[Path]:
    """Every file the store may leave in `data_dir` (the database and its WAL and SHM)."""
    base = data_dir / DB_NAME
    return [base, base.with_name(DB_NAME + "-wal"), base.with_name(DB_NAME + "-shm"),
            base.with_name(DB_NAME + "-journal")]


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")  # a saved contact survives a power cut
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA secure_delete=ON")  # erased blobs are overwritten, not left in free pages
            self.conn.execute("PRAGMA busy_timeout=5000")
            migrate(self.conn)
        except sqlite3.DatabaseError as exc:
            raise MigrationError(f"The data file {path.name} cannot be opened: {exc}") from exc
        self._lock = threading.RLock()
        self._depth = 0
        try:
            os.chmod(path, 0o600)
        except OSError:
            pass  # not every platform has POSIX modes (Android storage does; Windows ignores them)

    def close(self, *, checkpoint: bool = True) -> None:
        """Close the connection once no other thread is in a statement or a transaction;
        `checkpoint` first folds the WAL into the database file (not worth it before a wipe)."""
        with self._lock:
            try:
                if checkpoint:
                    self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self.conn.close()

    def _q(self, sql: str, args: Any = ()) -> _Rows:
        """One statement, its rows fetched before the lock is let go."""
        with self._lock:
            cursor = self.conn.execute(sql, args)
            rows = _Rows(cursor.fetchall())
            rows.rowcount = cursor.rowcount
            return rows

    def _many(self, sql: str, rows: Iterable[Any]) -> None:
        with self._lock:
            self.conn.executemany(sql, rows)

    @contextmanager
    def reader(self) -> Iterator[StoreReader]:
        """A read-only connection of its own, for one thread's long read beside the app (WAL: it
        neither waits for the writer nor holds it up). Each page is read in its own statement,
        so no read transaction keeps the WAL from being checkpointed meanwhile."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            yield StoreReader(conn)
        finally:
            conn.close()

    @contextmanager
    def atomic(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested calls join the outer one. Everything or nothing.

        `durable=False` commits without waiting for the disk (WAL with synchronous=NORMAL): a
        power cut may undo it, never tear it, and the next durable commit makes it durable too.
        Only for changes that are safe to lose, such as dropping acknowledged outbox ops (lost,
        they are pushed again and the server acknowledges them as duplicates)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            if not durable:
                self.conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                self._depth = 1
                try:
                    yield self.conn
                    self._depth = 0
                    self.conn.execute("COMMIT")
                except BaseException:
                    self._depth = 0
                    # also when COMMIT itself failed (disk full, I/O error): SQLite may keep the
                    # transaction open, and the connection would read uncommitted rows and refuse
                    # every later BEGIN
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
            finally:
                if not durable:
                    self.conn.execute("PRAGMA synchronous=FULL")

    # --------------------------------------------------------------------------- meta
    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self._q("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str | int | float) -> None:
        self._q("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))

    def del_meta(self, key: str) -> None:
        self._q("DELETE FROM meta WHERE key=?", (key,))

    def sync_state(self, key: str, default: str | None = None) -> str | None:
        row = self._q("SELECT value FROM syncstate WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def sync_states(self, prefix: str) -> list[tuple[str, str]]:
        """(key, value) of the sync states whose key starts with `prefix`."""
        return list(self._q("SELECT key, value FROM syncstate WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)))

    def set_sync_state(self, key: str, value: str | int | float) -> None:
        self._q("INSERT OR REPLACE INTO syncstate (key, value) VALUES (?, ?)", (key, str(value)))

    # ------------------------------------------------------------------------ keyring
    def keyring(self) -> dict[str, bytes]:
        return {name: blob for name, blob in self._q("SELECT name, wrapped FROM keyring")}

    def kdf_params(self) -> str | None:
        row = self._q("SELECT kdf FROM keyring WHERE name='master'").fetchone()
        return row[0] if row else None

    def put_key(self, name: str, wrapped: bytes, kdf: str | None = None) -> None:
        self._q(
            "INSERT OR REPLACE INTO keyring (name, wrapped, kdf) VALUES (?, ?, ?)", (name, wrapped, kdf)
        )

    def delete_keys(self, prefix: str) -> None:
        self._q("DELETE FROM keyring WHERE substr(name, 1, ?) = ?", (len(prefix), prefix))

    # ---------------------------------------------------------------------- sealed rows
    def get_row(self, record_type: RecordType, record_id: str) -> tuple[int, bytes] | None:
        row = self._q(
            f"SELECT key_epoch, sealed FROM {SEALED_TABLES[record_type]} WHERE id=?", (record_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def put_rows(self, record_type: RecordType, rows: Iterable[tuple[str, int, bytes]]) -> None:
        rows = list(rows)
        self._many(
            f"INSERT OR REPLACE INTO {SEALED_TABLES[record_type]} (id, key_epoch, sealed) VALUES (?, ?, ?)", rows
        )
        self._changed([(r[0], record_type.value) for r in rows])

    def delete_row(self, record_type: RecordType, record_id: str) -> None:
        self._q(f"DELETE FROM {SEALED_TABLES[record_type]} WHERE id=?", (record_id,))
        self._changed([(record_id, record_type.value)])

    # ------------------------------------------------------------------ change counter
    def _changed(self, rows: Iterable[tuple[str, str]] = ()) -> None:
        """Every change of a sealed row moves the counter and marks the row dirty, in the same
        transaction: a snapshot taken at another count is stale by exactly the dirty rows."""
        self._q(
            "INSERT INTO meta (key, value) VALUES ('gen', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )
        self._many("INSERT OR IGNORE INTO dirty (record_id, record_type) VALUES (?, ?)", rows)

    def dirty(self) -> list[tuple[str, str]]:
        """(record id, record type) of every sealed row changed since the snapshot was written."""
        return list(self._q("SELECT record_id, record_type FROM dirty"))

    def dirty_count(self) -> int:
        return int(self._q("SELECT count(*) FROM dirty").fetchone()[0])

    def gen(self) -> int:
        return int(self.meta("gen", "0") or 0)

    def snapshot(self) -> tuple[int, int, bytes] | None:
        row = self._q("SELECT gen, key_epoch, sealed FROM snapshot WHERE name='index'").fetchone()
        return (row[0], row[1], row[2]) if row else None

    def snapshot_gen(self) -> int | None:
        row = self._q("SELECT gen FROM snapshot WHERE name='index'").fetchone()
        return int(row[0]) if row else None

    def put_snapshot(self, gen: int, key_epoch: int, sealed: bytes) -> None:
        """Store the snapshot taken at change count `gen` (call it in a transaction that checked
        `gen()` is still `gen`): nothing is dirty since."""
        self._q(
            "INSERT OR REPLACE INTO snapshot (name, gen, key_epoch, sealed) VALUES ('index', ?, ?, ?)",
            (gen, key_epoch, sealed),
        )
        self._q("DELETE FROM dirty")

    def drop_snapshot(self) -> None:
        self._q("DELETE FROM snapshot")
        self._q("DELETE FROM dirty")  # nothing to be dirty against

    def iter_rows(self, record_type: RecordType) -> Iterator[tuple[str, int, bytes]]:
        """(id, key epoch, sealed) of every row of a type, read a page at a time (each page
        under the lock; other threads get a turn between two)."""
        return _row_pages(self._q, record_type)

    def count_rows(self, record_type: RecordType) -> int:
        return int(self._q(f"SELECT count(*) FROM {SEALED_TABLES[record_type]}").fetchone()[0])

    # --------------------------------------------------------------------------- outbox
    def append_outbox(self, rows: Iterable[OutboxRow]) -> None:
        self._many(
            "INSERT INTO outbox (device_seq, op_id, record_id, key_epoch, payload) VALUES (?, ?, ?, ?, ?)", rows
        )

    def outbox_batch(self, max_ops: int, max_bytes: int, after_seq: int = 0) -> list[OutboxRow]:
        """The oldest ops after `after_seq`, at most `max_ops` and `max_bytes` of payload (at
        least one op)."""
        out: list[OutboxRow] = []
        size = 0
        for row in self._q(
            "SELECT device_seq, op_id, record_id, key_epoch, payload FROM outbox WHERE device_seq > ? "
            "ORDER BY device_seq LIMIT ?",
            (after_seq, max_ops),
        ):
            size += len(row[4])
            if out and size > max_bytes:
                break
            out.append(row)
        return out

    def outbox_all(self) -> list[OutboxRow]:
        return list(self._q(
            "SELECT device_seq, op_id, record_id, key_epoch, payload FROM outbox ORDER BY device_seq"
        ))

    def replace_outbox_payload(self, device_seq: int, key_epoch: int, payload: bytes) -> None:
        self._q(
            "UPDATE outbox SET key_epoch=?, payload=? WHERE device_seq=?", (key_epoch, payload, device_seq)
        )

    SENT_KEEP = 14 * 24 * 3600.0  # seconds an acknowledged op is kept (`sent`): longer than a backup is old

    def ack_outbox(self, through_seq: int, at: float | None = None) -> int:
        """Move the ops the server acknowledged from the outbox to `sent` (kept `SENT_KEEP`)."""
        now = time.time() if at is None else at
        self._q("INSERT OR REPLACE INTO sent (device_seq, op_id, record_id, key_epoch, payload, at) "
                "SELECT device_seq, op_id, record_id, key_epoch, payload, ? FROM outbox WHERE device_seq <= ?",
                (now, through_seq))
        self._q("DELETE FROM sent WHERE at < ?", (now - self.SENT_KEEP,))
        return self._q("DELETE FROM outbox WHERE device_seq <= ?", (through_seq,)).rowcount

    def resend(self, after_seq: int) -> tuple[int, int]:
        """Put the acknowledged ops after `after_seq` back in the outbox (the server lost them):
        (ops queued again, the lowest sequence among them, or 0)."""
        low = self._q("SELECT min(device_seq) FROM sent WHERE device_seq > ?", (after_seq,)).fetchone()[0]
        n = self._q("INSERT OR IGNORE INTO outbox (device_seq, op_id, record_id, key_epoch, payload) "
                    "SELECT device_seq, op_id, record_id, key_epoch, payload FROM sent WHERE device_seq > ?",
                    (after_seq,)).rowcount
        self._q("DELETE FROM sent WHERE device_seq > ?", (after_seq,))
        return n, int(low or 0)

    def drop_outbox_seq(self, device_seq: int) -> None:
        self._q("DELETE FROM outbox WHERE device_seq=?", (device_seq,))

    def drop_outbox_for(self, record_ids: Iterable[str]) -> None:
        self._many("DELETE FROM outbox WHERE record_id=?", ((r,) for r in record_ids))

    def outbox_count(self, *, without: str | None = None) -> int:
        """Queued ops; `without` (a sealed table's name) leaves out ops of the records in it."""
        if without is None:
            return int(self._q("SELECT count(*) FROM outbox").fetchone()[0])
        assert without in SEALED_TABLES.values()
        return int(self._q(f"SELECT count(*) FROM outbox WHERE record_id NOT IN (SELECT id FROM {without})")
                   .fetchone()[0])

    # ---------------------------------------------------------------------------- inbox
    def inbox_put(self, rows: Iterable[InboxRow]) -> None:
        self._many(
            "INSERT INTO inbox (op_id, device_id, device_seq, record_id, key_epoch, payload) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    def inbox_batch(self, max_ops: int) -> list[tuple[int, str, str, int, str, int, bytes]]:
        """The oldest pulled ops still to be folded: (n, op id, device id, device seq, record id,
        key epoch, payload), in the order they were pulled."""
        return list(self._q(
            "SELECT n, op_id, device_id, device_seq, record_id, key_epoch, payload FROM inbox ORDER BY n LIMIT ?",
            (max_ops,),
        ))

    def inbox_drop_through(self, n: int) -> None:
        self._q("DELETE FROM inbox WHERE n <= ?", (n,))

    def inbox_count(self) -> int:
        return int(self._q("SELECT count(*) FROM inbox").fetchone()[0])

    # ------------------------------------------------------------------------ conflicts
    def set_conflicts(self, record_type: RecordType, record_id: str, fields: Iterable[str]) -> None:
        self._q("DELETE FROM reviewconflict WHERE record_id=?", (record_id,))
        self._many(
            "INSERT INTO reviewconflict (record_id, field, record_type) VALUES (?, ?, ?)",
            ((record_id, f, record_type.value) for f in fields),
        )

    def conflicts(self) -> list[tuple[str, str, str]]:
        return list(self._q(
            "SELECT record_type, record_id, field FROM reviewconflict ORDER BY record_id, field"
        ))

    # ----------------------------------------------------------------- set aside, erased
    def set_aside(self, row: SetAsideRow) -> None:
        self._q(
            "INSERT OR REPLACE INTO setaside (op_id, record_id, device_id, device_seq, key_epoch, payload, error, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row,
        )

    def set_aside_rows(self) -> list[SetAsideRow]:
        return list(self._q(
            "SELECT op_id, record_id, device_id, device_seq, key_epoch, payload, error, at FROM setaside ORDER BY at"
        ))

    def remove_set_aside(self, op_id: str) -> None:
        self._q("DELETE FROM setaside WHERE op_id=?", (op_id,))

    def set_aside_errors(self, prefix: str) -> list[tuple[str, str]]:
        """(op id, error) of the set-aside ops whose error starts with `prefix` (no payloads read:
        this runs at every sync)."""
        return list(self._q("SELECT op_id, error FROM setaside WHERE substr(error, 1, ?) = ?", (len(prefix), prefix)))

    def requeue_set_aside(self, op_ids: Iterable[str]) -> None:
        """Put set-aside remote ops back in the inbox (their time has come), at its end."""
        ids = json.dumps(list(op_ids))
        self._q("INSERT INTO inbox (op_id, device_id, device_seq, record_id, key_epoch, payload) "
                "SELECT op_id, device_id, device_seq, record_id, key_epoch, payload FROM setaside "
                "WHERE op_id IN (SELECT value FROM json_each(?))", (ids,))
        self._q("DELETE FROM setaside WHERE op_id IN (SELECT value FROM json_each(?))", (ids,))

    # -------------------------------------------------------------------------- notices
    def add_notice(self, at: float, kind: str, record_id: str | None, device_id: str | None, detail: str) -> bool:
        """Note a refusal, once: the same (kind, record, device, detail) is not noted twice.
        Returns whether it is new."""
        seen = self._q("SELECT 1 FROM notice WHERE kind=? AND record_id IS ? AND device_id IS ? AND detail=?",
                       (kind, record_id, device_id, detail)).fetchone()
        if seen:
            return False
        self._q("INSERT INTO notice (at, kind, record_id, device_id, detail) VALUES (?, ?, ?, ?, ?)",
                (at, kind, record_id, device_id, detail))
        return True

    def notices(self) -> list[tuple[int, float, str, str | None, str | None, str]]:
        return list(self._q("SELECT n, at, kind, record_id, device_id, detail FROM notice ORDER BY n"))

    def outbox_records(self, record_ids: Iterable[str]) -> list[tuple[int, str]]:
        """(device seq, record id) of queued ops of these records."""
        return list(self._q("SELECT device_seq, record_id FROM outbox WHERE record_id IN "
                            "(SELECT value FROM json_each(?)) ORDER BY device_seq", (json.dumps(list(record_ids)),)))

    def mark_erased(self, record_ids: Iterable[str], at: float) -> None:
        ids = list(record_ids)
        self._many("INSERT OR IGNORE INTO erased (record_id, at) VALUES (?, ?)", ((r, at) for r in ids))
        for table in SEALED_TABLES.values():
            self._many(f"DELETE FROM {table} WHERE id=?", ((r,) for r in ids))
        self._changed()
        self.drop_snapshot()  # an erased person must not live on in a sealed copy either
        self._many("DELETE FROM reviewconflict WHERE record_id=?", ((r,) for r in ids))
        self._many("DELETE FROM setaside WHERE record_id=?", ((r,) for r in ids))
        self.drop_outbox_for(ids)
        self._many("DELETE FROM sent WHERE record_id=?", ((r,) for r in ids))  # never sent again either
        if ids:  # one pass over the inbox, however many ids
            self._q("DELETE FROM inbox WHERE record_id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))

    def erased_ids(self) -> set[str]:
        return {r[0] for r in self._q("SELECT record_id FROM erased")}


class _Rows(list[Any]):
    """A statement's rows, all fetched while the lock was held, and its row count."""

    __slots__ = ("rowcount",)
    rowcount: int

    def fetchone(self) -> Any:
        return self[0] if self else None


ROW_PAGE = 1000  # sealed rows read per statement by `iter_rows`


def _row_pages(query: Callable[[str, Any], list[Any]], record_type: RecordType,
               size: int = ROW_PAGE) -> Iterator[tuple[str, int, bytes]]:
    # By rowid, the order the table is stored in: a replaced row comes again later, under a new
    # rowid, so a row changed during the read is read at least once, in its newer state last.
    table = SEALED_TABLES[record_type]
    after = 0
    while True:
        page = query(f"SELECT rowid, id, key_epoch, sealed FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                     (after, size))
        for _rowid, rid, epoch, blob in page:
            yield rid, epoch, blob
        if len(page) < size:
            return
        after = page[-1][0]


class StoreReader:
    """A read-only connection for one thread (`Store.reader()`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _query(self, sql: str, args: Any) -> list[Any]:
        return self._conn.execute(sql, args).fetchall()

    def iter_rows(self, record_type: RecordType, size: int = ROW_PAGE) -> Iterator[tuple[str, int, bytes]]:
        return _row_pages(self._query, record_type, size)
