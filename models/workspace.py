"""The workspace: the service layer that the CLI, the Flet UI and the sync engine share. It owns
the life of one device's data directory: create, unlock (with throttling and wipe), lock, and every
change of a record, each written as the sealed row plus its outbox op in one transaction; it
applies remote ops through the merge rules and keeps the in-memory index for lists and search.

It must never print, log or raise personal data: errors name fields and ids only. It holds no SQL
(that is `store`) and no cipher code (that is `vault`).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError

from .clock import HLC, hlc_ms
from .errors import (
    InvalidInput,
    KeystoreUnavailable,
    NotFound,
    StoreError,
    TamperedRecord,
    Throttled,
    VaultExists,
    VaultLocked,
    VaultMissing,
    VaultWiped,
    WeakPassphrase,
    WrongPassphrase,
)
from .index import Index
from .merge import ZERO, Op, RecordState, apply_op, new_state, plain_of
from .store import DB_NAME, Store
from .tables import (
    FAMILIES,
    REMOTE,
    REVIEWED_FIELDS,
    SEALED_TABLES,
    AuditEventCreate,
    AuditEventPublic,
    ContactCreate,
    ContactPublic,
    ContactUpdate,
    FollowUpCreate,
    FollowUpPublic,
    FollowUpUpdate,
    PersonCreate,
    PersonPublic,
    PersonUpdate,
    PlaceCreate,
    PlacePublic,
    PlaceUpdate,
)
from .vault import KdfParams, SealError, Vault, fingerprint
from .vocab import AuditAction, RecordType

__all__ = [
    "Workspace",
    "RemoteOp",
    "ApplyResult",
    "ConflictView",
    "SearchResult",
    "validation_error",
    "MIN_PASSPHRASE",
    "Notice",
    "MAX_SKEW_MS",
]

log = logging.getLogger("outreach.workspace")

MIN_PASSPHRASE = 6
MAX_SKEW_MS = 3600 * 1000  # a remote op stamped further ahead of this device's clock waits for its time
_FUTURE = "future:"  # the error prefix of such an op in the set-aside table: "future:<stamp ms>: ..."
PERSON_CANDIDATES = 5000  # matching persons ranked by a search before its list is cut to the limit
# a record without these is not shown (yet): e.g. an edit whose creating op was set aside
_REQUIRED: dict[RecordType, tuple[str, ...]] = {
    RecordType.PERSON: ("alias",), RecordType.CONTACT: ("at",), RecordType.PLACE: ("name",),
    RecordType.FOLLOWUP: ("due",), RecordType.AUDIT: ("at", "action"),
}
_EMPTY: frozenset[str] = frozenset()
M = TypeVar("M", bound=BaseModel)


def validation_error(exc: ValidationError) -> InvalidInput:
    """The first problem of a pydantic error, as InvalidInput naming the field (never the value)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "input"
    return InvalidInput(where, first["msg"])


def _validate(model: type[M], data: Any, *, remote: bool = False) -> M:
    """`remote`: values another device wrote (an op pulled, or stored fields an edit keeps):
    checked against fixed bounds, not this device's clock (`tables.REMOTE`)."""
    made = model.__new__(model)
    try:
        # into an instance made here, as SQLModel's own model_validate does: without one, pydantic
        # calls SQLModel's __init__, which validates a second time and without the context
        model.__pydantic_validator__.validate_python(data, context=REMOTE if remote else None, self_instance=made)
        return made
    except ValidationError as exc:
        raise validation_error(exc) from None


class RemoteOp(NamedTuple):
    """An op as pulled from the server: metadata in the clear, payload sealed. A tuple in the
    inbox's column order: a page of them is inserted as it is."""

    op_id: str
    device_id: str
    device_seq: int
    record_id: str
    key_epoch: int
    payload: bytes


@dataclass
class ApplyResult:
    ops: int = 0  # taken from the inbox
    applied: int = 0
    skipped: int = 0  # own ops, erased records, no change
    set_aside: list[tuple[str, str]] = field(default_factory=list)  # (op id, error)
    erased_late: int = 0  # records of an erased person that arrived late, removed


@dataclass(frozen=True)
class Notice:
    """What this device refused or set aside for a security reason (docs/SECURITY.md). Kinds:
    `key_refused`, `purge_refused`, `erased_edit`, `audit_refused`, `future_op`."""

    at: datetime
    kind: str
    record_id: str | None
    device_id: str | None
    detail: str


@dataclass(frozen=True)
class ConflictView:
    record_type: RecordType
    record_id: str
    field: str
    value_a: Any
    device_a: str
    at_a: datetime
    value_b: Any  # the value shown meanwhile
    device_b: str
    at_b: datetime


@dataclass
class SearchResult:
    persons: list[PersonPublic]
    contacts: list[ContactPublic]
    places: list[PlacePublic]


@dataclass(frozen=True)
class ThrottlePolicy:
    """Wrong passphrases: no wait for the first `free` failures, then `base` seconds doubling
    with each failure (capped), and the data is wiped at `max_failures`."""

    max_failures: int = 10
    free: int = 2
    base: float = 1.0
    cap: float = 300.0

    def delay(self, failures: int) -> float:
        if failures <= self.free:
            return 0.0
        return min(self.cap, self.base * 2 ** (failures - self.free - 1))


def _ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000).replace(microsecond=(ms % 1000) * 1000)


