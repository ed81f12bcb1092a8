"""A shaping TCP proxy: a slow mobile link (3G) on loopback, in pure Python (issue 17's
``first_sync.3g`` figures: 400 kbit/s, 300 ms round trip, 2% loss), with no tc/netem, no privileges
and no kernel modules.

    with Shaper(target=("127.0.0.1", port), rate_bps=400_000, rtt_ms=300, loss=0.02, seed=1) as link:
        engine = SyncEngine(server_url=link.url_for(server_url), ...)
        ...
        link.counters.bytes_down, link.stats()   # bytes each way, connections, segments lost

    python -m bench.shaper --target 127.0.0.1:8000 --listen-port 0     # prints the port it listens on

The proxy listens on 127.0.0.1 (a free port unless told one), opens a connection to the target for
every connection it accepts, and carries the bytes both ways through a model of the link. The model
runs on an asyncio event loop in a background thread; the context manager starts it and, on exit,
closes every connection (abruptly) and the listening socket.

What it models, each direction (up: client to target, down: target to client) on its own:

- **Bandwidth**: one link per direction, shared by all connections (one phone, one radio link;
  ``shared_link=False`` gives every connection a link of its own). A token bucket of ``rate_bps``
  bits per second; its depth ``burst_bytes`` defaults to 0, a plain serial link: every segment takes
  size / rate to go out, after the one before it. Connections waiting for the link take turns
  segment by segment (asyncio's lock is first come, first served).
- **Latency**: a delay line of ``rtt_ms / 2`` each way. A segment is delivered no earlier than the
  moment its last byte left the link plus the one-way latency, in order.
- **Segments**: up to ``mss`` (1460) bytes of what waits in the proxy: full ones while data keeps
  coming, a short one when less is there (as TCP sends what it has). A segment is ready to go when
  its last byte has arrived.
- **Loss, as TCP feels it**: loopback never loses, and TCP would retransmit anyway, so loss is
  modelled as its cost: with probability ``loss`` a segment is lost after it used the link, the
  connection waits a retransmission timeout (``rto_ms``, default Linux's 200 ms minimum + the round
  trip), then the segment is sent again (using the link again) and arrives after the latency. Every
  later byte of that connection in that direction waits behind it (order is kept); other
  connections go on using the link meanwhile. The draws come from ``random.Random`` seeded with
  ``(seed, connection number, direction)``, so a run with the same seed and the same traffic loses
  the same segments (``seed=None``: different every run).
- **Connection set-up**: TCP's handshake costs a round trip before the client's first byte can go:
  the client's data goes onto the link from one RTT after the accept, the target's from 1.5 RTT
  (``handshake=False`` leaves this out).
- **End of stream**: a half-close (FIN) travels the delay line behind the data and is passed on as a
  half-close; a reset or error on either side aborts both.
- **Buffers**: at most ``buffer_bytes`` per connection and direction are read but not yet delivered;
  beyond that the proxy stops reading, and the sender's socket buffers fill as on a real path.

What it does not model: congestion-window dynamics (slow start, halving after a loss; with many
losses real TCP slows more than this), fast retransmit and SACK (every loss costs a full timeout
here, also a lost ACK is never modelled), a sender that goes on sending new data into the window
while waiting for a retransmission, reordering, duplication, corruption, jitter, variable radio
bandwidth or radio state promotion delays (3G's idle-to-active wake-up of 1-2 s), loss of SYN or
FIN, TLS handshakes (add their round trips yourself), and IP/TCP header overhead (the rate is of
payload bytes).

Timing: the link keeps its own clock (when it is free, when each segment arrived), so the event
loop's wake-up lateness does not add up over a transfer, and nothing is delivered early. Measured
here: 100 kB at 400 kbit/s over a new connection with a 300 ms round trip arrives after 2.60 s, the
model's 0.3 + 0.15 + 2.0 + 0.15 s. With the defaults (2% loss, 500 ms per loss) a 500 kB download
averages 33-39 kB/s of the link's 50 kB/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
import threading
import types
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Shaper", "ShaperStats"]

MSS = 1460
MIN_RTO_MS = 200.0  # Linux's TCP_RTO_MIN


@dataclass
class ShaperStats:
    """Counters of one `Shaper` (read them at any time; they only grow, except `active`)."""

    connections: int = 0  # accepted in all
    active: int = 0  # open now
    failed_connects: int = 0  # accepted, but the target refused or was unreachable
    bytes_up: int = 0  # delivered to the target
    bytes_down: int = 0  # delivered to the client
    segments_up: int = 0
    segments_down: int = 0
    lost_up: int = 0  # segments that paid a retransmission timeout
    lost_down: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _Link:
    """One direction's transmitter: a token bucket of `rate` bytes per second and depth `burst`,
    on the loop's clock. `send(n, ready)` occupies the link for n bytes and returns when they have
    left, that moment (on the virtual clock, so that the loop's wake-up lateness does not add up)."""

    def __init__(self, rate: float | None, burst: float) -> None:
        self.rate = rate  # bytes per second, None: unlimited
        self.burst = float(burst)
        self.credit = float(burst)  # tokens at `self.free`
        self.free = 0.0  # when the link has finished everything given to it so far
        self.lock = asyncio.Lock()

    def reserve(self, n: int, ready: float) -> float:
        """Occupy the link for n bytes that are ready to go at `ready`; returns when their last
        byte has left. Pure arithmetic (no waiting): the caller holds the lock and waits."""
        start = max(ready, self.free)
        if self.rate is None:
            self.free = start
            return start
        credit = min(self.burst, self.credit + (start - self.free) * self.rate)
        use = min(credit, float(n))
        done = start + (n - use) / self.rate
        self.credit = credit - use
        self.free = done
        return done

    async def send(self, n: int, ready: float) -> float:
        loop = asyncio.get_running_loop()
        async with self.lock:
            done = self.reserve(n, ready)
            delay = done - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            return done


@dataclass
class _Stream:
    """One connection's bytes in one direction: read (with when each byte arrived), on the link, in
    the delay line."""

    name: str  # "up" or "down"
    link: _Link
    rng: random.Random
    hold_until: float  # nothing of this stream goes onto the link before this moment
    inbox: bytearray = field(default_factory=bytearray)  # read, not yet on the link
    marks: deque[tuple[int, float]] = field(default_factory=deque)  # (read total after a chunk, when)
    taken: int = 0  # bytes taken out of the inbox so far
    eof_at: float | None = None  # when the sender's EOF arrived
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # the inbox got bytes or EOF
    queue: deque[tuple[float, bytes | None]] = field(default_factory=deque)  # (deliver at, data | EOF)
    queued: int = 0  # bytes read but not yet delivered (inbox, link and delay line)
    last_delivery: float = 0.0
    more: asyncio.Event = field(default_factory=asyncio.Event)  # something was put in the delay line
    room: asyncio.Event = field(default_factory=asyncio.Event)  # queued fell below the buffer limit

    def take(self, limit: int) -> tuple[bytes, float]:
        """Up to `limit` bytes from the inbox, and when the last of them arrived."""
        data = bytes(self.inbox[:limit])
        del self.inbox[:limit]
        self.taken += len(data)
        while self.marks[0][0] < self.taken:
            self.marks.popleft()
        when = self.marks[0][1]
        if self.marks[0][0] == self.taken:
            self.marks.popleft()
        return data, when


class Shaper:
    """A TCP proxy on 127.0.0.1 that shapes traffic to `target` like a slow mobile link (see the
    module's docstring for the model). Use it as a context manager (or `start()` / `close()`)::

        with Shaper(target=("127.0.0.1", 8000)) as link:
            requests.get(link.url_for("http://127.0.0.1:8000") + "/health")

    rate_bps: bits per second in each direction (None: unlimited); rtt_ms: round trip added (half
    each way); loss: probability that a segment is lost (costing a retransmission timeout); seed:
    the loss draws' seed (None: random); rto_ms: that timeout (default 200 ms + rtt_ms); mss: the
    segment size; burst_bytes: the token bucket's depth; shared_link: one link per direction for
    all connections (True) or one per connection; handshake: charge TCP's set-up round trip;
    buffer_bytes: how much per connection and direction may wait in the proxy; listen_port: 0 for a
    free port.
    """

    def __init__(
        self,
        target: tuple[str, int],
        rate_bps: float | None = 400_000,
        rtt_ms: float = 300.0,
        loss: float = 0.02,
        seed: int | str | None = 1,
        *,
        rto_ms: float | None = None,
        mss: int = MSS,
        burst_bytes: int = 0,
        shared_link: bool = True,
        handshake: bool = True,
        buffer_bytes: int = 1 << 20,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        if rate_bps is not None and rate_bps <= 0:
            raise ValueError("rate_bps must be positive (or None for unlimited)")
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        if rtt_ms < 0 or mss < 1 or burst_bytes < 0 or buffer_bytes < mss:
            raise ValueError("rtt_ms >= 0, mss >= 1, burst_bytes >= 0, buffer_bytes >= mss")
        self.target = (target[0], int(target[1]))
        self.rate_bps = rate_bps
        self.rtt_ms = float(rtt_ms)
        self.loss = float(loss)
        self.seed = seed
        self.rto_ms = float(rto_ms) if rto_ms is not None else MIN_RTO_MS + self.rtt_ms
        self.mss = mss
        self.burst_bytes = burst_bytes
        self.shared_link = shared_link
        self.handshake = handshake
        self.buffer_bytes = buffer_bytes
        self.listen_host = listen_host
        self._listen_port = listen_port
        self.port = 0  # known once started
        self.counters = ShaperStats()
        self._seed_base = seed if seed is not None else random.SystemRandom().getrandbits(64)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: asyncio.AbstractServer | None = None
        self._conns: dict[asyncio.Task[None], list[asyncio.StreamWriter]] = {}
        self._links: dict[str, _Link] = {}
        self._closed = False

    # -- the public side -------------------------------------------------------------------------

    @property
    def rate_bytes(self) -> float | None:
        return None if self.rate_bps is None else self.rate_bps / 8.0

    @property
    def latency_s(self) -> float:
        return self.rtt_ms / 2000.0

    @property
    def address(self) -> tuple[str, int]:
        return (self.listen_host, self.port)

    def url_for(self, base_url: str) -> str:
        """`base_url` (the target's URL) with its host and port replaced by the proxy's."""
        parts = urlsplit(base_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}{self.listen_host}:{self.port}"))

    def stats(self) -> dict[str, int]:
        """A snapshot of the counters (see `ShaperStats`)."""
        return self.counters.as_dict()

    def start(self) -> Shaper:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run, name=f"shaper->{self.target[1]}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop listening, abort every open connection and stop the thread (idempotent)."""
        if self._closed or self._loop is None or self._thread is None:
            return
        self._closed = True
        if self._thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            with contextlib.suppress(Exception):
                fut.result(timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def __enter__(self) -> Shaper:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        rate = "unlimited" if self.rate_bps is None else f"{self.rate_bps / 1000:g} kbit/s"
        return (f"Shaper({self.listen_host}:{self.port} -> {self.target[0]}:{self.target[1]}, {rate}, "
                f"rtt {self.rtt_ms:g} ms, loss {self.loss:g}, rto {self.rto_ms:g} ms, seed {self.seed!r})")

    # -- the loop's thread -----------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(asyncio.start_server(
                self._handle, self.listen_host, self._listen_port, backlog=512))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as e:
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._cancel_all())
            loop.close()

    @staticmethod
    async def _cancel_all() -> None:
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task, writers in list(self._conns.items()):
            for w in writers:
                w.transport.abort()
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)

    def _link(self, direction: str) -> _Link:
        if not self.shared_link:
            return _Link(self.rate_bytes, self.burst_bytes)
        if direction not in self._links:
            self._links[direction] = _Link(self.rate_bytes, self.burst_bytes)
        return self._links[direction]

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        number = self.counters.connections
        self.counters.connections += 1
        self.counters.active += 1
        writers = [cwriter]
        self._conns[task] = writers
        clean = False
        try:
            clean = await self._carry(number, creader, writers)
        except asyncio.CancelledError:
            pass  # the shaper closes (the only one that cancels these tasks)
        finally:
            for w in writers:
                if clean:
                    w.close()
                else:
                    w.transport.abort()
            self._conns.pop(task, None)
            self.counters.active -= 1

    async def _carry(self, number: int, creader: asyncio.StreamReader,
                     writers: list[asyncio.StreamWriter]) -> bool:
        """Connect to the target and carry both directions until both ended (True) or one side
        failed (False: reset, broken pipe, target unreachable)."""
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        try:
            sreader, swriter = await asyncio.open_connection(*self.target)
        except OSError:
            self.counters.failed_connects += 1
            return False
        writers.append(swriter)
        rtt = self.rtt_ms / 1000.0 if self.handshake else 0.0
        up = self._stream("up", number, accepted + rtt)
        down = self._stream("down", number, accepted + rtt + (self.latency_s if self.handshake else 0.0))
        failed = False
        try:
            async with asyncio.TaskGroup() as tg:
                for reader, writer, s in ((creader, swriter, up), (sreader, writers[0], down)):
                    tg.create_task(self._read(reader, s))
                    tg.create_task(self._send(s))
                    tg.create_task(self._deliver(s, writer))
        except* OSError:
            failed = True
        return not failed

    def _stream(self, name: str, number: int, hold_until: float) -> _Stream:
        stream = _Stream(name=name, link=self._link(name),
                         rng=random.Random(f"{self._seed_base}/{number}/{name}"), hold_until=hold_until)
        stream.room.set()
        return stream

    async def _read(self, reader: asyncio.StreamReader, s: _Stream) -> None:
        """Read what the sender sends as it comes, noting when; stop at the buffer limit."""
        loop = asyncio.get_running_loop()
        while True:
            while s.queued >= self.buffer_bytes:
                s.room.clear()
                await s.room.wait()
            data = await reader.read(1 << 16)
            now = loop.time()
            if not data:
                s.eof_at = now
                s.arrived.set()
                return
            s.inbox += data
            s.queued += len(data)
            s.marks.append((s.taken + len(s.inbox), now))
            s.arrived.set()

    async def _send(self, s: _Stream) -> None:
        """Cut the inbox into segments and put them through the link (and the loss model) into the
        delay line: a segment is ready when its last byte arrived and the stream is not held."""
        loop = asyncio.get_running_loop()
        latency = self.latency_s
        rto = self.rto_ms / 1000.0
        # with nothing to shape per segment, carry large pieces (much less work per byte)
        size = self.mss if (self.loss > 0 or self.rate_bps is not None) else 1 << 16
        while True:
            while not s.inbox and s.eof_at is None:
                s.arrived.clear()
                await s.arrived.wait()
            if s.hold_until > loop.time():  # the set-up round trip, or a retransmission timeout
                await asyncio.sleep(s.hold_until - loop.time())
            if not s.inbox:
                assert s.eof_at is not None
                self._enqueue(s, max(s.eof_at, s.hold_until) + latency, None)
                return
            data, arrived = s.take(size)
            n = len(data)
            lost = self.loss > 0 and s.rng.random() < self.loss
            done = await s.link.send(n, max(arrived, s.hold_until))
            if lost:
                # the copy that went out is lost; the sender waits for its retransmission timeout
                # (measured from that copy), then sends it again; everything behind it waits too
                if s.name == "up":
                    self.counters.lost_up += 1
                else:
                    self.counters.lost_down += 1
                s.hold_until = done + rto
                await asyncio.sleep(max(0.0, s.hold_until - loop.time()))
                done = await s.link.send(n, s.hold_until)
            if s.name == "up":
                self.counters.segments_up += 1
            else:
                self.counters.segments_down += 1
            self._enqueue(s, done + latency, data)

    def _enqueue(self, s: _Stream, at: float, data: bytes | None) -> None:
        at = max(at, s.last_delivery)
        s.last_delivery = at
        s.queue.append((at, data))
        s.more.set()

    async def _deliver(self, s: _Stream, writer: asyncio.StreamWriter) -> None:
        """The delay line: write each segment at its delivery time, in order; pass EOF on."""
        loop = asyncio.get_running_loop()
        while True:
            while not s.queue:
                s.more.clear()
                await s.more.wait()
            at = s.queue[0][0]
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            batch: list[bytes] = []
            eof = False
            while s.queue and s.queue[0][0] <= now:
                _, data = s.queue.popleft()
                if data is None:
                    eof = True
                    break
                batch.append(data)
            if batch:
                chunk = b"".join(batch)
                writer.write(chunk)
                await writer.drain()
                s.queued -= len(chunk)
                if s.name == "up":
                    self.counters.bytes_up += len(chunk)
                else:
                    self.counters.bytes_down += len(chunk)
                if s.queued < self.buffer_bytes:
                    s.room.set()
            if eof:
                if writer.can_write_eof():
                    writer.write_eof()
                return


