"""Opening the records into the index at unlock: from the sealed snapshot of the index (and the
rows changed since), or row by row; sealing the snapshot at lock; and the background check of
every row that a snapshot unlock leaves for later (`verify`). The hot path of an unlock: no extra
call in its loops.

It never writes a record, and it never keeps a row that fails its check on the screens: such a row
is reported (`damaged`), not fatal.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from ..domain.clock import HLC
from ..domain.index import Index
from ..domain.merge import plain_of
from ..domain.vocab import RecordType
from ..errors import TamperedRecord, VaultLocked
from ..storage.vault import SealError
from .session import Session, no_gc
from .writes import REQUIRED, Writer

__all__ = ["Loading"]

log = logging.getLogger("outreach.workspace")


class Loading:
    SNAPSHOT_ID = "index"
    FORMAT = 4  # 2: record ids by type, the derived texts and order; 3: in parts; 4: + dirty rows
    CHUNK = 20_000  # records per part: the next part is inflated while one is parsed
    DIRTY_MAX = 1000  # rows changed since the snapshot that a lock leaves to the next unlock
    REFRESH_MAX = 10_000  # rows changed since the snapshot that an unlock opens on top of it
    BUSY_WAIT = 0.1  # seconds between two looks at `busy()` in `find_damaged`

    def __init__(self, session: Session, writer: Writer) -> None:
        self._s = session
        self._w = writer
        self.snapshot_gen = -1  # the change count the stored snapshot was taken at

    def load(self) -> None:
        """Open every sealed row into the index. A damaged row is reported, not fatal."""
        with no_gc():
            self.load_all()
            # the opened records live until lock: keep the cyclic collector from rescanning them.
            # Frozen before the collector is back on: else the allocations counted while it was
            # off start a full collection of the fresh heap at once (0.1 s at 100,000 records).
            gc.freeze()

    def verify(self) -> list[TamperedRecord]:
        """Open every stored row and report the ones that fail their check (they leave the
        screens). Unlocking from the snapshot shows authentic values without reading each row;
        this finds a row damaged since, before anyone edits it. Run it in the background."""
        damaged = self.find_damaged()
        self.drop_damaged(damaged)
        return damaged

    def find_damaged(self, *, pause: float = 0.0, every: int = 500,
                     busy: Callable[[], bool] | None = None) -> list[TamperedRecord]:
        """The read-only half of `verify`: safe to run in a worker thread while the app is used,
        through a connection of its own (`Store.reader()`), a page of rows at a time. With
        `pause`, it sleeps that long after every `every` rows, so that a screen being drawn
        meanwhile is not kept waiting for the interpreter by 100,000 rows being opened; and while
        `busy()` says the user is at work, it waits (in steps of `BUSY_WAIT`). Raises VaultLocked
        when the workspace is locked (or closed) meanwhile."""
        s = self._s
        vault = s.unlocked_vault()
        damaged = []
        n = 0
        with s.store.reader() as reader:
            for rtype in RecordType:
                for rid, epoch, blob in reader.iter_rows(rtype):
                    try:
                        vault.open_row(rtype.value, rid, epoch, blob)
                    except SealError:
                        damaged.append(TamperedRecord(rtype.value, rid))
                    n += 1
                    if n % every:
                        continue
                    if pause:
                        time.sleep(pause)
                    while True:  # at every `every` rows, and at every look at `busy()`
                        if s.vault is not vault:
                            raise VaultLocked("The workspace was locked during the row check.")
                        if busy is None or not busy():
                            break
                        time.sleep(self.BUSY_WAIT)
        return damaged

    def drop_damaged(self, damaged: list[TamperedRecord]) -> None:
        for exc in damaged:
            log.error("%s", exc)
            self._s.index.put(RecordType(exc.kind), exc.record_id, None)
        self._s.damaged = damaged

    def save_snapshot(self) -> None:
        """Seal the index whole, unless the stored snapshot (loaded or written by this session,
        so of this format) is behind by few enough rows for the next unlock to open them: a lock
        must be quick (the phone is going to the background)."""
        s = self._s
        store = s.store
        gen = store.gen()
        if s.damaged:
            return  # damaged rows, which a full load must report again
        if self.snapshot_gen >= 0 and store.snapshot_gen() == self.snapshot_gen and (
                gen == self.snapshot_gen or store.dirty_count() <= self.DIRTY_MAX):
            return
        epoch = s.epoch
        ids_of: dict[str, list[str]] = {t.value: [] for t in RecordType}
        for rid, rtype in s.types.items():
            ids_of[rtype.value].append(rid)
        # parts: a small head first (its inflate is the only one nothing overlaps), the records
        # as (type, [[id, record], ...]) in chunks, the derived texts and order last
        parts: list[Any] = [{"v": self.FORMAT, "g": gen, "t": ids_of}]
        for rtype, table in s.index.records.items():
            items = list(table.items())
            for start in range(0, len(items), self.CHUNK):
                parts.append([rtype.value, items[start:start + self.CHUNK]])
        parts.append(s.index.dump_derived())
        blob = s.unlocked_vault().seal_parts("snapshot", self.SNAPSHOT_ID, epoch, parts)
        with store.atomic():
            if store.gen() == gen:
                store.put_snapshot(gen, epoch, blob)
        self.snapshot_gen = gen

    def load_snapshot(self) -> bool:
        """Load the index from the sealed snapshot, and open the rows changed since it was taken
        (the app was killed, or locked with few changes). False: do a full load."""
        s = self._s
        store = s.store
        found = store.snapshot()
        if found is None:
            return False
        gen, epoch, blob = found
        if gen != store.gen() and store.dirty_count() > self.REFRESH_MAX:
            return False  # so much changed since (a first sync, then a kill) that opening every row is quicker
        try:
            head, *chunks, derived = s.unlocked_vault().open_parts("snapshot", self.SNAPSHOT_ID, epoch, blob)
            if head["g"] != gen or head.get("v") != self.FORMAT:
                return False  # stale, or written by an older version: a full load writes a new one
            types: dict[str, RecordType] = {}
            for t, ids in head["t"].items():
                types.update(dict.fromkeys(ids, RecordType(t)))
            records: dict[RecordType, dict[str, Any]] = {t: {} for t in RecordType}
            for t, pairs in chunks:
                records[RecordType(t)].update(pairs)
            index = Index()
            index.load(records, derived)
        except (SealError, KeyError, ValueError, TypeError):
            log.warning("the sealed snapshot could not be used; opening every record instead")
            return False
        s.types = types
        s.damaged = []
        s.index = index
        self.snapshot_gen = gen
        if store.gen() != gen:  # the app was not locked since (killed): open what changed after
            self.refresh_dirty(store.dirty())
        return True

    def refresh_dirty(self, dirty: list[tuple[str, str]]) -> None:
        """Bring the index loaded from a snapshot up to date with the rows changed since (places
        first: persons' texts hold their usual place's name). A damaged row leaves the screens and
        is reported, as in a full load."""
        s, w = self._s, self._w
        for rid, rtype_value in sorted(dirty, key=lambda d: d[1] != RecordType.PLACE.value):
            rtype = RecordType(rtype_value)
            try:
                state = w.state(rtype, rid)
            except TamperedRecord as exc:
                s.damaged.append(exc)
                log.error("%s", exc)
                s.index.put(rtype, rid, None)
                continue
            if state is None:  # the row is gone
                s.types.pop(rid, None)
                s.index.put(rtype, rid, None)
            else:
                w.index_put(rtype, rid, state)

    def load_all(self) -> None:
        s = self._s
        store = s.store
        s.clock = HLC(int(store.meta("hlc", "0") or 0))
        if self.load_snapshot():
            return
        self.snapshot_gen = -1
        rows: dict[RecordType, dict[str, dict[str, Any]]] = {}
        damaged: list[TamperedRecord] = []
        types: dict[str, RecordType] = {}
        s.damaged = damaged
        s.types = types
        for rtype in RecordType:
            table: dict[str, dict[str, Any]] = {}
            open_row = s.unlocked_vault().open_row
            for rid, epoch, blob in store.iter_rows(rtype):
                try:
                    found = plain_of(open_row(rtype.value, rid, epoch, blob))
                except (SealError, KeyError, IndexError, TypeError, ValueError):
                    exc = TamperedRecord(rtype.value, rid)
                    damaged.append(exc)
                    log.error("%s", exc)
                    continue
                types[rid] = rtype
                if found is not None:
                    values, created, updated = found
                    if any(values.get(f) is None for f in REQUIRED[rtype]):
                        continue
                    values["id"] = rid
                    values["created_at"] = created >> 16 or None
                    values["created_hlc"] = created
                    values["updated_at"] = updated >> 16 or None
                    table[rid] = values
            rows[rtype] = table
        s.index = Index()
        s.index.load(rows)
