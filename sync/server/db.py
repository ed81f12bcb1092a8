"""The server's database plumbing: engines, transactions and the named, recorded migrations.

It owns how a connection is made (SQLite: WAL, busy timeout, foreign keys, full sync, and
``BEGIN IMMEDIATE`` for write transactions; PostgreSQL via psycopg 3, repeatable-read snapshots for
reads) and the schema's history: each migration is a name and frozen DDL, applied once and recorded
in ``schema_migrations(name, applied_at)``. Several processes may start at once: on PostgreSQL they
queue on an advisory lock, on SQLite on the write lock. It must never create an engine at import
time, hold business rules, or build the schema from the current table classes (the DDL of a
migration never changes once released; `tables.py` is checked against the result by a test).

    MigrationError      the database has migrations this server does not know (it is newer)

A database that cannot be reached (PostgreSQL stopped, restarting or out of connections; SQLite
locked past its busy timeout) is told apart from a fault by `unreachable(error)`: the app answers it
503 ``unavailable`` with ``Retry-After``. Connections come back by themselves: each is pinged
when taken from the pool (a dead pool is dropped and reconnected once per request), and a
connection attempt gives up after `CONNECT_TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from sync.server.config import ServerSettings

__all__ = [
    "Database",
    "Migration",
    "MIGRATIONS",
    "MigrationError",
    "make_engine",
    "migrate",
    "applied_migrations",
    "unreachable",
    "has_teams",
    "CONNECT_TIMEOUT_SECONDS",
]

_WRITE = "outreach_write"  # execution option: this transaction will write (SQLite: BEGIN IMMEDIATE)
_ADVISORY_KEY = 0x6F75747265616368  # "outreach": one lock id for schema changes in a PostgreSQL database
_SQLITE_BUSY_MS = 30_000
CONNECT_TIMEOUT_SECONDS = 5  # a PostgreSQL host that does not answer: give up, answer 503, try again later


class MigrationError(RuntimeError):
    """The database cannot be brought to this server's schema."""


def make_engine(settings: ServerSettings) -> Engine:
    """An engine for `settings.db_url`. Statement parameters are hidden from error messages so that
    a failed insert can never put a sealed payload or a hash into a log line."""
    if settings.dialect == "sqlite":
        engine = create_engine(
            settings.db_url,
            connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_MS / 1000},
            hide_parameters=True,
            # In memory the database lives in its one connection: every session shares it.
            **({"poolclass": StaticPool} if settings.in_memory else _pool(settings)),
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        settings.db_url,
        pool_pre_ping=True,  # a connection that died with a restarted PostgreSQL is replaced, not used
        hide_parameters=True,
        connect_args=_pg_connect_args(settings),
        pool_timeout=settings.pool_timeout_seconds,
        **_pool(settings),
    )


def _pg_connect_args(settings: ServerSettings) -> dict[str, Any]:
    given = make_url(settings.db_url).query
    args: dict[str, Any] = {}
    if "connect_timeout" not in given:
        args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if "application_name" not in given:
        args["application_name"] = "outreach-server"
    return args


def has_teams(session: Session) -> bool:
    """Whether the database holds any team (no: a new, empty database)."""
    return session.execute(text("SELECT 1 FROM team LIMIT 1")).first() is not None


def unreachable(error: BaseException) -> bool:
    """The database cannot be used for now (its connection failed or broke, it shuts down, every
    pooled connection is busy, SQLite is locked), as opposed to a fault in a statement: the request
    may be repeated later."""
    if isinstance(error, PoolTimeout):
        return True
    if not isinstance(error, DBAPIError) or isinstance(error, IntegrityError):
        return False
    if error.connection_invalidated:
        return True
    orig = error.orig
    if isinstance(orig, sqlite3.OperationalError):
        words = str(orig).lower()
        return any(word in words for word in ("locked", "busy", "disk i/o", "unable to open"))
    try:
        import psycopg
    except ImportError:  # a SQLite-only installation
        return False
    # Connection failures, an administrator's shutdown, a server starting or stopping, too many
    # connections, a serialization failure or deadlock: all OperationalError in psycopg 3.
    return isinstance(orig, (psycopg.OperationalError, psycopg.InterfaceError))


