"""The server's settings, engines and migrations, on SQLite and (when OUTREACH_TEST_PG_URL is set)
PostgreSQL: old databases migrate up, the result matches `tables.py`, concurrent starts are safe."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from serverproc import pg_schema
from sqlalchemy import inspect, text
from sqlmodel import select

from sync.server import ServerSettings, crud
from sync.server.db import (
    MIGRATIONS,
    Database,
    Migration,
    MigrationError,
    applied_migrations,
    make_engine,
    migrate,
)
from sync.server.keys import ServerKey
from sync.server.tables import Invite, ServerTable, Team

PG_URL = os.environ.get("OUTREACH_TEST_PG_URL")
KEY = ServerKey.generate()
KEY_HEX = os.urandom(32).hex()  # a PostgreSQL server's key is given


def _team(session: Any, name: str = "Unit", lookup: str = "ABCDEFGH") -> Team:
    return crud.create_team(session, name=name, lookup=lookup, secret="S" * 26, key=KEY, ttl_seconds=60, now=1.0)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(make_engine(ServerSettings(db_url=f"sqlite:///{tmp_path / 'server.db'}")))
        yield db
        db.dispose()
        return
    if not PG_URL:
        pytest.skip("OUTREACH_TEST_PG_URL is not set")
    with pg_schema(PG_URL) as url:
        db = Database(make_engine(ServerSettings(db_url=url, server_key=KEY_HEX)))
        yield db
        db.dispose()


def test_old_database_migrates_to_latest(database: Database) -> None:
    assert migrate(database.engine, upto="0001_initial") == ["0001_initial"]
    assert applied_migrations(database.engine) == ["0001_initial"]
    with database.engine.begin() as conn:  # rows as the first server wrote them
        conn.execute(text("INSERT INTO team (id, name, created_at, next_seq, current_epoch) "
                          "VALUES ('t1', 'Unit', 1.0, 1, 1)"))
        conn.execute(text("INSERT INTO invite (lookup_hash, team_id, role, founding, created_at, expires_at) "
                          "VALUES (:hash, 't1', 'worker', :no, 1.0, 2.0)"), {"hash": crud.sha256_hex("ABCDEFGH"),
                                                                              "no": False})
    assert "ix_op_team_record" not in {ix["name"] for ix in inspect(database.engine).get_indexes("op")}
    assert migrate(database.engine) == [m.name for m in MIGRATIONS[1:]]
    assert applied_migrations(database.engine) == [m.name for m in MIGRATIONS]
    assert "ix_op_team_record" in {ix["name"] for ix in inspect(database.engine).get_indexes("op")}
    with database.transaction() as session:  # data from before the migration is still there
        assert crud.get_team(session, team_id="t1").name == "Unit"
        (invite,) = session.exec(select(Invite)).all()
        assert invite.lookup_scheme == "sha256" and invite.founding_seal is None  # the hash it has
    assert migrate(database.engine) == []  # idempotent


def test_migrated_schema_matches_the_table_classes(database: Database) -> None:
    migrate(database.engine)
    inspector = inspect(database.engine)
    for table in ServerTable.metadata.sorted_tables:
        columns = {column["name"]: column for column in inspector.get_columns(table.name)}
        assert set(columns) == {c.name for c in table.columns}, table.name
        for column in table.columns:
            if not column.primary_key:
                assert columns[column.name]["nullable"] == column.nullable, (table.name, column.name)
        indexes = {ix["name"] for ix in inspector.get_indexes(table.name)}
        assert {ix.name for ix in table.indexes} <= indexes, table.name


def test_concurrent_starts_migrate_once(database: Database) -> None:
    errors: list[BaseException] = []
    applied: list[list[str]] = []

    def start() -> None:
        try:
            applied.append(migrate(database.engine))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(name for names in applied for name in names) == sorted(m.name for m in MIGRATIONS)
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM schema_migrations")).scalar_one() == len(MIGRATIONS)


def test_a_newer_database_is_refused(database: Database) -> None:
    future = (*MIGRATIONS, Migration("9999_future", ("CREATE TABLE future_thing (id INTEGER)",)))
    migrate(database.engine, migrations=future)
    with pytest.raises(MigrationError, match="9999_future"):
        migrate(database.engine)
    with pytest.raises(MigrationError):
        migrate(database.engine, upto="0042_nothing")


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    db = Database(make_engine(ServerSettings(db_url=f"sqlite:///{tmp_path / 's.db'}")))
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 5000
    db.dispose()


def test_pool_keeps_a_connection_per_worker_thread(database: Database) -> None:
    # Overflow connections are closed on return and reopened per request: none at all.
    assert database.engine.pool.size() == ServerSettings().pool_size >= 40  # type: ignore[attr-defined]
    assert database.engine.pool._max_overflow == 0  # type: ignore[attr-defined]


def test_sqlite_writers_of_one_process_queue(tmp_path: Path) -> None:
    db = Database(make_engine(ServerSettings(db_url=f"sqlite:///{tmp_path / 'w.db'}")))
    migrate(db.engine)
    done: list[str] = []

    def write(index: int) -> None:
        with db.transaction(write=True) as session:
            _team(session, name=f"T{index}", lookup=f"LOOKUP{index:04d}")
            time.sleep(0.01)  # hold the write lock a little
        done.append(f"T{index}")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, range(48)))
    assert len(done) == 48
    with db.transaction() as session:
        assert len(session.exec(select(Team)).all()) == 48
    db.dispose()


# --- settings -----------------------------------------------------------------------------------


def test_settings_defaults_and_relative_paths(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    settings = ServerSettings()
    assert (settings.host, settings.port, settings.code_ttl_seconds) == ("127.0.0.1", 8700, 24 * 3600)
    assert settings.db_url == f"sqlite:///{tmp_path / 'outreach-server.db'}" and settings.dialect == "sqlite"
    assert ServerSettings(db_url="postgresql+psycopg://u:p@h/db", server_key=KEY_HEX).dialect == "postgresql"


@pytest.mark.parametrize(
    "overrides",
    [
        {"db_url": "mysql://u:p@h/db"},
        {"db_url": "not a url"},
        {"db_url": "sqlite:////no/such/dir/x.db"},
        {"db_url": "postgresql+psycopg://u:p@h"},
        {"port": 0},
        {"ssl_certfile": "/etc/hostname"},
        {"ssl_certfile": "/no/cert.pem", "ssl_keyfile": "/no/key.pem"},
        {"max_body_bytes": 10},
        {"throttle_failures": 0},
        {"unknown_setting": 1},
    ],
)
def test_settings_refuse_bad_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ServerSettings(**overrides)


def test_in_memory_sqlite_for_tests_and_trials() -> None:
    from fastapi.testclient import TestClient

    from sync.server import create_app

    assert ServerSettings(db_url="sqlite:///:memory:").db_url == "sqlite://"
    with TestClient(create_app(ServerSettings(db_url="sqlite://"))) as client:
        assert client.get("/v1/health").json()["database"] == "sqlite"
        db = client.app.state.ctx.db  # type: ignore[attr-defined]
        with db.transaction(write=True) as session:
            _team(session)
        assert applied_migrations(db.engine) == [m.name for m in MIGRATIONS]


def test_settings_are_frozen() -> None:
    settings = ServerSettings(db_url="postgresql+psycopg://u:p@h/db", server_key=KEY_HEX)
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


# --- the server key (issue 15, item 3) ------------------------------------------------------------


def test_a_postgresql_server_needs_its_key() -> None:
    with pytest.raises(ValidationError, match="PostgreSQL server needs its key"):
        ServerSettings(db_url="postgresql+psycopg://u:p@h/db")


@pytest.mark.parametrize(
    "key", ["00" * 32, "ab" * 32, os.urandom(16).hex(), "not hex at all", "0123456789abcdef" * 4],
    ids=["zeros", "repeated", "short", "not-hex", "pattern"],
)
def test_weak_server_keys_are_refused_without_being_shown(key: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ServerSettings(db_url="postgresql+psycopg://u:p@h/db", server_key=key)
    assert key not in str(refused.value)


def test_server_key_file_must_be_private_and_strong(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    path.write_text(os.urandom(32).hex() + "\n")
    path.chmod(0o644)
    with pytest.raises(ValidationError, match="chmod 600"):
        ServerSettings(db_url="postgresql+psycopg://u:p@h/db", server_key_file=path)
    path.chmod(0o600)
    assert ServerSettings(db_url="postgresql+psycopg://u:p@h/db", server_key_file=path).server_key_path == path
    path.write_text("00" * 32)
    with pytest.raises(ValidationError, match="too weak"):
        ServerSettings(db_url="postgresql+psycopg://u:p@h/db", server_key_file=path)
    with pytest.raises(ValidationError, match="no such file|cannot read"):
        ServerSettings(db_url="postgresql+psycopg://u:p@h/db", server_key_file=tmp_path / "missing.key")
    with pytest.raises(ValidationError, match="not both"):
        ServerSettings(db_url="postgresql+psycopg://u:p@h/db", server_key_file=path, server_key=KEY_HEX)


def test_a_sqlite_server_makes_its_key_beside_the_file_once(tmp_path: Path) -> None:
    from sync.server.keys import load_server_key

    settings = ServerSettings(db_url=f"sqlite:///{tmp_path / 'server.db'}")
    path = tmp_path / "server.db.key"
    assert settings.server_key_path == path and not path.exists()
    first = load_server_key(settings)
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_server_key(ServerSettings(db_url=f"sqlite:///{tmp_path / 'server.db'}"))  # a restart
    assert again.lookup_hash("ABCDEFGH") == first.lookup_hash("ABCDEFGH")
    assert [p.name for p in tmp_path.iterdir()] == ["server.db.key"]  # no temporary file left
    path.chmod(0o640)
    with pytest.raises(ValidationError, match="chmod 600"):  # refused at start, not used
        ServerSettings(db_url=f"sqlite:///{tmp_path / 'server.db'}")


def test_forwarded_allow_ips_are_addresses_or_networks() -> None:
    settings = ServerSettings(db_url="sqlite://", forwarded_allow_ips=" 10.0.0.1, fd00::/8 ")
    assert settings.forwarded_allow_ips == "10.0.0.1,fd00::/8"
    assert ServerSettings(db_url="sqlite://").forwarded_allow_ips == "127.0.0.1"  # uvicorn's own default
    with pytest.raises(ValidationError, match="not an address"):
        ServerSettings(db_url="sqlite://", forwarded_allow_ips="proxy.example")


def test_founding_seal_opens_only_under_its_key_and_lookup() -> None:
    other = ServerKey.generate()
    sealed = KEY.seal_founding(b"S" * 26, lookup_hash="a" * 64)
    assert KEY.open_founding(sealed, lookup_hash="a" * 64) == b"S" * 26
    assert KEY.open_founding(sealed, lookup_hash="b" * 64) is None  # moved to another invite
    assert other.open_founding(sealed, lookup_hash="a" * 64) is None
    assert KEY.open_founding(sealed[:-1] + bytes([sealed[-1] ^ 1]), lookup_hash="a" * 64) is None
    assert KEY.seal_founding(b"S" * 26, lookup_hash="a" * 64) != sealed  # a fresh nonce each time
    assert "S" * 26 not in repr(KEY) and b"S" * 26 not in sealed
