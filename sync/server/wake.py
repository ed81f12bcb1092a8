"""Waking long-polls when a team's log changes: in this process, and on PostgreSQL in every process
on the same database, by LISTEN/NOTIFY.

It owns three parts. `LogWatch` wakes this process's waiters (pushes, purges and revocations call
`notify` after their commit). `announce(session, ...)` puts a NOTIFY into the writing transaction
itself, so that PostgreSQL delivers it exactly when the commit is visible, and never for a
rolled-back write. `PgListener` is one thread per process holding one listening connection (psycopg 3,
autocommit, outside the request pool): it wakes local waiters for changes made through other
processes, notices a lost connection, comes back by itself, and then wakes every waiter once to
re-read the log (changes made while it was away sent their NOTIFY to nobody). The channel is per
database schema (a hash of `current_schema()`); the payload is the team id and the sending process's
origin, so that a process ignores its own notices (its waiters were woken already). It must never
put anything but a team id and a random process token into a notice: every session of the database
can listen.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import selectors
import socket
import threading
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

__all__ = ["LogWatch", "PgListener", "announce", "new_origin", "CHANNEL_SQL", "APPLICATION_NAME"]

log = logging.getLogger("outreach.server.wake")

# One channel per schema: two deployments (or two test runs) in one database do not wake each other.
# A channel name is an identifier (at most 63 bytes), hence the short hash.
CHANNEL_SQL = "'outreach_' || left(md5(coalesce(current_schema(), '')), 16)"

IDLE_CHECK_SECONDS = 10.0  # an idle listening connection is asked `SELECT 1` this often: a dead one shows
RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)  # waits between attempts to listen again; the last repeats
CONNECT_TIMEOUT_SECONDS = 5
APPLICATION_NAME = "outreach-server listener"  # then "<this> <channel>" once it listens


def new_origin() -> str:
    """A random token naming this process's notices (not a secret: it only says "mine")."""
    return secrets.token_hex(6)


def announce(session: Session, *, team_id: str, origin: str) -> None:
    """In a PostgreSQL write transaction: tell every listening process that the team's log changed.
    Delivered at commit, dropped on rollback."""
    session.execute(text(f"SELECT pg_notify({CHANNEL_SQL}, :payload)"), {"payload": f"{team_id} {origin}"})