def _pool(settings: ServerSettings) -> dict[str, Any]:
    # As many connections as worker threads may want at once, kept open: an overflow connection
    # would be closed on return and reopened (with its PRAGMAs, or a PostgreSQL login) per request.
    return {"pool_size": settings.pool_size, "max_overflow": 0}


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from the sqlite3 module so that `_sqlite_begin` decides how to begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged push survives a power cut
    # Pushes write in bursts: checkpoint every ~40 MB of log instead of every 4 MB (each
    # checkpoint copies and fsyncs the database file), and keep 8 MiB of pages per connection
    # instead of 2 (the (team, record) index takes inserts at random places). Measured on 100,000
    # ops in pushes of 500: the inserts and commits take 30 % less time.
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.execute("PRAGMA journal_size_limit=67108864")
    cursor.execute("PRAGMA cache_size=-8192")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY when
    # another writer got in between; a writer that takes the lock first waits its turn instead.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


class Database:
    """An engine plus the two kinds of transaction the server uses."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        # One shared in-memory connection cannot hold two transactions: take turns.
        self._turns = threading.Lock() if isinstance(engine.pool, StaticPool) else None
        # SQLite has one writer at a time. Writers of this process queue on a lock (in order, woken
        # at once) instead of sleeping in SQLite's busy handler in growing steps; other processes
        # on the same file still meet the busy handler. Re-entrant: a nested write would fail in
        # SQLite anyway, it must not hang here.
        self._writers = threading.RLock() if self.dialect == "sqlite" and self._turns is None else None

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> Database:
        return cls(make_engine(settings))

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction, committed when the block ends, rolled back on an error.

        ``write=True`` takes SQLite's write lock up front. A read transaction is one consistent
        snapshot on both databases (PostgreSQL: REPEATABLE READ, which never fails a read-only
        transaction)."""
        with self._turn(write), Session(self.engine, expire_on_commit=False) as session:
            if write:
                options: dict[str, Any] = {_WRITE: True}
            elif self.dialect == "postgresql":
                options = {"isolation_level": "REPEATABLE READ"}
            else:
                options = {}
            session.connection(execution_options=options)
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            session.commit()

    @contextmanager
    def _turn(self, write: bool) -> Iterator[None]:
        lock = self._turns or (self._writers if write else None)
        if lock is None:
            yield
            return
        with lock:
            yield

    def dispose(self) -> None:
        self.engine.dispose()

    @property
    def label(self) -> str:
        """The database as an operator names it: the SQLite file, or the PostgreSQL URL without
        its password."""
        url = self.engine.url
        if self.dialect == "sqlite":
            return url.database or ":memory:"
        return url.render_as_string(hide_password=True)

    def max_connections(self) -> int | None:
        """PostgreSQL's `max_connections` (None on SQLite)."""
        if self.dialect != "postgresql":
            return None
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql("SHOW max_connections").scalar_one())

    def census(self) -> tuple[int, int]:
        """How many teams and devices the database holds ((0, 0): a new, empty database)."""
        with self.transaction() as session:
            teams = session.execute(text("SELECT COUNT(*) FROM team")).scalar_one()
            devices = session.execute(text("SELECT COUNT(*) FROM device")).scalar_one()
        return int(teams), int(devices)


# ---------------------------------------------------------------------------------------------
# Migrations. The DDL is written once per migration with a few type slots filled per dialect.

_TYPES = {
    "sqlite": {"id": "INTEGER PRIMARY KEY", "int": "INTEGER", "float": "REAL", "blob": "BLOB"},
    "postgresql": {
        "id": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        "int": "BIGINT",
        "float": "DOUBLE PRECISION",
        "blob": "BYTEA",
    },
}


