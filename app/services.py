"""The app's facade over the service layer: one `Services` per UI session owns that session's
`Workspace` and `SyncEngine` and runs every call that may block (SQLite, the KDF, HTTP) in a worker
thread, so the UI loop never waits. It turns domain objects into the plain rows of `app.state`,
errors into `Problem`s (an i18n key, its parameters and the field to show it at), and keeps the
background sync going: debounced after a save, on demand, when the connection returns, and every
minute while unlocked.

It never builds or changes a control: screens subscribe to `SyncScheduler.listeners` and
`data_listeners` and redraw themselves. It holds no SQL and no cipher code (that is `models`), and
nothing here exists before a session asks for it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from models.domain.vocab import AuditAction, RecordType
from models.errors import (
    InvalidInput,
    KeystoreUnavailable,
    NotFound,
    StoreError,
    TamperedRecord,
    VaultLocked,
    VaultWiped,
    WeakPassphrase,
    WrongPassphrase,
)
from models.errors import Throttled as UnlockThrottled
from models.workspace import MIN_PASSPHRASE, ApplyResult, RemoteOp, Workspace, strong_offline
from sync import protocol as proto
from sync.client import check_url
from sync.engine import SyncEngine, SyncReport, WouldStrand
from sync.errors import (
    CodeInvalid,
    DevicePending,
    DeviceRetired,
    DeviceRevoked,
    InsecureURL,
    KeyRefused,
    NotJoined,
    Offline,
    ProofMismatch,
    Rejected,
    RevocationUnproven,
    ServerEmpty,
    ServerFault,
    ServerUnavailable,
    SyncError,
)
from sync.errors import Throttled as ServerThrottled

from .desk import Desk, FingerprintMismatch
from .state import (
    ChipModel,
    ConflictRow,
    ContactChoices,
    ContactDraft,
    ContactRow,
    DeviceInfo,
    FollowUpRow,
    JoinOutcome,
    NoticeRow,
    PersonDetail,
    PersonDraft,
    PersonRow,
    PlaceDetail,
    PlaceDraft,
    PlaceRow,
    Preferences,
    SyncView,
    TodayData,
    chip_model,
)

__all__ = ["AppConfig", "Services", "SyncScheduler", "Problem", "explain", "keystore_pepper"]

log = logging.getLogger("outreach.app")
T = TypeVar("T")
# seconds after an unlock before every row is opened in the background: the worker who unlocks
# to log a meeting searches and saves first (damage on disk is rare; the snapshot was checked)
VERIFY_AFTER = 15.0
# the row check waits while the user has done something in this many seconds
QUIET_BEFORE_CHECK = 1.0


@dataclass(frozen=True)
class AppConfig:
    """What one app process was started with. Built by `app.run` (or a test launcher), passed in."""

    data_dir: Path  # this device's workspace directory (wiped as a whole on too many wrong PINs)
    server_url: str | None = None  # prefilled on the first-run screen
    join_code: str | None = None  # prefilled on the first-run screen (`make run` creates a team)
    fast_kdf: bool = False  # tests only: a weak KDF so that a test unlocks in milliseconds
    sync_debounce: float = 3.0
    sync_interval: float = 60.0
    sync_retry: float = 5.0  # the first retry after a failed exchange; doubling up to 60 s
    sync_watch: float = 10.0  # how often an idle app checks that the server is there (0: never)
    lock_on_background: bool = True
    web: bool = False


# ================================================================================== problems
@dataclass(frozen=True)
class Problem:
    """An error as the UI shows it: words (i18n key + parameters) and where (a form field)."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)
    field: str | None = None
    retry_after: float = 0.0


# fields whose bad input has words of its own (`errors.invalid_<field>`); others say "not valid"
_SPECIFIC_INVALID = frozenset({"folder", "device", "reason", "value", "months", "year", "week", "fingerprint",
                               "device_waiting"})


