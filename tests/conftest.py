"""Shared fixtures of the local data layer's tests: factories with overrides, on temporary
directories (in the spirit of datasette's `make_app_client` and sqlite-utils' `fresh_db`).
Nothing here holds state between tests; every workspace lives under the test's own `tmp_path`
and is closed at teardown.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from models.errors import StoreError
from models.storage.vault import KdfParams, Vault
from models.workspace import RemoteOp, Workspace

PASSPHRASE = "correct horse battery"


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Should the interpreter crash (a segfault in a C extension), print the crashing thread's
    stack only: CI keeps the end of the output, and with every thread's stack (pytest's default)
    the one that crashed scrolled out of it. A hang still prints every thread (pytest-timeout)."""
    faulthandler.enable(file=os.dup(sys.stderr.fileno()), all_threads=False)
    # the developer's own keystore is never a test's: the app and the CLI find no keystore here (the
    # processes the tests start inherit this too); tests of the keystore pass a backend of their own
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"


def damage_on_disk(db_path: Path, table: str, row_id: str | None = None) -> None:
    """Flip the last bit of a sealed blob in the device's file, as a bad disk or a meddler would:
    the row `row_id` of `table` (a sealed record table), or the one row of `snapshot`."""
    key = "id=?" if row_id is not None else "1"
    args: tuple[str, ...] = (row_id,) if row_id is not None else ()
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        (blob,) = db.execute(f"SELECT sealed FROM {table} WHERE {key}", args).fetchone()
        db.execute(f"UPDATE {table} SET sealed=? WHERE {key}", (blob[:-1] + bytes([blob[-1] ^ 1]), *args))


class FakeClock:
    """A wall clock the test moves by hand: `Workspace(now=clock)`, then `clock.advance(5)`."""

    def __init__(self, start: float = 1_760_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_workspace(tmp_path: Path) -> Iterator[Callable[..., Workspace]]:
    """`make_workspace(name="device", *, init=True, passphrase=..., worker_name="", max_failures=10,
    delay_base=1.0, **overrides)`: a Workspace on `tmp_path/name` with a fast KDF. With `init=False`
    it opens whatever is already in that directory (a restart) and leaves it locked; `overrides`
    go to `Workspace(...)` (`now=`, `pepper=`, `fast_kdf=`)."""
    opened: list[Workspace] = []

    def make(
        name: str = "device",
        *,
        init: bool = True,
        passphrase: str = PASSPHRASE,
        worker_name: str = "",
        max_failures: int = 10,
        delay_base: float = 1.0,
        **overrides: Any,
    ) -> Workspace:
        overrides.setdefault("fast_kdf", True)
        ws = Workspace(tmp_path / name, **overrides)
        opened.append(ws)
        if init:
            ws.init(passphrase, worker_name=worker_name, max_failures=max_failures, delay_base=delay_base)
        return ws

    yield make
    for ws in opened:
        # a workspace whose directory another object wiped may fail to checkpoint: that is fine here
        with contextlib.suppress(sqlite3.Error, StoreError):
            ws.close()


@pytest.fixture
def passphrase() -> str:
    """The passphrase `make_workspace` and `make_vault` use unless told otherwise."""
    return PASSPHRASE


def _share_team_key(src: Workspace, dst: Workspace, epoch: int = 1) -> None:
    assert src.vault is not None and dst.vault is not None
    entry = dst.vault.add_team_key(epoch, src.vault.team_key(epoch))
    with dst.store.atomic():
        dst.store.put_key(f"team:{epoch}", entry)


@pytest.fixture
def share_team_key() -> Callable[..., None]:
    """`share_team_key(src, dst, epoch=1)`: give `dst` the team key of `src` (what enrollment
    does), stored in its keyring so that it survives a restart."""
    return _share_team_key


@pytest.fixture
def make_team(make_workspace: Callable[..., Workspace]) -> Callable[..., list[Workspace]]:
    """`make_team(n=2, **overrides)`: n fresh, unlocked workspaces sharing the first one's team key."""

    def make(n: int = 2, **overrides: Any) -> list[Workspace]:
        team = [make_workspace(f"device{i}", **overrides) for i in range(n)]
        for ws in team[1:]:
            _share_team_key(team[0], ws)
        return team

    return make


def _remote_ops(ws: Workspace, *, after_seq: int = 0) -> list[RemoteOp]:
    return [
        RemoteOp(op_id=op_id, device_id=ws.device_id, device_seq=seq, record_id=rid, key_epoch=epoch, payload=payload)
        for seq, op_id, rid, epoch, payload in ws.store.outbox_all()
        if seq > after_seq
    ]


@pytest.fixture
def remote_ops() -> Callable[..., list[RemoteOp]]:
    """`remote_ops(ws, after_seq=0)`: the outbox of `ws` as another device pulls it from the server."""
    return _remote_ops


@pytest.fixture
def person_data() -> Callable[..., dict[str, Any]]:
    """`person_data(**overrides)`: a valid person form, changed by the overrides."""

    def make(**overrides: Any) -> dict[str, Any]:
        data: dict[str, Any] = {"alias": "Lange Peter", "birth_year": 1971, "category": "street"}
        data.update(overrides)
        return data

    return make


@pytest.fixture
def contact_data() -> Callable[..., dict[str, Any]]:
    """`contact_data(**overrides)`: a valid contact form (anonymous unless `person_id=` is given)."""

    def make(**overrides: Any) -> dict[str, Any]:
        data: dict[str, Any] = {"at": "2025-01-15T21:30:00", "kind": "street", "services": ["food"]}
        data.update(overrides)
        return data

    return make


@pytest.fixture
def make_vault() -> Callable[..., tuple[Vault, dict[str, bytes], KdfParams]]:
    """`make_vault(device_id="dev-a", passphrase=..., pepper=b"")`: a new, unlocked vault with a
    fast KDF, its keyring entries and its KDF parameters."""

    def make(device_id: str = "dev-a", *, passphrase: str = PASSPHRASE, pepper: bytes = b"") -> tuple[
        Vault, dict[str, bytes], KdfParams
    ]:
        params = KdfParams.default(fast=True, pepper=bool(pepper))
        vault = Vault(device_id)
        keyring = vault.create(passphrase, params, pepper)
        return vault, keyring, params

    return make
