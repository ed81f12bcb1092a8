"""Checkpoints (issue 17): what a device sends so that a new device starts from the rows instead of
the whole log, in two tiers (first what a worker needs in the street, then the rest), the meta a
new device needs beside the rows, and adopting a checkpoint's tiers on the new device.

It never writes a checkpoint that is not exactly the fold of the log up to the cursor
(`checkpoint_ready`), and a record this device holds already keeps its own row.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from ..domain.vocab import RecordType
from .loading import Loading
from .outbox import Outbox
from .session import Session
from .values import FUTURE

__all__ = ["Checkpoints"]


class Checkpoints:
    ORDER = (RecordType.PLACE, RecordType.PERSON, RecordType.FOLLOWUP, RecordType.CONTACT, RecordType.AUDIT)
    STREET_DAYS = 30  # contacts this recent go in a checkpoint's first tier, with every person and place

    def __init__(self, session: Session, loading: Loading, outbox: Outbox) -> None:
        self._s = session
        self._loading = loading
        self._outbox = outbox

    def checkpoint_ready(self) -> bool:
        """Whether the rows are exactly the fold of the log up to the cursor: nothing of this
        device's own waits to be sent, nothing pulled waits to be folded, no op waits for its
        time (those would be in the rows without being in the log, or in the log without being
        in the rows)."""
        store = self._s.store
        return store.outbox_count() == 0 and store.inbox_count() == 0 and not store.set_aside_errors(FUTURE)

    def checkpoint_rows(self) -> tuple[bytes, list[tuple[str, str, int, bytes]]]:
        """A checkpoint's two tiers. First what a worker needs in the street (places, persons, open
        follow-ups, and the contacts of the last `STREET_DAYS` days, newest first) as the records'
        merge states, compressed: a third of their sealed rows' bytes on a slow link, and the new
        device seals them itself. Then every other row as stored, (type, id, epoch, sealed)."""
        s = self._s
        store, vault = s.store, s.unlocked_vault()
        since = (datetime.fromtimestamp(s.now()) - timedelta(days=self.STREET_DAYS)).isoformat()
        street: list[list[Any]] = []
        rest: list[tuple[str, str, int, bytes]] = []
        for rtype in self.ORDER:
            rows = list(store.iter_rows(rtype))
            table = s.index.records.get(rtype, {})
            if rtype is RecordType.CONTACT:
                rows = [r for _at, r in sorted(((str((table.get(r[0]) or {}).get("at") or ""), r) for r in rows),
                                               reverse=True)]
            for rid, epoch, blob in rows:
                values = table.get(rid) or {}
                first = rtype in (RecordType.PLACE, RecordType.PERSON) or (
                    rtype is RecordType.FOLLOWUP and not values.get("done")) or (
                    rtype is RecordType.CONTACT and str(values.get("at") or "") >= since)
                if first:
                    street.append([rtype.value, rid, vault.open_row(rtype.value, rid, epoch, blob)])
                else:
                    rest.append((rtype.value, rid, epoch, blob))
        packed = json.dumps(street, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return zlib.compress(packed, 9), rest

    def history_pending(self) -> bool:
        """A first sync took a checkpoint's first tier (usable: persons, places, recent contacts)
        and the older history is still on its way."""
        return bool(self._s.store.sync_state("checkpoint_pending"))

    def checkpoint_meta(self) -> dict[str, Any]:
        """What a device keeps beside its rows that a new device needs: erased ids (a late op of
        one is dropped), the highest sequence seen of each device, the hybrid clock."""
        s = self._s
        seen = {key[5:]: int(value) for key, value in s.store.sync_states("seen:")}
        # this device's own ops are in the log up to what the server acknowledged (a checkpoint is
        # written with nothing left to send): a device starting from it has them too
        seen[s.device_id] = max(seen.get(s.device_id, 0), self._outbox.pushed_through())
        return {"v": 1, "erased": sorted(s.store.erased_ids()), "seen": seen, "hlc": s.clock.last}

    def adopt_checkpoint(self, rows: Iterable[tuple[str, str, int, bytes]], meta: dict[str, Any],
                         values: dict[str, str | int], *, states: bytes | None = None) -> int:
        """Take a checkpoint tier in one transaction with `values` (the cursor and what goes with
        it): its rows as they are, and its records' merge states (`states`, the first tier's,
        sealed here under the current key), then load the index from the rows. A record this
        device holds already (written here before joining, or taken with the first tier) keeps its
        own row; its queued ops merge as usual. Returns the rows stored."""
        s = self._s
        store, vault = s.store, s.unlocked_vault()
        held = set(s.types)
        with store.atomic():
            by_type: dict[RecordType, list[tuple[str, int, bytes]]] = {}
            erased = {str(r) for r in meta.get("erased") or []}
            epoch_now = s.epoch
            for rtype_value, rid, state in json.loads(zlib.decompress(states)) if states else []:
                if rid not in held and rid not in erased:
                    by_type.setdefault(RecordType(rtype_value), []).append(
                        (rid, epoch_now, vault.seal_row(rtype_value, rid, epoch_now, state)))
            for rtype, rid, epoch, blob in rows:
                if rid not in held and rid not in erased:
                    by_type.setdefault(RecordType(rtype), []).append((rid, epoch, blob))
            for rtype, typed in by_type.items():
                store.put_rows(rtype, typed)
            if erased:
                store.mark_erased(sorted(erased), s.now())
            for dev, seq in (meta.get("seen") or {}).items():
                if int(seq) > int(store.sync_state(f"seen:{dev}", "0") or 0):
                    store.set_sync_state(f"seen:{dev}", int(seq))
            s.clock.observe(int(meta.get("hlc") or 0))
            store.set_meta("hlc", s.clock.last)
            for key, value in values.items():
                store.set_sync_state(key, value)
            store.drop_snapshot()
        self._loading.load()
        return sum(len(v) for v in by_type.values())