class LogWatch:
    """Wakes long-polls of a team in this process when its log grows.

    Pushes and purges run in worker threads and call `notify(team_id)` after their commit (the
    listener thread does the same for other processes' commits); it hops to the event loop, bumps
    a tick and sets the team's current event (a fresh one per wake-up). A waiter notes the tick
    *before* it reads the log, so a commit between its read and its wait is never missed.
    `notify_all` wakes every waiter, of every team, once. All state but `_loop` is touched on the
    loop only."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick = 0
        self._all = 0  # tick of the latest wake-up of everyone
        self._last: dict[str, int] = {}  # team id -> tick of its latest change
        self._events: dict[str, asyncio.Event] = {}

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (a restarted app, a second test client): start afresh
            self._loop, self._tick, self._all, self._last, self._events = loop, 0, 0, {}, {}

    def tick(self) -> int:
        self._bind()
        return self._tick

    async def wait(self, team_id: str, *, after: int, timeout: float) -> None:
        """Return when the team's log changed after tick `after` (at once if it already has), or
        after `timeout` seconds."""
        self._bind()
        if self._last.get(team_id, 0) > after or self._all > after:
            return
        event = self._events.get(team_id)
        if event is None:
            event = self._events[team_id] = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass

    def notify(self, team_id: str) -> None:
        """Thread-safe: the team's log changed (call after the commit)."""
        self._call(self._fire, team_id)

    def notify_all(self) -> None:
        """Thread-safe: every waiter re-reads the log once (changes may have gone unannounced)."""
        self._call(self._fire_all)

    def _call(self, fire: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return  # nobody ever waited
        try:
            loop.call_soon_threadsafe(fire, *args)
        except RuntimeError:  # the loop is closed: nobody waits on it any more
            pass

    def _fire(self, team_id: str) -> None:
        self._tick += 1
        self._last[team_id] = self._tick
        event = self._events.pop(team_id, None)
        if event is not None:
            event.set()

    def _fire_all(self) -> None:
        self._tick += 1
        self._all = self._tick
        events, self._events = self._events, {}
        for event in events.values():
            event.set()


class PgListener:
    """One thread, one listening PostgreSQL connection: notices of other processes wake `watch`.

    `connected` is set while it listens; long-polls re-read the database more often while it is
    not. `start()` and `stop()` are called by the app's lifespan; `stop()` returns at once (a
    socket pair interrupts the wait)."""

    def __init__(self, engine: Engine, watch: LogWatch, *, origin: str) -> None:
        self._engine = engine
        self._watch = watch
        self._origin = origin
        self.connected = threading.Event()
        self.woken = 0  # notices of other processes that woke waiters here (tests, logs)
        self.reconnects = 0  # times it listened again after losing the connection
        self._stopping = threading.Event()
        self._stop_r, self._stop_w = socket.socketpair()
        self._thread: threading.Thread | None = None

    def _connect_params(self) -> dict[str, Any]:
        _args, params = self._engine.dialect.create_connect_args(self._engine.url)
        params = dict(params)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
        # A peer gone without a word (a cut network) shows within about a minute, not two hours.
        for name, value in (("keepalives", 1), ("keepalives_idle", 30), ("keepalives_interval", 10),
                            ("keepalives_count", 3)):
            params.setdefault(name, value)
        params["autocommit"] = True
        params.setdefault("application_name", APPLICATION_NAME)
        return params

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="outreach-pg-listener", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        try:
            self._stop_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._stop_r.close()
        self._stop_w.close()

    def _pause(self, seconds: float) -> bool:
        """Wait, unless told to stop; True when stopping."""
        with selectors.DefaultSelector() as selector:  # epoll: a busy server's descriptors pass 1024
            selector.register(self._stop_r, selectors.EVENT_READ)
            return bool(selector.select(seconds)) or self._stopping.is_set()

    def _run(self) -> None:
        import psycopg

        failures = 0
        listened_before = False
        while not self._stopping.is_set():
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = psycopg.connect(**self._connect_params())
                channel = conn.execute(f"SELECT {CHANNEL_SQL}").fetchone()[0]  # type: ignore[index]
                conn.execute(f'LISTEN "{channel}"')
                # Named by its channel in pg_stat_activity: an operator (or a test) can find it.
                conn.execute("SELECT set_config('application_name', %s, false)", (f"{APPLICATION_NAME} {channel}",))
                self.connected.set()
                if listened_before:
                    self.reconnects += 1
                    log.info("listening for other processes' pushes again; waking every long-poll once")
                    self._watch.notify_all()  # what was pushed meanwhile was announced to nobody here
                listened_before, failures = True, 0
                self._listen(conn)
            except (psycopg.Error, OSError, ValueError) as exc:  # never a dead thread: listen again
                self.connected.clear()
                if self._stopping.is_set():
                    break
                if failures == 0:
                    log.warning("the listening database connection is lost (%s); long-polls re-read "
                                "the database every few seconds until it is back", type(exc).__name__)
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                if self._pause(delay):
                    break
            finally:
                self.connected.clear()
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg.Error:
                        pass

    def _listen(self, conn: Any) -> None:
        last_check = time.monotonic()
        with selectors.DefaultSelector() as selector:
            selector.register(conn.fileno(), selectors.EVENT_READ, "db")
            selector.register(self._stop_r, selectors.EVENT_READ, "stop")
            while True:
                ready = {key.data for key, _ in selector.select(IDLE_CHECK_SECONDS)}
                if "stop" in ready or self._stopping.is_set():
                    return
                if not ready and time.monotonic() - last_check >= IDLE_CHECK_SECONDS:
                    conn.execute("SELECT 1")  # raises when the connection died quietly
                    last_check = time.monotonic()
                for notice in conn.notifies(timeout=0):
                    team_id, _, origin = notice.payload.partition(" ")
                    if origin != self._origin and team_id:
                        self.woken += 1
                        self._watch.notify(team_id)
