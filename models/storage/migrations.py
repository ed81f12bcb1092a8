"""Named, recorded schema migrations of the local SQLite file (sqlite-utils over the store's own
connection). Each step runs once, in order, inside one transaction with its record in `_migrations`;
a file from a newer version is refused rather than guessed at. Steps are never edited once shipped:
a change is a new step. `tests/test_migrations.py` builds a file at every older step, fills it and
migrates it up, and checks that the result matches `models.domain.tables`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import sqlite_utils

from ..errors import MigrationError

__all__ = ["MIGRATIONS", "migrate", "applied"]

Step = Callable[[sqlite_utils.Database], None]


def _m0001_initial(db: sqlite_utils.Database) -> None:
    for name in ("person", "contact", "place", "followup", "auditevent"):
        db.table(name).create({"id": str, "key_epoch": int, "sealed": bytes}, pk="id", not_null={"key_epoch", "sealed"})
    db.table("keyring").create({"name": str, "wrapped": bytes, "kdf": str}, pk="name", not_null={"wrapped"})
    db.table("meta").create({"key": str, "value": str}, pk="key", not_null={"value"})
    db.table("outbox").create(
        {"device_seq": int, "op_id": str, "record_id": str, "key_epoch": int, "payload": bytes},
        pk="device_seq", not_null={"op_id", "record_id", "key_epoch", "payload"},
    )
    db.table("outbox").create_index(["op_id"], unique=True, index_name="ix_outbox_op_id")
    db.table("syncstate").create({"key": str, "value": str}, pk="key", not_null={"value"})
    db.table("reviewconflict").create(
        {"record_id": str, "field": str, "record_type": str}, pk=("record_id", "field"), not_null={"record_type"}
    )


def _m0002_sync(db: sqlite_utils.Database) -> None:
    """Sync arrived: ops set aside with their error, erased record ids, outbox by record."""
    db.table("setaside").create(
        {"op_id": str, "record_id": str, "device_id": str, "device_seq": int, "key_epoch": int,
         "payload": bytes, "error": str, "at": float},
        pk="op_id", not_null={"record_id", "device_id", "device_seq", "key_epoch", "payload", "error", "at"},
    )
    db.table("erased").create({"record_id": str, "at": float}, pk="record_id", not_null={"at"})
    db.table("outbox").create_index(["record_id"], index_name="ix_outbox_record_id")


def _m0003_snapshot(db: sqlite_utils.Database) -> None:
    """Unlock got slow with 100,000 contacts: keep the opened index sealed whole."""
    db.table("snapshot").create(
        {"name": str, "gen": int, "key_epoch": int, "sealed": bytes}, pk="name",
        not_null={"gen", "key_epoch", "sealed"},
    )


def _m0004_inbox(db: sqlite_utils.Database) -> None:
    """Pulled pages are stored sealed and folded later: the network part of a first sync is short."""
    db.table("inbox").create(
        {"n": int, "op_id": str, "record_id": str, "device_id": str, "device_seq": int, "key_epoch": int,
         "payload": bytes},
        pk="n", not_null={"op_id", "record_id", "device_id", "device_seq", "key_epoch", "payload"},
    )


def _m0005_dirty(db: sqlite_utils.Database) -> None:
    """The rows changed since the snapshot: an unlock after a kill opens those, not every row."""
    db.table("dirty").create({"record_id": str, "record_type": str}, pk="record_id", not_null={"record_type"})


def _m0006_notices(db: sqlite_utils.Database) -> None:
    """Signed authority: what a device refused or set aside is told, not silent."""
    db.table("notice").create(
        {"n": int, "at": float, "kind": str, "record_id": str, "device_id": str, "detail": str},
        pk="n", not_null={"at", "kind", "detail"},
    )


def _m0007_sent(db: sqlite_utils.Database) -> None:
    """The ops the server acknowledged, kept a while: a server restored from an older backup has
    lost some of them, and the device sends those again."""
    db.table("sent").create(
        {"device_seq": int, "op_id": str, "record_id": str, "key_epoch": int, "payload": bytes, "at": float},
        pk="device_seq", not_null={"op_id", "record_id", "key_epoch", "payload", "at"},
    )
    db.table("sent").create_index(["record_id"], index_name="ix_sent_record_id")
    db.table("sent").create_index(["at"], index_name="ix_sent_at")


MIGRATIONS: list[tuple[str, Step]] = [
    ("0001_initial", _m0001_initial),
    ("0002_sync", _m0002_sync),
    ("0003_snapshot", _m0003_snapshot),
    ("0004_inbox", _m0004_inbox),
    ("0005_dirty", _m0005_dirty),
    ("0006_notices", _m0006_notices),
    ("0007_sent", _m0007_sent),
]


def applied(conn: sqlite3.Connection) -> list[str]:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='_migrations'").fetchone()
    if not exists:
        return []
    return [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")]


def migrate(conn: sqlite3.Connection, *, upto: str | None = None) -> list[str]:
    """Apply the missing steps (up to and including `upto`); returns the names applied now."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    done = set(applied(conn))
    known = {name for name, _ in MIGRATIONS}
    unknown = done - known
    if unknown:
        raise MigrationError(
            "This data file was written by a newer version of Outreach "
            f"(unknown schema steps: {', '.join(sorted(unknown))}). Update the app."
        )
    ran: list[str] = []
    db = sqlite_utils.Database(conn)
    for name, step in MIGRATIONS:
        if name in done:
            if name == upto:
                break
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        ran.append(name)
        if name == upto:
            break
    return ran