class Workspace:
    """One device's data directory. Create with `init`, open with `unlock`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        fast_kdf: bool = False,
        now: Callable[[], float] = time.time,
        pepper: bytes = b"",
        audit_writes: bool = False,
        guard_offline: bool = False,
    ) -> None:
        """`audit_writes`: creating, editing and deleting a person, contact or follow-up writes
        an audit event too (what the app and the CLI do: the data protection officer's "who
        changed what"; a test or the bench counting ops leaves it off).

        `guard_offline`: without a keystore secret (`pepper`), only a copy of the data file and
        a passphrase stand between an attacker and the records, and the attacker guesses
        offline, without the wrong-try counter: the passphrase must resist that
        (`OFFLINE_GUESSES`). What the app and the CLI ask for on a laptop or in the browser."""
        self.data_dir = Path(data_dir)
        self._guard_offline = guard_offline and not pepper
        self.needs_stronger_passphrase = False  # unlocked with one that would not be accepted today
        self._fast_kdf = fast_kdf
        self._now = now
        self._pepper = pepper
        self._store: Store | None = None
        self.vault: Vault | None = None
        self.index = Index()
        self.clock = HLC()
        self.on_change: list[Callable[[], None]] = []  # e.g. the UI's debounced sync trigger
        self.damaged: list[TamperedRecord] = []  # rows that failed authentication at unlock
        self._types: dict[str, RecordType] = {}  # every record id in the file, tombstones too
        self._touched: set[tuple[RecordType, str]] | None = None
        self._snapshot_gen = -1  # the change count the stored snapshot was taken at
        self._audited = audit_writes  # creates, edits and deletes write their audit event (`unaudited`)
        self._looked_up: dict[str, float] = {}  # person id -> when a look-up of it was last logged

    # ============================================================== lifecycle
    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_NAME

    def exists(self) -> bool:
        return self.db_path.exists()

    @property
    def store(self) -> Store:
        if self._store is None:
            if not self.exists():
                raise VaultMissing(
                    f"No Outreach data in {self.data_dir}. Run 'outreach init' (or set up this device in the app)."
                )
            self._store = Store(self.db_path)
        return self._store

    @property
    def unlocked(self) -> bool:
        return self.vault is not None and self.vault.unlocked

    def _vault(self) -> Vault:
        if self.vault is None or not self.vault.unlocked:
            raise VaultLocked("The data is locked: unlock it with your PIN or passphrase first.")
        return self.vault

    @property
    def device_id(self) -> str:
        value = self.store.meta("device_id")
        assert value is not None
        return value

    def policy(self) -> ThrottlePolicy:
        s = self.store
        return ThrottlePolicy(
            max_failures=int(s.meta("max_failures", "10") or 10),
            base=float(s.meta("delay_base", "1.0") or 1.0),
        )

    def init(
        self,
        passphrase: str,
        *,
        worker_name: str = "",
        max_failures: int = 10,
        delay_base: float = 1.0,
    ) -> str:
        """Create the vault: device key pair and a team key of epoch 1. Returns the device id."""
        if self.exists():
            raise VaultExists(f"There is already Outreach data in {self.data_dir}.")
        check_passphrase(passphrase, offline=self._guard_offline)
        if not 1 <= max_failures <= 100:
            raise InvalidInput("max_failures", "must be between 1 and 100")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        device_id = uuid.uuid4().hex
        params = KdfParams.default(fast=self._fast_kdf).with_pepper(self._pepper)
        vault = Vault(device_id)
        entries = vault.create(passphrase, params, self._pepper)
        tmp = self.data_dir / (DB_NAME + ".creating")
        for p in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            p.unlink(missing_ok=True)
        store = Store(tmp)
        with store.atomic():
            for name, blob in entries.items():
                store.put_key(name, blob, params.to_json() if name == "master" else None)
            store.set_meta("device_id", device_id)
            store.set_meta("epoch", 1)
            store.set_meta("device_seq", 0)
            store.set_meta("hlc", 0)
            store.set_meta("failures", 0)
            store.set_meta("max_failures", max_failures)
            store.set_meta("delay_base", delay_base)
            store.set_meta("created_at", self._now())
            if worker_name:
                store.put_key("secret:worker_name", vault.wrap_secret("secret:worker_name", worker_name.encode()))
        store.close()
        os.replace(tmp, self.db_path)  # the vault appears whole or not at all
        self.vault = vault
        self._load()
        return device_id

    def throttle_wait(self) -> float:
        """Seconds before the next unlock attempt is allowed (0 when it is allowed now)."""
        retry_at = float(self.store.meta("retry_at", "0") or 0)
        return max(0.0, retry_at - self._now())

    def failures(self) -> int:
        return int(self.store.meta("failures", "0") or 0)

    def unlock(self, passphrase: str) -> None:
        store = self.store
        wait = self.throttle_wait()
        if wait > 0:
            raise Throttled(wait)
        params_json = store.kdf_params()
        if params_json is None:
            raise VaultMissing("This data file has no keys; it is damaged.")
        params = KdfParams.from_json(params_json)
        if not params.fits(self._pepper):
            raise KeystoreUnavailable()  # the right passphrase would fail too: never count it
        vault = Vault(self.device_id)
        try:
            vault.unlock(passphrase, params, store.keyring(), self._pepper)
        except SealError:
            failures = self.failures() + 1
            policy = self.policy()
            if failures >= policy.max_failures:
                log.warning("unlock failed %d times: wiping local data", failures)
                self.wipe()
                raise VaultWiped() from None
            delay = policy.delay(failures)
            with store.atomic():
                store.set_meta("failures", failures)
                store.set_meta("retry_at", self._now() + delay)
            raise WrongPassphrase(policy.max_failures - failures, delay) from None
        with store.atomic():
            store.set_meta("failures", 0)
            store.del_meta("retry_at")
        self.vault = vault
        if self._pepper and not params.pepper:  # a keystore is there now: the copy gains its protection
            self._rewrap(passphrase, passphrase)
        self.needs_stronger_passphrase = self._guard_offline and not strong_offline(passphrase)
        self._load()

    @property
    def protection(self) -> str:
        """What protects a copy of the data file: "keystore" (the device's keystore secret and
        the passphrase), "passphrase" (one strong enough for offline guessing), or "pin" (a
        short one only: fine where the wrong-try counter is all an attacker meets)."""
        if self._pepper:
            return "keystore"
        return "passphrase" if self._guard_offline else "pin"

    def lock(self) -> None:
        """Drop the keys and the opened records; first seal the index whole for a fast unlock."""
        if self.unlocked and self._store is not None:
            self._save_snapshot()
        self._forget()

    def _forget(self) -> None:
        if self.vault is not None:
            self.vault.lock()
        self.vault = None
        self.index = Index()
        gc.unfreeze()

    def close(self) -> None:
        self.lock()
        if self._store is not None:
            self._store.close()
            self._store = None

    def wipe(self) -> None:
        """Erase this device's data directory contents (the store's files and anything beside)."""
        self._forget()
        if self._store is not None:
            try:
                self._store.close(checkpoint=False)
            finally:
                self._store = None
        for p in self.data_dir.iterdir() if self.data_dir.exists() else []:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def change_passphrase(self, old: str, new: str) -> None:
        """Re-wraps the master key only; no record is re-encrypted."""
        check_passphrase(new, offline=self._guard_offline)
        self._rewrap(old, new)
        self.needs_stronger_passphrase = False

    def _rewrap(self, old: str, new: str) -> None:
        vault = self._vault()
        store = self.store
        old_params = KdfParams.from_json(store.kdf_params() or "")
        new_params = KdfParams.default(fast=self._fast_kdf).with_pepper(self._pepper)
        try:
            wrapped = vault.rewrap_master(old, new, old_params, new_params, store.keyring()["master"], self._pepper)
        except SealError:
            raise WrongPassphrase(self.policy().max_failures - self.failures()) from None
        with store.atomic():
            store.put_key("master", wrapped, new_params.to_json())

    def fingerprint(self) -> str:
        """This device's public key as a person compares it by eye."""
        return fingerprint(self._vault().public_key)

    def set_authority(self, seed: bytes | None = None) -> None:
        """Hold the team's signing key: `seed` as given (a grant, the recovery code), or a new one."""
        vault = self._vault()
        entry = vault.new_authority() if seed is None else vault.set_authority(seed)
        with self.store.atomic():
            self.store.put_key("authority", entry)

    def now(self) -> float:
        return self._now()

    def ensure_signing_key(self) -> bytes:
        """This device's signing key (made now for a vault of the previous version); its public half."""
        vault = self._vault()
        if not vault.has_signing_key:
            entry = vault.new_signing_key()
            with self.store.atomic():
                self.store.put_key("signing", entry)
        return vault.signing_vk

    def add_notice(self, kind: str, record_id: str | None = None, device_id: str | None = None,
                   detail: str = "") -> None:
        """Note a refusal for the user (ids and kinds only: the table is not sealed)."""
        with self.store.atomic():
            if self.store.add_notice(self._now(), kind, record_id, device_id, detail):
                log.warning("refused (%s): record %s device %s: %s", kind, record_id, device_id, detail)

    def notices(self) -> list[Notice]:
        return [Notice(datetime.fromtimestamp(at), kind, rid, dev, detail)
                for _n, at, kind, rid, dev, detail in self.store.notices()]

    def worker_name(self) -> str:
        blob = self.store.keyring().get("secret:worker_name")
        return self._vault().unwrap_secret("secret:worker_name", blob).decode() if blob else ""

    def set_worker_name(self, name: str) -> None:
        name = name.strip()
        if len(name) > 80:
            raise InvalidInput("worker_name", "at most 80 characters")
        with self.store.atomic():
            self.store.put_key("secret:worker_name", self._vault().wrap_secret("secret:worker_name", name.encode()))

    # ============================================================== loading
    def _open_state(self, rtype: RecordType, rid: str, epoch: int, blob: bytes) -> RecordState:
        try:
            return RecordState.from_json(self._vault().open_row(rtype.value, rid, epoch, blob))
        except (SealError, KeyError, IndexError, TypeError, ValueError):
            raise TamperedRecord(rtype.value, rid) from None

    def _load(self) -> None:
        """Open every sealed row into the index. A damaged row is reported, not fatal."""
        with _no_gc():
            self._load_all()
            # the opened records live until lock: keep the cyclic collector from rescanning them.
            # Frozen before the collector is back on: else the allocations counted while it was
            # off start a full collection of the fresh heap at once (0.1 s at 100,000 records).
            gc.freeze()

    _SNAPSHOT_ID = "index"
    _SNAPSHOT_FORMAT = 4  # 2: record ids by type, the derived texts and order; 3: in parts; 4: + dirty rows
    _SNAPSHOT_CHUNK = 20_000  # records per part: the next part is inflated while one is parsed
    _SNAPSHOT_DIRTY_MAX = 1000  # rows changed since the snapshot that a lock leaves to the next unlock
    _SNAPSHOT_REFRESH_MAX = 10_000  # rows changed since the snapshot that an unlock opens on top of it

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
        vault = self._vault()
        damaged = []
        n = 0
        with self.store.reader() as reader:
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
                        if self.vault is not vault:
                            raise VaultLocked("The workspace was locked during the row check.")
                        if busy is None or not busy():
                            break
                        time.sleep(self.BUSY_WAIT)
        return damaged

    BUSY_WAIT = 0.1  # seconds between two looks at `busy()` in `find_damaged`

    def drop_damaged(self, damaged: list[TamperedRecord]) -> None:
        for exc in damaged:
            log.error("%s", exc)
            self.index.put(RecordType(exc.kind), exc.record_id, None)
        self.damaged = damaged

    def _save_snapshot(self) -> None:
        """Seal the index whole, unless the stored snapshot (loaded or written by this session,
        so of this format) is behind by few enough rows for the next unlock to open them: a lock
        must be quick (the phone is going to the background)."""
        store = self.store
        gen = store.gen()
        if self.damaged:
            return  # damaged rows, which a full load must report again
        if self._snapshot_gen >= 0 and store.snapshot_gen() == self._snapshot_gen and (
                gen == self._snapshot_gen or store.dirty_count() <= self._SNAPSHOT_DIRTY_MAX):
            return
        epoch = self.epoch
        ids_of: dict[str, list[str]] = {t.value: [] for t in RecordType}
        for rid, rtype in self._types.items():
            ids_of[rtype.value].append(rid)
        # parts: a small head first (its inflate is the only one nothing overlaps), the records
        # as (type, [[id, record], ...]) in chunks, the derived texts and order last
        parts: list[Any] = [{"v": self._SNAPSHOT_FORMAT, "g": gen, "t": ids_of}]
        for rtype, table in self.index.records.items():
            items = list(table.items())
            for start in range(0, len(items), self._SNAPSHOT_CHUNK):
                parts.append([rtype.value, items[start:start + self._SNAPSHOT_CHUNK]])
        parts.append(self.index.dump_derived())
        blob = self._vault().seal_parts("snapshot", self._SNAPSHOT_ID, epoch, parts)
        with store.atomic():
            if store.gen() == gen:
                store.put_snapshot(gen, epoch, blob)
        self._snapshot_gen = gen

    def _load_snapshot(self) -> bool:
        """Load the index from the sealed snapshot, and open the rows changed since it was taken
        (the app was killed, or locked with few changes). False: do a full load."""
        store = self.store
        found = store.snapshot()
        if found is None:
            return False
        gen, epoch, blob = found
        if gen != store.gen() and store.dirty_count() > self._SNAPSHOT_REFRESH_MAX:
            return False  # so much changed since (a first sync, then a kill) that opening every row is quicker
        try:
            head, *chunks, derived = self._vault().open_parts("snapshot", self._SNAPSHOT_ID, epoch, blob)
            if head["g"] != gen or head.get("v") != self._SNAPSHOT_FORMAT:
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
        self._types = types
        self.damaged = []
        self.index = index
        self._snapshot_gen = gen
        if store.gen() != gen:  # the app was not locked since (killed): open what changed after
            self._refresh_dirty(store.dirty())
        return True

    def _refresh_dirty(self, dirty: list[tuple[str, str]]) -> None:
        """Bring the index loaded from a snapshot up to date with the rows changed since (places
        first: persons' texts hold their usual place's name). A damaged row leaves the screens and
        is reported, as in a full load."""
        for rid, rtype_value in sorted(dirty, key=lambda d: d[1] != RecordType.PLACE.value):
            rtype = RecordType(rtype_value)
            try:
                state = self._state(rtype, rid)
            except TamperedRecord as exc:
                self.damaged.append(exc)
                log.error("%s", exc)
                self.index.put(rtype, rid, None)
                continue
            if state is None:  # the row is gone
                self._types.pop(rid, None)
                self.index.put(rtype, rid, None)
            else:
                self._index_put(rtype, rid, state)

    def _load_all(self) -> None:
        store = self.store
        self.clock = HLC(int(store.meta("hlc", "0") or 0))
        if self._load_snapshot():
            return
        self._snapshot_gen = -1
        rows: dict[RecordType, dict[str, dict[str, Any]]] = {}
        self.damaged = []
        self._types = {}
        for rtype in RecordType:
            table: dict[str, dict[str, Any]] = {}
            open_row = self._vault().open_row
            for rid, epoch, blob in store.iter_rows(rtype):
                try:
                    found = plain_of(open_row(rtype.value, rid, epoch, blob))
                except (SealError, KeyError, IndexError, TypeError, ValueError):
                    exc = TamperedRecord(rtype.value, rid)
                    self.damaged.append(exc)
                    log.error("%s", exc)
                    continue
                self._types[rid] = rtype
                if found is not None:
                    values, created, updated = found
                    if any(values.get(f) is None for f in _REQUIRED[rtype]):
                        continue
                    values["id"] = rid
                    values["created_at"] = created >> 16 or None
                    values["created_hlc"] = created
                    values["updated_at"] = updated >> 16 or None
                    table[rid] = values
            rows[rtype] = table
        self.index = Index()
        self.index.load(rows)

    @staticmethod
    def _plain(rid: str, state: RecordState) -> dict[str, Any]:
        """The values a screen needs; times as epoch milliseconds (pydantic reads them as UTC)."""
        values = state.plain()
        values["id"] = rid
        values["created_at"] = hlc_ms(state.created[0]) if state.created else None
        values["created_hlc"] = state.created[0] if state.created else 0  # orders writes within a millisecond
        values["updated_at"] = hlc_ms(state.updated[0]) if state.updated != ZERO else None
        return values

    # ============================================================== writing
    @property
    def epoch(self) -> int:
        return int(self.store.meta("epoch", "1") or 1)

    def _state(self, rtype: RecordType, rid: str) -> RecordState | None:
        row = self.store.get_row(rtype, rid)
        return self._open_state(rtype, rid, row[0], row[1]) if row else None

    def _write(self, rtype: RecordType, rid: str, fields: dict[str, Any], *, delete: bool = False,
               must_exist: bool = False) -> dict[str, Any] | None:
        vault = self._vault()
        store = self.store
        reviewed = REVIEWED_FIELDS.get(rtype, _EMPTY)
        with self._transaction():
            assert self._touched is not None
            self._touched.add((rtype, rid))
            state = self._state(rtype, rid)
            if state is None:
                if must_exist:
                    raise NotFound(rtype.value, rid)
                state = new_state(rtype.value)
            elif state.deleted is not None:
                raise NotFound(rtype.value, rid)
            hlc = self.clock.now()
            device_id = vault.device_id
            bases = {f: state.stamp_of(f) for f in fields if f in reviewed}
            op = Op(rtype.value, rid, device_id, hlc, fields, bases, delete)
            apply_op(state, op, reviewed)
            seq = int(store.meta("device_seq", "0") or 0) + 1
            op_id = self._op_prefix() + f"{seq:016x}"
            epoch = self.epoch
            payload = vault.seal_op(rid, epoch, device_id, seq, op_id, encode_op(op))
            store.put_rows(rtype, [(rid, epoch, vault.seal_row(rtype.value, rid, epoch, state.to_json()))])
            store.append_outbox([(seq, op_id, rid, epoch, payload)])
            store.set_meta("device_seq", seq)
            store.set_meta("hlc", self.clock.last)
            if reviewed:
                store.set_conflicts(rtype, rid, sorted({c.field for c in state.conflicts()}))
        self._index_put(rtype, rid, state)
        for hook in self.on_change:
            hook()
        return None if state.deleted else self._plain(rid, state)

    def _op_prefix(self) -> str:
        """Op ids are a random per-device prefix and the device sequence: unique, and in order
        per device, so the server's index takes them at its end instead of on a random page
        (measured: about 2.5x the insert rate of uuid4). They say nothing the server does not
        already see (device and sequence)."""
        return self._device_prefix("op_prefix")

    def _device_prefix(self, key: str) -> str:
        """A random 16-hex-digit prefix made once per device and kept in meta under `key`."""
        prefix = self.store.meta(key)
        if prefix is None:
            prefix = uuid.uuid4().hex[:16]
            self.store.set_meta(key, prefix)
        return prefix

    def _new_id(self) -> str:
        """A new record's id: a random per-device prefix and a per-device counter, 32 hex digits
        like a uuid4's. In order per device, so the server's (team, record) index and this file's
        tables take new records at their end instead of on a random page (uuid4 record ids made
        that index the costliest part of storing a push: 2.6-3.0 s vs 1.2-1.5 s without it for
        101,018 ops). They tell the server nothing it does not see already: which device wrote
        a record's first op, and in what order. Call it inside the record's transaction."""
        store = self.store
        prefix = self._device_prefix("record_prefix")
        n = int(store.meta("record_seq", "0") or 0) + 1
        store.set_meta("record_seq", n)
        return prefix + f"{n:016x}"

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """A store transaction that also keeps the in-memory index true: when the outermost one
        rolls back, every record written inside it is read back from the file into the index."""
        outer = self._touched is None
        if outer:
            self._touched = set()
        try:
            with self.store.atomic():
                yield
        except BaseException:
            if outer and self._touched:
                self._reindex(self._touched)
            raise
        finally:
            if outer:
                self._touched = None

    def _reindex(self, records: Iterable[tuple[RecordType, str]]) -> None:
        for rtype, rid in records:
            state = self._state(rtype, rid)
            self._index_put(rtype, rid, state)

    def _index_put(self, rtype: RecordType, rid: str, state: RecordState | None) -> None:
        """Show a record on the screens, unless it is gone or incomplete (its creating op may have
        been set aside: an edit alone does not make a person)."""
        self._types[rid] = rtype
        if state is None or state.deleted is not None:
            self.index.put(rtype, rid, None)
            return
        values = self._plain(rid, state)
        if any(values.get(f) is None for f in _REQUIRED[rtype]):
            self.index.put(rtype, rid, None)
        else:
            self.index.put(rtype, rid, values)

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Many changes in one transaction (one fsync): a contact with its new person and place,
        imports, the demo generator."""
        hooks, self.on_change = self.on_change, []
        try:
            with self._transaction():
                yield
        finally:
            self.on_change = hooks
        for hook in self.on_change:
            hook()

    @staticmethod
    def _fields(model: BaseModel, *, only_set: bool) -> dict[str, Any]:
        return model.model_dump(mode="json", exclude_unset=only_set)

    # -------------------------------------------------------------------- persons
    def add_person(self, data: PersonCreate | dict[str, Any]) -> PersonPublic:
        person = data if isinstance(data, PersonCreate) else _validate(PersonCreate, data)
        if person.usual_place:
            self._require(RecordType.PLACE, person.usual_place, "usual_place")
        with self._transaction():
            rid = self._new_id()
            values = self._write(RecordType.PERSON, rid, self._fields(person, only_set=False))
            self._audit_write(AuditAction.CREATE, RecordType.PERSON, rid)
        return PersonPublic.model_validate(values)

    def edit_person(self, person_id: str, data: PersonUpdate | dict[str, Any]) -> PersonPublic:
        update = data if isinstance(data, PersonUpdate) else _validate(PersonUpdate, data)
        fields = self._fields(update, only_set=True)
        if fields.get("alias", "") is None:
            raise InvalidInput("alias", "a person needs an alias")
        if fields.get("usual_place"):
            self._require(RecordType.PLACE, fields["usual_place"], "usual_place")
        current = self.get_person(person_id)
        if "status" in fields and fields["status"] != current.status.value and "status_date" not in fields:
            fields["status_date"] = date.today().isoformat()
        if not fields:
            return current
        # validate the merged result, so that an edit cannot make an invalid person
        _validate(PersonCreate, {**current.model_dump(mode="json"), **fields}, remote=True)  # new fields: checked above
        with self._transaction():
            values = self._write(RecordType.PERSON, person_id, fields, must_exist=True)
            self._audit_write(AuditAction.CHANGE, RecordType.PERSON, person_id, fields)
        return PersonPublic.model_validate(values)

    def delete_record(self, rtype: RecordType, rid: str) -> None:
        with self._transaction():
            self._write(rtype, rid, {}, delete=True, must_exist=True)
            self._audit_write(AuditAction.DELETE, rtype, rid)

    # ---------------------------------------------------------------- who did what
    # The log answers "who changed what, and who looked a person up" (GDPR art. 15, the data
    # protection officer's review). Events are ordinary sealed, synced records, so they hold ids,
    # kinds and field names, never a value. A look-up is logged once per shown person per
    # `LOOKUP_QUIET` seconds on a device: typing a search does not log every keystroke again.
    LOOKUP_QUIET = 600.0
    _AUDITED = (RecordType.PERSON, RecordType.CONTACT, RecordType.FOLLOWUP)

    def _audit_write(self, action: AuditAction, rtype: RecordType, rid: str,
                     fields: dict[str, Any] | None = None) -> None:
        if not self._audited or rtype not in self._AUDITED:
            return
        detail = ("fields: " + ", ".join(sorted(fields)))[:400] if fields else None
        self.audit(action, rtype, rid, detail=detail)

    @contextmanager
    def unaudited(self) -> Iterator[None]:
        """Writes that a single audit event of the caller's describes (a merge, a conflict's
        resolution, an import, the demo data) write no event each."""
        before, self._audited = self._audited, False
        try:
            yield
        finally:
            self._audited = before

    def log_lookup(self, person_ids: Iterable[str], how: str) -> int:
        """Log that these persons were shown (a search, a list, a person opened): one event for
        all of them, leaving out those logged in the last `LOOKUP_QUIET` seconds. `how` is a
        short kind ("search", "list", "show"), never the search text. Returns how many were
        logged."""
        now = self._now()
        fresh = [pid for pid in dict.fromkeys(person_ids)
                 if now - self._looked_up.get(pid, float("-inf")) >= self.LOOKUP_QUIET]
        if not fresh:
            return 0
        for start in range(0, len(fresh), self._LOOKUP_IDS):
            part = fresh[start:start + self._LOOKUP_IDS]
            event = AuditEventCreate(
                at=datetime.now().replace(microsecond=0), actor=self.worker_name() or "?", device_id=self.device_id,
                action=AuditAction.READ, target_type=RecordType.PERSON, target_id=part[0] if len(part) == 1 else None,
                target_ids=part if len(part) > 1 else [], detail=f"{how[:40]}: {len(part)} shown",
            )
            with self._transaction():
                self._write(RecordType.AUDIT, self._new_id(), self._fields(event, only_set=False))
        self._looked_up.update(dict.fromkeys(fresh, now))
        return len(fresh)

    _LOOKUP_IDS = 100  # person ids in one look-up event

    def _missing(self, rtype: RecordType, rid: str) -> StoreError:
        """NotFound, or the TamperedRecord of a row that is there but failed its check at unlock."""
        for exc in self.damaged:
            if exc.kind == rtype.value and exc.record_id == rid:
                return TamperedRecord(exc.kind, exc.record_id)
        return NotFound(rtype.value, rid)

    def get_person(self, person_id: str) -> PersonPublic:
        values = self.index.records[RecordType.PERSON].get(person_id)
        if values is None:
            self._vault()
            raise self._missing(RecordType.PERSON, person_id)
        return PersonPublic.model_validate(values)

    def resolve_person_id(self, prefix: str) -> str:
        """A full id from a unique prefix of at least 6 characters (for the CLI)."""
        return self._resolve(RecordType.PERSON, prefix)

    def _resolve(self, rtype: RecordType, prefix: str) -> str:
        prefix = prefix.strip().lower()
        table = self.index.records[rtype]
        if prefix in table:
            return prefix
        if len(prefix) >= 6:
            found = [rid for rid in table if rid.startswith(prefix)]
            if len(found) == 1:
                return found[0]
        raise NotFound(rtype.value, prefix)

    def _require(self, rtype: RecordType, rid: str, field_name: str) -> None:
        if rid not in self.index.records[rtype]:
            raise InvalidInput(field_name, f"no {rtype.value} with id {rid}")

    def persons(
        self,
        *,
        status: str | None = None,
        category: str | None = None,
        not_seen_days: int | None = None,
    ) -> list[PersonPublic]:
        """Persons, most recently met first (never met: by alias, last)."""
        self._vault()
        last = self.index.last_contact
        out = []
        cutoff = None
        if not_seen_days is not None:
            cutoff = datetime.now().timestamp() - not_seen_days * 86400
        for rid, values in self.index.records[RecordType.PERSON].items():
            if status and values.get("status") != status:
                continue
            if category and values.get("category") != category:
                continue
            if cutoff is not None:
                seen = last.get(rid)
                if seen and datetime.fromisoformat(seen).timestamp() >= cutoff:
                    continue
            out.append(values)
        out.sort(key=lambda v: v.get("alias", "").casefold())
        out.sort(key=lambda v: last.get(v["id"], ""), reverse=True)  # stable: ties keep the alias order
        return [PersonPublic.model_validate(v) for v in out]

    def last_contact_at(self, person_id: str) -> datetime | None:
        at = self.index.last_contact.get(person_id)
        return datetime.fromisoformat(at) if at else None

    # ------------------------------------------------------------------- contacts
    def add_contact(self, data: ContactCreate | dict[str, Any]) -> ContactPublic:
        contact = data if isinstance(data, ContactCreate) else _validate(ContactCreate, data)
        if contact.person_id:
            self._require(RecordType.PERSON, contact.person_id, "person_id")
        if contact.place_id:
            self._require(RecordType.PLACE, contact.place_id, "place_id")
        with self._transaction():  # the contact and its follow-up land together or not at all
            rid, fu_id = self._new_id(), self._new_id()
            values = self._write(RecordType.CONTACT, rid, self._fields(contact, only_set=False))
            if contact.follow_up:
                self._write(RecordType.FOLLOWUP, fu_id, FollowUpCreate(
                    due=contact.follow_up, person_id=contact.person_id, contact_id=rid,
                ).model_dump(mode="json"))
            self._audit_write(AuditAction.CREATE, RecordType.CONTACT, rid)
        return ContactPublic.model_validate(values)

    def edit_contact(self, contact_id: str, data: ContactUpdate | dict[str, Any]) -> ContactPublic:
        update = data if isinstance(data, ContactUpdate) else _validate(ContactUpdate, data)
        fields = self._fields(update, only_set=True)
        current = self.get_contact(contact_id)
        _validate(ContactCreate, {**current.model_dump(mode="json"), **fields}, remote=True)
        with self._transaction():
            values = self._write(RecordType.CONTACT, contact_id, fields, must_exist=True)
            self._audit_write(AuditAction.CHANGE, RecordType.CONTACT, contact_id, fields)
        return ContactPublic.model_validate(values)

    def get_contact(self, contact_id: str) -> ContactPublic:
        values = self.index.records[RecordType.CONTACT].get(contact_id)
        if values is None:
            self._vault()
            raise self._missing(RecordType.CONTACT, contact_id)
        return ContactPublic.model_validate(values)

    def contacts(self, *, person_id: str | None = None, limit: int = 50) -> list[ContactPublic]:
        """Most recent first."""
        self._vault()
        table = self.index.records[RecordType.CONTACT]
        return [ContactPublic.model_validate(table[c]) for c in self.index.recent_contacts(limit, person_id)]

    def contacts_on(self, day: date) -> list[ContactPublic]:
        self._vault()
        table = self.index.records[RecordType.CONTACT]
        start = day.isoformat()
        out = []
        for cid in self.index.contacts_since(start):
            values = table[cid]
            if str(values["at"])[:10] == start:
                out.append(ContactPublic.model_validate(values))
        return out

    # --------------------------------------------------------------------- places
    def add_place(self, data: PlaceCreate | dict[str, Any]) -> PlacePublic:
        place = data if isinstance(data, PlaceCreate) else _validate(PlaceCreate, data)
        with self._transaction():
            values = self._write(RecordType.PLACE, self._new_id(), self._fields(place, only_set=False))
        return PlacePublic.model_validate(values)

    def edit_place(self, place_id: str, data: PlaceUpdate | dict[str, Any]) -> PlacePublic:
        update = data if isinstance(data, PlaceUpdate) else _validate(PlaceUpdate, data)
        values = self._write(RecordType.PLACE, place_id, self._fields(update, only_set=True), must_exist=True)
        return PlacePublic.model_validate(values)

    def places(self) -> list[PlacePublic]:
        """Places, most recently used first."""
        self._vault()
        used: dict[str, str] = {}
        for cid in self.index.recent_contacts(2000):
            pid = self.index.records[RecordType.CONTACT][cid].get("place_id")
            if pid and pid not in used:
                used[pid] = cid
        table = self.index.records[RecordType.PLACE]
        order = [p for p in used if p in table] + sorted(
            (p for p in table if p not in used), key=lambda p: str(table[p].get("name", "")).casefold()
        )
        return [PlacePublic.model_validate(table[p]) for p in order]

    def find_place(self, name_or_id: str) -> PlacePublic | None:
        table = self.index.records[RecordType.PLACE]
        if name_or_id in table:
            return PlacePublic.model_validate(table[name_or_id])
        want = name_or_id.strip().casefold()
        for values in table.values():
            if str(values.get("name", "")).casefold() == want:
                return PlacePublic.model_validate(values)
        return None

    # ------------------------------------------------------------------ follow-ups
    def add_follow_up(self, data: FollowUpCreate | dict[str, Any]) -> FollowUpPublic:
        fu = data if isinstance(data, FollowUpCreate) else _validate(FollowUpCreate, data)
        if fu.person_id:
            self._require(RecordType.PERSON, fu.person_id, "person_id")
        with self._transaction():
            rid = self._new_id()
            values = self._write(RecordType.FOLLOWUP, rid, self._fields(fu, only_set=False))
            self._audit_write(AuditAction.CREATE, RecordType.FOLLOWUP, rid)
        return FollowUpPublic.model_validate(values)

    def edit_follow_up(self, fu_id: str, data: FollowUpUpdate | dict[str, Any]) -> FollowUpPublic:
        update = data if isinstance(data, FollowUpUpdate) else _validate(FollowUpUpdate, data)
        fields = self._fields(update, only_set=True)
        with self._transaction():
            values = self._write(RecordType.FOLLOWUP, fu_id, fields, must_exist=True)
            self._audit_write(AuditAction.CHANGE, RecordType.FOLLOWUP, fu_id, fields)
        return FollowUpPublic.model_validate(values)

    def follow_ups(self, *, due_by: date | None = None, include_done: bool = False,
                   person_id: str | None = None) -> list[FollowUpPublic]:
        """Follow-ups by due date (oldest first); `due_by` keeps those due on or before it."""
        self._vault()
        out = []
        for values in self.index.records[RecordType.FOLLOWUP].values():
            if not include_done and values.get("done"):
                continue
            if person_id and values.get("person_id") != person_id:
                continue
            if due_by and str(values["due"]) > due_by.isoformat():
                continue
            out.append(values)
        out.sort(key=lambda v: (str(v["due"]), v["id"]))
        return [FollowUpPublic.model_validate(v) for v in out]

    # ----------------------------------------------------------------------- audit
    def audit(self, action: AuditAction, target_type: RecordType | None = None, target_id: str | None = None,
              detail: str | None = None) -> None:
        event = AuditEventCreate(
            at=datetime.now().replace(microsecond=0), actor=self.worker_name() or "?", device_id=self.device_id,
            action=action, target_type=target_type, target_id=target_id, detail=detail,
        )
        with self._transaction():
            self._write(RecordType.AUDIT, self._new_id(), self._fields(event, only_set=False))

    def audit_events(self) -> list[AuditEventPublic]:
        self._vault()
        table = self.index.records[RecordType.AUDIT]
        # newest first; within one second (`at` has no finer grain) by the write's clock
        ordered = sorted(table.values(), key=lambda v: v.get("created_hlc") or 0, reverse=True)
        return sorted((AuditEventPublic.model_validate(v) for v in ordered), key=lambda e: e.at, reverse=True)

    # ---------------------------------------------------------------------- search
    def search(self, text: str, *, limit: int = 50) -> SearchResult:
        """Persons (by alias, name, description, usual place, or a note of one of their contacts),
        contacts by note, places by name or zone."""
        self._vault()
        words = text.split()
        recs = self.index.records
        contact_ids = self.index.text[RecordType.CONTACT].search(words, limit)
        place_ids = self.index.text[RecordType.PLACE].search(words, limit)
        # every matching person is ranked before the list is cut: stopping at `limit` matches in
        # the index's own order would drop the person met yesterday for eight met years ago
        person_ids = self.index.text[RecordType.PERSON].search(words, max(limit, PERSON_CANDIDATES))
        for cid in contact_ids:
            pid = recs[RecordType.CONTACT][cid].get("person_id")
            if pid and pid in recs[RecordType.PERSON] and pid not in person_ids:
                person_ids.append(pid)
        first = words[0].casefold() if words else ""
        last = self.index.last_contact
        persons = recs[RecordType.PERSON]
        # alias prefix matches first, then most recently met, then never met; ties by alias and id,
        # so that the same data gives the same list on every device and after every unlock
        person_ids.sort(key=lambda p: (str(persons[p].get("alias", "")).casefold(), p))
        person_ids.sort(key=lambda p: last.get(p, ""), reverse=True)
        person_ids.sort(key=lambda p: not str(persons[p].get("alias", "")).casefold().startswith(first))
        del person_ids[limit:]
        return SearchResult(
            persons=[PersonPublic.model_validate(recs[RecordType.PERSON][p]) for p in person_ids],
            contacts=sorted((ContactPublic.model_validate(recs[RecordType.CONTACT][c]) for c in contact_ids),
                            key=lambda c: c.at, reverse=True),
            places=[PlacePublic.model_validate(recs[RecordType.PLACE][p]) for p in place_ids],
        )

    # ------------------------------------------------------------------- conflicts
    def conflicts(self) -> list[ConflictView]:
        out = []
        for rtype_s, rid, _field in self.store.conflicts():
            rtype = RecordType(rtype_s)
            state = self._state(rtype, rid)
            if state is None:
                continue
            for c in state.conflicts():
                if c.field != _field:
                    continue
                out.append(ConflictView(rtype, rid, c.field, c.a.value, c.a.stamp[1], _ms_to_dt(hlc_ms(c.a.stamp[0])),
                                        c.b.value, c.b.stamp[1], _ms_to_dt(hlc_ms(c.b.stamp[0]))))
        return out

    def resolve_conflict(self, record_type: RecordType, record_id: str, field_name: str, value: Any) -> None:
        """Settle a conflict with a chosen or new value: a normal change whose base covers both."""
        _cls, update_cls, _pub = FAMILIES[record_type]
        assert update_cls is not None
        checked = _validate(update_cls, {field_name: value})
        fields = checked.model_dump(mode="json", include={field_name})
        self._write(record_type, record_id, fields, must_exist=True)

    # ======================================================================= sync
    def setting(self, key: str, default: str | None = None) -> str | None:
        """Non-personal device state (server URL, team id, role, ...)."""
        return self.store.meta(key, default)

    def set_settings(self, **values: str | int | float | None) -> None:
        with self.store.atomic():
            for key, value in values.items():
                if value is None:
                    self.store.del_meta(key)
                else:
                    self.store.set_meta(key, value)

    def secret(self, name: str) -> bytes | None:
        """A small secret kept wrapped by the master key (device token, invite secrets, ...)."""
        blob = self.store.keyring().get(f"secret:{name}")
        return self._vault().unwrap_secret(f"secret:{name}", blob) if blob else None

    def secret_names(self, prefix: str) -> list[str]:
        """The names (without `secret:`) of the small secrets that start with `prefix`."""
        return sorted(name[len("secret:"):] for name in self.store.keyring() if name.startswith(f"secret:{prefix}"))

    def set_secret(self, name: str, value: bytes | None) -> None:
        with self.store.atomic():
            if value is None:
                self.store.delete_keys(f"secret:{name}")
            else:
                self.store.put_key(f"secret:{name}", self._vault().wrap_secret(f"secret:{name}", value))

    def sync_value(self, key: str, default: str | None = None) -> str | None:
        return self.store.sync_state(key, default)

    def set_sync_values(self, **values: str | int | float) -> None:
        with self.store.atomic():
            for key, value in values.items():
                self.store.set_sync_state(key, value)

    def adopt_team_keys(self, keys: dict[int, bytes], current_epoch: int) -> None:
        """Join a team: its keys replace this device's own, and everything written before joining
        (rows and queued ops) is re-sealed under the team key of `current_epoch`. Nothing is lost."""
        vault = self._vault()
        store = self.store
        with store.atomic():
            states = {rtype: [(rid, self._open_state(rtype, rid, e, b)) for rid, e, b in store.iter_rows(rtype)]
                      for rtype in RecordType}
            queued = [(seq, op_id, rid, vault.open_op(rid, e, vault.device_id, seq, op_id, payload))
                      for seq, op_id, rid, e, payload in store.outbox_all()]
            old = vault.replace_team_keys(keys)
            try:
                store.delete_keys("team:")
                for epoch, key in keys.items():
                    store.put_key(f"team:{epoch}", vault.wrap_secret(f"team:{epoch}", key))
                store.set_meta("epoch", current_epoch)
                for rtype, items in states.items():
                    store.put_rows(rtype, [(rid, current_epoch, vault.seal_row(rtype.value, rid, current_epoch,
                                                                               st.to_json())) for rid, st in items])
                for seq, op_id, rid, body in queued:
                    store.replace_outbox_payload(seq, current_epoch, vault.seal_op(
                        rid, current_epoch, vault.device_id, seq, op_id, body))
                store.drop_snapshot()  # sealed under the device's own key: the next lock seals a new one
            except BaseException:
                vault.replace_team_keys(old)
                raise

    def add_epoch_key(self, epoch: int, key: bytes) -> None:
        """Keep a team key epoch; a newer epoch becomes current and queued ops move to it."""
        vault = self._vault()
        store = self.store
        if epoch in vault.epochs and vault.team_key(epoch) != key:
            raise ValueError("never overwrite a held team key: every row of its epoch would be lost")
        with store.atomic():
            store.put_key(f"team:{epoch}", vault.add_team_key(epoch, key))
            if epoch > self.epoch:
                store.set_meta("epoch", epoch)
                for seq, op_id, rid, e, payload in store.outbox_all():
                    body = vault.open_op(rid, e, vault.device_id, seq, op_id, payload)
                    store.replace_outbox_payload(seq, epoch, vault.seal_op(rid, epoch, vault.device_id, seq, op_id, body))

    def has_epoch(self, epoch: int) -> bool:
        return epoch in self._vault().epochs

    def erase_local(self, record_ids: Iterable[str]) -> None:
        ids = list(record_ids)
        with self.store.atomic():
            self.store.mark_erased(ids, self._now())
        self._unindex(ids)

    def _unindex(self, record_ids: Iterable[str]) -> None:
        """Take erased records off the screens, whatever their type."""
        for rid in record_ids:
            for rtype in RecordType:
                if rid in self.index.records[rtype]:
                    self.index.put(rtype, rid, None)

    def person_record_ids(self, person_id: str) -> list[str]:
        """The person, every record that names them (contacts, follow-ups) and the persons merged
        into them (whose tombstones still hold what they were)."""
        self._vault()
        index = self.index
        ids = [person_id, *sorted(index.contacts_of.get(person_id, ()))]
        ids += [fid for fid, f in index.records[RecordType.FOLLOWUP].items() if f.get("person_id") == person_id]
        ids += sorted(d for d in index.merged if index.person_of(d) == person_id)
        return ids

    def outbox_batch(self, max_ops: int, max_bytes: int, after_seq: int = 0) -> list[tuple[int, str, str, int, bytes]]:
        return self.store.outbox_batch(max_ops, max_bytes, after_seq)

    def outbox_count(self) -> int:
        return self.store.outbox_count()

    def pending_changes(self) -> int:
        """The worker's own changes waiting to be sent: the queue without the audit log's
        events (a person looked up is logged, but it is not a change to count)."""
        return self.store.outbox_count(without=SEALED_TABLES[RecordType.AUDIT])

    def set_aside_outgoing(self, device_seq: int, error: str) -> None:
        """An op of ours that the server will never take: keep it aside with the error (it stays
        applied here) so that the rest of the queue goes on."""
        store = self.store
        with store.atomic():
            for seq, op_id, rid, epoch, payload in store.outbox_all():
                if seq == device_seq:
                    store.set_aside((op_id, rid, self.device_id, seq, epoch, payload, error, self._now()))
                    store.drop_outbox_seq(seq)
                    return

    def set_aside_ops(self) -> list[tuple[str, str, str]]:
        """(op id, record id, error) of every op set aside, oldest first."""
        return [(r[0], r[1], r[6]) for r in self.store.set_aside_rows()]

    def ack(self, through_seq: int) -> None:
        """Drop the ops the server has stored, and note how far: the next push accounts for this
        device's sequence from there (`pushed_through`). Not worth an fsync: should a power cut
        undo it, those ops are pushed again and acknowledged as duplicates."""
        with self.store.atomic(durable=False):
            self.store.ack_outbox(through_seq)
            if through_seq > self.pushed_through():
                self.store.set_sync_state("pushed_through", through_seq)

    def resend_lost(self, held_through: int) -> tuple[int, int]:
        """The server holds this device's sequence only up to `held_through`, below what it
        acknowledged (it was restored from an older backup): queue the acknowledged ops after it
        again, as they were (same ids, same sequence numbers), and account for the sequence from
        there. Returns (ops queued again, sequences lost for good: acknowledged longer ago than
        `Store.SENT_KEEP`, or before this version kept them)."""
        store = self.store
        with store.atomic():
            acked = self.pushed_through()
            if held_through >= acked:
                return 0, 0
            n, low = store.resend(held_through)
            store.set_sync_state("pushed_through", held_through)
            vault, epoch = self._vault(), self.epoch
            for seq, op_id, rid, e, payload in store.outbox_all():
                if e < epoch:  # sent before a key rotation: the server takes the current epoch only
                    body = vault.open_op(rid, e, vault.device_id, seq, op_id, payload)
                    store.replace_outbox_payload(seq, epoch, vault.seal_op(rid, epoch, vault.device_id, seq, op_id,
                                                                          body))
        lost = (low or acked + 1) - held_through - 1
        log.warning("the server lost changes %d-%d of this device: %d sent again, %d gone for good",
                    held_through + 1, acked, n, lost)
        return n, lost

    def pushed_through(self) -> int:
        """The highest sequence of this device the server acknowledged (0: none yet)."""
        return int(self.store.sync_state("pushed_through", "0") or 0)

    def erased_ids(self) -> set[str]:
        """Ids of the records erased here (their ids only are kept)."""
        return self.store.erased_ids()

    FOLD_OPS = 1000  # pulled ops folded into the rows per transaction

    def receive(self, ops: Iterable[RemoteOp], *, purges: Iterable[str] = (), refused_purges: Iterable[str] = (),
                refused_ops: Iterable[tuple[RemoteOp, str, str]] = (),
                cursor: tuple[str, int] | None = None, values: dict[str, str | int] | None = None) -> int:
        """Store a pulled page in the inbox as it came (sealed), with the page's purges and its
        cursor, in one transaction. Nothing is opened here: the device is done with the network
        as soon as its pages are stored, and `fold` applies them. Returns the ops stored (our own
        come back from the server too and are dropped).

        Not worth an fsync: a power cut can only undo whole pages together with their cursor,
        and those pages are pulled again.

        `purges` are erasures the coordinator signed: queued edits of those records are set aside
        with a notice (their content goes: the erasure is the coordinator's decision); each of
        `refused_purges` (not signed) erases nothing and becomes a notice; each of `refused_ops`
        (op, notice kind, reason: not written by the device it names) is set aside and noted.
        The highest sequence seen of each device is kept (`seen:<device id>`)."""
        vault = self._vault()
        store = self.store
        me = vault.device_id
        rows = [o for o in ops if o.device_id != me]
        purge_ids = list(purges)
        late = self._dependents(purge_ids)
        now = self._now()
        with store.atomic(durable=False):
            for rid in refused_purges:
                store.add_notice(now, "purge_refused", rid, None, "an erasure the coordinator did not sign")
            if purge_ids:
                for seq, rid in store.outbox_records([*purge_ids, *late]):
                    store.add_notice(now, "erased_edit", rid, me,
                                     f"change {seq} of this device was not kept: the record was erased")
                store.mark_erased(purge_ids, now)  # also from the inbox
                self._erase_late(late, now)
            store.inbox_put(rows)
            for op, kind, reason in refused_ops:
                store.set_aside((op.op_id, op.record_id, op.device_id, op.device_seq, op.key_epoch, op.payload,
                                 reason, now))
                store.add_notice(now, kind, op.record_id, op.device_id, reason)
            highest: dict[str, int] = {}
            for op in rows:
                highest[op.device_id] = max(highest.get(op.device_id, 0), op.device_seq)
            for dev, seq in highest.items():
                if seq > int(store.sync_state(f"seen:{dev}", "0") or 0):
                    store.set_sync_state(f"seen:{dev}", seq)
            if cursor is not None:
                store.set_sync_state(cursor[0], cursor[1])
            for key, value in (values or {}).items():  # what goes with the cursor (`gaps`)
                store.set_sync_state(key, value)
        self._unindex([*purge_ids, *late])
        return len(rows)

    def inbox_count(self) -> int:
        """Pulled ops not yet folded into the rows."""
        return self.store.inbox_count()

    # ============================================================== checkpoints (issue 17)
    _CHECKPOINT_ORDER = (RecordType.PLACE, RecordType.PERSON, RecordType.FOLLOWUP, RecordType.CONTACT,
                         RecordType.AUDIT)

    def checkpoint_ready(self) -> bool:
        """Whether the rows are exactly the fold of the log up to the cursor: nothing of this
        device's own waits to be sent, nothing pulled waits to be folded, no op waits for its
        time (those would be in the rows without being in the log, or in the log without being
        in the rows)."""
        return (self.store.outbox_count() == 0 and self.store.inbox_count() == 0
                and not self.store.set_aside_errors(_FUTURE))

    STREET_DAYS = 30  # contacts this recent go in a checkpoint's first tier, with every person and place

    def checkpoint_rows(self) -> tuple[bytes, list[tuple[str, str, int, bytes]]]:
        """A checkpoint's two tiers. First what a worker needs in the street (places, persons, open
        follow-ups, and the contacts of the last `STREET_DAYS` days, newest first) as the records'
        merge states, compressed: a third of their sealed rows' bytes on a slow link, and the new
        device seals them itself. Then every other row as stored, (type, id, epoch, sealed)."""
        store, vault = self.store, self._vault()
        since = (datetime.fromtimestamp(self._now()) - timedelta(days=self.STREET_DAYS)).isoformat()
        street: list[list[Any]] = []
        rest: list[tuple[str, str, int, bytes]] = []
        for rtype in self._CHECKPOINT_ORDER:
            rows = list(store.iter_rows(rtype))
            table = self.index.records.get(rtype, {})
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
        return bool(self.store.sync_state("checkpoint_pending"))

    def checkpoint_meta(self) -> dict[str, Any]:
        """What a device keeps beside its rows that a new device needs: erased ids (a late op of
        one is dropped), the highest sequence seen of each device, the hybrid clock."""
        seen = {key[5:]: int(value) for key, value in self.store.sync_states("seen:")}
        # this device's own ops are in the log up to what the server acknowledged (a checkpoint is
        # written with nothing left to send): a device starting from it has them too
        seen[self.device_id] = max(seen.get(self.device_id, 0), self.pushed_through())
        return {"v": 1, "erased": sorted(self.store.erased_ids()), "seen": seen, "hlc": self.clock.last}

    def adopt_checkpoint(self, rows: Iterable[tuple[str, str, int, bytes]], meta: dict[str, Any],
                         values: dict[str, str | int], *, states: bytes | None = None) -> int:
        """Take a checkpoint tier in one transaction with `values` (the cursor and what goes with
        it): its rows as they are, and its records' merge states (`states`, the first tier's,
        sealed here under the current key), then load the index from the rows. A record this
        device holds already (written here before joining, or taken with the first tier) keeps its
        own row; its queued ops merge as usual. Returns the rows stored."""
        store, vault = self.store, self._vault()
        held = set(self._types)
        with store.atomic():
            by_type: dict[RecordType, list[tuple[str, int, bytes]]] = {}
            erased = {str(r) for r in meta.get("erased") or []}
            epoch_now = self.epoch
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
                store.mark_erased(sorted(erased), self._now())
            for dev, seq in (meta.get("seen") or {}).items():
                if int(seq) > int(store.sync_state(f"seen:{dev}", "0") or 0):
                    store.set_sync_state(f"seen:{dev}", int(seq))
            self.clock.observe(int(meta.get("hlc") or 0))
            store.set_meta("hlc", self.clock.last)
            for key, value in values.items():
                store.set_sync_state(key, value)
            store.drop_snapshot()
        self._load()
        return sum(len(v) for v in by_type.values())

    def fold(self, max_ops: int | None = None) -> ApplyResult:
        """Fold the oldest pulled ops (at most `max_ops`) into the rows through the merge, and
        drop them from the inbox, in one transaction. An op that cannot be opened or makes no
        sense is set aside with its error; the rest goes on. `ApplyResult.ops` is 0 when the
        inbox is empty."""
        vault = self._vault()
        store = self.store
        result = ApplyResult()
        with _no_gc(), store.atomic():
            batch = store.inbox_batch(max_ops or self.FOLD_OPS)
            if not batch:
                return result
            result.ops = len(batch)
            erased = store.erased_ids()
            states: dict[str, tuple[RecordType, RecordState]] = {}
            for _n, op_id, device_id, device_seq, record_id, key_epoch, payload in batch:
                rop = RemoteOp(op_id, device_id, device_seq, record_id, key_epoch, payload)
                if record_id in erased:
                    result.skipped += 1
                    continue
                try:
                    op = self._open_remote(rop)
                    rtype = RecordType(op.record_type)
                    if record_id in states:
                        have_type, state = states[record_id]
                    elif record_id in self._types:
                        have_type = self._types[record_id]
                        state = self._state(have_type, record_id) or new_state(have_type.value)
                    else:
                        have_type, state = rtype, new_state(rtype.value)
                    if have_type is not rtype:
                        raise TamperedRecord(rtype.value, record_id)
                except (StoreError, SealError, ValueError, KeyError, TypeError) as exc:
                    error = str(exc) if isinstance(exc, StoreError) else f"cannot apply op: {type(exc).__name__}"
                    store.set_aside((op_id, record_id, device_id, device_seq, key_epoch, payload, error, self._now()))
                    result.set_aside.append((op_id, error))
                    continue
                refusal = self._refusal(rtype, rop, op, record_id in states or record_id in self._types)
                if refusal is not None:
                    kind, error, detail = refusal
                    store.set_aside((op_id, record_id, device_id, device_seq, key_epoch, payload, error, self._now()))
                    store.add_notice(self._now(), kind, record_id, device_id, detail)
                    result.set_aside.append((op_id, error))
                    continue
                self.clock.observe(op.hlc)
                if apply_op(state, op, REVIEWED_FIELDS.get(rtype, _EMPTY)):
                    result.applied += 1
                else:
                    result.skipped += 1
                states[record_id] = (rtype, state)
            late = {rid: pid for rid, (rtype, state) in states.items()
                    if (pid := self._erased_reference(rtype, state, erased)) is not None}
            if late:  # records of an erased person that arrived after the erasure: they go too
                for rid in late:
                    del states[rid]
                result.erased_late = len(late)
                self._erase_late(late, self._now())
            epoch = self.epoch
            by_type: dict[RecordType, list[tuple[str, int, bytes]]] = {}
            for rid, (rtype, state) in states.items():
                by_type.setdefault(rtype, []).append((rid, epoch, vault.seal_row(rtype.value, rid, epoch, state.to_json())))
                if rtype in REVIEWED_FIELDS:
                    store.set_conflicts(rtype, rid, sorted({c.field for c in state.conflicts()}))
            for rtype, rows in by_type.items():
                store.put_rows(rtype, rows)
            store.set_meta("hlc", self.clock.last)
            store.inbox_drop_through(batch[-1][0])
        # places first: persons' texts include their usual place's name
        for rid, (rtype, state) in sorted(states.items(), key=lambda kv: kv[1][0] is not RecordType.PLACE):
            self._index_put(rtype, rid, state)
        if late:
            self._unindex(late)
        return result

    # ------------------------------------------------------------ erasure holds
    # An erased person's contacts and follow-ups that a device did not know when the coordinator
    # erased them (written offline, or pulled later) must not live on: they are dropped wherever
    # they arrive, whichever came first, the record or the erasure, and listed for the
    # coordinator's device to purge on the server in turn (`late_erased`).
    _LATE = "late_erased"

    def _erased_reference(self, rtype: RecordType, state: RecordState, erased: set[str]) -> str | None:
        """The erased person a contact or follow-up names (itself, or through a merge), if any."""
        if rtype not in (RecordType.CONTACT, RecordType.FOLLOWUP) or state.deleted is not None:
            return None
        entry = state.values.get("person_id")
        pid = entry[0] if entry else None
        seen: set[str] = set()
        merged = self.index.merged
        while isinstance(pid, str) and pid not in seen:
            if pid in erased:
                return pid
            seen.add(pid)
            pid = merged.get(pid)
        return None

    def _dependents(self, person_ids: list[str]) -> dict[str, str]:
        """Contacts and follow-ups on the screens that name one of these persons (record id ->
        person id): what an erasure of them takes along."""
        if not person_ids:
            return {}
        wanted = set(person_ids)
        out = {cid: pid for pid in person_ids for cid in self.index.contacts_of.get(pid, ())}
        for fid, fu in self.index.records[RecordType.FOLLOWUP].items():
            if fu.get("person_id") in wanted:
                out[fid] = str(fu["person_id"])
        return out

    def _erase_late(self, late: dict[str, str], now: float) -> None:
        """Erase records of erased persons here and list them for a purge on the server (in the
        caller's transaction)."""
        if not late:
            return
        store = self.store
        store.mark_erased(list(late), now)
        pending = json.loads(store.sync_state(self._LATE, "{}") or "{}")
        pending.update(late)
        store.set_sync_state(self._LATE, json.dumps(pending, sort_keys=True))
        for rid in late:
            self._types.pop(rid, None)
            store.add_notice(now, "erased_late", rid, None,
                             "a record of an erased person arrived after the erasure and was removed")

    def late_erased(self) -> dict[str, str]:
        """Records removed here because they belong to an erased person (record id -> person id),
        not yet purged on the server: the coordinator's device purges them (`forget_late_erased`
        after)."""
        return dict(json.loads(self.store.sync_state(self._LATE, "{}") or "{}"))

    def forget_late_erased(self, record_ids: Iterable[str]) -> None:
        done = set(record_ids)
        with self.store.atomic():
            pending = {r: p for r, p in self.late_erased().items() if r not in done}
            self.store.set_sync_state(self._LATE, json.dumps(pending, sort_keys=True))

    def _refusal(self, rtype: RecordType, rop: RemoteOp, op: Op, exists: bool) -> tuple[str, str, str] | None:
        """Why an authentic op must not be applied, if it must not: (notice kind, set-aside error,
        notice detail). An op stamped far ahead of this device's clock would win every field for
        ever (it waits for its time instead); an audit event is written once, by the device it
        names, and never changed."""
        stamp_ms = hlc_ms(op.hlc)
        if stamp_ms > self._now() * 1000 + MAX_SKEW_MS:
            return ("future_op", f"{_FUTURE}{stamp_ms}: stamped more than an hour ahead of this device's clock",
                    "stamped more than an hour ahead of this device's clock; applied when its time comes")
        if rtype is RecordType.AUDIT:
            if exists or op.delete:
                return "audit_refused", "an audit event cannot be changed", "an audit event cannot be changed"
            if op.fields.get("device_id") != rop.device_id:
                return ("audit_refused", "an audit event in another device's name",
                        "an audit event in another device's name")
        return None

    def requeue_due(self) -> int:
        """Put ops set aside for a stamp in the future whose time has come back in the inbox."""
        now_ms = self._now() * 1000
        due = [op_id for op_id, error in self.store.set_aside_errors(_FUTURE)
               if int(error[len(_FUTURE):].split(":", 1)[0]) <= now_ms + MAX_SKEW_MS]
        if due:
            with self.store.atomic():
                self.store.requeue_set_aside(due)
        return len(due)

    def apply_remote(self, ops: Iterable[RemoteOp], *, purges: Iterable[str] = (),
                     cursor: tuple[str, int] | None = None) -> ApplyResult:
        """`receive` a page and `fold` the whole inbox: what a sync does, in one call. Our own ops
        coming back count as skipped."""
        ops = list(ops)
        total = ApplyResult(skipped=len(ops) - self.receive(ops, purges=purges, cursor=cursor))
        while (part := self.fold()).ops:
            total.ops += part.ops
            total.applied += part.applied
            total.skipped += part.skipped
            total.set_aside += part.set_aside
            total.erased_late += part.erased_late
        return total

    def _open_remote(self, rop: RemoteOp) -> Op:
        vault = self._vault()
        try:
            data = vault.open_op(rop.record_id, rop.key_epoch, rop.device_id, rop.device_seq, rop.op_id, rop.payload)
        except SealError:
            raise TamperedRecord("op", rop.op_id) from None
        op = decode_op(data, rop.record_id, rop.device_id)
        create_cls, update_cls, _ = FAMILIES[RecordType(op.record_type)]
        if op.fields:
            _validate(update_cls or create_cls, op.fields, remote=True)
        return op


@contextmanager
def _no_gc() -> Iterator[None]:
    """Opening many records allocates many small containers; CPython's cyclic collector would
    rescan the growing heap again and again (it doubled load time). Nothing here makes cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def encode_op(op: Op) -> dict[str, Any]:
    """The sealed body of an op: {type, changed fields, HLC, base HLC per reviewed field}."""
    body: dict[str, Any] = {"t": op.record_type, "f": op.fields, "c": op.hlc}
    if op.bases:
        body["b"] = {k: [s[0], s[1]] for k, s in op.bases.items()}
    if op.delete:
        body["d"] = True
    return body


def decode_op(body: dict[str, Any], record_id: str, device_id: str) -> Op:
    if not isinstance(body, dict) or not isinstance(body.get("f"), dict) or not isinstance(body.get("c"), int):
        raise ValueError("malformed op body")
    bases = {k: (int(v[0]), str(v[1])) for k, v in (body.get("b") or {}).items()}
    return Op(str(body["t"]), record_id, device_id, body["c"], body["f"], bases, bool(body.get("d")))


OFFLINE_GUESSES = 1e10  # zxcvbn's estimate a passphrase must reach when a copy is guessed offline
ZXCVBN_MAX = 72  # zxcvbn refuses longer input; a passphrase is judged by its first 72 characters


def strong_offline(passphrase: str) -> bool:
    """Whether an offline attacker needs about `OFFLINE_GUESSES` tries (four random words do)."""
    from zxcvbn import zxcvbn

    return float(zxcvbn(passphrase[:ZXCVBN_MAX])["guesses"]) >= OFFLINE_GUESSES


def check_passphrase(passphrase: str, *, offline: bool = False) -> None:
    if offline and not strong_offline(passphrase):
        raise WeakPassphrase("Without a keystore on this device, a copy of the data file is guarded by the passphrase "
                             "alone: use four random words or more (about 10^10 guesses at least).")
    if len(passphrase) < MIN_PASSPHRASE:
        raise WeakPassphrase(f"A PIN or passphrase needs at least {MIN_PASSPHRASE} characters.")
    if len(set(passphrase)) < 3:
        raise WeakPassphrase("That PIN or passphrase is too easy to guess (too few different characters).")
