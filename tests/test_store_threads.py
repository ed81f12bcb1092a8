"""The store's one connection is shared by the app's threads (screens, sync, the row check after
unlock): one statement at a time, no read into another thread's open transaction, and the long
row check on a connection of its own, which a close of the app's connection cannot pull from
under it (two threads in one sqlite3 connection, or a close during a read, can crash CPython)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import damage_on_disk

from models.domain.vocab import RecordType
from models.errors import VaultLocked
from models.storage.store import Store
from models.workspace import Workspace

PASS = "passphrase-1"


def test_a_read_from_another_thread_never_sees_a_write_that_is_rolled_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "outreach.db")
    written, seen = threading.Event(), []

    def writer() -> None:
        with pytest.raises(RuntimeError), store.atomic():
            store.set_meta("probe", "uncommitted")
            written.set()
            time.sleep(0.3)  # the reader asks meanwhile
            raise RuntimeError("the save fails: everything is rolled back")

    def reader() -> None:
        written.wait(5)
        seen.append(store.meta("probe"))

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == [None]  # it waited for the transaction to end, and nothing was committed
    assert store.meta("probe") is None
    store.close()


def test_sealed_rows_are_read_in_pages_and_a_row_replaced_meanwhile_is_read_in_its_new_state(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "outreach.db")
    with store.atomic():
        store.put_rows(RecordType.PERSON, [(f"p{i:03}", 1, b"old %d" % i) for i in range(25)])
    with store.reader() as reader:
        rows = reader.iter_rows(RecordType.PERSON, size=7)
        first = [next(rows) for _ in range(10)]  # two pages in
        with store.atomic():
            store.put_rows(RecordType.PERSON, [("p002", 1, b"new 2"), ("p020", 1, b"new 20")])
        rest = list(rows)
    got = first + rest
    assert {rid for rid, _e, _b in got} == {f"p{i:03}" for i in range(25)}
    last = {rid: blob for rid, _e, blob in got}  # a row read twice: its newer state comes last
    assert last["p002"] == b"new 2" and last["p020"] == b"new 20"
    assert [blob for rid, _e, blob in got if rid == "p020"] == [b"new 20"]  # replaced before it was read
    assert sorted(store.iter_rows(RecordType.PERSON)) == sorted(
        (rid, 1, b"new 2" if rid == "p002" else b"new 20" if rid == "p020" else b"old %d" % int(rid[1:]))
        for rid in (f"p{i:03}" for i in range(25)))
    store.close()


def test_closing_the_app_during_the_row_check_stops_the_check(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "dev", fast_kdf=True)
    ws.init(PASS)
    for i in range(40):
        ws.add_person({"alias": f"Person {i}"})
    started, outcome = threading.Event(), []

    def check() -> None:
        def busy() -> bool:
            started.set()
            time.sleep(0.01)  # slow enough for the close to land in the middle
            return False
        try:
            outcome.append(ws.find_damaged(pause=1e-6, every=1, busy=busy))
        except VaultLocked as exc:
            outcome.append(exc)

    t = threading.Thread(target=check)
    t.start()
    assert started.wait(5)
    ws.close()  # the app's connection goes while the check still has rows to read
    t.join(10)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], VaultLocked)


def test_the_row_check_finds_a_damaged_row_beside_writes_on_the_app_connection(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "dev", fast_kdf=True)
    ws.init(PASS)
    ids = [ws.add_person({"alias": f"Person {i}"}).id for i in range(30)]
    damage_on_disk(tmp_path / "dev" / "outreach.db", "person", ids[7])
    found: list[list[str]] = []
    t = threading.Thread(target=lambda: found.append(
        [d.record_id for d in ws.find_damaged(pause=0.001, every=2)]))
    t.start()
    for i in range(20):  # the screens keep saving meanwhile
        ws.add_person({"alias": f"Later {i}"})
    t.join(20)
    assert found == [[ids[7]]]
    ws.close()