def explain(exc: BaseException) -> Problem:
    """The roots of both exception trees, in words a worker understands."""
    if isinstance(exc, WrongPassphrase):
        key = "errors.wrong_pin_wait" if exc.retry_after > 0 else "errors.wrong_pin"
        return Problem(key, {"left": exc.attempts_left, "seconds": round(exc.retry_after)}, "pin", exc.retry_after)
    if isinstance(exc, UnlockThrottled):
        return Problem("errors.throttled", {"seconds": round(exc.retry_after)}, "pin", exc.retry_after)
    if isinstance(exc, VaultWiped):
        return Problem("errors.wiped")
    if isinstance(exc, WeakPassphrase):
        return Problem("errors.pin_easy", {"n": MIN_PASSPHRASE}, "pin")
    if isinstance(exc, KeystoreUnavailable):
        return Problem("errors.keystore", {}, "pin")
    if isinstance(exc, VaultLocked):
        return Problem("errors.locked")
    if isinstance(exc, InvalidInput):
        key = f"errors.invalid_{exc.field}" if exc.field in _SPECIFIC_INVALID else "errors.invalid"
        return Problem(key, {"field": exc.field}, exc.field)
    if isinstance(exc, NotFound):
        return Problem("errors.not_found")
    if isinstance(exc, TamperedRecord):
        return Problem("errors.tampered")
    if isinstance(exc, StoreError):
        return Problem("errors.store")
    if isinstance(exc, ServerUnavailable):
        return Problem("errors.server_unavailable", {}, "server")
    if isinstance(exc, Offline):
        return Problem("errors.offline", {}, "server")
    if isinstance(exc, InsecureURL):
        return Problem("errors.insecure_url", {}, "server")
    if isinstance(exc, CodeInvalid):
        return Problem("errors.code_invalid", {}, "code")
    if isinstance(exc, ServerThrottled):
        return Problem("errors.code_throttled", {"seconds": round(exc.retry_after)}, "code", exc.retry_after)
    if isinstance(exc, DevicePending):
        return Problem("sync.device_pending")
    if isinstance(exc, DeviceRevoked):
        return Problem("errors.revoked")
    if isinstance(exc, DeviceRetired):
        return Problem("errors.retired")
    if isinstance(exc, WouldStrand):
        return Problem("errors.would_strand", {"n": len(exc.devices)})
    if isinstance(exc, FingerprintMismatch):  # the coordinator's comparison, not a join refused
        return Problem("errors.fingerprint_mismatch", {}, "fingerprint")
    if isinstance(exc, ProofMismatch):
        return Problem("errors.proof")
    if isinstance(exc, RevocationUnproven):
        return Problem("errors.revocation_unproven")
    if isinstance(exc, KeyRefused):  # nothing was adopted: the coordinator has to look, not the worker
        return Problem("errors.key_changed" if exc.changed else "errors.key_refused")
    if isinstance(exc, NotJoined):
        return Problem("sync.not_joined")
    if isinstance(exc, ServerEmpty):
        return Problem("errors.server_empty", {}, "server")
    if isinstance(exc, ServerFault):
        return Problem("errors.server_fault", {}, "server")
    if isinstance(exc, Rejected):
        return Problem("errors.rejected", {"code": exc.code})
    if isinstance(exc, SyncError):
        return Problem("errors.sync_failed")
    return Problem("errors.unexpected")


# ================================================================================ workspace
class _GuardedWorkspace(Workspace):
    """A workspace whose in-memory index is changed by the sync thread only while the UI lock is
    held, so that a screen reading a list never sees it change under its feet."""

    def __init__(self, data_dir: Path, *, ui_lock: threading.RLock, **kwargs: Any) -> None:
        super().__init__(data_dir, **kwargs)
        self.ui_lock = ui_lock

    def receive(self, ops: Iterable[RemoteOp], *, purges: Iterable[str] = (), refused_purges: Iterable[str] = (),
                refused_ops: Iterable[tuple[RemoteOp, str, str]] = (),
                cursor: tuple[str, int] | None = None, values: dict[str, str | int] | None = None) -> int:
        with self.ui_lock:
            return super().receive(ops, purges=purges, refused_purges=refused_purges, refused_ops=refused_ops,
                                   cursor=cursor, values=values)

    def adopt_checkpoint(self, rows: Iterable[tuple[str, str, int, bytes]], meta: dict[str, Any],
                         values: dict[str, str | int], *, states: bytes | None = None) -> int:
        with self.ui_lock:
            return super().adopt_checkpoint(rows, meta, values, states=states)

    def fold(self, max_ops: int | None = None) -> ApplyResult:
        with self.ui_lock:
            return super().fold(max_ops)

    def erase_local(self, record_ids: Iterable[str]) -> None:
        with self.ui_lock:
            super().erase_local(record_ids)

    def lock(self) -> None:
        with self.ui_lock:
            super().lock()