@dataclass(frozen=True)
class Migration:
    name: str
    statements: tuple[str, ...]

    def apply(self, conn: Connection) -> None:
        types = _TYPES[conn.dialect.name]
        for statement in self.statements:
            conn.exec_driver_sql(statement.format(**types))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "0001_initial",
        (
            """CREATE TABLE team (
                id VARCHAR(32) NOT NULL PRIMARY KEY,
                name VARCHAR(200) NOT NULL,
                created_at {float} NOT NULL,
                next_seq {int} NOT NULL,
                current_epoch {int} NOT NULL,
                recovery_lookup_hash VARCHAR(64) UNIQUE
            )""",
            """CREATE TABLE device (
                id VARCHAR(32) NOT NULL PRIMARY KEY,
                team_id VARCHAR(32) NOT NULL REFERENCES team (id),
                name VARCHAR(80) NOT NULL,
                role VARCHAR(16) NOT NULL,
                status VARCHAR(16) NOT NULL,
                public_key {blob} NOT NULL,
                proof {blob},
                invite_lookup VARCHAR(64),
                token_hash VARCHAR(64) NOT NULL UNIQUE,
                joined_at {float} NOT NULL,
                last_seen {float}
            )""",
            "CREATE INDEX ix_device_team_id ON device (team_id)",
            """CREATE TABLE invite (
                lookup_hash VARCHAR(64) NOT NULL PRIMARY KEY,
                team_id VARCHAR(32) NOT NULL REFERENCES team (id),
                role VARCHAR(16) NOT NULL,
                founding BOOLEAN NOT NULL,
                created_at {float} NOT NULL,
                expires_at {float} NOT NULL,
                used_at {float},
                used_by VARCHAR(32)
            )""",
            "CREATE INDEX ix_invite_team_id ON invite (team_id)",
            """CREATE TABLE wrapped_key (
                id {id},
                team_id VARCHAR(32) NOT NULL REFERENCES team (id),
                epoch {int} NOT NULL,
                device_id VARCHAR(32) REFERENCES device (id),
                blob {blob} NOT NULL,
                created_at {float} NOT NULL,
                CONSTRAINT uq_wrapped_key UNIQUE (team_id, epoch, device_id)
            )""",
            "CREATE INDEX ix_wrapped_key_team_id ON wrapped_key (team_id)",
            """CREATE TABLE op (
                team_id VARCHAR(32) NOT NULL REFERENCES team (id),
                seq {int} NOT NULL,
                op_id VARCHAR(32) NOT NULL UNIQUE,
                device_id VARCHAR(32) NOT NULL REFERENCES device (id),
                device_seq {int} NOT NULL,
                record_id VARCHAR(32) NOT NULL,
                key_epoch {int} NOT NULL,
                payload {blob} NOT NULL,
                size {int} NOT NULL,
                received_at {float} NOT NULL,
                PRIMARY KEY (team_id, seq),
                CONSTRAINT uq_op_device_seq UNIQUE (team_id, device_id, device_seq)
            )""",
            """CREATE TABLE purge (
                team_id VARCHAR(32) NOT NULL REFERENCES team (id),
                seq {int} NOT NULL,
                record_id VARCHAR(32) NOT NULL,
                at {float} NOT NULL,
                PRIMARY KEY (team_id, seq)
            )""",
            "CREATE INDEX ix_purge_team_record ON purge (team_id, record_id)",
            """CREATE TABLE join_failure (
                id {id},
                address VARCHAR(64) NOT NULL,
                at {float} NOT NULL
            )""",
            "CREATE INDEX ix_join_failure_address_at ON join_failure (address, at)",
        ),
    ),
    # A purge deletes every op of a record id: without this it scans the team's whole log.
    Migration("0002_op_record_index", ("CREATE INDEX ix_op_team_record ON op (team_id, record_id)",)),
    # Signed authority: the coordinator's signature of each erasure, kept and passed on blind.
    Migration("0003_purge_signature", ("ALTER TABLE purge ADD COLUMN sig {blob}",)),
    # Per-device signatures: each push's signature and its ops' digests, kept for pullers to check;
    # each device's signing key; the coordinator's signed roster of devices (all opaque here).
    Migration(
        "0004_device_signatures",
        (
            """CREATE TABLE batch (
                id {id},
                team_id VARCHAR(32) NOT NULL REFERENCES team (id),
                device_id VARCHAR(32) NOT NULL REFERENCES device (id),
                sig {blob} NOT NULL,
                digests {blob} NOT NULL,
                at {float} NOT NULL
            )""",
            "ALTER TABLE op ADD COLUMN batch_id {int}",
            "ALTER TABLE device ADD COLUMN signing_key {blob}",
            "ALTER TABLE device ADD COLUMN announce {blob}",
            """CREATE TABLE roster (
                team_id VARCHAR(32) NOT NULL REFERENCES team (id),
                device_id VARCHAR(32) NOT NULL REFERENCES device (id),
                entry {blob} NOT NULL,
                updated_at {float} NOT NULL,
                PRIMARY KEY (team_id, device_id)
            )""",
        ),
    ),
    # Code lookups keyed by the server key (HMAC-SHA256) and the founding secret kept sealed
    # (issue 15). Rows before this keep their SHA-256 lookup: it cannot be rehashed from the hash,
    # so the row names its scheme and a join checks both. The server-wide throttle counts by time.
    Migration(
        "0005_keyed_lookups",
        (
            "ALTER TABLE invite ADD COLUMN lookup_scheme VARCHAR(16) NOT NULL DEFAULT 'sha256'",
            "ALTER TABLE invite ADD COLUMN founding_seal {blob}",
            "CREATE INDEX ix_join_failure_at ON join_failure (at)",
        ),
    ),
    # Signed statements (issue 10): a push's signature also covers the range of the device's
    # sequence it accounts for and each op's (sequence, record id), so that pullers can tell a
    # withheld op from an erased one. A batch has a place in the log (`pos`: the position of its
    # first op, or the head's next when none was stored) and is handed out by it, also when its
    # ops were purged. Batches of the previous version take their first op's position.
    Migration(
        "0006_batch_statements",
        (
            "ALTER TABLE batch ADD COLUMN pos {int}",
            "ALTER TABLE batch ADD COLUMN first_seq {int}",
            "ALTER TABLE batch ADD COLUMN last_seq {int}",
            "ALTER TABLE batch ADD COLUMN entries {blob}",
            "ALTER TABLE batch ADD COLUMN sig2 {blob}",
            "UPDATE batch SET pos = (SELECT MIN(op.seq) FROM op WHERE op.batch_id = batch.id)",
            "CREATE INDEX ix_batch_team_pos ON batch (team_id, pos)",
        ),
    ),
    # Checkpoints (issue 17): the team's state up to a log position, sealed in parts by a
    # coordinator; kept blind (the two newest complete ones per team), dropped by a later purge.
    Migration(
        "0007_checkpoints",
        (
            """CREATE TABLE checkpoint (
                id VARCHAR(32) NOT NULL PRIMARY KEY,
                team_id VARCHAR(32) NOT NULL REFERENCES team (id),
                seq {int} NOT NULL,
                epoch {int} NOT NULL,
                parts {int} NOT NULL,
                manifest {blob} NOT NULL,
                size {int} NOT NULL,
                created_at {float} NOT NULL,
                complete BOOLEAN NOT NULL
            )""",
            "CREATE INDEX ix_checkpoint_team ON checkpoint (team_id, seq)",
            """CREATE TABLE checkpoint_part (
                checkpoint_id VARCHAR(32) NOT NULL REFERENCES checkpoint (id),
                n {int} NOT NULL,
                blob {blob} NOT NULL,
                PRIMARY KEY (checkpoint_id, n)
            )""",
        ),
    ),
)


