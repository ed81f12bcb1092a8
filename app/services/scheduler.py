"""The background sync of one UI session: when to sync (debounced after a save, on demand, when
the connection returns, every minute while unlocked, retried ever more slowly after a failure),
and what the sync chip says (`SyncView`). It takes the session's workspace and engine, not the
facade; the coordinator's desk hooks in through `on_coordinator_sync`. It never builds a
control: screens subscribe to `listeners` and `data_listeners` and redraw themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from models.errors import StoreError
from models.workspace import Workspace
from sync.engine import SyncEngine, SyncReport
from sync.errors import DeviceRetired, DeviceRevoked, Offline, ServerFault, SyncError

from ..state import ChipModel, SyncView, chip_model
from .problems import Problem, explain

__all__ = ["SyncScheduler"]

log = logging.getLogger("outreach.app")


class SyncScheduler:
    """When to sync, and what the chip should say. Lives on the UI loop; runs each sync in a
    worker thread. Listeners are called on the loop with the current `SyncView`.

    It heals itself: a run that could not reach the server is retried after `retry` seconds,
    then twice as long each time, never more than `RETRY_MAX` apart; and while nothing runs, the
    server's health is asked every `watch` seconds, so the chip says "not connected" within
    seconds of the server going away, and a sync starts as soon as it answers again."""

    RETRY_MAX = 60.0

    def __init__(self, ws: Workspace, engine: SyncEngine, *, debounce: float, interval: float,
                 retry: float = 5.0, watch: float = 10.0) -> None:
        self.ws = ws
        self.engine = engine
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
        # the coordinator's desk after each run on its device (`force`: devices were let in): the
        # names of the team's devices fetched again
        self.on_coordinator_sync: Callable[[bool], Awaitable[None]] | None = None

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
            if not self._active or not self.view.joined or not self.ws.unlocked:
                continue
            if self._current is not None and not self._current.done():
                continue
            try:
                await asyncio.to_thread(self.engine.ping)
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
        if not self.ws.unlocked:
            return
        try:
            st = await asyncio.to_thread(self.engine.status)
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
        if not self.ws.unlocked:
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
            report = await asyncio.to_thread(self.engine.sync, self._progress_threadsafe)
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
        if report is not None and self.view.role == "coordinator" and self.on_coordinator_sync is not None:
            await self.on_coordinator_sync(report.admitted > 0)
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