async def keystore_pepper(storage: Any, key: str = "outreach.pepper") -> bytes:
    """The device keystore's secret mixed into the PIN's KDF on phones (flet-secure-storage):
    a short PIN cannot be brute-forced from a copied data file without it. Made on first use."""
    value = await storage.get(key)
    if not value:
        value = secrets.token_hex(32)
        await storage.set(key, value)
    return bytes.fromhex(str(value))


def _app_version() -> str:
    try:
        return metadata.version("outreach")
    except metadata.PackageNotFoundError:
        return "dev"


# ================================================================================= services
class Services:
    """One UI session's access to its device's data. Every public coroutine runs off the loop."""

    def __init__(self, config: AppConfig, *, pepper: bytes = b"") -> None:
        self.config = config
        self._lock = threading.RLock()
        # without a keystore a copy of the data file meets only the passphrase: it must resist offline
        # guessing (a test's fast KDF protects nothing anyway)
        self.ws = _GuardedWorkspace(config.data_dir, ui_lock=self._lock, fast_kdf=config.fast_kdf, pepper=pepper,
                                    audit_writes=True, guard_offline=not config.fast_kdf)
        self.engine = SyncEngine(self.ws)
        self.sync = SyncScheduler(self, debounce=config.sync_debounce, interval=config.sync_interval,
                                  retry=config.sync_retry, watch=config.sync_watch)
        self.ws.on_change.append(self.sync.changed_threadsafe)
        self.on_activity: list[Callable[[], None]] = [self._active]  # the shell's idle timer listens too
        self._last_active = time.monotonic()
        self.desk = Desk(self)  # the coordinator's desk: devices, overview, review, data protection
        self._prefs = Preferences()
        self._verify_task: asyncio.Task[None] | None = None  # the row check after an unlock

    # ------------------------------------------------------------------ plumbing
    def _active(self) -> None:
        self._last_active = time.monotonic()

    def busy(self) -> bool:
        """The user did something in the last `QUIET_BEFORE_CHECK` seconds: background work
        that competes with the screens for the interpreter waits (the row check after unlock)."""
        return time.monotonic() - self._last_active < QUIET_BEFORE_CHECK

    def _guarded(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._lock:
            return fn(*args, **kwargs)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` in a worker thread under the UI lock; a user action counts as activity."""
        for hook in self.on_activity:
            hook()
        return await asyncio.to_thread(self._guarded, fn, *args, **kwargs)

    async def _network(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a call that talks to the server in a worker thread, without the UI lock."""
        for hook in self.on_activity:
            hook()
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def close(self) -> None:
        self.sync.stop()
        if self._verify_task is not None and not self._verify_task.done():
            self._verify_task.cancel()  # a row check already reading stops at its next page: the keys go
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self.engine.close()
            self.ws.close()

    # ------------------------------------------------------------------ lifecycle
    async def has_workspace(self) -> bool:
        return await asyncio.to_thread(self.ws.exists)

    @property
    def unlocked(self) -> bool:
        return self.ws.unlocked

    async def create_workspace(self, pin: str, worker_name: str = "") -> str:
        device_id = await self.call(self.ws.init, pin, worker_name=worker_name.strip())
        await self.call(self._save_prefs, self._prefs)
        return device_id

    async def change_passphrase(self, old: str, new: str) -> None:
        await self.call(self.ws.change_passphrase, old, new)

    @staticmethod
    def suggest_passphrase(words: int = 4) -> str:
        """Four words at random from 4,000 common ones (about 48 bits): easy to type, hard to guess."""
        from zxcvbn.frequency_lists import FREQUENCY_LISTS

        pool = [w for w in FREQUENCY_LISTS["english_wikipedia"][:20000] if 4 <= len(w) <= 7 and w.isalpha()][:4000]
        return " ".join(secrets.choice(pool) for _ in range(words))

    async def unlock(self, pin: str) -> None:
        await self.call(self.ws.unlock, pin)
        self._verify_task = asyncio.create_task(self._verify_rows())

    async def _verify_rows(self) -> None:
        """After an unlock from the sealed snapshot: open every row in the background, and take
        any that fails its check off the screens (it is named in the log, never its content)."""
        try:
            await asyncio.sleep(VERIFY_AFTER)  # the first screen and the first search come first
            if not self.ws.unlocked:
                return
            damaged = await asyncio.to_thread(self.ws.find_damaged, pause=0.005, busy=self.busy)
            if damaged:
                await self.call(self.ws.drop_damaged, damaged)
        except StoreError as exc:  # locked again meanwhile: the next unlock checks again
            log.info("row check stopped: %s", type(exc).__name__)

    async def throttle_wait(self) -> float:
        if not await self.has_workspace():
            return 0.0
        return await self.call(self.ws.throttle_wait)

    async def lock(self) -> None:
        self.sync.pause()
        await asyncio.to_thread(self.ws.lock)

    # ------------------------------------------------------------------ preferences
    async def preferences(self) -> Preferences:
        if await self.has_workspace():
            self._prefs = await self.call(self._load_prefs)
        return self._prefs

    def _load_prefs(self) -> Preferences:
        lang = self.ws.setting("ui_language") or self._prefs.language
        try:
            minutes = int(self.ws.setting("ui_autolock_minutes") or self._prefs.autolock_minutes)
        except ValueError:
            minutes = self._prefs.autolock_minutes
        return Preferences(language=lang, autolock_minutes=minutes)

    def _save_prefs(self, prefs: Preferences) -> None:
        if self.ws.exists():
            self.ws.set_settings(ui_language=prefs.language, ui_autolock_minutes=prefs.autolock_minutes)

    async def set_preferences(self, *, language: str | None = None, autolock_minutes: int | None = None) -> Preferences:
        if language is not None:
            self._prefs.language = language
        if autolock_minutes is not None:
            self._prefs.autolock_minutes = autolock_minutes
        await self.call(self._save_prefs, self._prefs)
        return self._prefs

    @property
    def prefs(self) -> Preferences:
        return self._prefs

    # ------------------------------------------------------------------ team
    @staticmethod
    def check_join(url: str, code: str) -> dict[str, str]:
        """What is wrong with a server address and a code as typed (no network)."""
        errors: dict[str, str] = {}
        try:
            check_url(url)
        except InsecureURL:
            errors["server"] = "errors.insecure_url" if url.strip().startswith("http://") else "errors.url_format"
        try:
            proto.EnrollmentCode.parse(code)
        except ValueError:
            errors["code"] = "errors.code_format"
        return errors

    @property
    def protection(self) -> str:
        """What protects a copy of this device's data file: "keystore", "passphrase" or "pin"
        (`Workspace.protection`): the setup screen says it, and asks accordingly."""
        return self.ws.protection

    @property
    def needs_stronger_passphrase(self) -> bool:
        """Unlocked with a passphrase that would not be accepted here today (a short PIN on a
        laptop without a keystore): the lock screen asks for a stronger one, never locks out."""
        return self.ws.needs_stronger_passphrase

    def check_pin(self, pin: str, again: str) -> dict[str, str]:
        errors: dict[str, str] = {}
        if len(pin) < MIN_PASSPHRASE:
            errors["pin"] = "errors.pin_short"
        elif len(set(pin)) < 3:
            errors["pin"] = "errors.pin_easy"
        elif self.protection == "passphrase" and not strong_offline(pin):
            errors["pin"] = "errors.pin_offline"
        elif pin != again:
            errors["pin_again"] = "errors.pin_mismatch"
        return errors

    async def join(self, url: str, code: str) -> JoinOutcome:
        res = await self._network(self.engine.join, url.strip(), code.strip())
        self.sync.start()
        await self.sync.refresh()
        return JoinOutcome(res.team_name, res.role, res.status, res.fingerprint, res.recovery_code)

    async def invite(self) -> str:
        return await self._network(self.engine.invite, proto.Role.WORKER)

    async def set_server_url(self, url: str) -> None:
        clean = check_url(url)

        def apply() -> None:
            self.ws.set_settings(server_url=clean)
            self.engine.close()  # the next run connects to the new address

        await self.call(apply)
        await self.sync.refresh()

    async def set_worker_name(self, name: str) -> None:
        await self.call(self.ws.set_worker_name, name)

    async def device_info(self) -> DeviceInfo:
        return await self.call(self._device_info)

    def _device_info(self) -> DeviceInfo:
        ws = self.ws
        st = self.engine.status()
        return DeviceInfo(
            device_id=ws.device_id, fingerprint=ws.fingerprint() if ws.unlocked else "", worker_name=ws.worker_name(),
            joined=st.joined, team_name=ws.setting("team_name"), role=st.role, device_status=st.device_status,
            server_url=st.server_url, pending_ops=st.pending_ops,
            last_sync=datetime.fromtimestamp(st.last_success) if st.last_success else None,
            data_dir=str(ws.data_dir), app_version=_app_version(),
        )

    async def notices(self) -> list[NoticeRow]:
        """What this device refused or set aside for a security reason, newest first: kinds,
        ids and times only (the notices hold no personal data, and the screens show no detail)."""
        return await self.call(self._notices)

    def _notices(self) -> list[NoticeRow]:
        rows = [NoticeRow(at=n.at, kind=n.kind, record_id=n.record_id, device_id=n.device_id)
                for n in self.ws.notices()]
        return rows[::-1]  # stored in the order they were noted

    async def is_coordinator(self) -> bool:
        return await self.call(lambda: self.engine.is_coordinator)

    # ------------------------------------------------------------------ rows
    def _alias(self, person_id: str | None) -> str | None:
        if not person_id:
            return None
        try:
            return self.ws.get_person(person_id).alias
        except NotFound:
            return None

    def _place_name(self, place_id: str | None, cache: dict[str, str | None]) -> str | None:
        if not place_id:
            return None
        if place_id not in cache:
            place = self.ws.find_place(place_id)
            cache[place_id] = place.name if place else None
        return cache[place_id]

    def _contact_row(self, c: Any, places: dict[str, str | None]) -> ContactRow:
        return ContactRow(
            id=c.id, at=c.at, person_id=c.person_id, person_alias=self._alias(c.person_id),
            place_id=c.place_id, place_name=self._place_name(c.place_id, places),
            kind=c.kind.value, living=c.living.value if c.living else None,
            services=tuple(s.value for s in c.services), referrals=tuple(r.value for r in c.referrals),
            note=c.note, follow_up=c.follow_up,
        )

    def _follow_up_row(self, f: Any, today: date) -> FollowUpRow:
        return FollowUpRow(f.id, f.due, f.person_id, self._alias(f.person_id), f.note, f.due < today)

    def _person_row(self, p: Any) -> PersonRow:
        return PersonRow(p.id, p.alias, p.status.value, p.category.value if p.category else None,
                         self.ws.last_contact_at(p.id), p.description)

    # ------------------------------------------------------------------ today
    async def today(self) -> TodayData:
        return await self.call(self._today)

    def _today(self) -> TodayData:
        ws = self.ws
        day = date.today()
        places: dict[str, str | None] = {}
        contacts = sorted(ws.contacts_on(day), key=lambda c: c.at, reverse=True)
        fus = ws.follow_ups(due_by=day)
        return TodayData(
            day=day, contacts=[self._contact_row(c, places) for c in contacts],
            follow_ups=[self._follow_up_row(f, day) for f in fus],
            joined=ws.setting("team_id") is not None, device_status=ws.setting("device_status"),
        )

    async def follow_up_done(self, follow_up_id: str, done: bool = True) -> None:
        await self.call(self.ws.edit_follow_up, follow_up_id, {"done": done})

    # ------------------------------------------------------------------ new contact
    async def contact_choices(self) -> ContactChoices:
        return await self.call(self._contact_choices)

    def _contact_choices(self) -> ContactChoices:
        ws = self.ws
        recent = [self._person_row(p) for p in ws.persons()[:6]]
        places = [PlaceRow(p.id, p.name, p.zone) for p in ws.places()]
        suggested = None
        last = ws.contacts(limit=1)
        if last and last[0].place_id and last[0].at >= datetime.now() - timedelta(hours=3):
            suggested = last[0].place_id  # the worker is probably still there
        return ContactChoices(recent, places, suggested)

    async def search_persons(self, text: str, limit: int = 8) -> list[PersonRow]:
        return await self.call(self._search_persons, text, limit)

    def _search_persons(self, text: str, limit: int) -> list[PersonRow]:
        shown = self.ws.persons()[:limit] if not text.strip() else self.ws.search(text, limit=limit).persons[:limit]
        self.ws.log_lookup((p.id for p in shown), "search" if text.strip() else "list")
        return [self._person_row(p) for p in shown]

    async def person_row(self, person_id: str) -> PersonRow | None:
        def row() -> PersonRow | None:
            try:
                return self._person_row(self.ws.get_person(person_id))
            except NotFound:
                return None

        return await self.call(row)

    async def place_hint(self, person_id: str) -> str | None:
        """Where a person is usually met: their usual place, else where they were last met."""
        return await self.call(self._place_hint, person_id)

    def _place_hint(self, person_id: str) -> str | None:
        try:
            person = self.ws.get_person(person_id)
        except NotFound:
            return None
        if person.usual_place:
            return person.usual_place
        for c in self.ws.contacts(person_id=person_id, limit=5):
            if c.place_id:
                return c.place_id
        return None

    async def save_contact(self, draft: ContactDraft) -> str:
        """Saved locally in one transaction (new person, new place and the contact together);
        never waits for the network. Returns the contact's id."""
        now = datetime.now()
        payload = draft.payload(now)
        return await self.call(self._save_contact, draft, payload)

    def _save_contact(self, draft: ContactDraft, payload: dict[str, Any]) -> str:
        ws = self.ws
        if not payload.get("workers") and ws.worker_name():
            payload["workers"] = [ws.worker_name()]  # who met the person: this device's worker, unless told
        with ws.bulk():
            if draft.new_person_alias and not draft.anonymous:
                payload["person_id"] = ws.add_person({"alias": draft.new_person_alias}).id
            if draft.new_place_name:
                found = ws.find_place(draft.new_place_name)
                payload["place_id"] = found.id if found else ws.add_place({"name": draft.new_place_name}).id
            contact = ws.add_contact(payload)
        return contact.id

    # ------------------------------------------------------------------ people
    async def persons(self, *, text: str = "", status: str | None = None, category: str | None = None,
                      not_seen_days: int | None = None, limit: int = 200) -> tuple[list[PersonRow], int]:
        return await self.call(self._persons, text, status, category, not_seen_days, limit)

    def _persons(self, text: str, status: str | None, category: str | None, not_seen_days: int | None,
                 limit: int) -> tuple[list[PersonRow], int]:
        ws = self.ws
        if text.strip():
            found = ws.search(text, limit=500).persons
            if status or category or not_seen_days is not None:
                allowed = {p.id for p in ws.persons(status=status, category=category, not_seen_days=not_seen_days)}
                found = [p for p in found if p.id in allowed]
        else:
            found = ws.persons(status=status, category=category, not_seen_days=not_seen_days)
        ws.log_lookup((p.id for p in found[:limit]), "search" if text.strip() else "list")
        return [self._person_row(p) for p in found[:limit]], len(found)

    async def person_detail(self, person_id: str) -> PersonDetail:
        return await self.call(self._person_detail, person_id)

    def _person_detail(self, person_id: str) -> PersonDetail:
        ws = self.ws
        person = ws.get_person(person_id)
        places: dict[str, str | None] = {}
        contacts = [self._contact_row(c, places) for c in ws.contacts(person_id=person_id, limit=200)]
        today = date.today()
        fus = [self._follow_up_row(f, today) for f in ws.follow_ups(person_id=person_id)]
        conflicts = [ConflictRow(c.field, c.value_a, c.at_a, c.device_a, c.value_b, c.at_b, c.device_b)
                     for c in ws.conflicts() if c.record_id == person_id]
        ws.audit(AuditAction.READ, RecordType.PERSON, person_id)
        return PersonDetail(person, self._place_name(person.usual_place, places), contacts, fus, conflicts,
                            ws.last_contact_at(person_id))

    async def add_person(self, draft: PersonDraft) -> str:
        return await self.call(lambda: self.ws.add_person(draft.payload()).id)

    async def edit_person(self, person_id: str, draft: PersonDraft) -> None:
        await self.call(self.ws.edit_person, person_id, draft.payload())

    async def resolve_conflict(self, person_id: str, field_name: str, value: Any) -> None:
        await self.call(self.ws.resolve_conflict, RecordType.PERSON, person_id, field_name, value)

    # ------------------------------------------------------------------ places
    async def places(self) -> list[PlaceRow]:
        return await self.call(self._places)

    def _places(self) -> list[PlaceRow]:
        ws = self.ws
        last: dict[str, tuple[str | None, datetime]] = {}
        for c in ws.contacts(limit=2000):
            if c.place_id and c.place_id not in last:
                last[c.place_id] = (self._alias(c.person_id), c.at)
        rows = []
        for p in ws.places():
            alias, at = last.get(p.id, (None, None))
            rows.append(PlaceRow(p.id, p.name, p.zone, alias, at))
        return rows

    async def place_detail(self, place_id: str) -> PlaceDetail:
        return await self.call(self._place_detail, place_id)

    def _place_detail(self, place_id: str) -> PlaceDetail:
        ws = self.ws
        place = ws.find_place(place_id)
        if place is None:
            raise NotFound("place", place_id)
        names: dict[str, str | None] = {}
        contacts = [self._contact_row(c, names) for c in ws.contacts(limit=2000) if c.place_id == place_id][:50]
        row = PlaceRow(place.id, place.name, place.zone, contacts[0].person_alias if contacts else None,
                       contacts[0].at if contacts else None)
        return PlaceDetail(row, contacts)

    async def add_place(self, draft: PlaceDraft) -> str:
        return await self.call(lambda: self.ws.add_place(draft.payload()).id)

    async def place_names(self) -> list[PlaceRow]:
        return await self.call(lambda: [PlaceRow(p.id, p.name, p.zone) for p in self.ws.places()])


# ================================================================================ background sync
class SyncScheduler:
    """When to sync, and what the chip should say. Lives on the UI loop; runs each sync in a
    worker thread. Listeners are called on the loop with the current `SyncView`.

    It heals itself: a run that could not reach the server is retried after `retry` seconds,
    then twice as long each time, never more than `RETRY_MAX` apart; and while nothing runs, the
    server's health is asked every `watch` seconds, so the chip says "not connected" within
    seconds of the server going away, and a sync starts as soon as it answers again."""

    RETRY_MAX = 60.0

    def __init__(self, services: Services, *, debounce: float, interval: float, retry: float = 5.0,
                 watch: float = 10.0) -> None:
        self.s = services
        self.debounce = debounce
        self.interval = interval
        self.retry = retry
        self.watch = watch
        self._failures = 0  # runs in a row that could not reach the server
        self._retry: asyncio.TimerHandle | None = None
        self._watching: asyncio.Task[None] | None = None
        self.view = SyncView()
        self.listeners: list[Callable[[SyncView], None]] = []
        self.data_listeners: list[Callable[[], None]] = []
        # the device left the team and its data is gone (revoked, or retired): called with the words why
        self.revoked_listeners: list[Callable[[Problem], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._debounce: asyncio.TimerHandle | None = None
        self._periodic: asyncio.Task[None] | None = None
        self._current: asyncio.Task[None] | None = None
        self._again = False
        self._active = False
        self._shown: ChipModel | None = None  # what the chip said when the view was last published

    # -------------------------------------------------------------- control
    def start(self) -> None:
        """Begin background syncing (after unlock); safe to call twice."""
        self._loop = asyncio.get_running_loop()
        self._active = True
        if self._periodic is None or self._periodic.done():
            self._periodic = self._loop.create_task(self._every_interval())
        if self.watch > 0 and (self._watching is None or self._watching.done()):
            self._watching = self._loop.create_task(self._watch())

    def pause(self) -> None:
        self._active = False
        if self._debounce is not None:
            self._debounce.cancel()
            self._debounce = None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def stop(self) -> None:
        self.pause()
        for task in (self._periodic, self._watching):
            if task is not None:
                task.cancel()
        self._periodic = self._watching = None

    def retry_delay(self) -> float:
        """How long after the latest failed run the next try starts."""
        return min(self.RETRY_MAX, self.retry * 2 ** max(0, self._failures - 1))

    def _failed(self) -> None:
        """A run or a health check could not reach the server: try again after the backoff."""
        self._failures += 1
        if self._loop is None or not self._active:
            return
        if self._retry is not None:
            self._retry.cancel()
        self._retry = self._loop.call_later(self.retry_delay(), self.request)

    def _reached(self) -> None:
        self._failures = 0
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    async def _watch(self) -> None:
        """While the app is open and idle, ask the server's health now and then: a server gone
        shows at once on the chip (not at the next sync), and one back starts a sync."""
        while True:
            await asyncio.sleep(self.watch)
            if not self._active or not self.view.joined or not self.s.ws.unlocked:
                continue
            if self._current is not None and not self._current.done():
                continue
            try:
                await asyncio.to_thread(self.s.engine.ping)
            except SyncError:
                if not self.view.offline_error:
                    self.view.offline_error = True
                    self.view.error_key, self.view.error_params = "errors.offline", {}
                    self._failed()
                self._publish_if_changed()
                continue
            if self._failures or self.view.offline_error:
                self._reached()
                self.request()  # it is back: everything waiting goes now
            else:
                self._publish_if_changed()  # "synced N min ago" moves on with the clock alone

    def _publish_if_changed(self) -> None:
        """Publish only when what the chip says changed: screens redraw nothing every `watch` s."""
        if chip_model(self.view) != self._shown:
            self._publish()

    def changed_threadsafe(self) -> None:
        """Workspace.on_change hook: called in whichever thread saved; debounces a sync."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._changed)

    def _changed(self) -> None:
        if self._loop is None:
            return
        self._loop.create_task(self.refresh())  # the chip counts what waits, at once
        if not self._active:
            return
        if self._debounce is not None:
            self._debounce.cancel()
        self._debounce = self._loop.call_later(self.debounce, self.request)

    def set_online(self, online: bool) -> None:
        came_back = online and not self.view.online
        self.view.online = online
        self._publish()
        if came_back:
            self.request()

    def request(self) -> None:
        """Sync now (or right after the run in progress)."""
        if not self._active or self._loop is None:
            return
        if self._current is not None and not self._current.done():
            self._again = True
            return
        self._current = self._loop.create_task(self._run())

    async def run_now(self) -> None:
        """The chip's tap: sync and wait for the result."""
        if not self._active:
            return
        if self._current is not None and not self._current.done():
            self._again = True
            await self._current
            return
        self._current = asyncio.get_running_loop().create_task(self._run())
        await self._current

    # -------------------------------------------------------------- runs
    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self._active:
                self.request()

    async def refresh(self) -> None:
        """Read the persisted status (outbox size, last success, last error) into the view."""
        if not self.s.ws.unlocked:
            return
        try:
            st = await asyncio.to_thread(self.s.engine.status)
        except StoreError:
            return
        v = self.view
        v.joined, v.pending_ops, v.device_status, v.role = st.joined, st.pending_ops, st.device_status, st.role
        v.last_success = datetime.fromtimestamp(st.last_success) if st.last_success else None
        v.first_sync = st.last_success is None
        v.history_pending = st.history_pending
        if not st.last_error and not self._failures:  # (a failed health check is not persisted)
            v.error_key, v.error_params, v.offline_error = None, {}, False
        self._publish()

    async def _run(self) -> None:
        s = self.s
        if not s.ws.unlocked:
            return
        await self.refresh()
        if not self.view.joined:
            return
        status_before = self.view.device_status
        self.view.running, self.view.progress, self.view.progress_count = True, None, 0
        self.view.progress_phase, self.view.progress_total = "", 0
        self._publish()
        report: SyncReport | None = None
        started = time.monotonic()
        try:
            report = await asyncio.to_thread(s.engine.sync, self._progress_threadsafe)
            self.view.error_key, self.view.error_params, self.view.offline_error = None, {}, False
            self._reached()
        except (DeviceRevoked, DeviceRetired) as exc:
            self.view.running = False
            self.stop()
            for on_left in self.revoked_listeners:
                on_left(explain(exc))
            return
        except SyncError as exc:
            problem = explain(exc)
            self.view.error_key, self.view.error_params = problem.key, problem.params
            self.view.offline_error = isinstance(exc, Offline)
            log.info("sync failed: %s", type(exc).__name__)
            if isinstance(exc, (Offline, ServerFault)):  # passing troubles: try again, ever more slowly
                self._failed()
        except StoreError as exc:  # locked or wiped while the run was going on
            log.info("sync stopped: %s", type(exc).__name__)
        finally:
            self.view.running = False
            self.view.progress = None
        log.debug("sync run took %.2f s", time.monotonic() - started)
        await self.refresh()
        if report is not None and self.view.role == "coordinator":
            await s.desk.refresh_device_names(force=report.admitted > 0)
        let_in = status_before != self.view.device_status  # e.g. pending -> active: screens say so
        if let_in or (report is not None and (report.applied or report.purged or report.pulled
                                              or report.from_checkpoint)):
            for hook in self.data_listeners:
                hook()
        if self._again:
            self._again = False
            self.request()

    def _progress_threadsafe(self, phase: str, done: int, total: int) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._progress, phase, done, total)

    def _progress(self, phase: str, done: int, total: int) -> None:
        if phase == "usable":  # a checkpoint's first tier is in: the screens can show it now
            self.view.history_pending = True
            for hook in self.data_listeners:
                hook()
        self.view.progress_count = done
        self.view.progress_phase, self.view.progress_total = phase, total
        self.view.progress = (done / total) if total else None
        self._publish()

    def _publish(self) -> None:
        self._shown = chip_model(self.view)
        for hook in list(self.listeners):
            try:
                hook(self.view)
            except Exception:  # a screen that went away must not stop the others
                log.exception("sync listener failed")
