"""One UI session's plumbing and lifecycle, the base of the facade (`Services`): it owns the
session's `Workspace` (guarded, so the sync thread changes the index only under the UI lock) and
`SyncEngine`, runs every call that may block (SQLite, the KDF, HTTP) in a worker thread (`call`
under the UI lock, `network` without it), and holds what a device without a screen open would
still have: creating and unlocking the workspace, the row check after an unlock, locking, the
passphrase rules and the preferences. The record screens' calls (`records`), the team's
(`team`) and the desk (`desk`) build on it. It never builds or changes a control, holds no SQL and
no cipher code, and nothing here exists before a session asks for it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from models.errors import StoreError
from models.workspace import MIN_PASSPHRASE, ApplyResult, RemoteOp, Workspace, strong_offline
from sync.engine import SyncEngine

from ..config import AppConfig
from ..state import Preferences
from .scheduler import SyncScheduler

__all__ = ["Session", "GuardedWorkspace", "VERIFY_AFTER", "QUIET_BEFORE_CHECK"]

log = logging.getLogger("outreach.app")
T = TypeVar("T")
# seconds after an unlock before every row is opened in the background: the worker who unlocks
# to log a meeting searches and saves first (damage on disk is rare; the snapshot was checked)
VERIFY_AFTER = 15.0
# the row check waits while the user has done something in this many seconds
QUIET_BEFORE_CHECK = 1.0


class GuardedWorkspace(Workspace):
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



class Session:
    """One UI session's workspace, engine and background sync, and the calls of its lifecycle.
    Every public coroutine runs off the loop."""

    def __init__(self, config: AppConfig, *, pepper: bytes = b"") -> None:
        self.config = config
        self.ui_lock = threading.RLock()
        # without a keystore a copy of the data file meets only the passphrase: it must resist offline
        # guessing (a test's fast KDF protects nothing anyway)
        self.ws = GuardedWorkspace(config.data_dir, ui_lock=self.ui_lock, fast_kdf=config.fast_kdf, pepper=pepper,
                                   audit_writes=True, guard_offline=not config.fast_kdf)
        self.engine = SyncEngine(self.ws)
        self.sync = SyncScheduler(self.ws, self.engine, debounce=config.sync_debounce, interval=config.sync_interval,
                                  retry=config.sync_retry, watch=config.sync_watch)
        self.ws.on_change.append(self.sync.changed_threadsafe)
        self.on_activity: list[Callable[[], None]] = [self._active]  # the shell's idle timer listens too
        self._last_active = time.monotonic()
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
        with self.ui_lock:
            return fn(*args, **kwargs)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` in a worker thread under the UI lock; a user action counts as activity."""
        for hook in self.on_activity:
            hook()
        return await asyncio.to_thread(self._guarded, fn, *args, **kwargs)

    async def network(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
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
        with self.ui_lock:
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
