"""Schema migrations (`models.storage.migrations`) of the local SQLite file: older files are brought up to
date with their data intact, newer ones are refused, a failing step leaves nothing behind, and
the migrated schema is exactly what `models.domain.tables` declares."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlite_utils
from sqlmodel import SQLModel

import models.domain.tables as tables_mod
import models.storage.migrations as migrations_mod
from models.domain.vocab import RecordType
from models.errors import MigrationError
from models.storage.migrations import MIGRATIONS, applied, migrate
from models.storage.store import Store

LATEST = [name for name, _ in MIGRATIONS]


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)  # what Store uses: explicit transactions


def _build(path: Path, upto: str) -> None:
    conn = _connect(path)
    assert migrate(conn, upto=upto) == LATEST[: LATEST.index(upto) + 1]
    assert applied(conn) == LATEST[: LATEST.index(upto) + 1]
    conn.close()


def _fill_0001(path: Path) -> dict[str, list[tuple]]:
    """Rows in every table of the first step, as a device of that version would have them."""
    rows: dict[str, list[tuple]] = {
        "person": [("p" * 32, 1, b"\x01sealed-person")],
        "contact": [("c" * 32, 1, b"\x01sealed-contact"), ("d" * 32, 2, b"\x01another")],
        "place": [("l" * 32, 1, b"\x01sealed-place")],
        "followup": [("f" * 32, 1, b"\x01sealed-followup")],
        "auditevent": [("e" * 32, 1, b"\x01sealed-audit")],
        "keyring": [("master", b"\x01wrapped", '{"algorithm": "scrypt"}'), ("team:1", b"\x01team", None)],
        "meta": [("device_id", "0123abcd"), ("device_seq", "2")],
        "outbox": [(1, "o" * 32, "p" * 32, 1, b"\x01op1"), (2, "q" * 32, "c" * 32, 1, b"\x01op2")],
        "syncstate": [("cursor", "17")],
        "reviewconflict": [("p" * 32, "status", "person")],
    }
    conn = _connect(path)
    for table, table_rows in rows.items():
        marks = ", ".join("?" * len(table_rows[0]))
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", table_rows)
    conn.close()
    return rows


def _dump(conn: sqlite3.Connection, table: str) -> list[tuple]:
    return sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


# ------------------------------------------------------------------------------ upgrading
def test_a_0001_file_is_migrated_to_the_latest_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _build(path, "0001_initial")
    conn = _connect(path)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='setaside'").fetchone() is None
    conn.close()
    rows = _fill_0001(path)

    store = Store(path)
    try:
        assert applied(store.conn) == LATEST
        for table, expected in rows.items():
            assert _dump(store.conn, table) == sorted(expected, key=repr), table
        # and the store works on it: the tables of later steps are there and usable
        assert store.get_row(RecordType.PERSON, "p" * 32) == (1, b"\x01sealed-person")
        assert store.outbox_count() == 2 and store.meta("device_seq") == "2"
        with store.atomic():
            store.set_aside(("x" * 32, "p" * 32, "dev", 1, 1, b"\x01", "test", 1.0))
            store.mark_erased(["c" * 32], 2.0)
        assert store.erased_ids() == {"c" * 32}
        assert store.get_row(RecordType.CONTACT, "c" * 32) is None
        assert [r[1] for r in store.outbox_all()] == ["o" * 32]  # the erased record's op is gone
    finally:
        store.close()


@pytest.mark.parametrize("upto", LATEST[:-1])
def test_every_older_step_migrates_up(tmp_path: Path, upto: str) -> None:
    path = tmp_path / f"{upto}.db"
    _build(path, upto)
    rows = _fill_0001(path)
    store = Store(path)
    try:
        assert applied(store.conn) == LATEST
        for table, expected in rows.items():
            assert _dump(store.conn, table) == sorted(expected, key=repr)
    finally:
        store.close()


def test_migrate_is_idempotent_and_records_each_step(tmp_path: Path) -> None:
    conn = _connect(tmp_path / "x.db")
    assert migrate(conn) == LATEST
    assert migrate(conn) == []
    recorded = conn.execute("SELECT name, applied_at FROM _migrations ORDER BY name").fetchall()
    assert [r[0] for r in recorded] == LATEST and all(r[1] > 0 for r in recorded)
    conn.close()


def test_a_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    conn = _connect(path)
    migrate(conn)
    conn.execute("INSERT INTO _migrations (name, applied_at) VALUES ('9999_from_the_future', 1.0)")
    conn.close()
    with pytest.raises(MigrationError, match="9999_from_the_future"):
        Store(path)
    conn = _connect(path)
    with pytest.raises(MigrationError):
        migrate(conn)
    assert "9999_from_the_future" in applied(conn)  # refused, not "repaired"
    conn.close()


def test_a_damaged_file_is_a_migration_error(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(MigrationError):
        Store(path)


def test_a_failing_step_leaves_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(db: sqlite_utils.Database) -> None:
        db["half_done"].create({"id": int}, pk="id")
        raise RuntimeError("step failed")

    monkeypatch.setattr(migrations_mod, "MIGRATIONS", [*MIGRATIONS, ("0099_broken", broken)])
    conn = _connect(tmp_path / "x.db")
    with pytest.raises(RuntimeError):
        migrations_mod.migrate(conn)
    assert applied(conn) == LATEST
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='half_done'").fetchone() is None
    assert not conn.in_transaction
    conn.close()


# ----------------------------------------------------------------------- schema vs. models
def _affinity(declared: str) -> str:
    """SQLite's type affinity of a declared column type (https://sqlite.org/datatype3.html 3.1)."""
    t = declared.upper()
    if "INT" in t:
        return "INTEGER"
    if any(k in t for k in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in t or not t:
        return "BLOB"
    if any(k in t for k in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _model_tables() -> dict[str, object]:
    """The tables declared in `models.domain.tables` (SQLModel's metadata may hold others)."""
    declared = {
        obj.__tablename__
        for obj in vars(tables_mod).values()
        if isinstance(obj, type) and issubclass(obj, SQLModel) and hasattr(obj, "__table__")
        and obj.__module__ == tables_mod.__name__
    }
    return {name: table for name, table in SQLModel.metadata.tables.items() if name in declared}


def test_model_tables_cover_the_sealed_and_local_tables() -> None:
    expected = set(tables_mod.SEALED_TABLES.values()) | set(tables_mod.LOCAL_TABLES)
    assert set(_model_tables()) == expected


def test_migrated_schema_is_exactly_the_sqlmodel_metadata(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.db")
    conn = store.conn
    try:
        in_file = {
            r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        } - {"_migrations"}
        model = _model_tables()
        assert in_file == set(model)
        for name, table in model.items():
            info = conn.execute(f"PRAGMA table_info({name})").fetchall()  # cid, name, type, notnull, default, pk
            file_cols = {r[1]: r for r in info}
            cols = {c.name: c for c in table.columns}  # type: ignore[attr-defined]
            assert set(file_cols) == set(cols), name
            file_pk = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
            assert file_pk == [c.name for c in table.primary_key.columns], name  # type: ignore[attr-defined]
            for col_name, col in cols.items():
                r = file_cols[col_name]
                assert _affinity(r[2]) == _affinity(str(col.type)), (name, col_name, r[2], col.type)
                if not col.primary_key:  # SQLite lets a non-INTEGER primary key hold NULL; the models never write one
                    assert bool(r[3]) == (not col.nullable), (name, col_name)

            file_indexes = {}
            for _seq, ix_name, unique, *_ in conn.execute(f"PRAGMA index_list({name})"):
                ix_cols = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({ix_name})"))
                file_indexes[ix_cols] = bool(unique)
            for ix in table.indexes:  # type: ignore[attr-defined]
                assert file_indexes.get(tuple(c.name for c in ix.columns)) == bool(ix.unique), (name, ix.name)
            unique_sets = [tuple(c.name for c in con.columns) for con in table.constraints  # type: ignore[attr-defined]
                           if type(con).__name__ == "UniqueConstraint"]
            unique_sets += [(c.name,) for c in table.columns if c.unique]  # type: ignore[attr-defined]
            for cols_ in unique_sets:
                assert file_indexes.get(cols_) is True, (name, cols_)
    finally:
        store.close()
