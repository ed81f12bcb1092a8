"""The workspace: the service layer that the CLI, the Flet UI and the sync engine share, over one
device's data directory. `Workspace` is a thin facade: it builds the parts below around one shared
`Session` and forwards each call to the part whose job it is, so that callers keep one object and
a reader finds a rule by its job:

- `lifecycle`: create, unlock (throttle, wipe), lock, close, passphrase; `loading`: the index from
  the sealed snapshot or row by row, the background row check;
- `writes`: every change, sealed and queued in one transaction; `records`: the four families'
  creates, edits, deletes and conflicts; `queries`: one record, the lists and the search;
  `audit`: who changed what and who looked whom up;
- `settings`: device settings, sync values, small secrets, notices; `keys`: team keys and epochs,
  signing keys;
- `outbox`: this device's ops on their way out; `remote`: other devices' ops in (receive, fold);
  `erasure`: erased records and late arrivals; `checkpoints`: a new device's start.

It must never print, log or raise personal data: errors name fields and ids only. It holds no SQL
(that is `storage.store`), no cipher code (that is `storage.vault`) and no rule of its own: a
forwarder does nothing but call its part (the hot paths, unlock, fold, receive and search, pay one
call, never one per record).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..domain.clock import HLC
from ..domain.index import Index
from ..domain.merge import RecordState
from ..domain.tables import (
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
from ..domain.vocab import AuditAction, RecordType
from ..errors import TamperedRecord
from ..storage.store import Store
from ..storage.vault import Vault
from .audit import Audit
from .checkpoints import Checkpoints
from .erasure import Erasure
from .keys import Keys
from .lifecycle import Lifecycle
from .loading import Loading
from .outbox import Outbox
from .passphrase import ThrottlePolicy
from .queries import Queries
from .records import Records
from .remote import Remote
from .session import Session
from .settings import Settings
from .values import ApplyResult, ConflictView, Notice, RemoteOp, SearchResult
from .writes import Writer

__all__ = ["Workspace"]


class Workspace:
    """One device's data directory. Create with `init`, open with `unlock`."""

    LOOKUP_QUIET = Audit.LOOKUP_QUIET  # read-only here: the audit part's own is the one in force

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
        s = self._s = Session(Path(data_dir), now, pepper=pepper, fast_kdf=fast_kdf,
                              guard_offline=guard_offline and not pepper)
        self._w = Writer(s)
        self._loading = Loading(s, self._w)
        self._life = Lifecycle(s, self._loading)
        self._settings = Settings(s)
        self._keys = Keys(s, self._w)
        self._queries = Queries(s)
        self._audit = Audit(s, self._w, self._settings, audit_writes=audit_writes)
        self._records = Records(s, self._w, self._queries, self._audit)
        self._outbox = Outbox(s)
        self._erasure = Erasure(s, self._w)
        self._remote = Remote(s, self._w, self._erasure)
        self._checkpoints = Checkpoints(s, self._loading, self._outbox)

    # ------------------------------------------------------------ the shared state
    @property
    def data_dir(self) -> Path:
        return self._s.data_dir

    @property
    def db_path(self) -> Path:
        return self._s.db_path

    def exists(self) -> bool:
        return self._s.exists()

    @property
    def store(self) -> Store:
        return self._s.store

    @property
    def vault(self) -> Vault | None:
        return self._s.vault

    @property
    def unlocked(self) -> bool:
        return self._s.unlocked

    @property
    def device_id(self) -> str:
        return self._s.device_id

    @property
    def epoch(self) -> int:
        return self._s.epoch

    @property
    def index(self) -> Index:
        return self._s.index

    @property
    def clock(self) -> HLC:
        return self._s.clock

    @clock.setter
    def clock(self, clock: HLC) -> None:
        self._s.clock = clock

    @property
    def on_change(self) -> list[Callable[[], None]]:
        """Called after every change, e.g. the UI's debounced sync trigger."""
        return self._s.on_change

    @on_change.setter
    def on_change(self, hooks: list[Callable[[], None]]) -> None:
        self._s.on_change = hooks

    @property
    def damaged(self) -> list[TamperedRecord]:
        """Rows that failed authentication at unlock (or at `verify`)."""
        return self._s.damaged

    @property
    def needs_stronger_passphrase(self) -> bool:
        """Unlocked with a passphrase that would not be accepted today."""
        return self._life.needs_stronger_passphrase

    @property
    def protection(self) -> str:
        return self._life.protection

    def now(self) -> float:
        return self._s.now()

    def bulk(self) -> AbstractContextManager[None]:
        """Many changes in one transaction (one fsync): a contact with its new person and place,
        imports, the demo generator."""
        return self._w.bulk()

    def resolve_person_id(self, prefix: str) -> str:
        """A full id from a unique prefix of at least 6 characters (for the CLI)."""
        return self._queries.resolve(RecordType.PERSON, prefix)

    # ------------------------------------------------------------ seams for tests
    # The tests reach these to write as an older version did, or to simulate a crash.
    @property
    def _now(self) -> Callable[[], float]:
        return self._s.now

    @_now.setter
    def _now(self, now: Callable[[], float]) -> None:
        self._s.now = now

    @property
    def _types(self) -> dict[str, RecordType]:
        return self._s.types

    @property
    def _snapshot_gen(self) -> int:
        return self._loading.snapshot_gen

    def _vault(self) -> Vault:
        return self._s.unlocked_vault()

    def _forget(self) -> None:
        self._life.forget()

    def _state(self, rtype: RecordType, rid: str) -> RecordState | None:
        return self._w.state(rtype, rid)

    def _write(self, rtype: RecordType, rid: str, fields: dict[str, Any], *, delete: bool = False,
               must_exist: bool = False) -> dict[str, Any] | None:
        return self._w.write(rtype, rid, fields, delete=delete, must_exist=must_exist)

    def _new_id(self) -> str:
        return self._w.new_id()

    def _transaction(self) -> AbstractContextManager[None]:
        return self._w.transaction()

    # ------------------------------------------------------------ lifecycle (Lifecycle)
    def policy(self) -> ThrottlePolicy:
        return self._life.policy()

    def init(self, passphrase: str, *, worker_name: str = "", max_failures: int = 10,
             delay_base: float = 1.0) -> str:
        return self._life.init(passphrase, worker_name=worker_name, max_failures=max_failures, delay_base=delay_base)

    def throttle_wait(self) -> float:
        return self._life.throttle_wait()

    def failures(self) -> int:
        return self._life.failures()

    def unlock(self, passphrase: str) -> None:
        self._life.unlock(passphrase)

    def lock(self) -> None:
        self._life.lock()

    def close(self) -> None:
        self._life.close()

    def wipe(self) -> None:
        self._life.wipe()

    def change_passphrase(self, old: str, new: str) -> None:
        self._life.change_passphrase(old, new)

    # ------------------------------------------------------------ loading (Loading)
    def verify(self) -> list[TamperedRecord]:
        return self._loading.verify()

    def find_damaged(self, *, pause: float = 0.0, every: int = 500,
                     busy: Callable[[], bool] | None = None) -> list[TamperedRecord]:
        return self._loading.find_damaged(pause=pause, every=every, busy=busy)

    def drop_damaged(self, damaged: list[TamperedRecord]) -> None:
        self._loading.drop_damaged(damaged)

    # ------------------------------------------------------------ keys (Keys)
    def fingerprint(self) -> str:
        return self._keys.fingerprint()

    def set_authority(self, seed: bytes | None = None) -> None:
        self._keys.set_authority(seed)

    def ensure_signing_key(self) -> bytes:
        return self._keys.ensure_signing_key()

    def adopt_team_keys(self, keys: dict[int, bytes], current_epoch: int) -> None:
        self._keys.adopt_team_keys(keys, current_epoch)

    def add_epoch_key(self, epoch: int, key: bytes) -> None:
        self._keys.add_epoch_key(epoch, key)

    def has_epoch(self, epoch: int) -> bool:
        return self._keys.has_epoch(epoch)

    # ------------------------------------------------------------ settings (Settings)
    def add_notice(self, kind: str, record_id: str | None = None, device_id: str | None = None,
                   detail: str = "") -> None:
        self._settings.add_notice(kind, record_id, device_id, detail)

    def notices(self) -> list[Notice]:
        return self._settings.notices()

    def worker_name(self) -> str:
        return self._settings.worker_name()

    def set_worker_name(self, name: str) -> None:
        self._settings.set_worker_name(name)

    def setting(self, key: str, default: str | None = None) -> str | None:
        return self._settings.setting(key, default)

    def set_settings(self, **values: str | int | float | None) -> None:
        self._settings.set_settings(**values)

    def secret(self, name: str) -> bytes | None:
        return self._settings.secret(name)

    def secret_names(self, prefix: str) -> list[str]:
        return self._settings.secret_names(prefix)

    def set_secret(self, name: str, value: bytes | None) -> None:
        self._settings.set_secret(name, value)

    def sync_value(self, key: str, default: str | None = None) -> str | None:
        return self._settings.sync_value(key, default)

    def set_sync_values(self, **values: str | int | float) -> None:
        self._settings.set_sync_values(**values)

    # ------------------------------------------------------------ records (Records)
    def add_person(self, data: PersonCreate | dict[str, Any]) -> PersonPublic:
        return self._records.add_person(data)

    def edit_person(self, person_id: str, data: PersonUpdate | dict[str, Any]) -> PersonPublic:
        return self._records.edit_person(person_id, data)

    def delete_record(self, rtype: RecordType, rid: str) -> None:
        self._records.delete_record(rtype, rid)

    def add_contact(self, data: ContactCreate | dict[str, Any]) -> ContactPublic:
        return self._records.add_contact(data)

    def edit_contact(self, contact_id: str, data: ContactUpdate | dict[str, Any]) -> ContactPublic:
        return self._records.edit_contact(contact_id, data)

    def add_place(self, data: PlaceCreate | dict[str, Any]) -> PlacePublic:
        return self._records.add_place(data)

    def edit_place(self, place_id: str, data: PlaceUpdate | dict[str, Any]) -> PlacePublic:
        return self._records.edit_place(place_id, data)

    def add_follow_up(self, data: FollowUpCreate | dict[str, Any]) -> FollowUpPublic:
        return self._records.add_follow_up(data)

    def edit_follow_up(self, fu_id: str, data: FollowUpUpdate | dict[str, Any]) -> FollowUpPublic:
        return self._records.edit_follow_up(fu_id, data)

    def conflicts(self) -> list[ConflictView]:
        return self._records.conflicts()

    def resolve_conflict(self, record_type: RecordType, record_id: str, field_name: str, value: Any) -> None:
        self._records.resolve_conflict(record_type, record_id, field_name, value)

    # ------------------------------------------------------------ queries (Queries)
    def get_person(self, person_id: str) -> PersonPublic:
        return self._queries.get_person(person_id)

    def persons(self, *, status: str | None = None, category: str | None = None,
                not_seen_days: int | None = None) -> list[PersonPublic]:
        return self._queries.persons(status=status, category=category, not_seen_days=not_seen_days)

    def last_contact_at(self, person_id: str) -> datetime | None:
        return self._queries.last_contact_at(person_id)

    def person_record_ids(self, person_id: str) -> list[str]:
        return self._queries.person_record_ids(person_id)

    def get_contact(self, contact_id: str) -> ContactPublic:
        return self._queries.get_contact(contact_id)

    def contacts(self, *, person_id: str | None = None, limit: int = 50) -> list[ContactPublic]:
        return self._queries.contacts(person_id=person_id, limit=limit)

    def contacts_on(self, day: date) -> list[ContactPublic]:
        return self._queries.contacts_on(day)

    def places(self) -> list[PlacePublic]:
        return self._queries.places()

    def find_place(self, name_or_id: str) -> PlacePublic | None:
        return self._queries.find_place(name_or_id)

    def follow_ups(self, *, due_by: date | None = None, include_done: bool = False,
                   person_id: str | None = None) -> list[FollowUpPublic]:
        return self._queries.follow_ups(due_by=due_by, include_done=include_done, person_id=person_id)

    def search(self, text: str, *, limit: int = 50) -> SearchResult:
        return self._queries.search(text, limit=limit)

    # ------------------------------------------------------------ audit (Audit)
    def audit(self, action: AuditAction, target_type: RecordType | None = None, target_id: str | None = None,
              detail: str | None = None) -> None:
        self._audit.audit(action, target_type, target_id, detail)

    def audit_events(self) -> list[AuditEventPublic]:
        return self._audit.audit_events()

    def log_lookup(self, person_ids: Iterable[str], how: str) -> int:
        return self._audit.log_lookup(person_ids, how)

    def unaudited(self) -> AbstractContextManager[None]:
        return self._audit.unaudited()

    # ------------------------------------------------------------ outbox (Outbox)
    def outbox_batch(self, max_ops: int, max_bytes: int, after_seq: int = 0) -> list[tuple[int, str, str, int, bytes]]:
        return self._outbox.outbox_batch(max_ops, max_bytes, after_seq)

    def outbox_count(self) -> int:
        return self._outbox.outbox_count()

    def pending_changes(self) -> int:
        return self._outbox.pending_changes()

    def set_aside_outgoing(self, device_seq: int, error: str) -> None:
        self._outbox.set_aside_outgoing(device_seq, error)

    def set_aside_ops(self) -> list[tuple[str, str, str]]:
        return self._outbox.set_aside_ops()

    def ack(self, through_seq: int) -> None:
        self._outbox.ack(through_seq)

    def resend_lost(self, held_through: int) -> tuple[int, int]:
        return self._outbox.resend_lost(held_through)

    def pushed_through(self) -> int:
        return self._outbox.pushed_through()

    # ------------------------------------------------------------ remote (Remote)
    def receive(self, ops: Iterable[RemoteOp], *, purges: Iterable[str] = (), refused_purges: Iterable[str] = (),
                refused_ops: Iterable[tuple[RemoteOp, str, str]] = (),
                cursor: tuple[str, int] | None = None, values: dict[str, str | int] | None = None) -> int:
        return self._remote.receive(ops, purges=purges, refused_purges=refused_purges, refused_ops=refused_ops, cursor=cursor, values=values)

    def inbox_count(self) -> int:
        return self._remote.inbox_count()

    def fold(self, max_ops: int | None = None) -> ApplyResult:
        return self._remote.fold(max_ops)

    def requeue_due(self) -> int:
        return self._remote.requeue_due()

    def apply_remote(self, ops: Iterable[RemoteOp], *, purges: Iterable[str] = (),
                     cursor: tuple[str, int] | None = None) -> ApplyResult:
        return self._remote.apply_remote(ops, purges=purges, cursor=cursor)

    # ------------------------------------------------------------ erasure (Erasure)
    def erase_local(self, record_ids: Iterable[str]) -> None:
        self._erasure.erase_local(record_ids)

    def erased_ids(self) -> set[str]:
        return self._erasure.erased_ids()

    def late_erased(self) -> dict[str, str]:
        return self._erasure.late_erased()

    def forget_late_erased(self, record_ids: Iterable[str]) -> None:
        self._erasure.forget_late_erased(record_ids)

    # ------------------------------------------------------------ checkpoints (Checkpoints)
    def checkpoint_ready(self) -> bool:
        return self._checkpoints.checkpoint_ready()

    def checkpoint_rows(self) -> tuple[bytes, list[tuple[str, str, int, bytes]]]:
        return self._checkpoints.checkpoint_rows()

    def history_pending(self) -> bool:
        return self._checkpoints.history_pending()

    def checkpoint_meta(self) -> dict[str, Any]:
        return self._checkpoints.checkpoint_meta()

    def adopt_checkpoint(self, rows: Iterable[tuple[str, str, int, bytes]], meta: dict[str, Any],
                         values: dict[str, str | int], *, states: bytes | None = None) -> int:
        return self._checkpoints.adopt_checkpoint(rows, meta, values, states=states)