def applied_migrations(engine: Engine) -> list[str]:
    """Names of the migrations recorded in the database, in the order applied."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("schema_migrations"):
            return []
        rows = conn.execute(text("SELECT name FROM schema_migrations ORDER BY applied_at, name"))
        return [row[0] for row in rows]


def migrate(
    engine: Engine,
    *,
    upto: str | None = None,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    clock: Callable[[], float] = time.time,
) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction with its record; return
    the names applied now. ``upto`` stops after that migration (tests build old databases)."""
    known = [m.name for m in migrations]
    if upto is not None and upto not in known:
        raise MigrationError(f"no migration named {upto}")
    wanted = migrations[: known.index(upto) + 1] if upto else migrations
    applied_now: list[str] = []
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({_ADVISORY_KEY})")
            conn.commit()
        try:
            for migration in wanted:
                with conn.begin():
                    if not inspect(conn).has_table("schema_migrations"):
                        conn.exec_driver_sql(
                            "CREATE TABLE schema_migrations (name VARCHAR(200) NOT NULL PRIMARY KEY, "
                            f"applied_at {_TYPES[conn.dialect.name]['float']} NOT NULL)"
                        )
                    done = {row[0] for row in conn.execute(text("SELECT name FROM schema_migrations"))}
                    unknown = done - set(known)
                    if unknown:
                        raise MigrationError(
                            f"the database has migrations this server does not know: {sorted(unknown)}; "
                            "it was used by a newer server"
                        )
                    if migration.name in done:
                        continue
                    migration.apply(conn)
                    conn.execute(
                        text("INSERT INTO schema_migrations (name, applied_at) VALUES (:name, :at)"),
                        {"name": migration.name, "at": clock()},
                    )
                    applied_now.append(migration.name)
        finally:
            if postgres:
                conn.rollback()
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_ADVISORY_KEY})")
                conn.commit()
    return applied_now