def _parse_target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return (host.strip("[]") or "127.0.0.1", int(port))


def _parse_seed(text: str) -> int | str | None:
    if text.lower() == "none":
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.shaper", description=(
        "A TCP proxy that shapes traffic like a 3G link (bandwidth, latency, loss as TCP feels it). "
        "Prints the port it listens on, then runs until interrupted."))
    p.add_argument("--target", type=_parse_target, required=True, help="HOST:PORT to forward to")
    p.add_argument("--listen-port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    p.add_argument("--rate-kbps", type=float, default=400.0, help="kbit/s each way (0: unlimited)")
    p.add_argument("--rtt-ms", type=float, default=300.0, help="round trip added, half each way")
    p.add_argument("--loss", type=float, default=0.02, help="probability a segment is lost")
    p.add_argument("--rto-ms", type=float, default=None, help="retransmission timeout (200 + rtt)")
    p.add_argument("--seed", default="1", help="seed of the loss draws ('none': random)")
    p.add_argument("--per-connection", action="store_true", help="a link per connection, not shared")
    args = p.parse_args(argv)
    shaper = Shaper(target=args.target, rate_bps=args.rate_kbps * 1000 or None, rtt_ms=args.rtt_ms,
                    loss=args.loss, seed=_parse_seed(args.seed),
                    rto_ms=args.rto_ms, shared_link=not args.per_connection, listen_port=args.listen_port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a background job may start with it ignored
        signal.signal(sig, lambda *_: stop.set())
    with shaper:
        print(shaper.port, flush=True)
        print(repr(shaper), file=sys.stderr, flush=True)
        while not stop.wait(0.2):  # timed: the signal may land on the loop's thread
            pass
    print(shaper.stats(), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
