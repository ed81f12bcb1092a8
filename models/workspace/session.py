"""The one state the workspace's parts share: the data directory and its injected settings, the
store (opened on first use), the vault while unlocked, the in-memory index, the hybrid clock and
the record types seen. Each part gets this object, never another part's insides.

It holds no rule of its own beyond "the data must exist" and "the vault must be unlocked"; it never
reads or writes a record (that is `writes`).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..domain.clock import HLC
from ..domain.index import Index
from ..domain.vocab import RecordType
from ..errors import TamperedRecord, VaultLocked, VaultMissing
from ..storage.store import DB_NAME, Store
from ..storage.vault import Vault

__all__ = ["Session", "no_gc"]


@dataclass(eq=False)
class Session:
    data_dir: Path
    now: Callable[[], float]  # the wall clock, injectable
    pepper: bytes = b""  # the device keystore's secret
    fast_kdf: bool = False
    guard_offline: bool = False  # no keystore: a passphrase must resist offline guessing
    vault: Vault | None = None
    index: Index = field(default_factory=Index)
    clock: HLC = field(default_factory=HLC)
    on_change: list[Callable[[], None]] = field(default_factory=list)  # e.g. the UI's debounced sync trigger
    damaged: list[TamperedRecord] = field(default_factory=list)  # rows that failed authentication at unlock
    types: dict[str, RecordType] = field(default_factory=dict)  # every record id in the file, tombstones too
    opened: Store | None = None  # the store, once opened

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_NAME

    def exists(self) -> bool:
        return self.db_path.exists()

    @property
    def store(self) -> Store:
        if self.opened is None:
            if not self.exists():
                raise VaultMissing(
                    f"No Outreach data in {self.data_dir}. Run 'outreach init' (or set up this device in the app)."
                )
            self.opened = Store(self.db_path)
        return self.opened

    @property
    def unlocked(self) -> bool:
        return self.vault is not None and self.vault.unlocked

    def unlocked_vault(self) -> Vault:
        if self.vault is None or not self.vault.unlocked:
            raise VaultLocked("The data is locked: unlock it with your PIN or passphrase first.")
        return self.vault

    @property
    def device_id(self) -> str:
        value = self.store.meta("device_id")
        assert value is not None
        return value

    @property
    def epoch(self) -> int:
        return int(self.store.meta("epoch", "1") or 1)


@contextmanager
def no_gc() -> Iterator[None]:
    """Opening many records allocates many small containers; CPython's cyclic collector would
    rescan the growing heap again and again (it doubled load time). Nothing here makes cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
